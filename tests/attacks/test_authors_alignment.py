"""The fixed-budget attacks aligned with the authors' code (docs/research/fixed_budget_vs_authors_code.md §8):
APGD's step-size control on CE (``track``), radius stages started from the previous stage's best
iterate (``stage_start``), SEA's class-balanced masked CE and its ``members`` choices, PGD restarts
that never repeat the first run.  Small models and a few iterations (seconds in all)."""
import pytest
import torch
from linear_segmenter import make_problem
from torch import nn

import explorer.attacks.fixed_budget as fixed_budget
from explorer.attacks import ATTACKS
from explorer.attacks.core import project_linf
from explorer.attacks.losses import OBJECTIVES, class_balance_weights
from explorer.attacks.sea import SEA_LOSSES, SEA_MEMBERS

K = 4


def tanh_cnn(seed: int = 0):
    """A random two-layer tanh CNN (K = 4) on random 10×10 images, attacked against its own
    clean prediction: non-linear enough that APGD's APSR is not monotone along a run."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Tanh(), nn.Conv2d(8, K, 3, padding=1)).eval()
    images = torch.rand(3, 3, 10, 10, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        labels = model(images).argmax(1)
    return model, images, labels


def record_evaluations(monkeypatch):
    """Record every iterate ``fixed_budget.evaluate`` is given and the APSR it measured."""
    calls = []
    original = fixed_budget.evaluate

    def recording(run, delta, *args, **kwargs):
        out = original(run, delta, *args, **kwargs)
        calls.append((delta.detach().clone(), out[0].apsr.detach().clone(), run.images))
        return out

    monkeypatch.setattr(fixed_budget, "evaluate", recording)
    return calls


def in_ball_and_box(result, images, eps):
    assert (result.linf <= eps + 1e-6).all(), result.linf
    assert ((result.adv_images >= 0) & (result.adv_images <= 1)).all()
    assert torch.allclose(result.linf, (result.adv_images - images).flatten(1).abs().amax(1))


# ----------------------------------------------------------------------------- §8.1 track

def test_apgd_tracking_ce_is_the_old_behaviour_when_the_objective_is_ce():
    model, images, labels = tanh_cnn(0)
    runs = []
    for track in ("ce", "objective"):
        torch.manual_seed(0)
        records = []
        result = ATTACKS["apgd"](model, images, labels, eps=0.02, num_steps=20, radius_reduction=True,
                                 track=track, callback=records.append)
        runs.append((result, torch.stack([r.step_size for r in records]), torch.stack([r.loss for r in records])))
    (a, step_a, loss_a), (b, step_b, loss_b) = runs
    assert torch.equal(step_a, step_b) and torch.equal(loss_a, loss_b)
    assert torch.equal(a.adv_images, b.adv_images)


@pytest.mark.parametrize("attack,params", [("apgd", {"loss": "masked_ce", "radius_reduction": True}),
                                           ("tsallis_pgd", {})])
def test_apgd_tracking_ce_and_objective_differ_and_both_stay_in_the_ball(attack, params):
    """On a masked (or scheduled) objective the two trackings halve the step at different
    checkpoints; both runs stay inside each stage's ball and the box, and return an iterate in
    the final ε-ball."""
    model, images, labels = tanh_cnn(0)
    eps = 0.02
    steps = {}
    for track in ("ce", "objective"):
        torch.manual_seed(0)
        records = []
        result = ATTACKS[attack](model, images, labels, eps=eps, num_steps=30, track=track,
                                 callback=records.append, record_maps=True, **params)
        in_ball_and_box(result, images, eps)
        for r in records:
            assert (r.linf <= 2 * eps + 1e-6).all()  # the first stage's radius
            assert ((r.adv_images >= 0) & (r.adv_images <= 1)).all()
        steps[track] = torch.stack([r.step_size for r in records])
        assert result.params["track"] == track
    assert not torch.equal(steps["ce"], steps["objective"])


def test_sea_and_tsallis_track_ce_by_default():
    for name in ("apgd", "tsallis_pgd", "sea"):
        assert ATTACKS[name].defaults()["track"] == "ce"
        assert ATTACKS[name].param("track").choices == ("ce", "objective")
    with pytest.raises(Exception, match="track"):
        model, images, labels = tanh_cnn(0)
        ATTACKS["sea"](model, images, labels, track="loss", num_steps=2)


def test_the_tracked_ce_is_the_mean_ce_over_the_labelled_pixels_and_minus_ce_targeted(monkeypatch):
    """``evaluate(..., track_ce=True)`` returns the per-image CE over M of the iterate it
    evaluated (ignored pixels left out), and ``-CE`` to the target in targeted mode."""
    from explorer.attacks.core import AttackRun
    model, images, labels = tanh_cnn(1)
    labels = labels.clone()
    labels[0, :3] = 255  # ignored pixels
    for targeted in (False, True):
        run = AttackRun("apgd", model, images, labels, None, targeted, 0.99, 1)
        delta = torch.full_like(images, 0.01)
        _, _, _, tracked = fixed_budget.evaluate(run, delta, OBJECTIVES["masked_ce"], 0.0,
                                                 torch.full((3,), 0.02), track_ce=True)
        with torch.no_grad():
            log_p = torch.log_softmax(model(images + delta), 1)
        valid = labels < K
        ce = -log_p.gather(1, labels.clamp(max=K - 1).unsqueeze(1)).squeeze(1)
        expected = (ce * valid).flatten(1).sum(1) / valid.flatten(1).sum(1)
        assert torch.allclose(tracked, -expected if targeted else expected, atol=1e-6)


# ----------------------------------------------------------------------------- §8.2 stage hand-over

def stage_evaluations(calls, num_steps):
    """The recorded evaluations split by radius stage: each stage's reported iterates then its last."""
    out, at = [], 0
    for length in fixed_budget.stage_lengths(num_steps, fixed_budget.RADIUS_STAGES):
        out.append(calls[at:at + length + 1])
        at += length + 1
    assert at == len(calls)
    return out


