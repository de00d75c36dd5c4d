"""Per-pixel losses and constraints shared by the attacks.

Everything here works on logits of shape (N, K, H, W) and label maps of shape (N, H, W)
whose ignored pixels have already been replaced by a valid class index (the attacks do
that once, in :mod:`explorer.attacks.core`, and mask those pixels out themselves).

Contents
--------
* :func:`difference_of_logits` — ``z_y - max_{j != y} z_j`` ([Rony2023], Algorithm 2, line 7).
* :func:`dlr_constraint` — the DLR+ constraint of ALMA prox ([Rony2023], eq. 3), satisfied
  when ``<= 0``, in untargeted and targeted form.
* :func:`penalty` and :func:`penalty_derivative` — the penalty-Lagrangian function ``P``
  of [Rony2023], eq. 9, with its true derivative, and the reference library's derivative
  (``mu * y`` instead of ``mu`` on ``y >= 0``) as an explicit option.
* :data:`OBJECTIVES` — the per-pixel objectives the fixed-budget attacks *maximise*
  (CE, DLR, SegPGD, CosPGD, masked CE, JS, masked spherical, Tsallis, class-balanced
  masked CE), each in untargeted and targeted form.
"""
from __future__ import annotations

import math
from typing import Literal, Optional

import torch
from torch import Tensor

PenaltyGrad = Literal["true", "reference"]

#: Smallest denominator allowed in the DLR ratio (logits all equal would divide by zero).
DLR_DENOMINATOR_FLOOR = 1e-12


def top_classes(logits: Tensor, k: int) -> Tensor:
    """Classes of the ``min(k, K)`` largest logits per pixel, (N, k, H, W) int64, no gradient.

    Ordered by decreasing logit and, among equal logits, by increasing class: ``[:, 0]`` is
    ``argmax``'s prediction, with its tie rule (``torch.topk`` leaves the order of ties
    unspecified).  Each rank takes vectorised passes over the logits: the largest remaining
    logit ``m = amax_c z_c``, the first class equal to it (the indicator ``z_c = m`` weighted
    by ``K - c`` and reduced by ``amax``), then that class is set to ``-inf`` in a working copy.
    On the CPU, for 19 × 256 × 512 logits, that takes 2.5 / 7 / 12-18 ms for k = 1 / 2 / 4, where
    ``topk`` over the strided class dimension, which is not vectorised across pixels, takes
    27-33 ms for any k (docs/benchmarks.md).  Non-finite logits (which the attack core refuses
    before any result), where ``-inf`` would no longer mark a class as taken, go to a stable
    descending sort: the same order, NaN first as ``argmax`` has it.  The values, with their
    gradients, are a ``gather`` of these classes (:func:`dlr_constraint`).
    """
    num_classes = logits.shape[1]
    k = min(k, num_classes)
    with torch.no_grad():
        z = logits.detach()
        if not bool(torch.isfinite(z.amax()) & torch.isfinite(z.amin())):
            return z.sort(dim=1, descending=True, stable=True).indices[:, :k]
        shape = (1, num_classes) + (1,) * (z.ndim - 2)
        weight_dtype = torch.uint8 if num_classes < 256 else torch.int32
        weights = torch.arange(num_classes, 0, -1, dtype=weight_dtype, device=z.device).view(shape)
        # a working copy, in the contiguous layout where the class dimension is reduced across
        # pixels (channels-last logits, as the app's CNNs give them, are 2-3x slower to reduce)
        remaining = z.clone(memory_format=torch.contiguous_format) if k > 1 else z.contiguous()
        at_max = torch.empty_like(remaining, dtype=torch.bool)  # one buffer for every rank
        ranks = []
        for rank in range(k):
            # z_c >= max_c z_c is z_c = max (one pass, cheaper than eq on the CPU)
            torch.ge(remaining, remaining.amax(dim=1, keepdim=True), out=at_max)
            hits = at_max.view(torch.uint8) if weight_dtype == torch.uint8 else at_max.to(weight_dtype)
            classes = num_classes - hits.mul_(weights).amax(dim=1, keepdim=True).long()
            ranks.append(classes)
            if rank + 1 < k:
                remaining.scatter_(1, classes, float("-inf"))
        return torch.cat(ranks, dim=1)


