"""Five ways to compute the same proximity operator, for [Rony2023] Fig. 2.

The problem, per vector, in the diagonal metric ``H = diag(h)`` ALMA prox uses ([Rony2023] eq. 16)::

    p* = argmin_p  F(p) = 1/2 ||p - delta||_H^2 + lam ||p||_inf + indicator_[lower, upper](p)

* **ternary search** on the bound ``beta = ||p||_inf`` — [Rony2023]'s Algorithm 1,
  :func:`explorer.attacks.prox.prox_linf_box` (the attacks' default ``prox_solver="ternary"``);
* **histogram bracketing** of the root of ``f'`` (:func:`explorer.attacks.prox.prox_linf_box_histogram`,
  ``prox_solver="histogram"``): the same operator, two passes per round, one round at 1e-6;
* **dual forward–backward** (DFB; Combettes, Dũng & Vũ 2010): with ``g = lam ||.||_inf``,
  whose conjugate is the indicator of the ℓ1 ball of radius ``lam``, iterate
  ``p_k = P_box(delta - v_k / h)``, ``v_{k+1} = P_{||.||_1 <= lam}(v_k + gamma p_k)``,
  ``0 < gamma < 2 min(h)`` (the primal part is ``min(h)``-strongly convex);
* **accelerated DFB**: the same dual step taken from a FISTA extrapolation of ``v``;
* **Douglas–Rachford** on ``f1 = 1/2||. - delta||_H^2 + indicator_box`` and ``f2 = lam ||.||_inf``:
  ``p = prox_{gamma f1}(z) = P_box((z + gamma h delta) / (1 + gamma h))``,
  ``z <- z + prox_{gamma f2}(2p - z) - p``, with ``prox_{gamma f2}(y) = y - P_{||.||_1 <= gamma lam}(y)``
  (Moreau's decomposition).

:func:`exact_prox` solves the problem exactly by sorting (the optimal ``beta`` is the root of
a piecewise-linear derivative) and serves as ``F*`` for the objective gaps.
"""
from __future__ import annotations

import time
from typing import Callable, Dict, List, Sequence

import torch
from torch import Tensor

from explorer.attacks.prox import (
    histogram_rounds,
    prox_linf_box,
    prox_linf_box_histogram,
    prox_objective,
    split_projection,
    ternary_search_steps,
)


def project_l1_ball(v: Tensor, radius: Tensor) -> Tensor:
    """Euclidean projection of each row of ``v`` (N, D) onto ``{||x||_1 <= radius}`` (Duchi et al. 2008).

    ``x = sign(v) max(|v| - theta, 0)`` with the threshold ``theta`` found from the sorted
    magnitudes; rows already inside the ball are returned unchanged.
    """
    magnitude = v.abs()
    inside = magnitude.sum(1) <= radius
    sorted_desc = magnitude.sort(dim=1, descending=True).values
    excess = sorted_desc.cumsum(1) - radius[:, None]
    index = torch.arange(1, v.shape[1] + 1, device=v.device, dtype=v.dtype)
    count = (sorted_desc - excess / index > 0).sum(1).clamp_min(1)
    theta = excess.gather(1, (count - 1)[:, None]) / count[:, None].to(v.dtype)
    projected = torch.sign(v) * (magnitude - theta).clamp_min(0)
    return torch.where(inside[:, None], v, projected)


def exact_prox(delta: Tensor, lam: Tensor, lower: Tensor, upper: Tensor, metric: Tensor | None = None) -> Tensor:
    """Exact solution by sorting.

    With ``m = |P_box(delta)|`` and ``t = sign(P_box(delta)) delta`` (``t >= m``), the objective
    in ``beta`` has derivative ``f'(beta) = lam - sum_{i: m_i > beta} h_i (t_i - beta)``,
    increasing and piecewise linear, with a downward jump at an ``m_i`` that the box clipped
    (``t_i > m_i``).  With ``m`` sorted in decreasing order, on the piece ``[m_{k+1}, m_k]``
    exactly the top ``k`` are active and ``f'`` vanishes at
    ``beta_k = (sum_{top k} h t - lam) / sum_{top k} h``.  A piece lies entirely below
    ``beta*`` iff ``beta_k > m_k``; every other piece gives ``max(beta_k, m_{k+1}) >= beta*``,
    with equality on the piece that holds ``beta*`` (or ends at it, when ``beta*`` is a
    jump).  So ``beta*`` is the smallest of those values, and ``m_1`` when every piece lies
    below it.
    """
    h = torch.ones_like(delta) if metric is None else metric
    _, magnitude, sign = split_projection(delta, lower, upper)
    target = sign * delta
    order = magnitude.argsort(dim=1, descending=True)
    m = magnitude.gather(1, order)
    t = target.gather(1, order)
    hs = h.gather(1, order)
    beta_k = ((hs * t).cumsum(1) - lam[:, None]) / hs.cumsum(1)  # root if exactly the top k are active
    next_m = torch.cat([m[:, 1:], torch.zeros_like(m[:, :1])], dim=1)
    candidates = torch.maximum(beta_k, next_m).masked_fill(beta_k > m, float("inf"))
    beta = torch.minimum(candidates.amin(1), m[:, 0]).clamp_min(0)
    return sign * torch.minimum(magnitude, beta[:, None])


