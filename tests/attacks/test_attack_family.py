"""Every attack of the registry on the analytic linear segmenter, plus the pieces they share:
objectives, APGD checkpoints, bisection and restarts on batches, SEA's ensemble rule."""

import pytest
import torch
import torch.nn.functional as F
from linear_segmenter import make_problem, optimal_linf, targeted_pixel_budgets, untargeted_pixel_budgets

from explorer.attacks import ATTACKS, STOP, AttackRun
from explorer.attacks.bisection import bisection
from explorer.attacks.core import AttackResult, keep_better, project_linf
from explorer.attacks.fixed_budget import apgd_checkpoints, sign_gradient_ascent, stage_lengths
from explorer.attacks.losses import OBJECTIVES, segpgd_weights, tsallis_q
from explorer.attacks.sea import SEA_LOSSES
from explorer.metrics import apsr as metric_apsr
from explorer.metrics import greedy_worst_case_miou, mean_iou

K = 4
MINIMAL_NORM = [name for name, spec in ATTACKS.items() if spec.kind == "minimal-norm"]
FIXED_BUDGET = [name for name, spec in ATTACKS.items() if spec.kind == "fixed-budget"]
#: how close to the optimum each minimal-norm attack must get on the linear segmenter
#: (bisections: 13 steps on [0, 1] leave 2^-13 of slack, i.e. under 1 % at these norms)
FACTOR = {"alma_prox": 1.25, "dag": 1.25, "fmn": 1.25, "pdpgd": 1.25, "ifgsm_bisection": 1.01,
          "mifgsm_bisection": 1.01, "pgd_bisection": 1.01}


def problem(targeted: bool, seed: int = 1):
    model, images, labels = make_problem(seed=seed, batch=3, size=12)
    if targeted:
        with torch.no_grad():
            labels = model(images).topk(3, dim=1).indices[:, 2]
    labels = labels.clone()
    labels[1].view(-1)[:9] = 255  # different |M| per image
    labels[2].view(-1)[-30:] = 255
    budgets = (targeted_pixel_budgets if targeted else untargeted_pixel_budgets)(model, images, labels)
    return model, images, labels, optimal_linf(budgets, labels, K)


def test_every_attack_is_covered_here():
    assert set(FACTOR) == set(MINIMAL_NORM)
    assert set(FIXED_BUDGET) == {"pgd", "segpgd", "cospgd", "apgd", "tsallis_pgd", "sea"}
    for name in FIXED_BUDGET:
        assert ATTACKS[name].param("eps").default == pytest.approx(8 / 255)


@pytest.mark.parametrize("targeted", [False, True])
@pytest.mark.parametrize("name", MINIMAL_NORM)
def test_minimal_norm_attacks_reach_the_optimum_within_their_factor(name, targeted):
    model, images, labels, optimum = problem(targeted)
    result = ATTACKS[name](model, images, labels, targeted=targeted)
    assert result.success.all(), (name, result.apsr)
    assert (result.linf >= optimum * (1 - 1e-4)).all()  # nobody beats the optimum
    assert (result.linf <= FACTOR[name] * optimum).all(), (name, result.linf / optimum)
    with torch.no_grad():
        prediction = model(result.adv_images).argmax(1)
    assert torch.allclose(metric_apsr(prediction, labels, K, targeted=targeted), result.apsr)


@pytest.mark.parametrize("targeted", [False, True])
@pytest.mark.parametrize("name", ["alma_prox", "pdpgd"])
def test_the_histogram_prox_solver_reaches_the_same_optimum(name, targeted):
    model, images, labels, optimum = problem(targeted)
    result = ATTACKS[name](model, images, labels, targeted=targeted, prox_solver="histogram")
    assert result.success.all(), (name, result.apsr)
    assert (result.linf >= optimum * (1 - 1e-4)).all()
    assert (result.linf <= FACTOR[name] * optimum).all(), (name, result.linf / optimum)