@pytest.mark.parametrize("stage_start", ["best", "last"])
def test_each_radius_stage_starts_from_the_previous_stages_best_iterate(monkeypatch, stage_start):
    """The first iterate evaluated in stage s+1 is the projection onto its ball of stage s's
    highest-APSR iterate (ties: the later one; the stage's last iterate included) — or of its
    last iterate with ``stage_start="last"``.  The case is chosen so that the two differ."""
    model, images, labels = tanh_cnn(0)
    eps, num_steps = 0.02, 20
    calls = record_evaluations(monkeypatch)
    torch.manual_seed(0)
    result = ATTACKS["apgd"](model, images, labels, eps=eps, num_steps=num_steps, radius_reduction=True,
                             loss="masked_ce", stage_start=stage_start)
    stages = stage_evaluations(calls, num_steps)
    radii = [factor * eps for factor, _ in fixed_budget.RADIUS_STAGES]
    best_is_not_last = 0
    for s in range(len(stages) - 1):
        deltas = torch.stack([delta for delta, _, _ in stages[s]])  # (L+1, N, 3, H, W)
        apsr = torch.stack([a for _, a, _ in stages[s]])            # (L+1, N)
        for j in range(len(images)):
            best = max(i for i in range(len(apsr)) if apsr[i, j] == apsr[:, j].max())
            best_is_not_last += int(apsr[best, j] > apsr[-1, j])
            chosen = best if stage_start == "best" else len(apsr) - 1
            expected = project_linf(deltas[chosen, j:j + 1], images[j:j + 1], torch.tensor([radii[s + 1]]))
            first_next = stages[s + 1][0][0][j:j + 1]
            assert torch.equal(first_next, expected), (s, j, chosen)
    assert best_is_not_last > 0  # the case tells "best" from "last"
    in_ball_and_box(result, images, eps)


