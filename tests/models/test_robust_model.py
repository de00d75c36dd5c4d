"""The shipped adversarially trained model: its card tells how it was made, plain PGD leaves
it more accuracy than the model it was fine-tuned from, and SEA never leaves more accuracy
than any of its members on it ([Croce2024]'s worst case over losses)."""
import pytest
import torch

from explorer.attacks import pgd, sea
from explorer.attacks.sea import SEA_MEMBERS
from explorer.bench.model_report import sample_batch
from explorer.metrics import pixel_accuracy
from explorer.models import DEFAULT_MODEL, available_models, get_model_entry, load_model

ROBUST = f"{DEFAULT_MODEL}-robust"


@pytest.fixture(scope="module")
def street_batch():
    images, labels, _ = sample_batch("street")
    return images[:2], labels[:2]


def accuracy(model, images, labels) -> torch.Tensor:
    with torch.no_grad():
        return pixel_accuracy(model(images).argmax(1), labels, model.num_classes)


def test_the_robust_model_is_shipped_with_its_recipe_and_clean_cost():
    assert ROBUST in available_models("shipped")
    card = get_model_entry(ROBUST).card
    recipe = card["adversarial_training"]
    assert recipe["attack"] in ("segpgd", "pgd") and 0 < recipe["eps_255"] <= 16
    assert "adversarially trained" in card["title"]
    # the normal model's own stages, then adversarial ones only (a first from the normal model's
    # weights, later ones each continuing the robust model)
    normal_stages = get_model_entry(DEFAULT_MODEL).card["stages"]
    assert card["stages"][:len(normal_stages)] == normal_stages
    adversarial = card["stages"][len(normal_stages):]
    assert adversarial and all(stage.get("adversarial") for stage in adversarial)
    assert f"--init-from explorer/models/weights/{DEFAULT_MODEL} " in adversarial[0]["command"]
    assert card["recipe"]["initialised_from"] in (DEFAULT_MODEL, ROBUST)
    assert card["training_time_s"] > 0
    # the clean cost is on the card: validation mIoU beside the normal model's
    normal = get_model_entry(DEFAULT_MODEL).card["validation"]["miou"]
    assert card["validation"]["miou"] > normal - 0.15, "clean mIoU fell by more than 0.15"


def test_pgd_leaves_the_robust_model_more_accuracy_than_the_normal_one(street_batch):
    # measured at this commit: 0.11 (normal) and 0.26 (robust) pixel accuracy left
    images, labels = street_batch
    left = {}
    for name in (DEFAULT_MODEL, ROBUST):
        model = load_model(name, "cpu")
        torch.manual_seed(0)
        result = pgd(model, images, labels, eps=4 / 255, num_steps=10)
        left[name] = float(accuracy(model, result.adv_images, labels).mean())
    assert left[DEFAULT_MODEL] < 0.2, left
    assert left[ROBUST] > left[DEFAULT_MODEL] + 0.1, left


@pytest.mark.parametrize("radius", [2, 4, 8])
def test_sea_leaves_no_more_accuracy_than_any_member_on_the_robust_model(street_batch, radius):
    images, labels = street_batch
    model = load_model(ROBUST, "cpu")
    torch.manual_seed(radius)
    result = sea(model, images, labels, eps=radius / 255, num_steps=8)
    ensemble = accuracy(model, result.adv_images, labels)
    assert list(result.members) == list(SEA_MEMBERS["all"])  # the default: all five losses
    for loss, member in result.members.items():
        assert float(member.linf.max()) <= radius / 255 + 1e-6
        # image by image, never above the member (the ensemble keeps each image's worst case)
        assert bool((ensemble <= accuracy(model, member.adv_images, labels) + 1e-6).all()), loss
