"""Proximity operator of ``lam * ||.||_inf + indicator(box)`` ([Rony2023], §4.2).

For a perturbation ``delta`` of an image ``x`` the feasible set is the box
``Lambda = [lower, upper] = [-x, 1 - x]``.  The operator solves ([Rony2023], eq. 11 and 16)::

    prox(delta) = argmin_p  1/2 ||p - delta||_H^2 + lam ||p||_inf + indicator_Lambda(p)

in a diagonal metric ``H`` (``||v||_H^2 = sum_i h_i v_i^2``; ``H = I`` when no metric is
given).  Introducing the bound ``beta = ||p||_inf`` (eq. 12), the minimiser for a fixed
``beta`` is the projection ``p_beta = clip(clip(delta, lower, upper), -beta, beta)``, and
the remaining one-dimensional problem (eq. 14)::

    min_{beta in [0, ||P_Lambda(delta)||_inf]}  f(beta) = 1/2 ||p_beta - delta||_H^2 + lam * beta

is convex (Proposition 1), so a ternary search finds ``beta*`` (Algorithm 1,
:func:`prox_linf_box`).  Its derivative is increasing and piecewise linear,

    f'(beta) = lam - sum_{i: m_i > beta} h_i (t_i - beta),   m = |P_Lambda(delta)|,  t = sign(P_Lambda(delta)) delta,

so ``beta*`` is also where ``f'`` changes sign, which :func:`prox_linf_box_histogram`
brackets with one histogram of ``m`` per round instead of two passes per ternary step.
Both return the same operator to within their tolerance; the attacks choose with their
``prox_solver`` parameter (:data:`PROX_SOLVERS`).
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Optional

import torch
from torch import Tensor


def ternary_search_steps(upper_bound: float, tolerance: float, section: float = 1 / 3) -> int:
    """Number of ternary-search steps that shrink ``[0, upper_bound]`` below ``tolerance``.

    Each step keeps ``1 - section`` of the interval, so ``n = ceil(log(tol / u) / log(1 - section))``
    ([Rony2023], Algorithm 1, line 4).
    """
    if upper_bound <= tolerance:
        return 0
    return math.ceil(math.log(tolerance / upper_bound) / math.log(1 - section))


def split_projection(delta: Tensor, lower, upper):
    """Flatten per image and split the box projection ``P_Lambda(delta)`` into magnitude and sign.

    Returns ``(flat, magnitude, sign)`` of shape ``(N, D)``: every candidate of eq. 14 is
    ``p_beta = sign * min(magnitude, beta)``, and ``sign * flat`` is ``t``, delta in that sign frame.
    """
    shape = delta.shape
    n = shape[0]
    flat = delta.reshape(n, -1)
    lower = torch.as_tensor(lower, dtype=delta.dtype, device=delta.device)
    upper = torch.as_tensor(upper, dtype=delta.dtype, device=delta.device)
    projected = torch.maximum(torch.minimum(flat, upper.expand(shape).reshape(n, -1)),
                              lower.expand(shape).reshape(n, -1))
    return flat, projected.abs(), torch.sign(projected)


def per_image_weight(lam, n: int, dtype: torch.dtype, device) -> Tensor:
    """The ℓ∞ weight ``lam`` (a number or one value per image) as an ``(N,)`` tensor."""
    if not torch.is_tensor(lam):
        return torch.full((n,), float(lam), dtype=dtype, device=device)
    return lam.to(dtype=dtype, device=device).reshape(n)


def prox_linf_box(delta: Tensor, lam: Tensor, lower: Tensor, upper: Tensor,
                  metric: Optional[Tensor] = None, tolerance: float = 1e-6,
                  on_step: Optional[Callable[[int, Tensor, Tensor], None]] = None) -> Tensor:
    """Proximity operator of ``lam * ||.||_inf + indicator([lower, upper])`` in the metric ``metric``.

    [Rony2023] Algorithm 1 (ternary search on the bound ``beta``), batched over images.

    Parameters
    ----------
    delta : (N, ...) tensor
        Points at which the operator is evaluated (one per image).
    lam : (N,) tensor or float
        Weight of the ℓ∞ norm, per image (the step size λ in ALMA prox).
    lower, upper : tensors broadcastable to ``delta``
        Bounds of the box ``Lambda`` (``-x`` and ``1 - x`` for an image ``x``); ``lower <= 0 <= upper``.
    metric : tensor of ``delta``'s shape, optional
        Positive diagonal of the metric ``H`` (eq. 16-18).  ``None`` is the Euclidean metric.
    tolerance : float
        Absolute precision on ``beta*`` (and hence on every coordinate of the result).

    on_step : callable, optional
        ``on_step(step, low, high)`` after every ternary-search step with the (N,) bracket of
        ``beta*`` (for teaching and tests; it costs nothing when not given).

    Returns
    -------
    Tensor of ``delta``'s shape and dtype: ``clip(P_Lambda(delta), -beta*, beta*)``.

    Notes
    -----
    The search compares ``f(beta_u) - f(beta_l)`` computed term by term,
    ``sum_i h_i (p_u - p_l)(p_u + p_l - 2 delta_i) / 2 + lam (beta_u - beta_l)``, rather than
    the two objective values themselves: near the minimum they differ by far less than
    the rounding error of ``f`` in float32, and the difference keeps its relative
    precision.  The number of steps is computed once per call from the largest bound in
    the batch (one host synchronisation, none inside the loop).
    """
    shape = delta.shape
    n = shape[0]
    # Work with magnitudes: p_beta = sign * min(|P_Lambda(delta)|, beta).
    flat, magnitude, sign = split_projection(delta, lower, upper)
    twice_target = 2 * sign * flat  # 2 * delta expressed in the sign frame of the projection
    weights = None if metric is None else metric.reshape(n, -1)
    lam = per_image_weight(lam, n, flat.dtype, flat.device)

    high = magnitude.amax(dim=1)  # Proposition 1: beta* <= ||P_Lambda(delta)||_inf
    low = torch.zeros_like(high)
    steps = ternary_search_steps(float(high.max()) if n else 0.0, tolerance)
    if on_step is not None:
        on_step(0, low, high)
    for step in range(steps):
        third = (high - low) / 3
        beta_low = low + third
        beta_high = high - third
        m_low = torch.minimum(magnitude, beta_low.unsqueeze(1))
        m_high = torch.minimum(magnitude, beta_high.unsqueeze(1))
        # 2 * (f(beta_high) - f(beta_low)), term by term
        terms = (m_high - m_low) * (m_high + m_low - twice_target)
        if weights is not None:
            terms = terms * weights
        twice_gap = terms.sum(dim=1) + 2 * lam * (beta_high - beta_low)
        move_low = twice_gap <= 0  # f(beta_low) >= f(beta_high): the minimum is right of beta_low
        low = torch.where(move_low, beta_low, low)
        high = torch.where(move_low, high, beta_high)
        if on_step is not None:
            on_step(step + 1, low, high)
    beta = ((low + high) / 2).unsqueeze(1)
    return (sign * torch.minimum(magnitude, beta)).reshape(shape)


def prox_objective(p: Tensor, delta: Tensor, lam: Tensor, metric: Optional[Tensor] = None) -> Tensor:
    """Objective ``1/2 ||p - delta||_H^2 + lam ||p||_inf`` per image (eq. 16, box assumed satisfied)."""
    n = p.shape[0]
    sq = (p - delta).reshape(n, -1).square()
    if metric is not None:
        sq = sq * metric.reshape(n, -1)
    return sq.sum(dim=1) / 2 + lam * p.reshape(n, -1).abs().amax(dim=1)


#: bins per round of :func:`prox_linf_box_histogram`: one round reaches 1e-6 on bounds up to
#: 0.065 (16/255), and the per-bin sums cost about 1 MiB per image
HISTOGRAM_BINS = 2 ** 16


def histogram_rounds(upper_bound: float, tolerance: float, bins: int = HISTOGRAM_BINS) -> int:
    """Rounds of :func:`prox_linf_box_histogram` that shrink ``[0, upper_bound]`` below ``tolerance``
    (each shrinks the bracket ``bins``-fold): ``max(1, ceil(log(upper_bound / tol) / log(bins)))``."""
    return max(1, math.ceil(math.log(max(upper_bound / tolerance, 1.0)) / math.log(bins)))


def prox_linf_box_histogram(delta: Tensor, lam: Tensor, lower: Tensor, upper: Tensor,
                            metric: Optional[Tensor] = None, tolerance: float = 1e-6,
                            bins: int = HISTOGRAM_BINS) -> Tensor:
    """The operator of :func:`prox_linf_box`, found by bracketing the root of ``f'`` with histograms.

    Same arguments and result as :func:`prox_linf_box`.  The minimiser ``beta*`` of eq. 14 is
    where the increasing, piecewise-linear derivative (module docstring)
    ``f'(beta) = lam - sum_{m_i > beta} h_i (t_i - beta)`` changes sign.  For a bracket
    ``[low, low + width]`` (first ``[0, max m]``, Proposition 1), one pass sorts every
    coordinate into one of ``bins`` equal sub-intervals by ``m`` (or into "below" / "above")
    and accumulates ``sum h`` and ``sum h t`` per bin (``torch.bincount``, in float64); suffix
    sums then give ``f'`` at all ``bins + 1`` edges at once, and the sub-interval where it turns
    non-negative is the next bracket.  Each round shrinks the bracket ``bins``-fold, so
    :func:`histogram_rounds` rounds (one, for 1e-6 on bounds up to 16/255 with the default
    bins) replace the ternary search's ~26 steps; the last bracket is closed by the secant
    of ``f'``, exact when no ``m_i`` falls inside it.  Special cases: ``f'(0) >= 0`` gives ``beta* = 0``;
    ``f' < 0`` up to ``max m`` gives ``beta* = max m`` (``f'`` jumps to ``lam > 0`` there when the
    box clipped the largest coordinates, ``t > m``).
    """
    shape = delta.shape
    n = shape[0]
    flat, magnitude, sign = split_projection(delta, lower, upper)
    weights = torch.ones_like(flat) if metric is None else metric.reshape(n, -1)
    h_sum_weights = weights.to(torch.float64).flatten()
    ht_sum_weights = (weights * sign * flat).to(torch.float64).flatten()  # h t, with t = sign * delta
    lam = per_image_weight(lam, n, torch.float64, flat.device).view(n, 1)

    top = magnitude.amax(dim=1).to(torch.float64)
    largest = float(top.max()) if n else 0.0
    if largest <= 0:
        return torch.zeros_like(delta)  # P_Lambda(delta) = 0
    rounds = histogram_rounds(largest, tolerance, bins)

    # bin 0: m below the bracket (never active inside it); 1..bins: inside; bins + 1: above.
    # The bin of row r, position j (-1 .. bins) is r (bins + 2) + j + 1, computed in floating
    # point and converted once: in the magnitudes' dtype while it holds every bin number
    # exactly (float32: below 2^24, i.e. up to 255 images), else in float64.
    size = n * (bins + 2)
    index_dtype = flat.dtype if size <= 2 / torch.finfo(flat.dtype).eps else torch.float64
    row_offset = (torch.arange(n, device=flat.device, dtype=index_dtype) * (bins + 2) + 1).view(n, 1)
    edge = torch.arange(bins + 1, device=flat.device, dtype=torch.float64).view(1, -1)
    low, width = torch.zeros_like(top), torch.where(top > 0, top, torch.ones_like(top))
    fixed = torch.zeros(n, dtype=torch.bool, device=flat.device)  # beta* found exactly
    beta_fixed = torch.zeros_like(top)
    f_low = f_high = None
    for _ in range(rounds):
        per_bin = (bins / width.clamp_min(torch.finfo(torch.float64).tiny)).to(index_dtype).view(n, 1)
        position = (magnitude.to(index_dtype) - low.to(index_dtype).view(n, 1)).mul_(per_bin)
        position = position.floor_().clamp_(-1, bins)
        index = position.add_(row_offset).flatten().long()
        h_in = torch.bincount(index, h_sum_weights, minlength=size).view(n, bins + 2)
        ht_in = torch.bincount(index, ht_sum_weights, minlength=size).view(n, bins + 2)
        # active set at edge j (beta = low + j width / bins) = bins j + 1 .. bins + 1
        h_active = h_in.flip(1).cumsum(1).flip(1)[:, 1:]
        ht_active = ht_in.flip(1).cumsum(1).flip(1)[:, 1:]
        betas = low.view(n, 1) + edge * (width / bins).view(n, 1)
        derivative = lam - (ht_active - betas * h_active)
        turned = derivative >= 0
        first = turned.to(torch.uint8).argmax(dim=1)  # first edge with f' >= 0
        at_low = turned.any(dim=1) & (first == 0)     # only when low = 0: beta* = 0
        at_top = ~turned.any(dim=1)                   # beta* = low + width (= max m)
        newly = ~fixed & (at_low | at_top)
        beta_fixed = torch.where(newly, torch.where(at_low, low, low + width), beta_fixed)
        fixed |= newly
        upper_edge = first.clamp_min(1).view(n, 1)
        f_high = derivative.gather(1, upper_edge).squeeze(1)
        f_low = derivative.gather(1, upper_edge - 1).squeeze(1)
        low = betas.gather(1, upper_edge - 1).squeeze(1)
        width = width / bins
    # secant of f' on the last bracket (f_low < 0 <= f_high)
    beta = low + width * (-f_low) / (f_high - f_low).clamp_min(torch.finfo(torch.float64).tiny)
    beta = torch.where(fixed, beta_fixed, beta).to(flat.dtype).view(n, 1)
    return (sign * torch.minimum(magnitude, beta)).reshape(shape)


#: the proximity-operator solvers the attacks can use (their ``prox_solver`` parameter)
PROX_SOLVERS: Dict[str, Callable[..., Tensor]] = {
    "ternary": prox_linf_box,
    "histogram": prox_linf_box_histogram,
}
