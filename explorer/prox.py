"""Proximity operator of ``lam * ||.||_inf + indicator(box)`` (seed 001, §4.2).

For a perturbation ``delta`` of an image ``x`` the feasible set is the box
``Lambda = [lower, upper] = [-x, 1 - x]``.  The operator solves (seed 001, eq. 11 and 16)::

    prox(delta) = argmin_p  1/2 ||p - delta||_H^2 + lam ||p||_inf + indicator_Lambda(p)

in a diagonal metric ``H`` (``||v||_H^2 = sum_i h_i v_i^2``; ``H = I`` when no metric is
given).  Introducing the bound ``beta = ||p||_inf`` (eq. 12), the minimiser for a fixed
``beta`` is the projection ``p_beta = clip(clip(delta, lower, upper), -beta, beta)``, and
the remaining one-dimensional problem (eq. 14)::

    min_{beta in [0, ||P_Lambda(delta)||_inf]}  f(beta) = 1/2 ||p_beta - delta||_H^2 + lam * beta

is convex (Proposition 1), so a ternary search finds ``beta*`` (Algorithm 1).
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from torch import Tensor


def ternary_search_steps(upper_bound: float, tolerance: float, section: float = 1 / 3) -> int:
    """Number of ternary-search steps that shrink ``[0, upper_bound]`` below ``tolerance``.

    Each step keeps ``1 - section`` of the interval, so ``n = ceil(log(tol / u) / log(1 - section))``
    (seed 001, Algorithm 1, line 4).
    """
    if upper_bound <= tolerance:
        return 0
    return math.ceil(math.log(tolerance / upper_bound) / math.log(1 - section))


def prox_linf_box(delta: Tensor, lam: Tensor, lower: Tensor, upper: Tensor,
                  metric: Optional[Tensor] = None, tolerance: float = 1e-6,
                  on_step: Optional[Callable[[int, Tensor, Tensor], None]] = None) -> Tensor:
    """Proximity operator of ``lam * ||.||_inf + indicator([lower, upper])`` in the metric ``metric``.

    Seed 001, Algorithm 1 (ternary search on the bound ``beta``), batched over images.

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
    flat = delta.reshape(n, -1)
    lower = torch.as_tensor(lower, dtype=delta.dtype, device=delta.device)
    upper = torch.as_tensor(upper, dtype=delta.dtype, device=delta.device)
    projected = torch.maximum(torch.minimum(flat, upper.expand(shape).reshape(n, -1)),
                              lower.expand(shape).reshape(n, -1))
    # Work with magnitudes: p_beta = sign * min(|P_Lambda(delta)|, beta).
    magnitude = projected.abs()
    sign = torch.sign(projected)
    twice_target = 2 * sign * flat  # 2 * delta expressed in the sign frame of the projection
    weights = None if metric is None else metric.reshape(n, -1)
    if not torch.is_tensor(lam):
        lam = torch.full((n,), float(lam), dtype=flat.dtype, device=flat.device)
    lam = lam.to(dtype=flat.dtype).reshape(n)

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
