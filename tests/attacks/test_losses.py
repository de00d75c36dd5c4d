"""DLR constraint and the penalty of [Rony2023] (eq. 3 and eq. 9)."""
import pytest
import torch
from torch.autograd import gradcheck

from explorer.attacks.losses import difference_of_logits, dlr_constraint, penalty, penalty_derivative


def logits_of(*values):
    """One pixel's logits as a (1, K, 1, 1) tensor."""
    return torch.tensor(values, dtype=torch.float64).view(1, -1, 1, 1)


def test_difference_of_logits_hand_values():
    z = logits_of(3.0, 1.0, 2.5, -1.0)
    assert difference_of_logits(z, torch.tensor([[[0]]])).item() == 0.5   # 3 - 2.5
    assert difference_of_logits(z, torch.tensor([[[2]]])).item() == -0.5  # 2.5 - 3
    assert difference_of_logits(z, torch.tensor([[[3]]])).item() == -4.0  # -1 - 3


def test_dlr_untargeted_hand_value_and_sign():
    z = logits_of(3.0, 1.0, 2.5, -1.0)  # sorted: 3, 2.5, 1, -1
    c = dlr_constraint(z, torch.tensor([[[0]]]), tolerance=0.0)
    assert torch.allclose(c, torch.tensor(0.5 / (3.0 - 1.0), dtype=torch.float64))  # (z_y - max_other)/(pi1 - pi3)
    # label 1 is not predicted: constraint satisfied (negative)
    assert dlr_constraint(z, torch.tensor([[[1]]])).item() < 0


def test_dlr_targeted_hand_value():
    z = logits_of(3.0, 1.0, 2.5, -1.0)
    # target 2: (max_{j!=t} z_j - z_t + tol) / (pi1 - (pi3 + pi4)/2) = (3 - 2.5) / (3 - 0)
    c = dlr_constraint(z, torch.tensor([[[2]]]), targeted=True, tolerance=0.0)
    assert torch.allclose(c, torch.tensor(0.5 / 3.0, dtype=torch.float64))


def test_tolerance_tightens_both_modes():
    # target class 0 leads by 5e-5 < tolerance 1e-4: not yet satisfied in either reading
    z = logits_of(1.00005, 1.0, 0.0, -1.0)
    assert dlr_constraint(z, torch.tensor([[[0]]]), targeted=True, tolerance=1e-4).item() > 0
    # untargeted on label 1, which trails by 5e-5: margin below tolerance -> still violated
    assert dlr_constraint(z, torch.tensor([[[1]]]), targeted=False, tolerance=1e-4).item() > 0
    # with a clear lead, satisfied
    z = logits_of(1.01, 1.0, 0.0, -1.0)
    assert dlr_constraint(z, torch.tensor([[[0]]]), targeted=True, tolerance=1e-4).item() < 0
    assert dlr_constraint(z, torch.tensor([[[1]]]), targeted=False, tolerance=1e-4).item() < 0


def test_dlr_two_classes_is_difference_of_logits():
    z = logits_of(2.0, 0.5)
    assert dlr_constraint(z, torch.tensor([[[0]]]), tolerance=0.0).item() == 1.5


def test_penalty_values_hand_computed():
    rho = torch.tensor([0.5, 0.5, 2.0], dtype=torch.float64)
    mu = torch.tensor([1.0, 0.2, 0.3], dtype=torch.float64)
    y = torch.tensor([2.0, -1.0, -0.5], dtype=torch.float64)
    expected = torch.tensor([
        1.0 * 2 + 1.0 * 0.5 * 4 + 0.25 * 8 / 6,   # mu y + mu rho y^2 + rho^2 y^3 / 6
        0.2 * -1.0 / (1 + 1.0 * 1.0),              # mu y / (1 - max(1, rho) y), max(1, .5) = 1
        0.3 * -0.5 / (1 + 2.0 * 0.5),              # max(1, 2) = 2
    ], dtype=torch.float64)
    assert torch.allclose(penalty(y, rho, mu), expected)