def predicted_classes(logits: Tensor) -> Tensor:
    """``logits.argmax(1)`` — the first class of largest logit per pixel, (N, H, W) int64.

    On the CPU, ``argmax`` over the strided class dimension is not vectorised: for 19 × 256 × 512
    logits it costs several times a whole DLR constraint.  There the same classes are the first
    rank of :func:`top_classes` (two vectorised passes).  Other devices go to ``argmax``.
    """
    if logits.device.type != "cpu" or logits.ndim < 2 or not logits.dtype.is_floating_point:
        return logits.argmax(1)
    return top_classes(logits, 1)[:, 0]


def _label_logit_and_top(logits: Tensor, labels: Tensor, classes: Tensor):
    """``z_y``, the top logits (columns of ``classes``) and ``max_{j != y} z_j``, from one gather.

    The largest logit other than ``z_y`` is the first of the top two whose class is not ``y``,
    which avoids building a (N, K, H, W) "infinity-hot" tensor.  One gather of the top classes
    and the label gives a single (N, K, H, W) gradient buffer in the backward pass, where a
    ``topk`` and a separate gather built two and added them (same sums: at most two terms meet
    in one entry).
    """
    k = classes.shape[1]
    values = logits.gather(1, torch.cat([classes, labels.unsqueeze(1)], dim=1))
    top, z_label = values[:, :k], values[:, k]
    best_other = torch.where(classes[:, 0] == labels, top[:, 1], top[:, 0])
    return z_label, top, best_other


def difference_of_logits(logits: Tensor, labels: Tensor, ranked: Optional[Tensor] = None) -> Tensor:
    """Difference of logits ``dl(z, y) = z_y - max_{j != y} z_j`` per pixel, shape (N, H, W).

    Negative exactly where the prediction differs from ``y`` (up to ties).
    [Rony2023] Algorithm 2, line 7 (DAG).  ``ranked`` may pass precomputed
    :func:`top_classes` with at least two columns.
    """
    if logits.shape[1] < 2:
        raise ValueError("the difference of logits needs at least two classes")
    classes = top_classes(logits, 2) if ranked is None else ranked
    z_label, _, best_other = _label_logit_and_top(logits, labels, classes)
    return z_label - best_other


def dlr_constraint(logits: Tensor, labels: Tensor, targeted: bool = False,
                   tolerance: float = 1e-4, ranked: Optional[Tensor] = None) -> Tensor:
    """Difference-of-logits-ratio constraint per pixel ([Rony2023], eq. 3); satisfied when ``<= 0``.

    Untargeted (``labels`` = true classes ``y``)::

        c = (z_y - max_{j != y} z_j + tol) / (z_pi1 - z_pi3)

    Targeted (``labels`` = target classes ``t``)::

        c = (max_{j != t} z_j - z_t + tol) / (z_pi1 - (z_pi3 + z_pi4) / 2)

    with ``pi`` the classes sorted by decreasing logit.  The tolerance ``tol`` sits on the
    side that *tightens* the constraint in both modes: ``c <= 0`` requires a margin of at
    least ``tol`` in the logits, so that a satisfied constraint is a changed argmax even
    with rounding.  (The reference library loosens it in targeted mode; we do not.)

    With fewer classes than the ratio needs (K < 3 untargeted, K < 4 targeted), ``pi3``
    and ``pi4`` fall back to the smallest logit; with K = 2 the ratio would be a constant
    ``+-1`` with no gradient, so the denominator is replaced by 1 (plain difference of
    logits).  The denominator is floored at ``DLR_DENOMINATOR_FLOOR``.
    ``ranked`` may pass precomputed :func:`top_classes` (four columns, or ``K``).
    """
    num_classes = logits.shape[1]
    if num_classes < 2:
        raise ValueError("the DLR constraint needs at least two classes")
    classes = top_classes(logits, 4) if ranked is None else ranked
    k = classes.shape[1]
    z_label, top, best_other = _label_logit_and_top(logits, labels, classes)
    if targeted:
        numerator = best_other - z_label + tolerance
    else:
        numerator = z_label - best_other + tolerance
    if num_classes == 2:
        return numerator
    third = top[:, min(2, k - 1)]
    if targeted:
        fourth = top[:, min(3, k - 1)]
        denominator = top[:, 0] - (third + fourth) / 2
    else:
        denominator = top[:, 0] - third
    return numerator / denominator.clamp_min(DLR_DENOMINATOR_FLOOR)