@pytest.mark.parametrize("targeted", [False, True])
@pytest.mark.parametrize("name", FIXED_BUDGET)
def test_fixed_budget_attacks_succeed_above_the_optimum_and_cannot_below(name, targeted):
    model, images, labels, optimum = problem(targeted)
    fast = {"num_steps": 60} if name in ("tsallis_pgd", "sea") else {}
    above = ATTACKS[name](model, images, labels, targeted=targeted, eps=float(optimum.max()) * 1.1, **fast)
    assert (above.apsr >= 0.99).all(), (name, above.apsr)
    assert (above.linf <= optimum.max() * 1.1 + 1e-6).all()
    below_eps = float(optimum.min()) * 0.9
    below = ATTACKS[name](model, images, labels, targeted=targeted, eps=below_eps, **fast)
    assert (below.linf <= below_eps + 1e-6).all()
    assert (below.apsr < 0.99).all()


@pytest.mark.parametrize("name", list(ATTACKS))
def test_every_attack_stops_when_asked_and_returns_a_valid_result(name):
    model, images, labels, _ = problem(False, seed=3)
    seen = []

    def stop_at_two(record):
        seen.append(record)
        return STOP if record.iteration == 2 else None

    result = ATTACKS[name](model, images, labels, callback=stop_at_two, record_maps=True)
    assert result.stopped and len(seen) == 3
    assert seen[-1].prediction.shape == labels.shape and seen[-1].constraint_mask.shape == labels.shape
    assert ((result.adv_images >= 0) & (result.adv_images <= 1)).all()
    assert torch.allclose(result.linf, (result.adv_images - images).flatten(1).abs().amax(1))


@pytest.mark.parametrize("name", FIXED_BUDGET)
def test_fixed_budget_attacks_return_their_best_iterate_inside_the_ball(name):
    """The returned APSR is the highest recorded at radius ε (projection rounding included)."""
    model, images, labels, optimum = problem(False, seed=4)
    eps = float(optimum.min()) * 0.7
    records = []
    result = ATTACKS[name](model, images, labels, eps=eps, callback=records.append,
                           **({"num_steps": 30} if name in ("tsallis_pgd", "sea") else {}))
    inside = [r for r in records if (r.linf <= eps + 1e-6).all()]
    assert inside
    best_recorded = torch.stack([r.apsr for r in inside]).amax(0)
    assert (result.apsr >= best_recorded - 1e-6).all() and (result.apsr > 0).all()
    assert (result.linf <= eps + 1e-6).all()


def test_pgd_on_a_shipped_model_keeps_its_best_iterate_at_small_eps():
    """Regression: at ε = 2/255 the projected norm exceeds ε by float32 rounding; those
    iterates are inside the budget and must count."""
    from explorer.data.samples import load_sample
    from explorer.models import load_model

    model = load_model("objects-fpn-mobilenet", "cpu")
    image, labels, _ = load_sample("objects-000")
    records = []
    result = ATTACKS["pgd"](model, image[None], labels[None], eps=2 / 255, num_steps=6, step_ratio=0.25,
                            callback=records.append)
    best_recorded = max(float(r.apsr[0]) for r in records)
    assert float(result.apsr[0]) >= best_recorded - 1e-6 and best_recorded > float(records[0].apsr[0])


# ----------------------------------------------------------------------------- objectives

def _logits_labels(seed=0, n=2, k=5, size=4):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, size, size, generator=g) * 3
    labels = torch.randint(0, k, (n, size, size), generator=g)
    return logits, labels


def test_js_objective_matches_the_divergence_computed_from_its_definition():
    logits, labels = _logits_labels()
    p = logits.softmax(1)
    onehot = F.one_hot(labels, 5).permute(0, 3, 1, 2).double()
    mid = (p.double() + onehot) / 2
    kl_p = (p.double() * (p.double() / mid).log()).sum(1)
    kl_y = (onehot * (onehot.clamp_min(1e-300) / mid).log()).sum(1)
    js = 0.5 * (kl_p + kl_y)
    assert torch.allclose(OBJECTIVES["js"](logits, labels, False).double(), js, atol=1e-5)
    assert torch.allclose(OBJECTIVES["js"](logits, labels, True), -OBJECTIVES["js"](logits, labels, False))
    # no NaN even with saturated probabilities
    saturated = OBJECTIVES["js"](logits * 1e4, labels, False)
    assert torch.isfinite(saturated).all()