def test_the_returned_iterate_is_still_the_best_in_the_final_ball(monkeypatch):
    model, images, labels = tanh_cnn(0)
    eps = 0.02
    calls = record_evaluations(monkeypatch)
    torch.manual_seed(0)
    result = ATTACKS["apgd"](model, images, labels, eps=eps, num_steps=20, radius_reduction=True, loss="masked_ce")
    inside = torch.stack([torch.where(delta.flatten(1).abs().amax(1) <= eps + 1e-6, apsr, torch.full_like(apsr, -1))
                          for delta, apsr, _ in calls])
    assert torch.allclose(result.apsr, inside.amax(0))


# ----------------------------------------------------------------------------- §8.3 balanced masked CE

def test_class_balance_weights_are_the_normalised_inverse_labelled_frequency():
    # two 2×4 maps, K = 5; 255 is ignored, and the caller's mask drops one more pixel
    labels = torch.tensor([[[0, 0, 0, 1], [1, 2, 255, 255]],
                           [[0, 0, 1, 1], [2, 2, 0, 255]]])
    mask = (labels < 5)
    mask[1, 1, 2] = False  # a class-0 pixel left out
    # labelled counts: class 0: 3 + 2 = 5, class 1: 2 + 2 = 4, class 2: 1 + 2 = 3, classes 3, 4: absent
    inverse = torch.tensor([1 / 5, 1 / 4, 1 / 3, 0.0, 0.0])
    expected = inverse / inverse.sum()  # = (12, 15, 20, 0, 0) / 47
    weights = class_balance_weights(labels.masked_fill(~mask, 0), mask, 5)
    assert torch.allclose(weights, expected) and torch.allclose(weights, torch.tensor([12, 15, 20, 0, 0]) / 47.0)
    assert float(weights.sum()) == pytest.approx(1.0) and not weights.requires_grad
    # without a mask every pixel counts (here the replaced ignored pixels would inflate class 0)
    assert not torch.allclose(class_balance_weights(labels.masked_fill(~mask, 0), None, 5), expected)


def test_balanced_masked_ce_is_the_weighted_masked_ce_with_detached_weights():
    g = torch.Generator().manual_seed(3)
    logits = (torch.randn(2, K, 4, 4, generator=g) * 2).requires_grad_(True)
    labels = torch.randint(0, K - 1, (2, 4, 4), generator=g)  # class 3 absent
    mask = torch.rand(2, 4, 4, generator=g) > 0.2
    adversarial = logits.detach().argmax(1) != labels
    objective = OBJECTIVES["balanced_masked_ce"]
    assert getattr(objective, "uses_mask", False)
    w = class_balance_weights(labels, mask, K)
    assert w[3] == 0
    for targeted in (False, True):
        value = objective(logits, labels, targeted, adversarial, 0.0, mask=mask)
        expected = w[labels] * OBJECTIVES["masked_ce"](logits, labels, targeted, adversarial)
        assert torch.allclose(value, expected)
    # the weights carry no gradient: d value / d logits = w[y] · d masked CE / d logits
    grad, = torch.autograd.grad(objective(logits, labels, False, adversarial, 0.0, mask=mask).sum(), logits)
    plain, = torch.autograd.grad((w[labels] * OBJECTIVES["masked_ce"](logits, labels, False, adversarial)).sum(),
                                 logits)
    assert torch.allclose(grad, plain)


def test_the_attacks_pass_the_labelled_pixels_to_the_balanced_objective(monkeypatch):
    """Ignored pixels (replaced by class 0 inside the attack) must not count in the weights."""
    model, images, labels = tanh_cnn(2)
    labels = labels.clone()
    labels[:, :5] = 255
    seen = []
    original = OBJECTIVES["balanced_masked_ce"]

    def spy(logits, labels_, targeted, adversarial, progress=0.0, *, mask=None):
        seen.append(mask)
        return original(logits, labels_, targeted, adversarial, progress, mask=mask)

    spy.uses_mask = True
    monkeypatch.setitem(OBJECTIVES, "balanced_masked_ce", spy)
    result = ATTACKS["pgd"](model, images, labels, eps=0.02, num_steps=2, loss="balanced_masked_ce")
    assert seen and all(torch.equal(m, labels < K) for m in seen)
    in_ball_and_box(result, images, 0.02)


