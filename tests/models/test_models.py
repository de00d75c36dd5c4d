"""Tests of explorer.models: the wrapper contract, the registry and the shipped models.

Nothing is downloaded: shipped models are randomly initialised ones of their real format
saved to a temporary folder, and the network is forbidden (the ``no_network`` fixture of
this folder's conftest.py).  Images are tiny (<= 64x96) to keep the suite fast.  The loaders
of online models and offline behaviour are in test_model_loaders.py.
"""
from __future__ import annotations

import json
import warnings

import pytest
import torch
import torch.nn.functional as F
from tiny_models import images, make_shipped
from torch import nn

from explorer.data.datasets import get_dataset
from explorer.errors import InputError
from explorer.models import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ModelEntry,
    SegmentationModel,
    available_models,
    get_model_entry,
    load_model,
    refresh_shipped,
    registry,
)

smp = pytest.importorskip("segmentation_models_pytorch")
torch.set_num_threads(min(2, torch.get_num_threads()))

CITYSCAPES = get_dataset("cityscapes")
pytestmark = pytest.mark.usefixtures("no_network")


# -- helpers -------------------------------------------------------------------------------
class Recorder(nn.Module):
    """1x1 conv with K outputs at stride ``stride``; records the input sizes it sees."""

    def __init__(self, classes: int = 19, stride: int = 1, divisor: int = 1, wrap=None):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, classes, kernel_size=1, stride=stride)
        self.divisor, self.wrap, self.seen = divisor, wrap, []

    def forward(self, x):
        self.seen.append(tuple(x.shape[-2:]))
        assert x.shape[-2] % self.divisor == 0 and x.shape[-1] % self.divisor == 0
        out = self.conv(x)
        return self.wrap(out) if self.wrap else out