def test_tsallis_is_ce_at_q_one_and_scales_the_ce_gradient_by_p_to_the_one_minus_q():
    logits, labels = _logits_labels(seed=1)
    assert tsallis_q(0.0) == -2.0 and tsallis_q(1.0) == 1.0 and tsallis_q(0.5) == -0.5
    ce = OBJECTIVES["ce"](logits, labels, False)
    assert torch.allclose(OBJECTIVES["tsallis"](logits, labels, False, None, 1.0), ce, atol=1e-6)
    progress = 0.25  # q = -1.25
    q = tsallis_q(progress)
    z1 = logits.clone().requires_grad_(True)
    OBJECTIVES["tsallis"](z1, labels, False, None, progress).sum().backward()
    z2 = logits.clone().requires_grad_(True)
    OBJECTIVES["ce"](z2, labels, False).sum().backward()
    p_y = logits.softmax(1).gather(1, labels.unsqueeze(1))
    assert torch.allclose(z1.grad, z2.grad * p_y.pow(1 - q), atol=1e-5)


def test_reweighted_objectives():
    logits, labels = _logits_labels(seed=2)
    adversarial = logits.argmax(1) != labels
    ce = OBJECTIVES["ce"](logits, labels, False)
    assert torch.allclose(OBJECTIVES["segpgd"](logits, labels, False, adversarial, 0.5),
                          torch.where(adversarial, 0.25, 0.75) * ce)
    assert torch.equal(segpgd_weights(adversarial, 0.0), torch.where(adversarial, 0.0, 1.0))
    p = logits.softmax(1)
    cos = p.gather(1, labels.unsqueeze(1)).squeeze(1) / p.norm(dim=1)
    assert torch.allclose(OBJECTIVES["cospgd"](logits, labels, False), cos * ce, atol=1e-6)
    assert torch.allclose(OBJECTIVES["cospgd"](logits, labels, True), -(1 - cos) * ce, atol=1e-6)
    masked = OBJECTIVES["masked_ce"](logits, labels, False, adversarial)
    assert (masked[adversarial] == 0).all() and torch.allclose(masked[~adversarial], ce[~adversarial])
    sph = OBJECTIVES["spherical"](logits, labels, False, adversarial)
    z_y = logits.gather(1, labels.unsqueeze(1)).squeeze(1)
    assert torch.allclose(sph, -(~adversarial).float() * z_y / logits.norm(dim=1))


# ----------------------------------------------------------------------------- optimiser pieces

def test_apgd_checkpoints_and_radius_stages():
    assert apgd_checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert stage_lengths(300, ((2.0, 0.3), (1.5, 0.3), (1.0, 0.4))) == [90, 90, 120]
    assert stage_lengths(7, ((2.0, 0.3), (1.5, 0.3), (1.0, 0.4))) == [2, 2, 3]


def test_projection_is_onto_ball_and_box():
    images = torch.tensor([[[[0.0, 0.5, 0.99]]]]).expand(1, 3, 1, 3)
    delta = torch.tensor([[[[-0.2, 0.2, 0.2]]]]).expand(1, 3, 1, 3)
    projected = project_linf(delta, images, torch.tensor([0.1]))
    assert torch.allclose(projected[0, 0, 0], torch.tensor([0.0, 0.1, 0.01]), atol=1e-6)


def test_keep_better_changes_only_the_images_that_improved():
    best = torch.zeros(3, 1, 2, 2)
    new = torch.ones(3, 1, 2, 2)
    merged, score, improved = keep_better(best, torch.tensor([0.5, 0.5, 0.5]), new, torch.tensor([0.4, 0.9, 0.5]))
    assert improved.tolist() == [False, True, False]
    assert merged[1].eq(1).all() and merged[0].eq(0).all() and merged[2].eq(0).all()
    assert score.tolist() == pytest.approx([0.5, 0.9, 0.5])


