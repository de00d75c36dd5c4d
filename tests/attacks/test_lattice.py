"""The 8-bit finish lands on the lattice, succeeds as a PNG, and is within one level of the
exact 8-bit optimum on the linear segmenter (brute force over every lattice point)."""
import math

import pytest
import torch
from linear_segmenter import LinearSegmenter, make_problem

from explorer.attacks import alma_prox
from explorer.attacks.lattice import finish_8bit, png_round_trip, with_8bit_finish
from explorer.errors import InputError

LEVELS = 10  # brute force over every offset in {-10..10}^3 per pixel


def lattice_problem(seed, equidistant=True, size=8):
    """The linear segmenter on 8-bit images close to its decision boundaries: pixels need a
    few levels each (``make_problem``'s images stretched towards grey, then rounded)."""
    model, images, _ = make_problem(seed=seed, batch=2, size=size, equidistant=equidistant)
    weight = model.conv.weight.detach().view(-1, 3)
    generator = torch.Generator().manual_seed(100 + seed)
    bias = -(weight @ torch.full((3,), 0.5)) + 0.03 * torch.randn(weight.shape[0], generator=generator)
    model = LinearSegmenter(weight, bias).eval()
    images = ((0.5 + 0.06 * (images - 0.5)) * 255).round() / 255
    with torch.no_grad():
        labels = model(images).argmax(1)
    return model, images, labels


def exact_pixel_levels(model, images, labels, targeted):
    """Per pixel, the smallest ℓ∞ (in levels) of an integer offset that fools it, by trying them all."""
    weight = model.conv.weight.detach().view(-1, 3)
    bias = model.conv.bias.detach()
    offsets = torch.cartesian_prod(*[torch.arange(-LEVELS, LEVELS + 1, dtype=torch.float32)] * 3)
    norms = offsets.abs().amax(1)
    pixels = (images * 255).round().permute(0, 2, 3, 1).reshape(-1, 3)
    wanted = labels.reshape(-1)
    out = torch.full((len(pixels),), math.inf)
    for p in range(len(pixels)):
        values = pixels[p] + offsets
        inside = ((values >= 0) & (values <= 255)).all(1)
        prediction = ((values / 255) @ weight.T + bias).argmax(1)
        fooled = ((prediction == wanted[p]) if targeted else (prediction != wanted[p])) & inside
        if fooled.any():
            out[p] = norms[fooled].min()
    return out.view(labels.shape)


def exact_optimum(pixel_levels, threshold):
    """Pixels are independent: the optimum is the ceil(ν |M|)-th smallest pixel level."""
    ordered = pixel_levels.flatten().sort().values
    return float(ordered[math.ceil(threshold * len(ordered)) - 1])


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("targeted", [False, True])
def test_the_finish_is_8bit_adversarial_and_within_one_level_of_the_optimum(seed, targeted):
    model, images, labels = lattice_problem(seed)
    wanted = (labels + 1) % 4 if targeted else labels
    continuous = alma_prox(model, images, wanted, targeted=targeted, num_steps=300)
    finished = finish_8bit(model, images, wanted, continuous)

    adv = finished.adv_images
    assert torch.equal(adv, (adv * 255).round() / 255), "on the 1/255 lattice: exactly k/255"
    assert ((adv - images) * 255).abs().max() <= LEVELS + 1e-4
    assert torch.equal(png_round_trip(finished.adv_images), finished.adv_images), "a PNG holds it exactly"
    with torch.no_grad():
        prediction = model(png_round_trip(finished.adv_images)).argmax(1)
    hit = (prediction == wanted) if targeted else (prediction != wanted)
    apsr = hit.flatten(1).float().mean(1)
    assert torch.allclose(finished.apsr, apsr) and bool(finished.success.all())
    assert bool((apsr >= continuous.adv_threshold).all()), "judged on the PNG-decoded image"

    pixel_levels = exact_pixel_levels(model, images, wanted, targeted)
    for i in range(len(images)):
        optimum = exact_optimum(pixel_levels[i], continuous.adv_threshold)
        found = float(finished.linf[i] * 255)
        assert found == pytest.approx(round(found), abs=1e-4)
        assert optimum <= round(found) <= optimum + 1, (i, found, optimum)


def test_gaussian_classes_finish_no_worse_than_rounding_the_continuous_norm_up():
    """With Gaussian class weights the continuous attack overshoots (tests/linear_segmenter.py);
    the finish still reaches the lattice at most one level above the continuous norm."""
    model, images, labels = lattice_problem(1, equidistant=False)
    continuous = alma_prox(model, images, labels, num_steps=300)
    finished = finish_8bit(model, images, labels, continuous)
    assert bool(finished.success.all())
    assert bool(((finished.linf * 255).round() <= (continuous.linf * 255).ceil()).all())


