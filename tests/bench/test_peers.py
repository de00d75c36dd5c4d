"""`explorer-bench peers`: our PGD-CE, SegPGD and CosPGD next to the CosPGD authors' package,
TsallisPGD and SEA next to their authors' code where it is on PYTHONPATH.

The authors' per-pixel scalings must give our objectives' gradients up to a positive
per-image factor (so sign steps coincide), and from the same start our attack, which keeps
its best iterate, can never end less strong per image than the authors' last iterate.
SEA's harness must call the authors' members as their evaluation script does and keep, per
image, the member of lowest accuracy."""
from __future__ import annotations

import sys
import types

import pytest
import torch
from bench_helpers import refused
from torch import nn

from explorer.attacks.losses import OBJECTIVES, class_balance_weights
from explorer.bench.peers import (
    PEERS,
    compare_with_authors,
    cospgd_authors_loop,
    import_cospgd,
    score,
    sea_authors_attack,
)
from explorer.metrics import pixel_accuracy

pytest.importorskip("cospgd", reason="pip install --no-deps cospgd==0.1.3 (CI installs it)")

K = 5


def _labels(n, h, w, seed=0):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, K, (n, h, w), generator=generator)
    labels[:, 0, :3] = 255  # ignored pixels
    labels[1, 2, :] = 255  # a different number of labelled pixels per image
    return labels


@pytest.mark.parametrize("name, progress", [("ce", 0.0), ("segpgd", 0.0), ("segpgd", 0.3), ("segpgd", 0.95),
                                            ("cospgd", 0.0)])
def test_our_objectives_have_the_authors_gradients_up_to_a_per_image_factor(name, progress):
    attack = import_cospgd()
    n, h, w, steps = 2, 4, 6, 20
    labels = _labels(n, h, w)
    mask = labels < K
    logits = torch.randn(n, K, h, w, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    ours_logits = logits.clone().requires_grad_(True)
    safe = labels.clamp_max(K - 1)
    adversarial = ours_logits.argmax(1) != safe
    per_pixel = OBJECTIVES[name](ours_logits, safe, False, adversarial, progress) * mask
    (per_pixel.flatten(1).sum(1) / mask.flatten(1).sum(1)).sum().backward()  # ours: mean over M per image

    their_logits = logits.clone().requires_grad_(True)
    their_labels = labels.clamp_max(K)
    pixel_ce = nn.functional.cross_entropy(their_logits, their_labels, ignore_index=K, reduction="none")
    if name == "segpgd":
        loss = attack.segpgd_scale(predictions=their_logits, labels=their_labels, loss=pixel_ce,
                                   iteration=round(progress * steps), iterations=steps)
        their_scale = h * w  # their sum / (H W), over the whole batch
    elif name == "cospgd":
        loss = attack.cospgd_scale(predictions=their_logits, labels=their_labels, loss=pixel_ce, num_classes=K).mean()
        their_scale = n * h * w
    else:
        loss = pixel_ce.mean()
        their_scale = n * h * w
    loss.backward()

    labelled = mask.flatten(1).sum(1).view(n, 1, 1, 1).double()
    # rtol 1e-6: our SegPGD weights are float32
    torch.testing.assert_close(ours_logits.grad * labelled, their_logits.grad * their_scale, rtol=1e-6, atol=1e-12)
    assert their_logits.grad.abs().sum() > 0


class SmallConvNet(nn.Module):
    num_classes = K

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, K, 3, padding=1))

    def forward(self, x):
        return self.net(x)


