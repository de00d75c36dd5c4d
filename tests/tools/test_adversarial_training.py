"""Adversarial training: the inner attack is the explorer's own, stays in its ball, and hurts."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import explorer.tools.train as train_module
from explorer.tools.adversarial_training import SEGPGD_AT, AdversarialRecipe, adversarial_examples
from explorer.tools.train import main, normalize, train

TINY = dict(world="street", arch="fpn-mobilenet", steps=3, batch_size=2, lr=1e-3, pool_size=4,
            shuffle_fraction=0.5, seed=0, size=(64, 128), save_every=1)
FAST = AdversarialRecipe("segpgd", eps_255=8, steps=2, step_255=4, fraction=0.5)


def _tiny_net(num_classes=4):
    """A small conv net with large weights (confident, sensitive to its input like a trained one)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, num_classes, 3, padding=1))
    with torch.no_grad():
        net[0].weight.mul_(30)
        net[3].weight.mul_(10)
    return net


def _batch(net):
    """Random images labelled with the network's own clean prediction (a model that is right
    before the attack, as a trained one mostly is); two rows ignored."""
    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    net.eval()
    with torch.no_grad():
        labels = net(normalize(images)).argmax(1)
    net.train()
    labels[:, :2] = 255
    return images, labels


def _ce(net, images, labels):
    net.eval()
    with torch.no_grad():
        return float(F.cross_entropy(net(normalize(images)), labels, ignore_index=255))


@pytest.mark.parametrize("attack", ["segpgd", "pgd"])
def test_the_inner_attack_stays_in_its_ball_and_raises_the_training_loss(attack):
    net = _tiny_net().train()
    images, labels = _batch(net)
    recipe = AdversarialRecipe(attack, eps_255=8, steps=5, step_255=2)
    adv, apsr = adversarial_examples(net, normalize, images, labels, recipe)
    assert (adv - images).abs().max() <= 8 / 255 + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1
    assert not adv.requires_grad and 0 < apsr <= 1
    assert net.training, "the network goes back to training mode"
    assert all(p.grad is None for p in net.parameters()), "the attack leaves no gradient on the weights"
    # random signs of the same size barely move the loss; the attack raises it well above that
    signs = torch.randint(0, 2, images.shape, generator=torch.Generator().manual_seed(3)) * 2 - 1
    noise = (images + recipe.eps * signs).clamp(0, 1)
    clean, noisy, attacked = _ce(net, images, labels), _ce(net, noise, labels), _ce(net, adv, labels)
    assert attacked > clean + 0.1 and attacked > noisy + 0.1, (attack, clean, noisy, attacked)


def test_recipe_defaults_and_refusals():
    assert (SEGPGD_AT.attack, SEGPGD_AT.eps_255, SEGPGD_AT.step_255, SEGPGD_AT.fraction) == ("segpgd", 8, 2, 0.5)
    assert SEGPGD_AT.eps == pytest.approx(8 / 255)
    assert SEGPGD_AT.attacked(8) == 4 and SEGPGD_AT.attacked(1) == 1
    assert SEGPGD_AT.describe().startswith("SegPGD-AT, ε = 8/255")
    for bad in (dict(attack="dag"), dict(eps_255=0), dict(steps=0), dict(fraction=0), dict(step_255=40)):
        with pytest.raises(ValueError):
            AdversarialRecipe(**bad)


@pytest.fixture
def no_validation(monkeypatch):
    monkeypatch.setattr(train_module, "evaluate", lambda *a, **k: {
        "pixel_accuracy": 0.0, "miou": 0.0, "per_class_iou": [], "num_images": 0})