class _Identity(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return torch.cat([x[:, :1], -x[:, :1]], 1)


def test_bisection_is_per_image_even_when_only_some_images_succeed():
    """A stub fixed-budget attack succeeds on image i exactly when ε >= θ_i, and only on its
    second restart for image 1: every image must land on its own θ, with its own iterate."""
    theta = torch.tensor([0.1, 0.3, 0.6])
    images = torch.full((3, 3, 2, 2), 0.2)
    labels = torch.zeros(3, 2, 2, dtype=torch.long)
    run = AttackRun("stub", _Identity(), images, labels, None, False, 0.99, 13)
    calls = []

    def inner(eps):
        calls.append(eps.clone())
        results = []
        for restart in range(2):
            works = eps >= theta
            if restart == 0:
                works = works & (torch.arange(3) != 1)  # image 1 improves only on the restart
            adv = images + eps.view(-1, 1, 1, 1) * torch.where(works.view(-1, 1, 1, 1), 1.0, 0.5)
            results.append((adv.clamp(0, 1), works.float()))
        best_adv, best_apsr, _ = keep_better(results[0][0], results[0][1], results[1][0], results[1][1])
        linf = (best_adv - images).flatten(1).abs().amax(1)
        result = AttackResult("stub", best_adv, linf, best_apsr, best_apsr >= 0.99, torch.ones(3, dtype=torch.long),
                              torch.ones(3, dtype=torch.long), 1, False, 0.0, False, 0.99)
        return result, None

    result = bisection(run, inner, 13, 1.0)
    assert len(calls) == 13 and result.success.all()
    assert torch.allclose(result.linf, theta, atol=2 ** -13 + 1e-6)
    assert (result.linf >= theta - 1e-7).all()
    assert (result.num_forwards == 13).all()


def test_restarts_keep_each_images_best_in_a_batch():
    model, images, labels, optimum = problem(False, seed=5)
    records = []
    run = AttackRun("pgd", model, images, labels, None, False, 0.99, 12, records.append)
    eps = torch.full((3,), float(optimum.mean()))
    result = sign_gradient_ascent(run, eps, 3, 0.25, OBJECTIVES["ce"], True, restarts=4)
    recorded = torch.stack([r.apsr for r in records]).amax(0)
    assert (result.apsr >= recorded - 1e-6).all()
    with torch.no_grad():
        prediction = model(result.adv_images).argmax(1)
    assert torch.allclose(metric_apsr(prediction, labels, K), result.apsr)


# ----------------------------------------------------------------------------- SEA

def test_sea_is_at_least_as_strong_as_each_member_on_every_image():
    model, images, labels, optimum = problem(False, seed=6)
    result = ATTACKS["sea"](model, images, labels, eps=float(optimum.mean()) * 0.8, num_steps=20)
    assert list(result.members) == list(SEA_LOSSES)
    for member in result.members.values():
        assert (result.apsr >= member.apsr - 1e-7).all()
    assert (result.num_forwards == sum(m.num_forwards for m in result.members.values())).all()


def test_greedy_worst_case_miou_on_hand_made_confusions():
    # two attacks, two images, two classes (rows truth, columns prediction)
    a = torch.tensor([[[4, 0], [0, 4]], [[2, 2], [0, 4]]])  # attack 0: image 0 perfect, image 1 half wrong
    b = torch.tensor([[[0, 4], [0, 4]], [[4, 0], [0, 4]]])  # attack 1: image 0 all "class 1", image 1 perfect
    choice, miou = greedy_worst_case_miou(torch.stack([a, b]))
    assert choice.tolist() == [1, 0]
    expected = float(mean_iou(b[0] + a[1]))
    assert miou == pytest.approx(expected)
    with pytest.raises(Exception):
        greedy_worst_case_miou(torch.zeros(2, 2))
