"""The ℓ∞ + box proximity operator against an exact brute force, for both solvers: the
ternary search of [Rony2023]'s Algorithm 1 and the histogram bracketing of f'."""
import numpy as np
import pytest
import torch

from explorer.attacks import prox_linf_box
from explorer.attacks.prox import PROX_SOLVERS, prox_linf_box_histogram, prox_objective, ternary_search_steps

solvers = pytest.mark.parametrize("solver", sorted(PROX_SOLVERS))


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


@solvers
@pytest.mark.parametrize("with_metric", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_prox_matches_brute_force(with_metric, dtype, solver):
    g = torch.Generator().manual_seed(1 if with_metric else 0)
    n, d = 8, 60
    x = torch.rand(n, d, generator=g, dtype=torch.float64)
    sigma = 10 ** (torch.rand(n, 1, generator=g, dtype=torch.float64) * 2 - 2)  # 0.01 .. 1
    delta = torch.randn(n, d, generator=g, dtype=torch.float64) * sigma
    lam = 10 ** (torch.rand(n, generator=g, dtype=torch.float64) * 3 - 4)      # 1e-4 .. 0.1
    h = 10 ** (torch.rand(n, d, generator=g, dtype=torch.float64) * 4 - 2) if with_metric else None
    p = PROX_SOLVERS[solver](delta.to(dtype), lam.to(dtype), (-x).to(dtype), (1 - x).to(dtype),
                             metric=None if h is None else h.to(dtype), tolerance=1e-7)
    for i in range(n):
        expected, _ = brute_force_prox(delta[i].numpy(), lam[i].item(), -x[i].numpy(), 1 - x[i].numpy(),
                                       None if h is None else h[i].numpy())
        np.testing.assert_allclose(p[i].double().numpy(), expected, atol=1e-6, rtol=0)
    # the result is feasible: inside the box
    assert ((p.double() >= -x - 1e-7) & (p.double() <= 1 - x + 1e-7)).all()


@solvers
def test_prox_objective_not_worse_than_brute_force_on_images(solver):
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 16, 16, generator=g, dtype=torch.float64)
    delta = torch.randn(2, 3, 16, 16, generator=g, dtype=torch.float64) * 0.05
    lam = torch.tensor([1e-3, 5e-2], dtype=torch.float64)
    h = torch.rand(2, 3, 16, 16, generator=g, dtype=torch.float64) + 0.1
    p = PROX_SOLVERS[solver](delta, lam, -x, 1 - x, metric=h)
    assert p.shape == delta.shape
    for i in range(2):
        expected, _ = brute_force_prox(delta[i].flatten().numpy(), lam[i].item(), -x[i].flatten().numpy(),
                                       1 - x[i].flatten().numpy(), h[i].flatten().numpy())
        expected = torch.from_numpy(expected).view(1, 3, 16, 16)
        ours = prox_objective(p[i:i + 1], delta[i:i + 1], lam[i:i + 1], h[i:i + 1])
        best = prox_objective(expected, delta[i:i + 1], lam[i:i + 1], h[i:i + 1])
        assert ours.item() <= best.item() + 1e-9


@solvers
def test_prox_limits(solver):
    x = torch.full((1, 5), 0.5, dtype=torch.float64)
    delta = torch.tensor([[0.1, -0.3, 0.7, 0.0, -0.8]], dtype=torch.float64)
    # λ = 0: plain projection on the box [-x, 1-x] = [-0.5, 0.5]
    p = PROX_SOLVERS[solver](delta, torch.zeros(1, dtype=torch.float64), -x, 1 - x)
    assert torch.allclose(p, delta.clamp(-0.5, 0.5), atol=1e-6)
    # λ >= ||δ||_1-ish: everything shrinks to 0
    p = PROX_SOLVERS[solver](delta, torch.tensor([10.0], dtype=torch.float64), -x, 1 - x)
    assert p.abs().max() < 1e-6


def test_ternary_step_count():
    # (2/3)^n <= 1e-6 / 1  ->  n = ceil(log(1e-6)/log(2/3)) = 35
    assert ternary_search_steps(1.0, 1e-6) == 35
    assert ternary_search_steps(1e-7, 1e-6) == 0


def test_on_step_reports_a_shrinking_bracket_around_the_answer():
    import torch

    from explorer.attacks.prox import prox_linf_box, ternary_search_steps
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


def _partly_clipped(n=6, d=50, seed=4):
    """Pixels just inside the box pushed past it: clipped to a non-zero magnitude, where f'
    jumps; with the larger λ the answer sits on a jump (for some rows the largest, max m)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=g, dtype=torch.float64) * 0.02
    delta = -(0.02 + torch.rand(n, d, generator=g, dtype=torch.float64) * 0.05)
    h = 0.1 + torch.rand(n, d, generator=g, dtype=torch.float64)
    lam = torch.tensor([1e-5, 1e-4, 1e-3, 5e-3, 2e-2, 1.0], dtype=torch.float64)[:n]
    return delta, lam, -x, 1 - x, h


@pytest.mark.parametrize("bins", [2, 7, 1024])
def test_histogram_solver_on_jumps_zero_rows_and_few_bins(bins):
    delta, lam, lower, upper, h = _partly_clipped()
    delta[2] = 0.0  # a row whose projection is zero, inside a batch of non-zero rows
    p = prox_linf_box_histogram(delta, lam, lower, upper, metric=h, tolerance=1e-10, bins=bins)
    for i in range(len(delta)):
        expected, _ = brute_force_prox(delta[i].numpy(), lam[i].item(), lower[i].numpy(), upper[i].numpy(),
                                       h[i].numpy())
        np.testing.assert_allclose(p[i].numpy(), expected, atol=1e-9, rtol=0)
    assert torch.equal(p[2], torch.zeros_like(p[2]))
    assert torch.equal(prox_linf_box_histogram(torch.zeros(2, 5), torch.ones(2), -torch.ones(1), torch.ones(1)),
                       torch.zeros(2, 5))


def test_both_solvers_agree_on_image_sized_float32_problems():
    g = torch.Generator().manual_seed(8)
    x = torch.rand(2, 3, 64, 128, generator=g)
    delta = torch.randn(2, 3, 64, 128, generator=g) * (4 / 255)
    h = torch.rand(2, 3, 64, 128, generator=g) * 3 + 1e-3
    lam = torch.tensor([1e-3, 1e-4])
    ternary = prox_linf_box(delta, lam, -x, 1 - x, metric=h, tolerance=1e-6)
    histogram = prox_linf_box_histogram(delta, lam, -x, 1 - x, metric=h, tolerance=1e-6)
    assert (ternary - histogram).abs().max() <= 1e-6
    # and the histogram's answer is at least as good (it is closed by an exact secant)
    d64 = delta.double()
    assert (prox_objective(histogram.double(), d64, lam.double(), h.double())
            <= prox_objective(ternary.double(), d64, lam.double(), h.double()) + 1e-9).all()


def test_histogram_solver_on_a_batch_too_large_for_float32_bin_numbers():
    # 300 rows x 65 538 bins exceed 2^24, so the bin numbers are computed in float64
    g = torch.Generator().manual_seed(9)
    x = torch.rand(300, 20, generator=g)
    delta = torch.randn(300, 20, generator=g) * 0.01
    lam = torch.rand(300, generator=g) * 1e-3
    ternary = prox_linf_box(delta, lam, -x, 1 - x, tolerance=1e-7)
    histogram = prox_linf_box_histogram(delta, lam, -x, 1 - x, tolerance=1e-7)
    assert (ternary - histogram).abs().max() <= 2e-7