# ----------------------------------------------------------------------------------------
# Penalty-Lagrangian function P ([Rony2023], eq. 9)
# ----------------------------------------------------------------------------------------

def _penalty_value(y: Tensor, rho: Tensor, mu: Tensor) -> Tensor:
    """``P(y, rho, mu)`` of [Rony2023], eq. 9, elementwise."""
    positive = mu * y + mu * rho * y.square() + rho.square() * y.pow(3) / 6
    y_neg = y.clamp(max=0)  # keeps the unused branch finite for y > 0
    negative = mu * y_neg / (1 - rho.clamp(min=1) * y_neg)
    return torch.where(y >= 0, positive, negative)


def penalty_derivative(y: Tensor, rho: Tensor, mu: Tensor, kind: PenaltyGrad = "true") -> Tensor:
    """Derivative ``dP/dy`` of the penalty of [Rony2023], eq. 9, elementwise.

    ``kind="true"`` (default) is the derivative of the formula::

        P'(y) = mu + 2 mu rho y + rho^2 y^2 / 2          if y >= 0
        P'(y) = mu / (1 - max(1, rho) y)^2               if y < 0

    ``kind="reference"`` reproduces the reference library's hand-written backward, which
    returns ``mu * y + 2 mu rho y + rho^2 y^2 / 2`` on ``y >= 0`` (``mu * y`` where the
    formula has ``mu``), so the gradient vanishes as ``y -> 0+``.  The published ALMA prox
    numbers were produced with it; it is offered only so both can be measured.
    """
    y_neg = y.clamp(max=0)
    negative = mu / (1 - rho.clamp(min=1) * y_neg).square()
    if kind == "true":
        positive = mu + 2 * mu * rho * y + rho.square() * y.square() / 2
    elif kind == "reference":
        positive = mu * y + 2 * mu * rho * y + rho.square() * y.square() / 2
    else:
        raise ValueError(f"penalty_grad must be 'true' or 'reference', got {kind!r}")
    return torch.where(y >= 0, positive, negative)


class _Penalty(torch.autograd.Function):
    """``P(y, rho, mu)`` with a backward given by :func:`penalty_derivative`.

    Gradients flow to ``y`` only: ``rho`` and ``mu`` are the method's parameters, updated
    by their own rules, not optimised.
    """

    @staticmethod
    def forward(ctx, y: Tensor, rho: Tensor, mu: Tensor, kind: str) -> Tensor:  # noqa: D401
        ctx.save_for_backward(y, rho, mu)
        ctx.kind = kind
        return _penalty_value(y, rho, mu)

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        y, rho, mu = ctx.saved_tensors
        return grad_output * penalty_derivative(y, rho, mu, ctx.kind), None, None, None


def penalty(y: Tensor, rho: Tensor, mu: Tensor, grad: PenaltyGrad = "true") -> Tensor:
    """Penalty-Lagrangian ``P(y, rho, mu)`` of [Rony2023], eq. 9, elementwise and differentiable in ``y``.

    ``P(y) = mu y + mu rho y^2 + rho^2 y^3 / 6`` for ``y >= 0`` and
    ``P(y) = mu y / (1 - max(1, rho) y)`` for ``y < 0``.  ``grad`` selects the backward:
    ``"true"`` (the formula's derivative, checked by ``torch.autograd.gradcheck`` in the
    tests) or ``"reference"`` (the reference library's, see :func:`penalty_derivative`).
    """
    if grad not in ("true", "reference"):
        raise ValueError(f"penalty_grad must be 'true' or 'reference', got {grad!r}")
    return _Penalty.apply(y, rho, mu, grad)