def normalised(x: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """(x - mean) / std per channel."""
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


# -- the wrapper ---------------------------------------------------------------------------

def test_wrapper_normalises_and_exposes_dataset():
    net = Recorder()
    model = SegmentationModel(net, CITYSCAPES, "rec").eval()
    x = images(2, 16, 24)
    torch.testing.assert_close(model(x), net.conv(normalised(x)))
    assert model.name == "rec" and model.dataset is CITYSCAPES
    assert model.class_names == CITYSCAPES.class_names and model.palette == CITYSCAPES.palette
    assert model.num_classes == 19 and model.ignore_index == 255 and model.background_class is None
    voc = SegmentationModel(Recorder(21), "voc", "v")
    assert voc.background_class == 0 and voc.num_classes == 21
    # normalisation constants are buffers: they follow .to() and stay out of the state dict
    assert {n for n, _ in model.named_buffers()} == {"mean", "std"}
    assert model.to(torch.float64).mean.dtype == torch.float64
    assert "mean" not in model.state_dict()


@pytest.mark.parametrize("wrap, key", [
    (lambda t: {"out": t, "aux": t * 0}, None),
    (lambda t: {"seg": t}, "seg"),
    (lambda t: type("Output", (), {"logits": t})(), None),
    (lambda t: (t, t * 0), None),
])
def test_wrapper_extracts_logits_and_upsamples(wrap, key):
    net = Recorder(stride=4, wrap=wrap)
    model = SegmentationModel(net, CITYSCAPES, "rec", output_key=key)
    x = images(1, 32, 48).requires_grad_(True)
    out = model(x)
    assert out.shape == (1, 19, 32, 48)
    expected = F.interpolate(net.conv(normalised(x)), size=(32, 48), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out, expected)
    grad, = torch.autograd.grad(out.sum(), x)
    assert grad.abs().sum() > 0


def test_wrapper_pads_to_size_divisor_and_crops():
    net = Recorder(divisor=32)
    model = SegmentationModel(net, CITYSCAPES, "rec", size_divisor=32)
    x = images(1, 50, 70)
    out = model(x)
    assert net.seen == [(64, 96)] and out.shape == (1, 19, 50, 70)
    padded = F.pad(normalised(x), (0, 26, 0, 14))
    torch.testing.assert_close(out, net.conv(padded)[..., :50, :70])
    # a network at 1/4 resolution is cropped at its own resolution, then upsampled
    quarter = Recorder(stride=4, divisor=32)
    out = SegmentationModel(quarter, CITYSCAPES, "q", size_divisor=32)(x)
    assert out.shape == (1, 19, 50, 70)


def test_wrapper_resizes_to_input_size_or_short_side():
    net = Recorder()
    model = SegmentationModel(net, CITYSCAPES, "rec", input_size=(32, 32))
    assert model(images(1, 40, 60)).shape == (1, 19, 40, 60) and net.seen[-1] == (32, 32)
    model.input_size = None  # the working resolution is a plain attribute
    model.resize_short_side = 52
    assert model(images(1, 40, 60)).shape == (1, 19, 40, 60) and net.seen[-1] == (52, 78)
    assert model(images(1, 60, 40)).shape == (1, 19, 60, 40) and net.seen[-1] == (78, 52)
    x = images(1, 40, 60).requires_grad_(True)
    grad, = torch.autograd.grad(model(x).sum(), x)
    assert grad.shape == x.shape and grad.abs().sum() > 0


def test_wrapper_rejects_bad_arguments():
    with pytest.raises(InputError, match="not both"):
        SegmentationModel(Recorder(), CITYSCAPES, "r", input_size=64, resize_short_side=64)
    with pytest.raises(InputError, match="std"):
        SegmentationModel(Recorder(), CITYSCAPES, "r", std=(0.2, 0.0, 0.2))
    with pytest.raises(InputError, match="size_divisor"):
        SegmentationModel(Recorder(), CITYSCAPES, "r", size_divisor=0)
    with pytest.raises(InputError, match="unknown dataset"):
        SegmentationModel(Recorder(), "ade20k", "r")
    with pytest.raises(InputError, match="21 classes"):
        SegmentationModel(Recorder(21), CITYSCAPES, "r")(images(1, 8, 8))
    with pytest.raises(InputError, match=r"\(N, 3, H, W\)"):
        SegmentationModel(Recorder(), CITYSCAPES, "r")(torch.rand(3, 8, 8))


# -- registry and shipped models -----------------------------------------------------------

def test_registry_lists_online_models_with_their_ids():
    online = available_models("online")
    assert online == list(registry.ONLINE_MODELS)
    assert all(isinstance(registry.MODELS[n], ModelEntry) for n in available_models())
    sources = {n: get_model_entry(n).source for n in online}
    assert sources["smp-segformer-b0-cityscapes"] == "smp-hub/segformer-b0-1024x1024-city-160k"
    assert sources["hf-segformer-b0-cityscapes"] == "nvidia/segformer-b0-finetuned-cityscapes-1024-1024"
    assert sources["tv-fcn-resnet50-voc"] == "torchvision:FCN_ResNet50_Weights.DEFAULT"
    for name in online:
        entry = get_model_entry(name)
        assert entry.kind == "online" and entry.dataset in ("cityscapes", "voc") and entry.title
        assert entry.dataset_info.num_classes in (19, 21)
    with pytest.raises(InputError, match="kind"):
        available_models("local")


@pytest.mark.parametrize("name", ["../x", "a/b", "a\\b", "..", "", ".hidden", "a..b", None])
def test_names_cannot_escape_the_weights_folder(name):
    with pytest.raises(InputError, match="invalid model name"):
        load_model(name)


def test_unknown_model_lists_the_available_ones(weights):
    make_shipped(weights, "street-fpn")
    refresh_shipped()
    with pytest.raises(InputError) as info:
        get_model_entry("street-unet")
    assert "street-fpn" in str(info.value) and "tv-deeplabv3-mobilenet-v3-voc" in str(info.value)


def test_shipped_model_is_discovered_and_round_trips(weights):
    net = make_shipped(weights, "street-fpn", seed=1)
    make_shipped(weights, "objects-fpn", dataset="voc", input_size=[64, 64], seed=2)
    assert refresh_shipped() == ["objects-fpn", "street-fpn"]
    assert available_models("shipped") == ["objects-fpn", "street-fpn"]
    assert available_models()[:2] == ["objects-fpn", "street-fpn"]  # shipped first

    entry = get_model_entry("street-fpn")
    assert (entry.kind, entry.dataset, entry.world, entry.title) == ("shipped", "cityscapes", "street", "Tiny FPN")
    assert entry.source == str(weights / "street-fpn") and entry.card["arch"] == "fpn-mobilenet_v2"

    model = load_model("street-fpn", device="cpu")
    assert isinstance(model, SegmentationModel) and not model.training
    assert model.name == "street-fpn" and model.class_names == CITYSCAPES.class_names
    assert model.size_divisor == 32 and model.input_size is None
    assert all(p.dtype == torch.float32 and not p.requires_grad for p in model.parameters())
    x = images(2, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(normalised(x)), rtol=1e-4, atol=1e-4)
        assert model(images(1, 50, 70)).shape == (1, 19, 50, 70)  # padded to 64x96, cropped

    voc = load_model("objects-fpn", device="cpu")
    assert voc.input_size == (64, 64) and voc.num_classes == 21 and voc.background_class == 0
    x = images(1, 48, 80).requires_grad_(True)
    out = voc(x)
    assert out.shape == (1, 21, 48, 80)
    grad, = torch.autograd.grad(out.sum(), x)
    assert grad.abs().sum() > 0


def test_weights_dir_can_be_given_directly(tmp_path, weights):
    other = tmp_path / "elsewhere"
    make_shipped(other, "tiny")
    assert refresh_shipped(other) == ["tiny"]
    assert get_model_entry("tiny").source == str(other / "tiny")
    assert refresh_shipped() == []  # back to $EXPLORER_WEIGHTS_DIR


@pytest.mark.parametrize("damage, filename", [
    (lambda f: (f / "model.safetensors").write_bytes(b"not a safetensors file"), "model.safetensors"),
    (lambda f: (f / "model.safetensors").unlink(), "model.safetensors"),
    (lambda f: (f / "config.json").write_text("{broken"), "config.json"),
])
def test_broken_shipped_files_name_the_file_and_the_working_models(weights, damage, filename):
    make_shipped(weights, "good")
    make_shipped(weights, "bad")
    refresh_shipped()
    damage(weights / "bad")
    with pytest.raises(InputError) as info:
        load_model("bad", device="cpu")
    message = str(info.value)
    assert filename in message and "good" in message and "still work" in message
    assert load_model("good", device="cpu").name == "good"


def test_bad_cards_are_skipped_with_a_warning(weights):
    make_shipped(weights, "good")
    make_shipped(weights, "unknown-dataset", dataset="voc")
    card = json.loads((weights / "unknown-dataset" / "card.json").read_text())
    (weights / "unknown-dataset" / "card.json").write_text(json.dumps({**card, "dataset": "ade20k"}))
    (weights / "broken").mkdir()
    (weights / "broken" / "card.json").write_text("not json")
    (weights / "no-card").mkdir()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert refresh_shipped() == ["good"]
    text = " ".join(str(w.message) for w in caught)
    assert "broken" in text and "unknown-dataset" in text


def test_wrong_class_count_is_reported_at_load(weights):
    make_shipped(weights, "mismatch", dataset="cityscapes")
    card_path = weights / "mismatch" / "card.json"
    card_path.write_text(json.dumps({**json.loads(card_path.read_text()), "dataset": "voc"}))
    refresh_shipped()
    with pytest.raises(InputError, match="19 classes"):
        load_model("mismatch", device="cpu")


def test_device_argument(weights):
    make_shipped(weights, "tiny")
    refresh_shipped()
    model = load_model("tiny", device="cpu")
    assert all(p.device.type == "cpu" for p in model.parameters()) and model.mean.device.type == "cpu"
    with pytest.raises(InputError, match="device"):
        load_model("tiny", device="tpu9")
    if not torch.cuda.is_available():
        assert registry.resolve_device(None) == torch.device("cpu")
        with pytest.raises(InputError, match="CUDA"):
            load_model("tiny", device="cuda")
