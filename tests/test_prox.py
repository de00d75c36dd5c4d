"""The ℓ∞ + box proximity operator (seed 001, Algorithm 1) against an exact brute force."""
import numpy as np
import pytest
import torch

from explorer.attacks import prox_linf_box
from explorer.prox import prox_objective, ternary_search_steps


def brute_force_prox(delta, lam, lower, upper, h=None):
    """Exact minimiser over the bound β by enumerating every piece of the objective.

    With ``a = |P_Lambda(delta)|`` and ``e = sign(P_Lambda(delta)) * delta``, the objective
    ``f(β) = 1/2 sum_{a_i > β} h_i (β - e_i)^2 + 1/2 sum_{a_i <= β} h_i (a_i - e_i)^2 + lam β``
    is quadratic between consecutive breakpoints ``a_i``; its minimiser on each piece is
    the clipped stationary point ``(sum h_i e_i - lam) / sum h_i`` over the active set.
    Every candidate (breakpoints and stationary points) is evaluated; the best wins.
    """
    delta = np.asarray(delta, dtype=np.float64)
    h = np.ones_like(delta) if h is None else np.asarray(h, dtype=np.float64)
    proj = np.clip(delta, lower, upper)
    a, s = np.abs(proj), np.sign(proj)
    e = s * delta

    def f(beta):
        p = s * np.minimum(a, beta)
        return 0.5 * np.sum(h * (p - delta) ** 2) + lam * beta

    breaks = np.unique(np.concatenate([[0.0], a]))
    candidates = list(breaks)
    for lo, hi in zip(breaks[:-1], breaks[1:]):
        active = a > lo
        stationary = (np.sum(h[active] * e[active]) - lam) / np.sum(h[active])
        candidates.append(np.clip(stationary, lo, hi))
    values = [f(b) for b in candidates]
    beta = candidates[int(np.argmin(values))]
    return s * np.minimum(a, beta), beta


@pytest.mark.parametrize("with_metric", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_prox_matches_brute_force(with_metric, dtype):
    g = torch.Generator().manual_seed(1 if with_metric else 0)
    n, d = 8, 60
    x = torch.rand(n, d, generator=g, dtype=torch.float64)
    sigma = 10 ** (torch.rand(n, 1, generator=g, dtype=torch.float64) * 2 - 2)  # 0.01 .. 1
    delta = torch.randn(n, d, generator=g, dtype=torch.float64) * sigma
    lam = 10 ** (torch.rand(n, generator=g, dtype=torch.float64) * 3 - 4)      # 1e-4 .. 0.1
    h = 10 ** (torch.rand(n, d, generator=g, dtype=torch.float64) * 4 - 2) if with_metric else None
    p = prox_linf_box(delta.to(dtype), lam.to(dtype), (-x).to(dtype), (1 - x).to(dtype),
                      metric=None if h is None else h.to(dtype), tolerance=1e-7)
    for i in range(n):
        expected, _ = brute_force_prox(delta[i].numpy(), lam[i].item(), -x[i].numpy(), 1 - x[i].numpy(),
                                       None if h is None else h[i].numpy())
        np.testing.assert_allclose(p[i].double().numpy(), expected, atol=1e-6, rtol=0)
    # the result is feasible: inside the box
    assert ((p.double() >= -x - 1e-7) & (p.double() <= 1 - x + 1e-7)).all()


def test_prox_objective_not_worse_than_brute_force_on_images():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 16, 16, generator=g, dtype=torch.float64)
    delta = torch.randn(2, 3, 16, 16, generator=g, dtype=torch.float64) * 0.05
    lam = torch.tensor([1e-3, 5e-2], dtype=torch.float64)
    h = torch.rand(2, 3, 16, 16, generator=g, dtype=torch.float64) + 0.1
    p = prox_linf_box(delta, lam, -x, 1 - x, metric=h)
    assert p.shape == delta.shape
    for i in range(2):
        expected, _ = brute_force_prox(delta[i].flatten().numpy(), lam[i].item(), -x[i].flatten().numpy(),
                                       1 - x[i].flatten().numpy(), h[i].flatten().numpy())
        expected = torch.from_numpy(expected).view(1, 3, 16, 16)
        ours = prox_objective(p[i:i + 1], delta[i:i + 1], lam[i:i + 1], h[i:i + 1])
        best = prox_objective(expected, delta[i:i + 1], lam[i:i + 1], h[i:i + 1])
        assert ours.item() <= best.item() + 1e-9


def test_prox_limits():
    x = torch.full((1, 5), 0.5, dtype=torch.float64)
    delta = torch.tensor([[0.1, -0.3, 0.7, 0.0, -0.8]], dtype=torch.float64)
    # λ = 0: plain projection on the box [-x, 1-x] = [-0.5, 0.5]
    p = prox_linf_box(delta, torch.zeros(1, dtype=torch.float64), -x, 1 - x)
    assert torch.allclose(p, delta.clamp(-0.5, 0.5), atol=1e-6)
    # λ >= ||δ||_1-ish: everything shrinks to 0
    p = prox_linf_box(delta, torch.tensor([10.0], dtype=torch.float64), -x, 1 - x)
    assert p.abs().max() < 1e-6


def test_ternary_step_count():
    # (2/3)^n <= 1e-6 / 1  ->  n = ceil(log(1e-6)/log(2/3)) = 35
    assert ternary_search_steps(1.0, 1e-6) == 35
    assert ternary_search_steps(1e-7, 1e-6) == 0


def test_on_step_reports_a_shrinking_bracket_around_the_answer():
    import torch
    from explorer.prox import prox_linf_box, ternary_search_steps
    g = torch.Generator().manual_seed(3)
    delta = torch.randn(2, 50, generator=g) * 0.1
    brackets = []
    result = prox_linf_box(delta, torch.tensor([0.05, 0.2]), -torch.ones(1), torch.ones(1), tolerance=1e-6,
                           on_step=lambda step, low, high: brackets.append((step, low.clone(), high.clone())))
    assert [b[0] for b in brackets] == list(range(len(brackets)))
    assert len(brackets) == ternary_search_steps(float(delta.abs().max()), 1e-6) + 1
    widths = torch.stack([high - low for _, low, high in brackets])
    assert (widths[1:] <= widths[:-1] * (2 / 3) + 1e-7).all()
    beta = result.abs().amax(1)
    _, low, high = brackets[-1]
    assert ((beta >= low - 1e-6) & (beta <= high + 1e-6)).all()