def test_penalty_true_gradient_passes_gradcheck():
    g = torch.Generator().manual_seed(0)
    y = (torch.rand(200, generator=g, dtype=torch.float64) * 6 - 3)
    y = y[y.abs() > 1e-3].requires_grad_(True)  # avoid sitting exactly on the kink at 0
    rho = torch.rand(y.shape, generator=g, dtype=torch.float64) * 3
    mu = torch.rand(y.shape, generator=g, dtype=torch.float64)
    assert gradcheck(lambda t: penalty(t, rho, mu), (y,), eps=1e-6, atol=1e-7)
    # continuity of the derivative at 0: both branches give mu
    zero = torch.zeros(1, dtype=torch.float64)
    assert torch.allclose(penalty_derivative(zero, rho[:1], mu[:1]), mu[:1])
    assert torch.allclose(penalty_derivative(-1e-12 + zero, rho[:1], mu[:1]), mu[:1])


def test_reference_gradient_is_mu_times_y_and_fails_gradcheck():
    y = torch.tensor([0.5, 2.0], dtype=torch.float64, requires_grad=True)
    rho = torch.tensor([0.1, 0.1], dtype=torch.float64)
    mu = torch.tensor([1.0, 1.0], dtype=torch.float64)
    penalty(y, rho, mu, grad="reference").sum().backward()
    expected = mu * y.detach() + 2 * mu * rho * y.detach() + rho ** 2 * y.detach() ** 2 / 2
    assert torch.allclose(y.grad, expected)
    assert not gradcheck(lambda t: penalty(t, rho, mu, grad="reference"), (y,), raise_exception=False)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_predicted_classes_are_argmax_including_its_tie_rule(dtype):
    from explorer.attacks.losses import predicted_classes

    generator = torch.Generator().manual_seed(0)
    for shape in [(2, 19, 9, 7), (1, 21, 16, 16), (3, 2, 4, 4), (1, 1, 3, 3), (6, 5)]:
        continuous = torch.randn(shape, generator=generator).to(dtype)
        tied = torch.randint(-2, 2, shape, generator=generator).to(dtype)  # many ties for the first place
        extreme = torch.tensor([-3e38, 3e38, 3e38, -0.0, 0.0]).view(1, 5, 1, 1).expand(2, 5, 3, 3)
        for logits in (continuous, tied, extreme.to(dtype) if dtype != torch.float16 else tied):
            assert torch.equal(predicted_classes(logits), logits.argmax(1))
    with_nan = torch.randn(1, 4, 3, 3, generator=generator).to(dtype)
    with_nan[0, 2, 1, 1] = float("nan")
    assert torch.equal(predicted_classes(with_nan), with_nan.argmax(1))


def stable_ranking(logits, k):
    """Brute force: classes by decreasing logit, ties by increasing class (a stable sort)."""
    return logits.sort(dim=1, descending=True, stable=True).indices[:, :k]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_top_classes_match_a_stable_sort_with_ties(dtype):
    from explorer.attacks.losses import top_classes

    generator = torch.Generator().manual_seed(1)
    for shape in [(2, 19, 9, 7), (1, 21, 16, 16), (3, 2, 4, 4), (1, 1, 3, 3), (6, 5)]:
        continuous = torch.randn(shape, generator=generator).to(dtype)
        tied = torch.randint(-2, 2, shape, generator=generator).to(dtype)  # ties at every rank
        for logits in (continuous, tied, tied.contiguous(memory_format=torch.channels_last)
                       if tied.ndim == 4 else tied):
            for k in (1, 2, 4, 30):
                assert torch.equal(top_classes(logits, k), stable_ranking(logits, min(k, shape[1])))
    signed_zeros = torch.tensor([-0.0, 0.0, -1.0, 0.0]).view(1, 4, 1, 1)  # -0 and +0 are a tie
    assert top_classes(signed_zeros, 3).flatten().tolist() == [0, 1, 3]