def dual_forward_backward(delta, lam, lower, upper, iterations: int, metric: Tensor | None = None,
                          accelerated: bool = False) -> Tensor:
    """DFB (or its FISTA-accelerated form) for the prox; returns the last primal iterate (feasible).

    The dual step is ``gamma = min(h)`` per vector (1 / the Lipschitz constant of the dual gradient).
    """
    h = torch.ones_like(delta) if metric is None else metric
    gamma = h.amin(1, keepdim=True)
    v = torch.zeros_like(delta)
    extrapolated, t = v, 1.0
    for _ in range(iterations):
        p = torch.maximum(torch.minimum(delta - extrapolated / h, upper), lower)
        v_next = project_l1_ball(extrapolated + gamma * p, lam)
        if accelerated:
            t_next = (1 + (1 + 4 * t * t) ** 0.5) / 2
            extrapolated = v_next + ((t - 1) / t_next) * (v_next - v)
            t = t_next
        else:
            extrapolated = v_next
        v = v_next
    return torch.maximum(torch.minimum(delta - v / h, upper), lower)


def douglas_rachford(delta, lam, lower, upper, iterations: int, metric: Tensor | None = None,
                     gamma: float = 1.0) -> Tensor:
    """Douglas–Rachford splitting for the prox; returns ``prox_{gamma f1}(z)`` (feasible)."""
    h = torch.ones_like(delta) if metric is None else metric

    def prox_f1(z):
        return torch.maximum(torch.minimum((z + gamma * h * delta) / (1 + gamma * h), upper), lower)

    z = delta.clone()
    for _ in range(iterations):
        p = prox_f1(z)
        y = 2 * p - z
        z = z + (y - project_l1_ball(y, gamma * lam)) - p
    return prox_f1(z)


def random_problem(count: int, dim: int, seed: int = 0, dtype=torch.float64, device="cpu"):
    """Random prox problems like ALMA prox's: a perturbation ``delta`` of an image ``x``, box
    ``[-x, 1-x]``, a diagonal metric ``h`` in [0.1, 1.1] (ALMA's RMS metric varies per pixel).

    ``delta`` is Gaussian with a standard deviation of 2/255 around a third of the pixels
    pushed against the box; ``lam`` is 10 % of ``||P_box(delta)||_1 * mean(h)`` per vector, so the
    solution is neither 0 nor ``P_box(delta)``.  Returns ``delta, lam, lower, upper, metric``.
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(count, dim, generator=g, dtype=dtype)
    delta = torch.randn(count, dim, generator=g, dtype=dtype) * (2 / 255)
    near_edge = torch.rand(count, dim, generator=g, dtype=dtype) < 1 / 3
    x = torch.where(near_edge, (x > 0.5).to(dtype), x)  # saturated pixels: the box is active there
    lower, upper = -x, 1 - x
    metric = 0.1 + torch.rand(count, dim, generator=g, dtype=dtype)
    projected = torch.maximum(torch.minimum(delta, upper), lower)
    lam = 0.1 * projected.abs().sum(1) * metric.mean(1)
    return [t.to(device) for t in (delta, lam, lower, upper, metric)]


def compare_solvers(count: int = 4, dim: int = 3 * 128 * 256, iterations: Sequence[int] = (10, 100, 1000),
                    seed: int = 0, device: str = "cpu") -> List[Dict[str, object]]:
    """Time and objective gap ``F(p) - F(p*)`` of each solver on the same random problems (float64)."""
    delta, lam, lower, upper, h = random_problem(count, dim, seed, device=device)
    best = prox_objective(exact_prox(delta, lam, lower, upper, h), delta, lam, h)
    solvers: Dict[str, Callable[[int], Tensor]] = {
        "DFB": lambda n: dual_forward_backward(delta, lam, lower, upper, n, h),
        "accelerated DFB": lambda n: dual_forward_backward(delta, lam, lower, upper, n, h, accelerated=True),
        "Douglas–Rachford": lambda n: douglas_rachford(delta, lam, lower, upper, n, h),
    }
    rows = []

    def measure(name: str, steps: int, solve: Callable[[], Tensor]) -> None:
        start = time.perf_counter()
        p = solve()
        if p.is_cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        gap = (prox_objective(p, delta, lam, h) - best).clamp_min(0)
        rows.append({"solver": name, "iterations": steps, "ms_per_vector": 1000 * seconds / count,
                     "median_gap": float(gap.median()), "max_gap": float(gap.max()),
                     "median_relative_gap": float((gap / best).median())})

    largest = float(torch.maximum(torch.minimum(delta, upper), lower).abs().max())
    for tolerance in (1e-6, 1e-9):
        steps = ternary_search_steps(largest, tolerance)
        measure(f"ternary search (tol {tolerance:g})", steps,
                lambda: prox_linf_box(delta, lam, lower, upper, metric=h, tolerance=tolerance))
        measure(f"histogram (tol {tolerance:g})", histogram_rounds(largest, tolerance),
                lambda: prox_linf_box_histogram(delta, lam, lower, upper, metric=h, tolerance=tolerance))
    measure("exact (sort)", 1, lambda: exact_prox(delta, lam, lower, upper, h))
    for name, solve in solvers.items():
        for n in iterations:
            measure(name, n, lambda: solve(n))
    return rows