def test_an_adversarial_stage_is_reproducible_across_sessions_and_says_so_on_its_card(tmp_path, no_validation):
    whole = train(out_dir=tmp_path / "whole", checkpoint=tmp_path / "whole.pt", command="whole",
                  adversarial=FAST, **TINY)
    assert train(out_dir=tmp_path / "split", checkpoint=tmp_path / "split.pt", command="split",
                 adversarial=FAST, session_steps=1, **TINY) is None
    train(out_dir=tmp_path / "split", checkpoint=tmp_path / "split.pt", command="split", adversarial=FAST, **TINY)
    from safetensors.torch import load_file
    a = load_file(str(tmp_path / "whole" / "model.safetensors"))
    b = load_file(str(tmp_path / "split" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a), "the attack's random starts are part of the checkpointed state"
    assert whole["adversarial_training"]["summary"] == FAST.describe()
    assert whole["title"].endswith("adversarially trained")
    assert whole["stages"][-1]["adversarial"] == FAST.as_dict()
    # the clean run of the same seed differs: the attack really changed the batches
    clean = train(out_dir=tmp_path / "clean", checkpoint=None, command="clean", **TINY)
    c = load_file(str(tmp_path / "clean" / "model.safetensors"))
    assert any(not torch.equal(a[k], c[k]) for k in a) and "adversarial_training" not in clean
    # a checkpoint of the clean settings is not resumed as an adversarial one
    train(out_dir=tmp_path / "c2", checkpoint=tmp_path / "c2.pt", command="c2", session_steps=1, **TINY)
    with pytest.raises(SystemExit, match="other settings"):
        train(out_dir=tmp_path / "c2", checkpoint=tmp_path / "c2.pt", command="c2", adversarial=FAST, **TINY)


def test_the_command_line_records_and_checks_the_adversarial_flags(tmp_path, no_validation, capsys, monkeypatch):
    with pytest.raises(SystemExit):
        main(["--world", "street", "--adversarial", "segpgd", "--adv-eps", "0", "--out", str(tmp_path / "x")])
    assert "ε must be in (0, 64]" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    line = train_module.command_line({"world": "street", "arch": "unet-mobilenet", "steps": 10, "batch_size": 8,
                                      "lr": 1e-3, "pool_size": 100, "shuffle_fraction": 0.3, "seed": 0,
                                      "balance": 0.5, "init_from": None, "adversarial": SEGPGD_AT.as_dict()})
    assert line.endswith("--adversarial segpgd --adv-eps 8 --adv-steps 5 --adv-step 2 --adv-fraction 0.5 --threads 1")
    parsed = line.split("explorer.tools.train ")[1].split()
    seen = []
    monkeypatch.setattr(train_module, "train", lambda *a, **k: seen.append(k["adversarial"]))
    main(parsed + ["--out", str(tmp_path / "y")])
    assert seen == [SEGPGD_AT], "the recorded command parses back to the same recipe"


def test_the_card_states_the_clean_cost_of_adversarial_training():
    clean_stage = {"steps": 10, "time_s": 100.0, "sessions": 1, "command": "clean"}
    first = {"steps": 5, "time_s": 30.0, "sessions": 1, "command": "at", "adversarial": FAST.as_dict()}
    normal_card = {"name": "normal", "validation": {"miou": 0.65}}
    fields = train_module.adversarial_card_fields(FAST, [clean_stage, first], normal_card, {"miou": 0.60})
    assert fields["clean_miou_before"] == 0.65 and fields["clean_miou_drop"] == pytest.approx(0.05)
    assert fields["time_s"] == 30.0 and fields["summary"] == FAST.describe()
    # a second adversarial stage keeps the mIoU from before the first one, and adds its time
    robust_card = {"name": "robust", "validation": {"miou": 0.60}, "adversarial_training": fields}
    second = dict(first, time_s=20.0)
    more = train_module.adversarial_card_fields(FAST, [clean_stage, first, second], robust_card, {"miou": 0.62})
    assert more["clean_miou_before"] == 0.65 and more["clean_miou_drop"] == pytest.approx(0.03)
    assert more["time_s"] == 50.0
    rows = train_module._adversarial_rows({"adversarial_training": more})
    assert "0.6500 before, 0.6200 after (0.0300 lost)" in rows and "0.8 min" in rows


def test_the_trades_loss_is_clean_ce_plus_beta_times_the_mean_kl_over_labelled_attacked_pixels():
    import math

    from explorer.tools.adversarial_training import trades_loss

    # two images of 1 x 2 pixels, 2 classes; only the first image is attacked; one pixel ignored
    clean = torch.tensor([[[[0.0, 1.0]], [[0.0, -1.0]]],
                          [[[2.0, 0.0]], [[0.0, 0.0]]]])          # (2, 2, 1, 2)
    adv = torch.tensor([[[[0.0, 0.0]], [[1.0, 0.0]]]])              # (1, 2, 1, 2)
    labels = torch.tensor([[[0, 255]], [[1, 0]]])
    ce = F.cross_entropy(clean, labels, ignore_index=255)
    # attacked labelled pixel: clean p = (1/2, 1/2), adversarial p = (1/(1+e), e/(1+e))
    p = [0.5, 0.5]
    q = [1 / (1 + math.e), math.e / (1 + math.e)]
    kl = sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    assert float(trades_loss(clean, adv, labels, beta=6.0)) == pytest.approx(float(ce) + 6.0 * kl, rel=1e-6)
    assert float(trades_loss(clean, adv, labels, beta=0.0)) == pytest.approx(float(ce), rel=1e-7)
    assert float(trades_loss(clean, clean[:1], labels, beta=6.0)) == pytest.approx(float(ce), rel=1e-6)
    # the KL term reaches both predictions (TRADES does not detach the clean one)
    clean.requires_grad_(True)
    adv.requires_grad_(True)
    extra = trades_loss(clean, adv, labels, beta=1.0) - F.cross_entropy(clean, labels, ignore_index=255)
    grad_clean, grad_adv = torch.autograd.grad(extra, (clean, adv))
    assert grad_adv[0, :, 0, 0].abs().sum() > 0 and grad_clean[0, :, 0, 0].abs().sum() > 0
    assert grad_adv[0, :, 0, 1].abs().sum() == 0, "an ignored pixel adds nothing"


def test_a_trades_stage_trains_names_itself_and_keeps_plain_recipes_as_they_were(tmp_path, no_validation,
                                                                                  monkeypatch):
    trades = AdversarialRecipe("segpgd", eps_255=8, steps=2, step_255=4, fraction=0.5, trades_beta=6)
    assert trades.describe().startswith("SegPGD-TRADES (β = 6), ε = 8/255")
    assert "trades_beta" not in FAST.as_dict() and trades.as_dict()["trades_beta"] == 6
    card = train(out_dir=tmp_path / "t", checkpoint=None, command="t", adversarial=trades, **TINY)
    assert card["adversarial_training"]["summary"] == trades.describe()
    plain = train(out_dir=tmp_path / "p", checkpoint=None, command="p", adversarial=FAST, **TINY)
    from safetensors.torch import load_file
    a, b = load_file(str(tmp_path / "t" / "model.safetensors")), load_file(str(tmp_path / "p" / "model.safetensors"))
    assert any(not torch.equal(a[k], b[k]) for k in a), "the TRADES objective trains another network"
    assert plain["stages"][-1]["adversarial"] == FAST.as_dict()
    line = train_module.command_line({"world": "street", "arch": "unet-mobilenet", "steps": 10, "batch_size": 8,
                                      "lr": 1e-3, "pool_size": 100, "shuffle_fraction": 0.3, "seed": 0,
                                      "balance": 0.5, "init_from": None, "adversarial": trades.as_dict()})
    assert line.endswith("--adv-fraction 0.5 --adv-trades-beta 6 --threads 1")
    seen = []
    monkeypatch.setattr(train_module, "train", lambda *a, **k: seen.append(k["adversarial"]))
    main(line.split("explorer.tools.train ")[1].split() + ["--out", str(tmp_path / "y")])
    assert seen == [trades], "the recorded command parses back to the same recipe"
    with pytest.raises(ValueError, match="TRADES weight"):
        AdversarialRecipe(trades_beta=-1)