def test_top_classes_beyond_255_classes_and_with_non_finite_logits():
    from explorer.attacks.losses import top_classes

    generator = torch.Generator().manual_seed(2)
    many = torch.randint(-3, 3, (2, 300, 3, 2), generator=generator).float()  # weights past uint8
    assert torch.equal(top_classes(many, 4), stable_ranking(many, 4))
    odd = torch.randn(1, 6, 2, 2, generator=generator)
    odd[0, 1, 0, 0], odd[0, 4, 0, 0], odd[0, 2, 1, 1] = float("-inf"), float("-inf"), float("nan")
    ranked = top_classes(odd, 6)
    assert torch.equal(ranked, stable_ranking(odd, 6))  # NaN first, as argmax has it
    assert torch.equal(ranked[:, 0], odd.argmax(1))
    assert all(len(set(ranked[0, :, i, j].tolist())) == 6 for i in range(2) for j in range(2))


def test_dlr_from_one_gather_matches_topk_values_and_gradients_bit_for_bit():
    """The constraint and its gradient equal those built from ``torch.topk`` and a separate gather."""
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 19, 8, 8, generator=generator, requires_grad=True)
    labels = torch.randint(0, 19, (2, 8, 8), generator=generator)
    labels[0, 0, :4] = logits.detach()[0, :, 0, :4].argmax(0)  # some labels are the prediction
    for targeted in (False, True):
        ours = torch.autograd.grad(dlr_constraint(logits, labels, targeted=targeted).square().sum(), logits)[0]
        top, top_idx = logits.topk(4, dim=1)
        z_label = logits.gather(1, labels.unsqueeze(1)).squeeze(1)
        best_other = torch.where(top_idx[:, 0] == labels, top[:, 1], top[:, 0])
        numerator = (best_other - z_label if targeted else z_label - best_other) + 1e-4
        denominator = top[:, 0] - ((top[:, 2] + top[:, 3]) / 2 if targeted else top[:, 2])
        expected_c = numerator / denominator.clamp_min(1e-12)
        expected = torch.autograd.grad(expected_c.square().sum(), logits)[0]
        assert torch.equal(dlr_constraint(logits, labels, targeted=targeted), expected_c)
        assert torch.equal(ours, expected)


@pytest.mark.parametrize("attack,kwargs", [("alma_prox", {}), ("alma_prox", {"targeted": True}), ("dag", {}),
                                           ("fmn", {})])
def test_attacks_are_bit_identical_with_topk_ranking(monkeypatch, attack, kwargs):
    """Ranking by top_classes changes no iterate where no two top logits tie (continuous logits):
    the same losses and norms at every iteration, and the same adversarial images."""
    from explorer.attacks import core, losses
    from explorer.attacks.registry import get_attack

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 6, 1))
    images = torch.rand(2, 3, 12, 16)
    with torch.no_grad():
        labels = model(images).argmax(1)
    if kwargs.get("targeted"):  # a target that differs from the prediction on the left half
        labels[:, :, :8] = (labels[:, :, :8] + 1) % 6

    def trajectory():
        records = []
        result = get_attack(attack)(model, images, labels, num_steps=20, callback=records.append, **kwargs)
        return result.adv_images, torch.stack([r.loss for r in records]), torch.stack([r.linf for r in records])

    ours = trajectory()

    def topk_classes(logits, k):
        return logits.detach().topk(min(k, logits.shape[1]), dim=1).indices

    monkeypatch.setattr(losses, "top_classes", topk_classes)
    monkeypatch.setattr(core, "top_classes", topk_classes)
    reference = trajectory()
    assert ours[2][-1].min() > 0  # the iterates moved
    for mine, theirs in zip(ours, reference):
        assert torch.equal(mine, theirs)
