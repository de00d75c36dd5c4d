"""PDPGD ℓ∞ adapted to segmentation (Matyasko & Chau 2021; [Rony2023] App. F, eqs. 26–28).

Primal–dual proximal gradient on the Lagrangian (eq. 26)::

    L(δ, λ) = (1 - mᵀλ_Δ) ||δ||∞ + λ_Δᵀ ℓ(x + δ),      λ_Δ = m ⊙ exp λ / (1 + mᵀ exp λ)

one dual variable per pixel; ``λ_Δ`` is a softmax over the labelled pixels padded with a
fixed zero (the norm's share), ``m`` masks only unlabelled pixels (App. F: PDPGD does not
profit from adaptive masking).  ``ℓ`` is PDPGD's smooth per-pixel loss, the softplus of the
signed difference of logits ``s·dl`` (positive margin = pixel not yet fooled).

Per iteration (one forward, one backward):

1. evaluate and track the best iterate;
2. ``λ̄ ← EMA(λ_Δ)`` (weight ``dual_ema``, started at ``λ_Δ⁽⁰⁾``);
3. primal: an Adam step (β = 0.9, 0.999) on ``λ̄ᵀ ℓ`` with step ``η_k = primal_lr · 0.01^{k/N}``
   (exponential decay to 1 %), projected on the box; then the proximal Adam step (AdaProx):
   the prox of the norm in Adam's metric ``H = √v̂ / max √v̂`` with weight
   ``(1 - Σλ̄)/Σλ̄ · η_k / max √v̂`` — the Lagrangian normalised by the constraints' total
   weight, since Adam's step does not see the scale of the smooth part.  The reference
   code approximates this prox by five fixed-point sub-iterations; here it is solved
   exactly (to 1e-6 on the bound) in the metric ``H``, by ``prox_solver``
   (:data:`explorer.attacks.prox.PROX_SOLVERS`);
4. dual: ascent in the log domain on the constraints' signs,
   ``λ ← clip(λ + θ_k sign(s·dl), ±log 10¹²)``, ``θ_k`` = ``dual_lr`` decayed linearly to 10 %.

Eqs. 27–28: ``λ⁽⁰⁾ = -log(r |M|)`` makes the norm and the constraints weigh ``r : 1`` at the
start (``r`` = ``dual_ratio`` = 1).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from explorer.attacks.core import AttackResult, AttackRun, per_image_view
from explorer.attacks.losses import difference_of_logits
from explorer.attacks.prox import PROX_SOLVERS
from explorer.attacks.registry import PROX_SOLVER_PARAM, ParamSpec, register_attack


@register_attack(
    "pdpgd", title="PDPGD ℓ∞", kind="minimal-norm",
    summary="primal-dual proximal gradient with one dual variable per pixel",
    reference="Matyasko & Chau, PDPGD: Primal-Dual Proximal Gradient Descent Adversarial Attack, 2021; "
              "segmentation adaptation: [Rony2023] App. F",
    params=(ParamSpec("num_steps", int, 500, "iterations", low=1, high=100_000, symbol="N"),
            ParamSpec("primal_lr", float, 0.01, "Adam step of δ (decays exponentially to 1 %)",
                      low=1e-6, high=1.0, log=True),
            ParamSpec("dual_lr", float, 0.1, "dual step (decays linearly to 10 %)", low=1e-6, high=10.0, log=True),
            ParamSpec("dual_ratio", float, 1.0,
                      "initial weight of the norm against the constraints — [Rony2023] eq. 27",
                      low=1e-6, high=1e6, log=True, symbol="r"),
            ParamSpec("dual_ema", float, 0.9, "moving-average weight of the constraint weights λ_Δ",
                      low=0.0, high=0.9999),
            PROX_SOLVER_PARAM))
def pdpgd(model: nn.Module, images: Tensor, labels: Tensor, *, targeted: bool = False,
          masks: Optional[Tensor] = None, adv_threshold: float = 0.99, num_steps: int = 500,
          primal_lr: float = 0.01, dual_lr: float = 0.1, dual_ratio: float = 1.0, dual_ema: float = 0.9,
          prox_solver: str = "ternary",
          callback: Optional[Callable[..., Any]] = None, record_maps: bool = False) -> AttackResult:
    """PDPGD ℓ∞ for segmentation (module docstring)."""
    run = AttackRun("pdpgd", model, images, labels, masks, targeted, adv_threshold, num_steps, callback, record_maps)
    images = run.images
    n = len(images)
    sign = -1.0 if targeted else 1.0
    delta = torch.zeros_like(images, requires_grad=True)
    first_moment = torch.zeros_like(images)
    second_moment = torch.zeros_like(images)
    beta1, beta2 = 0.9, 0.999
    lower, upper = -images, 1 - images
    prox = PROX_SOLVERS[prox_solver]
    log_bound = math.log(1e12)  # the duals stay within exp(±log_bound) of each other
    dual = weights_ema = None
    for k in range(num_steps):
        step = primal_lr * 0.01 ** (k / num_steps)
        dual_step = dual_lr * (0.1 + 0.9 * (num_steps - 1 - k) / max(num_steps - 1, 1))
        # 1. evaluate and track the best iterate
        ev = run.evaluate(images + delta, delta)
        logits, prediction, pixel_adv, apsr, norm = ev.logits, ev.prediction, ev.pixel_adv, ev.apsr, ev.linf
        task = run.task
        m = task.masks
        if dual is None:  # eq. 28
            dual = (-torch.log(dual_ratio * task.mask_count.double())).view(n, 1, 1).expand(m.shape).clone()
            weights_ema = constraint_weights(dual, m)
        else:
            weights_ema = torch.lerp(weights_ema, constraint_weights(dual, m), 1 - dual_ema)

        margin = sign * difference_of_logits(logits, task.labels)  # > 0 where the pixel is not fooled
        smooth = (F.softplus(margin) * weights_ema.to(margin.dtype)).flatten(1).sum(1)
        grad = run.gradient(smooth, delta)
        run.check_model()  # the prox reads a bound on the host: refuse NaN logits before it
        with torch.no_grad():
            # Adam step on the smooth part, then back into the box
            first_moment.lerp_(grad, 1 - beta1)
            second_moment.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            scale = (second_moment / (1 - beta2 ** (k + 1))).sqrt_().add_(1e-8)
            moved = delta - step / (1 - beta1 ** (k + 1)) * first_moment / scale
            moved = torch.maximum(torch.minimum(moved, upper), lower)
            # proximal Adam: prox of the weighted norm in Adam's metric (exact, see the docstring)
            largest = scale.flatten(1).amax(1)
            total = weights_ema.flatten(1).sum(1)
            norm_weight = ((1 - total) / total).to(delta.dtype) * step / largest
            delta.copy_(prox(moved, norm_weight, lower, upper, metric=scale / per_image_view(largest, scale)))
            # dual ascent in the log domain on the constraints' signs
            dual = torch.where(m, dual + dual_step * torch.sign(margin.detach()).double(), dual)
            dual.clamp_(-log_bound, log_bound)
        stop = run.report(k, apsr=apsr, linf=norm, loss=smooth.detach(), step_size=torch.full((n,), step),
                          extras={"norm_weight": (1 - total).float()},
                          pixel_states=lambda: task.pixel_states(pixel_adv), prediction=lambda: prediction)
        # nothing of this iteration's model output lives through the next forward (peak memory)
        ev = logits = prediction = pixel_adv = margin = smooth = grad = scale = moved = None
        if stop:
            break
    return run.result()


def constraint_weights(dual: Tensor, masks: Tensor) -> Tensor:
    """``λ_Δ = m ⊙ exp λ / (1 + mᵀ exp λ)`` per image (eq. 26), computed stably in float64."""
    n = len(dual)
    log_weights = torch.where(masks, dual, torch.full_like(dual, -math.inf)).flatten(1)
    log_norm = torch.logsumexp(torch.cat([torch.zeros(n, 1, dtype=dual.dtype, device=dual.device),
                                          log_weights], dim=1), dim=1)
    return (log_weights - log_norm[:, None]).exp().view_as(dual)
