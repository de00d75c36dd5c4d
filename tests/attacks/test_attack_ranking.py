"""The ranking the papers report, checked on a shipped model's samples (small crops, equal budgets)."""
import pytest
import torch

from explorer.attacks import ATTACKS
from explorer.data.samples import load_sample
from explorer.metrics import norm_summary
from explorer.models import load_model

#: the paper's budget: ALMA prox's lead needs it (at 100 iterations FMN can still be ahead)
BUDGET = 500
#: every minimal-norm attack at (about) the same number of forward+backward passes per image
EQUAL_BUDGETS = {
    "alma_prox": {"num_steps": BUDGET},
    "dag": {"num_steps": BUDGET},
    "fmn": {"num_steps": BUDGET},
    "pdpgd": {"num_steps": BUDGET},
    "ifgsm_bisection": {"num_steps": 38},        # 13 × 38 = 494
    "mifgsm_bisection": {"num_steps": 38},
    "pgd_bisection": {"num_steps": 38, "step_ratio": 2.5 / 38},
}


@pytest.fixture(scope="module")
def street_crops():
    model = load_model("street-fpn-mobilenet", "cpu")
    samples = [load_sample(f"street-00{i}") for i in (1, 4)]
    # 64 × 128 crops: at this size a step costs about what a 32 × 64 one does (the per-iteration
    # overhead dominates), and the crop keeps enough context for the paper's regime (medians
    # about 1/255).  32 × 64 crops of the stage-3 weights needed 2-4/255, ten times the
    # paper's norms, where ALMA prox's step size (lr_init 1e-3, tuned for Cityscapes) leaves
    # it short of convergence at 500 steps (3.9 against FMN's 2.3; 2.1 with lr_init 1e-2).
    images = torch.stack([s[0][:, 32:96, 64:192] for s in samples])
    # a crop loses context, so it is attacked against its own clean prediction (as an upload is)
    with torch.no_grad():
        labels = model(images).argmax(1)
    return model, images, labels


def test_registry_lists_every_minimal_norm_attack_here():
    assert set(EQUAL_BUDGETS) == {n for n, s in ATTACKS.items() if s.kind == "minimal-norm"}


def test_alma_prox_has_the_smallest_median_norm_at_equal_budgets(street_crops):
    model, images, labels = street_crops
    medians = {}
    for name, params in EQUAL_BUDGETS.items():
        result = ATTACKS[name](model, images, labels, **params)
        medians[name] = norm_summary(result.linf, result.success)["median_255"]
    alma = medians.pop("alma_prox")
    assert alma < min(medians.values()), (alma, medians)


def test_sea_accuracy_is_at_most_each_members(street_crops):
    model, images, labels = street_crops
    result = ATTACKS["sea"](model, images, labels, eps=0.5 / 255, num_steps=20)

    def accuracy(adv):
        with torch.no_grad():
            prediction = model(adv).argmax(1)
        labelled = labels < model.num_classes
        return float(((prediction == labels) & labelled).sum() / labelled.sum())

    members = {name: accuracy(m.adv_images) for name, m in result.members.items()}
    assert accuracy(result.adv_images) <= min(members.values()) + 1e-9, members