# ----------------------------------------------------------------------------------------
# Objectives of the fixed-budget attacks
# ----------------------------------------------------------------------------------------
#
# Every objective has the signature ``objective(logits, labels, targeted, adversarial,
# progress) -> (N, H, W)`` and is *maximised* by the attack.  ``adversarial`` is the pixel
# success map of the current iterate (detached): argmax != y untargeted, == t targeted.
# ``progress`` = t / T in [0, 1) is the position in the (stage's) iteration budget, used by
# the schedules of SegPGD (λ_t) and TsallisPGD (q).  Ignored pixels are masked by the caller.
# Targeted forms move towards the target: they maximise minus the untargeted loss of the
# target map (so CE becomes -CE(z, t)).

def _log_probs(logits: Tensor, labels: Tensor) -> Tensor:
    return torch.log_softmax(logits, dim=1).gather(1, labels.unsqueeze(1)).squeeze(1)


def _sign(targeted: bool) -> float:
    return -1.0 if targeted else 1.0


def ce_objective(logits, labels, targeted, adversarial=None, progress=0.0):
    """Cross-entropy ``-log p_y`` (untargeted), ``log p_t`` (targeted)."""
    return -_sign(targeted) * _log_probs(logits, labels)


def dlr_objective(logits, labels, targeted, adversarial=None, progress=0.0):
    """Minus the DLR constraint of [Rony2023] eq. 3 (Croce & Hein's DLR loss with its tolerance)."""
    return -dlr_constraint(logits, labels, targeted)


def segpgd_weights(adversarial: Tensor, progress: float) -> Tensor:
    """SegPGD weights [Gu2022]: ``1 - λ_t`` on pixels not yet adversarial, ``λ_t`` on the
    others, ``λ_t = t / (2T)``.  Targeted (our choice, documented in docs/attacks.md): the
    same rule with "adversarial" = already on target, so early steps push the pixels that
    are not there yet."""
    lam = 0.5 * float(progress)
    return torch.where(adversarial, lam, 1.0 - lam)


def segpgd_objective(logits, labels, targeted, adversarial, progress):
    """SegPGD loss ([Gu2022], eq. 5): CE re-weighted by :func:`segpgd_weights` (also SEA's
    "balanced CE")."""
    return segpgd_weights(adversarial, progress) * ce_objective(logits, labels, targeted)


def cospgd_objective(logits, labels, targeted, adversarial=None, progress=0.0):
    """CosPGD (Agnihotri et al. 2024): CE weighted per pixel by ``cos(softmax(z), onehot(y))
    = p_y / ||p||_2`` (detached); targeted weight ``1 - cos``."""
    with torch.no_grad():
        probs = torch.softmax(logits, dim=1)
        cos = probs.gather(1, labels.unsqueeze(1)).squeeze(1) / probs.norm(dim=1).clamp_min(1e-12)
        weight = 1 - cos if targeted else cos
    return weight * ce_objective(logits, labels, targeted)


def masked_ce_objective(logits, labels, targeted, adversarial, progress=0.0):
    """SEA's masked CE: CE on the pixels not yet adversarial only (``1[correct] CE``)."""
    return (~adversarial) * ce_objective(logits, labels, targeted)


def js_objective(logits, labels, targeted, adversarial=None, progress=0.0):
    """Jensen–Shannon divergence between ``onehot(y)`` and ``softmax(z)`` in closed form
    [Croce2024]: ``log 2 + (p_y log p_y - (1 + p_y) log(1 + p_y)) / 2``; NaN-free (log p_y
    comes from log_softmax).  Targeted: minus the divergence to the target."""
    log_p = _log_probs(logits, labels)
    p = log_p.exp()
    js = math.log(2.0) + 0.5 * (p * log_p - (1 + p) * torch.log1p(p))
    return _sign(targeted) * js


def spherical_objective(logits, labels, targeted, adversarial, progress=0.0):
    """SEA's masked spherical loss: ``-1[correct] z_y / ||z||_2`` on the logits."""
    z_label = logits.gather(1, labels.unsqueeze(1)).squeeze(1)
    cosine = z_label / logits.norm(dim=1).clamp_min(1e-12)
    return -_sign(targeted) * (~adversarial) * cosine


