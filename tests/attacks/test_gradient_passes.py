"""``AttackSpec.gradient_passes`` (what the app books GPU time by) is the number of
forward+backward passes each attack really makes, counted on a model that cannot be fooled."""
import pytest
import torch
from torch import nn

from explorer.attacks import ATTACKS


class CountingModel(nn.Module):
    """A 1×1 convolution counting the forwards that build a graph through the input."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.passes = 0

    def forward(self, x):
        if torch.is_grad_enabled() and x.requires_grad:
            self.passes += 1
        return self.conv(x) * 0.01


@pytest.mark.parametrize("name", list(ATTACKS))
def test_gradient_passes_count_the_model_calls(name):
    spec = ATTACKS[name]
    torch.manual_seed(0)
    model = CountingModel().eval()
    images = torch.rand(1, 3, 8, 8)
    labels = model(images).argmax(1)
    params = {"num_steps": 3}
    params.update({key: 2 for key in ("search_steps", "restarts") if key in spec.defaults()})
    # adv_threshold=1 with a tiny budget-free model: no early success cuts a run short
    spec(model, images, labels, adv_threshold=1.0, **params)
    assert model.passes == spec.gradient_passes(params)
    assert spec.gradient_passes({}) >= spec.defaults().get("num_steps", 1)


def test_the_ensemble_and_the_bisections_multiply():
    assert ATTACKS["sea"].gradient_passes({"num_steps": 10}) == 50  # members="all": 5 members
    assert ATTACKS["pgd_bisection"].gradient_passes({"num_steps": 10, "search_steps": 5, "restarts": 3}) == 150


@pytest.mark.parametrize("members,size", [("all", 5), ("eccv2024", 3), ("arxiv2023", 4)])
def test_sea_passes_follow_its_members(members, size):
    """SEA's budget counts the members of the call's ``members`` choice."""
    spec = ATTACKS["sea"]
    assert spec.gradient_passes({"members": members, "num_steps": 7}) == size * 7
    torch.manual_seed(0)
    model = CountingModel().eval()
    images = torch.rand(1, 3, 8, 8)
    labels = model(images).argmax(1)
    result = spec(model, images, labels, adv_threshold=1.0, num_steps=2, members=members)
    assert model.passes == spec.gradient_passes({"members": members, "num_steps": 2}) == 2 * size
    assert len(result.members) == size