def test_plain_rounding_loses_a_subpixel_perturbation_and_the_finish_does_not():
    model, images, labels = lattice_problem(0)
    continuous = alma_prox(model, images, labels, num_steps=300)
    # shrink the continuous perturbation below half a level: rounding gives back the clean image
    tiny = continuous.adv_images.clone()
    tiny = images + (tiny - images) * (0.4 / 255) / (tiny - images).flatten(1).abs().amax(1).view(-1, 1, 1, 1)
    assert torch.equal(png_round_trip(tiny), images)
    from dataclasses import replace
    finished = finish_8bit(model, images, labels, replace(continuous, adv_images=tiny))
    assert bool(finished.success.all()) and bool((finished.linf > 0).all())


@pytest.mark.parametrize("targeted", [False, True])
def test_the_finish_is_never_worse_than_saving_the_continuous_result(targeted):
    """Plain rounding (what a PNG write does) is one of the finish's candidates: when the saved
    continuous result succeeds, the finish succeeds at a level no higher."""
    model, images, labels = lattice_problem(1, equidistant=False)
    wanted = (labels + 2) % 5 if targeted else labels
    continuous = alma_prox(model, images, wanted, targeted=targeted, num_steps=300)
    saved = png_round_trip(continuous.adv_images)
    with torch.no_grad():
        prediction = model(saved).argmax(1)
    hit = (prediction == wanted) if targeted else (prediction != wanted)
    saved_success = hit.flatten(1).float().mean(1) >= continuous.adv_threshold
    finished = finish_8bit(model, images, wanted, continuous)
    for i in range(len(images)):
        if saved_success[i]:
            assert bool(finished.success[i])
            assert float(finished.linf[i]) <= float((saved[i] - images[i]).abs().max()) + 1e-6


def test_counts_add_up_and_the_input_result_is_not_changed():
    model, images, labels = lattice_problem(2)
    continuous = alma_prox(model, images, labels, num_steps=100)
    before = continuous.adv_images.clone()
    finished = finish_8bit(model, images, labels, continuous, steps=3)
    assert torch.equal(continuous.adv_images, before)
    assert bool((finished.num_forwards > continuous.num_forwards).all())
    assert finished.params["8-bit finish"] == {"scales": [1.0, 1.5, 2.0], "steps": 3, "repair": True,
                                               "patience": 4}
    assert finished.attack == "alma_prox 8-bit"
    both = with_8bit_finish(model, images, labels, continuous, steps=3)
    assert both is not continuous and continuous.eight_bit is None
    assert torch.equal(both.linf, continuous.linf) and torch.equal(both.eight_bit.linf, finished.linf)


def test_bad_arguments_are_refused_before_any_model_call():
    model, images, labels = lattice_problem(0)
    continuous = alma_prox(model, images, labels, num_steps=20)
    for kwargs, message in ((dict(steps=-1), "steps"), (dict(max_level=0), "max_level"),
                            (dict(patience=-1), "patience"), (dict(scales=(0.0,)), "scales"),
                            (dict(steps=True), "steps")):
        with pytest.raises(InputError, match=message):
            finish_8bit(model, images, labels, continuous, **kwargs)
    with pytest.raises(InputError, match="AttackResult"):
        finish_8bit(model, images, labels, "result")
    with pytest.raises(InputError, match="shape"):
        finish_8bit(model, images[:1], labels[:1], continuous)
    from dataclasses import replace
    poisoned = continuous.adv_images.clone()
    poisoned[0, 0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="non-finite"):
        finish_8bit(model, images, labels, replace(continuous, adv_images=poisoned))
    with pytest.raises(InputError, match="no labelled pixel"):  # an empty mask, refused by the attack core
        finish_8bit(model, images, torch.full_like(labels, 255), continuous)


def test_the_lattice_benchmark_prints_every_option(tmp_path):
    from explorer.bench.cli import main
    out = tmp_path / "lattice"
    main(["lattice", "--model", "street-fpn-mobilenet", "--steps", "5", "--limit", "1", "--modes", "untargeted",
          "--threads", "1", "--out", str(out)])
    import json
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert [r["option"] for r in rows][0] == "continuous result saved as PNG (plain rounding)" and len(rows) == 5
    plain, *finishes = rows
    for row in finishes:  # every finish is at least as good as saving the result as a PNG
        assert row["success_rate"] >= plain["success_rate"]
        assert row["extra_forwards"] >= 1
