"""PDPGD ℓ∞ adapted to segmentation (Matyasko & Chau 2021; seed 001 App. F, eqs. 26–28).

Primal–dual proximal gradient: the primal variable δ descends the Lagrangian
``L(δ, λ) = (1 - mᵀλ_Δ) ||δ||∞ + λ_Δᵀ ℓ(x + δ)`` by an Adam step on the smooth part followed
by the proximity operator of the weighted norm (and the box); the dual variables, one per
pixel, ascend it.  ``ℓ`` is the per-pixel difference of logits (``s·dl``, negative when
the pixel is adversarial).  Eq. 26: ``λ_Δ = m ⊙ exp λ / (1 + mᵀ exp λ)`` — a softmax over
the pixels padded with one fixed zero for the norm term, so the norm weighs ``1 - mᵀλ_Δ``.
Eqs. 27–28: ``λ⁽⁰⁾ = -log(r |M|)`` makes the norm and the constraints weigh ``r : 1`` at the
start (r = 1).  ``m`` masks only the unlabelled pixels (App. F: PDPGD does not profit from
adaptive masking).

Per iteration (one forward, one backward): evaluate and track the best iterate; Adam step
on ``λ_Δᵀ ℓ`` with learning rate ``primal_lr`` decayed exponentially to 1 % at the end;
``δ ← prox_{lr (1 - mᵀλ_Δ) ||.||∞ + ι_box}``; dual step in the log domain (exponentiated
gradient on the padded simplex) ``λ ← λ + η (ℓ - ||δ||∞)``, ``η = dual_lr`` decayed
linearly to 10 %.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn

from explorer.attacks.core import AttackResult, AttackRun
from explorer.attacks.registry import ParamSpec, register_attack
from explorer.losses import difference_of_logits
from explorer.prox import prox_linf_box


@register_attack(
    "pdpgd", title="PDPGD ℓ∞", kind="minimal-norm",
    summary="primal-dual proximal gradient with one dual variable per pixel",
    reference="Matyasko & Chau, PDPGD: Primal-Dual Proximal Gradient Descent Adversarial Attack, 2021; "
              "segmentation adaptation: seed 001 App. F",
    params=(ParamSpec("num_steps", int, 500, "iterations", low=1, high=100_000, symbol="N"),
            ParamSpec("primal_lr", float, 0.01, "Adam learning rate of δ (decays exponentially to 1 %)",
                      low=1e-6, high=1.0, log=True),
            ParamSpec("dual_lr", float, 0.1, "dual step (decays linearly to 10 %)", low=1e-6, high=10.0, log=True),
            ParamSpec("dual_ratio", float, 1.0, "initial weight ratio norm : constraints (eq. 27)",
                      low=1e-6, high=1e6, log=True, symbol="r")))
def pdpgd(model: nn.Module, images: Tensor, labels: Tensor, *, targeted: bool = False,
          masks: Optional[Tensor] = None, adv_threshold: float = 0.99, num_steps: int = 500,
          primal_lr: float = 0.01, dual_lr: float = 0.1, dual_ratio: float = 1.0,
          callback: Optional[Callable[..., Any]] = None, record_maps: bool = False) -> AttackResult:
    """PDPGD ℓ∞ for segmentation (module docstring)."""
    run = AttackRun("pdpgd", model, images, labels, masks, targeted, adv_threshold, num_steps, callback,
                    record_maps, params=dict(num_steps=num_steps, primal_lr=primal_lr, dual_lr=dual_lr,
                                             dual_ratio=dual_ratio))
    images = run.images
    n = len(images)
    sign = -1.0 if targeted else 1.0
    delta = torch.zeros_like(images, requires_grad=True)
    optimizer = torch.optim.Adam([delta], lr=primal_lr)
    lower, upper = -images, 1 - images
    dual = None
    for k in range(num_steps):
        lr = primal_lr * 0.01 ** (k / num_steps)
        eta = dual_lr * (1 - 0.9 * k / num_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        logits = run.forward(images + delta)
        task = run.task
        m = task.masks
        if dual is None:  # eq. 28
            dual = (-torch.log(dual_ratio * task.mask_count.double())).view(n, 1, 1).expand(m.shape).clone()
        prediction = logits.argmax(1)
        pixel_adv = task.pixel_success(prediction)
        apsr = task.apsr(pixel_adv)
        norm = delta.detach().flatten(1).abs().amax(1)
        run.track(images + delta.detach(), apsr, norm)
        constraint = sign * difference_of_logits(logits, task.labels)
        # eq. 26: weights of the constraints on the padded simplex (float64, computed stably)
        log_weights = torch.where(m, dual, torch.full_like(dual, -math.inf)).flatten(1)
        log_norm = torch.logsumexp(torch.cat([torch.zeros(n, 1, dtype=dual.dtype, device=dual.device),
                                              log_weights], dim=1), dim=1)
        weights = (log_weights - log_norm[:, None]).exp().view_as(dual)
        norm_weight = 1 - weights.flatten(1).sum(1)
        smooth = (weights.to(constraint.dtype) * constraint).flatten(1).sum(1)
        optimizer.zero_grad(set_to_none=True)
        smooth.sum().backward()
        run.count_backward()
        optimizer.step()
        with torch.no_grad():
            threshold = (lr * norm_weight).to(delta.dtype)
            delta.copy_(prox_linf_box(delta, threshold, lower, upper))
            new_norm = delta.flatten(1).abs().amax(1)
            dual = torch.where(m, dual + eta * (constraint.detach().double() - new_norm.double().view(n, 1, 1)),
                               dual)
        if run.report(k, apsr=apsr, linf=norm, loss=smooth.detach(), step_size=torch.full((n,), lr),
                      extras={"norm_weight": norm_weight.float()},
                      pixel_states=lambda: task.pixel_states(pixel_adv), prediction=lambda: prediction):
            break
    return run.result()