@pytest.mark.parametrize("attack, scaling", [("pgd", "ce"), ("segpgd", "segpgd"), ("cospgd", "cospgd")])
def test_from_the_same_start_ours_is_at_least_as_strong_on_every_image(attack, scaling):
    model = SmallConvNet().eval()
    images = torch.rand(2, 3, 12, 16, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        labels = model(images).argmax(1)
    labels[0, :2] = 255
    eps = 2 / 255
    rows = compare_with_authors(model, images, labels, attacks=[attack], eps_255=[2.0], num_steps=8,
                                step_ratio=0.25, random_start=False)
    (row,) = rows
    theirs = cospgd_authors_loop(model, images, labels, scaling=scaling, eps=eps, num_steps=8,
                          alpha=0.25 * eps, random_start=False)
    assert (theirs - images).abs().max() <= eps + 1e-7 and 0 <= theirs.min() and theirs.max() <= 1
    assert row["authors_accuracy"] == pytest.approx(score(model, theirs, labels)["accuracy"])
    assert row["authors_accuracy"] < 1.0, "the authors' loop must have done something"
    # same iterates (same start, same step signs); ours keeps the best of them, theirs the last
    from explorer.attacks import ATTACKS
    ours = ATTACKS[attack](model, images, labels, eps=eps, num_steps=8, step_ratio=0.25, random_init=False)
    with torch.no_grad():
        ours_acc = pixel_accuracy(model(ours.adv_images).argmax(1), labels, K)
        their_acc = pixel_accuracy(model(theirs).argmax(1), labels, K)
    assert (ours_acc <= their_acc + 1e-12).all(), (ours_acc, their_acc)
    assert row["ours_accuracy"] <= row["authors_accuracy"] + 1e-12


@pytest.mark.parametrize("extra, message, code", [
    (["--eps", "0"], "--eps", 2),
    (["--step-ratio", "1.5"], "--step-ratio", 2),
    (["--attacks", "dag"], "--attacks", 2),
    (["--steps", "0"], "--steps", 2),
    (["--attacks", "pgd", "pgd"], "--attacks repeats pgd", 1),
    (["--eps", "1", "1"], "--eps repeats 1", 1),
])
def test_peers_refuses_bad_arguments_before_loading_anything(extra, message, code, capsys, tmp_path, monkeypatch):
    import explorer.bench.cli as cli

    monkeypatch.setattr(cli, "load_model", lambda *a, **k: pytest.fail("validation should have stopped it"))
    err = refused(["peers", "--out", str(tmp_path / "p"), *extra], capsys, code=code)
    assert message in err
    assert list(tmp_path.iterdir()) == []


def test_peers_without_the_authors_package_says_how_to_install_it(capsys, tmp_path, monkeypatch):
    import explorer.bench.cli as cli

    monkeypatch.setattr(cli, "load_model", lambda *a, **k: pytest.fail("validation should have stopped it"))
    monkeypatch.setitem(sys.modules, "cospgd", None)  # import fails
    err = refused(["peers", "--out", str(tmp_path / "p")], capsys, code=1)
    assert "pip install --no-deps cospgd==0.1.3" in err
    assert list(tmp_path.iterdir()) == []


def test_tsallis_peer_without_the_authors_package_says_where_to_get_it(capsys, tmp_path, monkeypatch):
    import explorer.bench.cli as cli

    monkeypatch.setattr(cli, "load_model", lambda *a, **k: pytest.fail("validation should have stopped it"))
    monkeypatch.setitem(sys.modules, "segmentation_attacks", None)
    err = refused(["peers", "--attacks", "tsallis_pgd", "--out", str(tmp_path / "p")], capsys, code=1)
    assert "aam-at/tsallis_pgd" in err and "PYTHONPATH" in err
    assert list(tmp_path.iterdir()) == []


def _two_images_and_their_clean_prediction():
    """The small network, two images and its clean prediction as labels, a few pixels ignored."""
    model = SmallConvNet().eval()
    images = torch.rand(2, 3, 12, 16, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        labels = model(images).argmax(1)
    labels[1, :3] = 255
    return model, images, labels


def test_tsallis_authors_attack_stays_in_its_ball_and_attacks():
    pytest.importorskip("segmentation_attacks", reason="the TsallisPGD authors' package is not installed")
    model, images, labels = _two_images_and_their_clean_prediction()
    (row,) = compare_with_authors(model, images, labels, attacks=["tsallis_pgd"], eps_255=[2.0], num_steps=20)
    assert row["authors_linf_255"] <= 2.0 + 1e-4
    assert row["authors_accuracy"] < 1.0 and row["ours_accuracy"] < 1.0
    assert PEERS["tsallis_pgd"].default_steps == 300


def test_sea_peer_without_the_authors_code_says_where_to_get_it(capsys, tmp_path, monkeypatch):
    import explorer.bench.cli as cli

    monkeypatch.setattr(cli, "load_model", lambda *a, **k: pytest.fail("validation should have stopped it"))
    for stand_in in (None, types.ModuleType("attacker")):  # missing, or another module of that name
        monkeypatch.setitem(sys.modules, "attacker", stand_in)
        err = refused(["peers", "--attacks", "sea", "--out", str(tmp_path / "p")], capsys, code=1)
        assert "nmndeep/Robust-Segmentation" in err and "fra31/auto-attack" in err and "PYTHONPATH" in err
    assert list(tmp_path.iterdir()) == []


def test_sea_harness_calls_the_authors_members_as_their_script_and_keeps_the_worst_per_image(monkeypatch):
    model = SmallConvNet().eval()
    generator = torch.Generator().manual_seed(7)
    images = torch.rand(3, 3, 8, 10, generator=generator)
    with torch.no_grad():
        labels = model(images).argmax(1)
    labels[0, :2] = 255  # ignored: their code needs -1 there
    labels[2, 3] = K
    # each "member" returns its own images; which member fools which image best is arbitrary
    outputs = {name: torch.rand(3, 3, 8, 10, generator=generator) for name in ("mask-ce-bal", "mask-ce-avg", "js-avg")}
    calls = []

    def apgd_largereps(model_, x, y, weights, **kwargs):
        calls.append((x, y, weights, kwargs))
        return outputs[kwargs["loss"]].clone(), None, None

    fake = types.ModuleType("attacker")
    fake.apgd_largereps = apgd_largereps
    monkeypatch.setitem(sys.modules, "attacker", fake)
    rows = sea_authors_attack(model, images, labels, eps=2 / 255, num_steps=30)

    assert [kwargs["loss"] for *_, kwargs in calls] == ["mask-ce-bal", "mask-ce-avg", "js-avg"]  # their order
    ignored = labels >= K
    for x, y, weights, kwargs in calls:
        assert torch.equal(x, images)
        assert torch.equal(y, labels.masked_fill(ignored, -1))
        torch.testing.assert_close(weights, class_balance_weights(labels, mask=~ignored, num_classes=K))
        assert kwargs == {"norm": "Linf", "eps": 2 / 255, "n_iter": 30, "n_restarts": 1, "use_rs": True,
                          "loss": kwargs["loss"], "track_loss": "ce-avg", "log_path": None, "num_classes": K,
                          "early_stop": True}
    assert list(rows) == ["sea", "sea/balanced_masked_ce", "sea/masked_ce", "sea/js"]
    with torch.no_grad():
        accuracy = torch.stack([pixel_accuracy(model(outputs[name]).argmax(1), labels, K) for name in outputs])
    worst = accuracy.argmin(0)  # the first of equal minima, as the harness keeps the earlier member
    members = list(outputs.values())
    for image in range(3):
        assert torch.equal(rows["sea"][image], members[int(worst[image])][image])
    assert len(set(worst.tolist())) > 1, "the test needs images fooled best by different members"


def test_sea_by_its_authors_code_stays_in_its_ball_and_is_at_most_each_member():
    pytest.importorskip("attacker", reason="SEA's attacker module (nmndeep/Robust-Segmentation) is not on PYTHONPATH")
    model, images, labels = _two_images_and_their_clean_prediction()
    rows = compare_with_authors(model, images, labels, attacks=["sea"], eps_255=[2.0], num_steps=12)
    assert [row["attack"] for row in rows] == ["sea", "sea/balanced_masked_ce", "sea/masked_ce", "sea/js"]
    for row in rows:
        assert row["authors_linf_255"] <= 2.0 + 1e-4
    for side in ("ours", "authors"):
        assert rows[0][f"{side}_accuracy"] < 1.0
        assert all(rows[0][f"{side}_accuracy"] <= row[f"{side}_accuracy"] + 1e-12 for row in rows[1:])