def tsallis_q(progress: float, q_start: float = -2.0, q_end: float = 1.0) -> float:
    """TsallisPGD's schedule [TsallisPGD2026]: q linear from ``q_start`` to ``q_end`` over a stage."""
    return q_start + (q_end - q_start) * float(progress)


def tsallis_objective(logits, labels, targeted, adversarial=None, progress=0.0):
    """Tsallis loss [TsallisPGD2026]: ``(1 - p_y^(1-q)) / (1 - q)``, CE at ``q = 1``; its gradient
    is CE's times ``p_y^(1-q)``.  ``q = tsallis_q(progress)``."""
    q = tsallis_q(progress)
    log_p = _log_probs(logits, labels)
    a = 1.0 - q
    loss = -log_p if abs(a) < 1e-6 else -torch.expm1(a * log_p) / a
    return _sign(targeted) * loss


def class_balance_weights(labels: Tensor, mask=None, num_classes=None) -> Tensor:
    """Per-class weights ``w`` (K,) of the class-balanced masked CE [Croce2024]: the normalised
    inverse labelled-pixel frequency of the classes in ``labels`` (the whole batch pooled).

    ``w_c = (1 / n_c) / Σ_{c' : n_c' > 0} 1 / n_c'`` with ``n_c`` the number of labelled
    pixels of class ``c`` — the pixels where ``mask`` is true (all pixels when ``mask`` is
    None) and the label is below ``num_classes`` (default ``labels.max() + 1``).  Classes
    absent from the batch get 0; the weights of the present classes sum to 1.  Computed
    without gradient (they are constants of the batch, as the authors' constant tables are
    constants of the data set).
    """
    with torch.no_grad():
        y = labels if mask is None else labels[mask.bool()]
        y = y.reshape(-1).long()
        if num_classes is None:
            num_classes = int(y.max()) + 1 if y.numel() else 1
        y = y[(y >= 0) & (y < num_classes)]
        counts = torch.bincount(y, minlength=num_classes).to(torch.float32)
        inverse = torch.where(counts > 0, 1.0 / counts.clamp_min(1.0), torch.zeros_like(counts))
        total = inverse.sum()
        weights = inverse / total if total > 0 else inverse
    return weights


def balanced_masked_ce_objective(logits, labels, targeted, adversarial, progress=0.0, *, mask=None):
    """SEA's class-balanced masked CE (the ECCV-2024 member ``mask-ce-bal`` [Croce2024]):
    ``1[pixel not yet adversarial] · w[y] · CE``, ``w`` = :func:`class_balance_weights`
    of the label maps being attacked (targeted: of the target maps, on ``-CE(z, t)``).

    Design: the weights belong to the batch, not to the pixel, so the objective takes the
    constraint set ``M`` as the keyword ``mask`` (its attribute ``uses_mask`` tells the
    fixed-budget loops to pass it: :func:`explorer.attacks.fixed_budget.evaluate`) and
    counts only the labelled pixels; the labels of ignored pixels, replaced by class 0
    upstream, never inflate class 0's count.  Recomputing the weights at each call keeps the
    objective a pure function of its arguments (a ``bincount`` over the batch, negligible
    next to a forward).  The authors use fixed per-data-set tables (``VOC_WTS``/``ADE_WTS``,
    apparently inverse pixel frequencies); weights from the batch attacked need no table
    per data set but depend on which images share the batch.  Without ``mask`` every
    pixel's label counts."""
    weights = class_balance_weights(labels, mask, logits.shape[1]).to(dtype=logits.dtype, device=logits.device)
    return weights[labels] * masked_ce_objective(logits, labels, targeted, adversarial)


#: the fixed-budget loops pass the constraint set ``M`` to this objective as ``mask=``
balanced_masked_ce_objective.uses_mask = True


#: name -> objective, for the attacks' ``loss`` parameter
OBJECTIVES = {
    "ce": ce_objective, "dlr": dlr_objective, "segpgd": segpgd_objective, "cospgd": cospgd_objective,
    "masked_ce": masked_ce_objective, "js": js_objective, "spherical": spherical_objective,
    "tsallis": tsallis_objective, "balanced_masked_ce": balanced_masked_ce_objective,
}
