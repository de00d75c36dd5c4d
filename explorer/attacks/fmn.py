"""FMN ℓ∞ adapted to segmentation (Pintor et al. 2021; [Rony2023] §5.5).

Fast Minimum-Norm alternates a gradient step on the loss with a projection onto an ℓ∞
ball whose radius ε adapts: it shrinks when the current iterate is adversarial and grows
when it is not.  The segmentation adaptation [Rony2023] takes as loss the mean over ``M``
of the difference of logits and tests APSR >= ν as the "adversarial" decision.

Per iteration ``k = 0 .. N-1`` (one forward, one backward), with ``γ_k`` cosine-annealed
from ``gamma_init`` to ``gamma_final`` and ``α_k`` from ``alpha_init`` to ``alpha_init / 100``:

1. ``z = f(x + δ)``; APSR, ℓ∞, best iterate (core rule).
2. ``L = mean_M s·dl(z, y)`` (``s = -1`` targeted), ``g = ∇_δ L``.
3. ε update: adversarial → ``ε = min(ε (1 - γ_k), best norm)``; not adversarial → before the
   image's first success ``ε = ||δ||∞ + |L| / ||g||_1`` (a first-order guess of the boundary's
   distance), afterwards ``ε = ε (1 + γ_k)``.  The absolute value is our adaptation: in
   segmentation the mean margin ``L`` turns negative long before APSR reaches ν, and FMN's
   ``L / ||g||_1`` would then shrink the ball of an image that is not adversarial yet.
4. ``δ ← Π_{ε, box}(δ - α_k g / ||g||_2)``.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn

from explorer.attacks.core import AttackResult, AttackRun, per_image_view, project_linf
from explorer.attacks.losses import difference_of_logits
from explorer.attacks.registry import ParamSpec, register_attack


def cosine_anneal(start: float, end: float, k: int, n: int) -> float:
    """``end + (start - end)(1 + cos(π k / n)) / 2``: ``start`` at k = 0, ``end`` at k = n."""
    return end + (start - end) * (1 + math.cos(math.pi * k / n)) / 2


@register_attack(
    "fmn", title="FMN ℓ∞", kind="minimal-norm",
    summary="fast minimum-norm: gradient steps projected on an ℓ∞ ball that shrinks when adversarial",
    reference="Pintor et al., Fast Minimum-norm Adversarial Attacks through Adaptive Norm Constraints, "
              "NeurIPS 2021; segmentation adaptation: [Rony2023] §5.5",
    params=(ParamSpec("num_steps", int, 500, "iterations", low=1, high=100_000, symbol="N"),
            ParamSpec("alpha_init", float, 10.0, "initial step size (on ℓ2-normalised gradients)",
                      low=1e-6, high=1e3, log=True, symbol="α₀"),
            ParamSpec("gamma_init", float, 0.05, "initial ε update factor", low=0.0, high=0.99, symbol="γ₀"),
            ParamSpec("gamma_final", float, 0.001, "final ε update factor", low=0.0, high=0.99, symbol="γ_N")))
def fmn(model: nn.Module, images: Tensor, labels: Tensor, *, targeted: bool = False,
        masks: Optional[Tensor] = None, adv_threshold: float = 0.99, num_steps: int = 500,
        alpha_init: float = 10.0, gamma_init: float = 0.05, gamma_final: float = 0.001,
        callback: Optional[Callable[..., Any]] = None, record_maps: bool = False) -> AttackResult:
    """FMN ℓ∞ for segmentation (module docstring)."""
    run = AttackRun("fmn", model, images, labels, masks, targeted, adv_threshold, num_steps, callback, record_maps)
    images = run.images
    n = len(images)
    sign = -1.0 if targeted else 1.0
    delta = torch.zeros_like(images)
    eps = torch.full((n,), float("inf"), device=images.device)
    for k in range(num_steps):
        gamma = cosine_anneal(gamma_init, gamma_final, k, num_steps)
        alpha = cosine_anneal(alpha_init, alpha_init / 100, k, num_steps)
        delta.requires_grad_(True)
        ev = run.evaluate(images + delta, delta)
        logits, prediction, pixel_adv, apsr, norm, is_adv = (ev.logits, ev.prediction, ev.pixel_adv, ev.apsr,
                                                             ev.linf, ev.is_adv)
        task = run.task
        loss = (sign * difference_of_logits(logits, task.labels) * task.masks).flatten(1).sum(1) / task.mask_count
        grad = run.gradient(loss, delta)
        with torch.no_grad():
            delta = delta.detach()
            dual = grad.flatten(1).abs().sum(1).clamp_min(1e-12)
            first_guess = norm + loss.detach().abs() / dual
            grown = torch.where(run.found, eps * (1 + gamma), first_guess)
            shrunk = torch.minimum(eps * (1 - gamma), torch.where(run.found, run.best_linf, eps))
            eps = torch.where(is_adv, shrunk, grown)
            l2 = per_image_view(grad.flatten(1).norm(dim=1).clamp_min(1e-12), grad)
            delta = project_linf(delta - alpha * grad / l2, images, eps.clamp_max(1.0))
        if run.report(k, apsr=apsr, linf=norm, loss=loss.detach(), step_size=torch.full((n,), alpha),
                      extras={"eps": eps.clamp_max(1.0)},
                      pixel_states=lambda: task.pixel_states(pixel_adv), prediction=lambda: prediction):
            break
    return run.result()
