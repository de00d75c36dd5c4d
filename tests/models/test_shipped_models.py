"""Every shipped model loads offline, matches its card on the samples, and beats colour alone."""
import pytest
import torch

from explorer.bench.model_report import sample_batch
from explorer.metrics import confusion_matrix, mean_iou, pixel_accuracy
from explorer.models import available_models, get_model_entry, load_model

SHIPPED = available_models("shipped")


def test_at_least_three_shipped_models():
    worlds = [get_model_entry(n).world for n in SHIPPED]
    assert worlds.count("street") >= 2 and worlds.count("objects") >= 1
    archs = {get_model_entry(n).card["arch"] for n in SHIPPED if get_model_entry(n).world == "street"}
    assert len(archs) >= 2  # two families


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_loads_offline_and_matches_card_on_samples(name, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    entry = get_model_entry(name)
    model = load_model(name, device="cpu")
    images, labels, _ = sample_batch(entry.world)
    with torch.no_grad():
        logits = model(images)
    assert logits.shape == (len(images), model.num_classes, *images.shape[-2:])
    pred = logits.argmax(1)
    accuracy = float(pixel_accuracy(pred, labels, model.num_classes).mean())
    miou = float(mean_iou(confusion_matrix(pred, labels, model.num_classes)))
    card = entry.card["samples"]
    assert accuracy == pytest.approx(card["pixel_accuracy"], abs=0.01)
    assert miou == pytest.approx(card["miou"], abs=0.01)
    # the model is far better than chance on its samples
    assert accuracy > 0.6


@pytest.mark.parametrize("world", ["street", "objects"])
def test_colour_alone_reaches_at_most_60_percent_of_the_model(world):
    from explorer.data.splits import VALIDATION_SEEDS, training_seeds
    from explorer.data.worlds import WORLDS
    from explorer.data.worlds.diagnostics import colour_only_miou

    best = max(get_model_entry(n).card["validation"]["miou"] for n in SHIPPED if get_model_entry(n).world == world)
    h, w = WORLDS[world].train_size
    colour = colour_only_miou(world, training_seeds(40), list(VALIDATION_SEEDS)[:20], h, w)
    assert colour <= 0.6 * best, (colour, best)
