"""The benchmark's prox solvers (explorer.bench.prox_solvers) against exact solutions, and the
``prox`` command that compares them."""
from __future__ import annotations

import pytest
import torch

from explorer.attacks.prox import prox_linf_box, prox_objective
from explorer.bench.prox_solvers import (
    douglas_rachford,
    dual_forward_backward,
    exact_prox,
    project_l1_ball,
    random_problem,
)


def test_l1_ball_projection_against_bisection():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(5, 30, generator=g, dtype=torch.float64)
    radius = torch.tensor([0.5, 2.0, 10.0, 100.0, 1e-3], dtype=torch.float64)
    p = project_l1_ball(v, radius)
    for i in range(5):
        if v[i].abs().sum() <= radius[i]:
            assert torch.equal(p[i], v[i])
            continue
        lo, hi = 0.0, float(v[i].abs().max())
        for _ in range(200):  # theta with sum(max(|v| - theta, 0)) = radius
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if (v[i].abs() - mid).clamp_min(0).sum() > radius[i] else (lo, mid)
        expected = torch.sign(v[i]) * (v[i].abs() - lo).clamp_min(0)
        torch.testing.assert_close(p[i], expected, atol=1e-10, rtol=0)


def _partly_clipped_problem():
    """Pixels just inside the box, pushed past it: the box clips them to a non-zero magnitude
    (``t > m``), so f' jumps there and beta* can sit exactly on a jump (the largest one, for
    the first image)."""
    g = torch.Generator().manual_seed(11)
    x = torch.rand(3, 40, generator=g, dtype=torch.float64) * 0.02
    delta = -(0.02 + torch.rand(3, 40, generator=g, dtype=torch.float64) * 0.05)
    h = 0.1 + torch.rand(3, 40, generator=g, dtype=torch.float64)
    lam = torch.tensor([1e-4, 5e-3, 2e-2], dtype=torch.float64)
    return delta, lam, -x, 1 - x, h


@pytest.mark.parametrize("problem", ["random", "partly clipped"])
def test_exact_prox_against_brute_force_beta_grid(problem):
    delta, lam, lower, upper, h = (random_problem(3, 40, seed=5) if problem == "random"
                                   else _partly_clipped_problem())
    exact = exact_prox(delta, lam, lower, upper, h)
    best = prox_objective(exact, delta, lam, h)
    for i in range(3):
        top = float(torch.maximum(torch.minimum(delta[i], upper[i]), lower[i]).abs().max())
        betas = torch.linspace(0, top, 20001, dtype=torch.float64)
        projected = torch.maximum(torch.minimum(delta[i], upper[i]), lower[i])
        candidates = torch.maximum(torch.minimum(projected[None], betas[:, None]), -betas[:, None])
        values = prox_objective(candidates, delta[i].expand_as(candidates), lam[i].expand(len(betas)),
                                h[i].expand_as(candidates))
        assert best[i] <= values.min() + 1e-15
        assert values.min() - best[i] < 1e-9
    torch.testing.assert_close(prox_linf_box(delta, lam, lower, upper, metric=h, tolerance=1e-12), exact,
                               atol=1e-11, rtol=0)


@pytest.mark.parametrize("solver", ["dfb", "accelerated", "douglas-rachford"])
def test_iterative_prox_solvers_converge_to_the_exact_solution(solver):
    delta, lam, lower, upper, h = random_problem(3, 200, seed=7)
    best = prox_objective(exact_prox(delta, lam, lower, upper, h), delta, lam, h)
    run = {"dfb": lambda n: dual_forward_backward(delta, lam, lower, upper, n, h),
           "accelerated": lambda n: dual_forward_backward(delta, lam, lower, upper, n, h, accelerated=True),
           "douglas-rachford": lambda n: douglas_rachford(delta, lam, lower, upper, n, h)}[solver]
    early, late = run(3), run(3000)
    for p in (early, late):
        assert torch.all(p >= lower - 1e-12) and torch.all(p <= upper + 1e-12)
    gap_early = prox_objective(early, delta, lam, h) - best
    gap_late = prox_objective(late, delta, lam, h) - best
    assert torch.all(gap_early > 1e-9), "three iterations should not have converged"
    assert torch.all(gap_late.abs() < 1e-9)


def test_prox_command(capsys):
    from explorer.bench.cli import main

    main(["prox", "--count", "2", "--dim", "300", "--iterations", "5", "50"])
    text = capsys.readouterr().out
    for name in ("ternary search (tol 1e-06)", "histogram (tol 1e-06)", "exact (sort)", "| DFB | 50 |",
                 "accelerated DFB", "Douglas–Rachford"):
        assert name in text
