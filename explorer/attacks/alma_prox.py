"""ALMA prox: minimal ℓ∞ adversarial perturbations for segmentation [Rony2023].

The attack minimises ``||delta||_inf + indicator_Lambda(delta) + m~^T P(w c(delta), rho, mu)``
([Rony2023], eq. 5 and 7) by variable-metric forward-backward splitting (eq. 17): a
gradient step on the penalty term, preconditioned by an Adam-like diagonal metric
(eq. 18), then the proximity operator of ``lam ||.||_inf + indicator_Lambda`` in that
metric (Algorithm 1, :func:`explorer.attacks.prox.prox_linf_box`).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn

from explorer.attacks.core import AttackResult, AttackRun, drop_largest, per_image_view
from explorer.attacks.losses import dlr_constraint, penalty, penalty_derivative
from explorer.attacks.prox import PROX_SOLVERS
from explorer.attacks.registry import PROX_SOLVER_PARAM, ParamSpec, register_attack

PARAMS = (
    ParamSpec("num_steps", int, 500, "iterations (one forward and one backward each)", low=1, high=100_000, symbol="N"),
    ParamSpec("lr_init", float, 1e-3, "initial step size", low=1e-7, high=1.0, log=True, symbol="λ⁽⁰⁾"),
    ParamSpec("lr_final", float, 1e-4, "step size reached at the last iteration (hyperbolic decay "
              "from the first success)", low=1e-8, high=1.0, log=True, symbol="λ⁽ᴺ⁾"),
    ParamSpec("mu_init", float, 1.0, "initial penalty multiplier", low=1e-12, high=1.0, log=True, symbol="μ⁽⁰⁾"),
    ParamSpec("rho_init", float, 0.01, "initial penalty parameter", low=1e-6, high=1e6, log=True, symbol="ρ⁽⁰⁾"),
    ParamSpec("rho_growth", float, 2.0, "factor applied to ρ where a constraint stalls",
              low=1.0, high=100.0, symbol="γ"),
    ParamSpec("check_steps", int, 10, "iterations between ρ updates", low=1, high=10_000, symbol="M"),
    ParamSpec("improvement_ratio", float, 0.95, "a constraint improved if c <= ratio * c_prev",
              low=0.0, high=1.0, symbol="τ"),
    ParamSpec("alpha", float, 0.8,
              "smoothing of the success metric and of μ (closer to 1: smoother) — [Rony2023] eq. 18",
              low=0.0, high=0.9999, symbol="α"),
    ParamSpec("scale_rate", float, 0.02, "how fast the constraints' scale follows their size — [Rony2023] eq. 8",
              low=0.0, high=0.5, symbol="γ_w"),
    ParamSpec("scale_min", float, 0.1, "lower bound of the constraint scale", low=1e-6, high=1.0, symbol="w_min"),
    ParamSpec("logit_tolerance", float, 1e-4, "margin the new class must win by on the logits — ε of [Rony2023] eq. 3",
              low=0.0, high=10.0, symbol="ε"),
    ParamSpec("constraint_masking", bool, True,
              "stop pushing the pixels that cost most (adaptive masking, [Rony2023] eq. 6)"),
    ParamSpec("mask_decay", bool, True, "drop those pixels gradually, up to a share 1 − ν of them; "
              "otherwise that share from the start ([Rony2023] eq. 6)"),
    ParamSpec("penalty_grad", str, "true", "derivative of P used: the formula's ('true') or the "
              "reference library's μ·y ('reference')", choices=("true", "reference")),
    ParamSpec("prox_tolerance", float, 1e-6, "absolute precision of the prox's bound β",
              low=1e-9, high=1e-2, log=True, symbol="Δβ"),
    PROX_SOLVER_PARAM,
)


@register_attack(
    "alma_prox", title="ALMA prox", kind="minimal-norm",
    summary="Augmented Lagrangian + proximal splitting; minimal ℓ∞ perturbation reaching APSR >= ν",
    reference="Rony et al., Proximal Splitting Adversarial Attacks for Semantic Segmentation, CVPR 2023 [Rony2023]",
    params=PARAMS)
def alma_prox(model: nn.Module, images: Tensor, labels: Tensor, *,
              targeted: bool = False, masks: Optional[Tensor] = None, adv_threshold: float = 0.99,
              num_steps: int = 500, lr_init: float = 1e-3, lr_final: float = 1e-4,
              mu_init: float = 1.0, rho_init: float = 0.01, rho_growth: float = 2.0,
              check_steps: int = 10, improvement_ratio: float = 0.95, alpha: float = 0.8,
              scale_rate: float = 0.02, scale_min: float = 0.1, logit_tolerance: float = 1e-4,
              constraint_masking: bool = True, mask_decay: bool = True, penalty_grad: str = "true",
              prox_tolerance: float = 1e-6, prox_solver: str = "ternary",
              callback: Optional[Callable[..., Any]] = None, record_maps: bool = False) -> AttackResult:
    """ALMA prox attack ([Rony2023], §4 and App. C): minimal ℓ∞ perturbation with APSR >= ν.

    Per iteration ``i = 0 .. N-1`` (one forward, one backward):

    1. ``z = f(x + delta)``; APSR (eq. 19), ℓ∞, best iterate (highest APSR before the
       first success, then smallest successful norm).
    2. Constraint scale (eq. 8): ``w /= 1 + γ_w`` if APSR >= ν else ``w /= 1 - γ_w``,
       clipped to ``[w_min, 1]``.
    3. Constraints ``c = w * DLR(z)`` per pixel (eq. 3, :func:`explorer.attacks.losses.dlr_constraint`).
    4. Adaptive masking (eq. 6): drop exactly ``floor(k i/(N-1))`` largest constraints
       of each image (``mask_decay``), where ``k = |M| - ceil(ν|M|)`` is the number of
       pixels a successful image may leave unfooled (``(1-ν)|M|`` rounded down);
       batch-safe for images with different ``|M|``.
    5. Every ``check_steps`` iterations: ``rho *= γ`` on kept pixels that were not
       adversarial at any iteration of the window and did not improve
       (``c > τ c_prev``).
    6. From ``i >= 1``: ``mu <- α mu + (1-α) d(m~^T P)/dc``, clipped to ``[1e-12, 1]``
       (the derivative is ``m~ P'(c)``, so μ of dropped pixels decays).  ``mu`` and
       ``rho`` are per pixel, in float64.
    7. Penalty ``P`` of eq. 9; loss ``m~^T P(c, rho, mu)`` per image.
    8. Gradient ``g``; metric (eq. 18) ``v <- α v + (1-α) g^2``,
       ``H = max(sqrt(v / (1 - α^(i+1))), 1e-8)``.
    9. Step size: ``lr_init`` until the first success (or ``N/2``), then hyperbolic
       decay reaching ``lr_final`` at iteration ``N``.
    10. ``delta <- prox^H_{λ||.||_inf + ι_Λ}(delta - λ g / H)`` (eq. 17), solved to
        ``prox_tolerance`` by Algorithm 1's ternary search (default) or by the histogram
        bracketing of :func:`explorer.attacks.prox.prox_linf_box_histogram` (same operator, fewer passes).

    Parameters (paper symbol in brackets)
    -------------------------------------
    images : (N, 3, H, W) in [0, 1]; labels : (N, H, W) int64, values >= K ignored
        (the target map when ``targeted``).
    num_steps [N], lr_init [λ⁽⁰⁾], lr_final [λ⁽ᴺ⁾], mu_init [μ⁽⁰⁾], rho_init [ρ⁽⁰⁾],
    rho_growth [γ], check_steps, improvement_ratio [τ], alpha [α], scale_rate [γ_w],
    scale_min [w_min], logit_tolerance [ε]: see the schema (``print(alma_prox.spec)``).
    prox_solver : ``"ternary"`` (default; [Rony2023], Algorithm 1) or ``"histogram"``.
    penalty_grad : ``"true"`` (default) uses the derivative of eq. 9; ``"reference"``
        reproduces the reference library's backward (``μ·y`` in place of ``μ``), which
        produced the published numbers.
    callback, record_maps : see :mod:`explorer.attacks.core`.  Record extras: ``mu``
        and ``rho`` (means over labelled pixels), ``w`` and ``kept`` (fraction of
        labelled pixels kept by the adaptive mask).
    """
    run = AttackRun("alma_prox", model, images, labels, masks, targeted, adv_threshold, num_steps,
                    callback, record_maps)
    images = run.images
    n = len(images)
    device = images.device
    lower, upper = -images, 1 - images
    prox = PROX_SOLVERS[prox_solver]

    delta = torch.zeros_like(images, requires_grad=True)
    second_moment = torch.zeros_like(images)  # v in eq. 18
    scale = torch.ones(n, device=device)      # w in eq. 8
    step_found = torch.full((n,), num_steps // 2, device=device)
    lr_ratio = lr_final / lr_init
    decay_slope = lr_ratio / (1 - lr_ratio) if lr_ratio < 1 else None
    found = torch.zeros(n, dtype=torch.bool, device=device)
    mu = rho = prev_constraints = pixel_adv_in_window = None

    for i in range(num_steps):
        # 1. progress and best iterate (highest APSR before the first success, then smallest norm);
        # the classes of the top logits give the prediction and the DLR constraints
        ev = run.evaluate(images + delta, delta, top_k=4)
        logits, ranked, prediction, pixel_adv, apsr, linf, is_adv = (ev.logits, ev.ranked, ev.prediction,
                                                                     ev.pixel_adv, ev.apsr, ev.linf, ev.is_adv)
        task = run.task
        if i == 0:
            mu = torch.full(task.labels.shape, float(mu_init), dtype=torch.float64, device=device)
            rho = torch.full_like(mu, float(rho_init))
            pixel_adv_in_window = torch.zeros_like(task.masks)
            # (1-ν)|M|: pixels that may stay unfooled in a successful image
            violations_allowed = [m - math.ceil(adv_threshold * m - 1e-9) for m in task.mask_count_host]
            # the same counts on the device, so that step 4 copies nothing from the host
            violations_allowed_t = torch.tensor(violations_allowed, dtype=torch.float64, device=device)

        pixel_adv_in_window |= pixel_adv
        if i < num_steps // 2:
            step_found = torch.where(~found & is_adv, torch.full_like(step_found, i), step_found)
        found |= is_adv

        # 2-3. constraint scale (eq. 8) and scaled DLR constraints (eq. 3, 7)
        scale = (scale / torch.where(is_adv, 1 + scale_rate, 1 - scale_rate)).clamp_(scale_min, 1.0)
        constraints = per_image_view(scale, logits[:, 0]) * dlr_constraint(
            logits, task.labels, targeted=targeted, tolerance=logit_tolerance, ranked=ranked)

        # 4. adaptive constraint masking (eq. 6)
        kept = task.masks
        if constraint_masking:
            fraction = i / (num_steps - 1) if (mask_decay and num_steps > 1) else (0.0 if mask_decay else 1.0)
            # floor(allowed × fraction) per image, in float64 on both sides: the host's largest
            # count (the top-k size) is the maximum of the device's counts
            drop_counts = (violations_allowed_t * fraction).long()
            kept = drop_largest(constraints, task.masks, drop_counts, k_max=int(max(violations_allowed) * fraction))

        # 5. penalty parameter update
        c_now = constraints.detach()
        if i == 0:
            prev_constraints = c_now
        elif (i + 1) % check_steps == 0:
            stalled = kept & ~pixel_adv_in_window & (c_now > improvement_ratio * prev_constraints)
            rho = torch.where(stalled, rho_growth * rho, rho)
            prev_constraints = c_now
            pixel_adv_in_window.zero_()

        # 6. multiplier update (float64)
        c64 = constraints.to(torch.float64)
        if i > 0:
            target = penalty_derivative(c64.detach(), rho, mu, penalty_grad) * kept
            mu = torch.lerp(mu, target, 1 - alpha).clamp_(1e-12, 1.0)

        # 7-8. penalty loss, gradient and metric (eq. 9, 18)
        loss = (penalty(c64, rho, mu, grad=penalty_grad) * kept).flatten(1).sum(dim=1)
        grad = run.gradient(loss, delta)
        second_moment.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
        metric = (second_moment / (1 - alpha ** (i + 1))).sqrt_().clamp_(min=1e-8)

        # 9. step size: constant until success, then hyperbolic decay to lr_final at i = N
        if decay_slope is None:
            lr = torch.full((n,), lr_init, device=device)
        else:
            tangent = decay_slope * (num_steps - step_found).clamp(min=1)
            lr = lr_init * tangent / ((i - step_found).clamp(min=0) + tangent)

        # 10. forward (gradient) step then backward (proximal) step, eq. 17
        run.check_model()  # the prox reads a bound on the host: refuse NaN logits before it
        with torch.no_grad():
            moved = delta - per_image_view(lr, delta) * grad / metric
            delta.copy_(prox(moved, lr, lower, upper, metric=metric, tolerance=prox_tolerance))

        def extras():  # computed only when a callback observes the attack
            labelled = task.masks.to(torch.float64)
            count = task.mask_count.to(torch.float64)
            return {"mu": (mu * labelled).flatten(1).sum(1) / count,
                    "rho": (rho * labelled).flatten(1).sum(1) / count,
                    "w": scale,
                    "kept": kept.flatten(1).sum(1) / task.mask_count}

        stop = run.report(i, apsr=apsr, linf=linf, loss=loss.detach(), step_size=lr, extras=extras,
                          pixel_states=lambda: task.pixel_states(pixel_adv, kept),
                          prediction=lambda: prediction)
        # nothing of this iteration's model output may live through the next forward: the
        # attack's peak memory is then the model's own forward+backward peak plus its state
        ev = logits = ranked = prediction = pixel_adv = constraints = c64 = loss = grad = metric = moved = kept = None
        if stop:
            break
    return run.result()