# ----------------------------------------------------------------------------- SEA members

def accuracy_per_image(model, adv, labels):
    with torch.no_grad():
        prediction = model(adv).argmax(1)
    labelled = labels < K
    return ((prediction == labels) & labelled).flatten(1).sum(1) / labelled.flatten(1).sum(1)


@pytest.mark.parametrize("members", list(SEA_MEMBERS))
def test_sea_accuracy_is_at_most_each_members_for_every_choice(members):
    model, images, labels = make_problem(seed=6, batch=3, size=8)
    labels = labels.clone()
    labels[1].view(-1)[:5] = 255
    eps = 0.03
    torch.manual_seed(0)
    result = ATTACKS["sea"](model, images, labels, eps=eps, num_steps=10, members=members)
    assert list(result.members) == list(SEA_MEMBERS[members])
    assert result.params["members"] == members
    ensemble = accuracy_per_image(model, result.adv_images, labels)
    for loss, member in result.members.items():
        assert member.params["loss"] == loss
        assert (result.apsr >= member.apsr - 1e-7).all()
        assert (ensemble <= accuracy_per_image(model, member.adv_images, labels) + 1e-7).all(), loss
        in_ball_and_box(member, images, eps)
    in_ball_and_box(result, images, eps)
    assert result.iterations == len(SEA_MEMBERS[members]) * 10


def test_sea_member_sets():
    assert SEA_MEMBERS["eccv2024"] == ("balanced_masked_ce", "masked_ce", "js")
    assert SEA_MEMBERS["arxiv2023"] == ("masked_ce", "segpgd", "js", "spherical")
    assert set(SEA_MEMBERS["all"]) == set(SEA_MEMBERS["eccv2024"]) | set(SEA_MEMBERS["arxiv2023"])
    assert len(SEA_MEMBERS["all"]) == 5 and SEA_LOSSES == SEA_MEMBERS["all"]
    assert ATTACKS["sea"].defaults()["members"] == "all"
    for losses in SEA_MEMBERS.values():
        assert set(losses) <= set(OBJECTIVES)


# ----------------------------------------------------------------------------- §8.6 PGD restarts

@pytest.mark.parametrize("random_init", [False, True])
def test_pgd_restarts_after_the_first_always_start_at_random(random_init):
    model, images, labels = tanh_cnn(0)
    eps, steps = 0.02, 3
    records = []
    torch.manual_seed(0)
    result = ATTACKS["pgd"](model, images, labels, eps=eps, num_steps=steps, restarts=3, random_init=random_init,
                            callback=records.append, record_maps=True)
    starts = [records[r * steps].adv_images for r in range(3)]
    assert torch.equal(starts[0], images) != random_init  # run 0 follows random_init
    for start in starts[1:]:
        linf = (start - images).flatten(1).abs().amax(1)
        assert (linf > 0.5 * eps).all() and (linf <= eps + 1e-6).all()
    assert not torch.equal(starts[1], starts[2])
    in_ball_and_box(result, images, eps)


# ----------------------------------------------------------------------------- radius

@pytest.mark.parametrize("attack,params", [
    ("apgd", {"radius_reduction": True, "track": "objective", "stage_start": "last", "loss": "js"}),
    ("apgd", {"radius_reduction": True, "loss": "balanced_masked_ce"}),
    ("apgd", {"loss": "spherical"}),
    ("tsallis_pgd", {"track": "objective"}),
    ("sea", {"members": "eccv2024", "track": "objective"}),
    ("pgd", {"restarts": 2, "random_init": False, "loss": "balanced_masked_ce"}),
])
def test_every_variant_stays_within_its_radius(attack, params):
    model, images, labels = tanh_cnn(1)
    torch.manual_seed(0)
    eps = 0.015
    result = ATTACKS[attack](model, images, labels, eps=eps, num_steps=10, **params)
    in_ball_and_box(result, images, eps)
