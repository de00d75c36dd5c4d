"""Tests of explorer.models: the wrapper contract, the registry, every loader, offline behaviour.

Nothing is downloaded: each loader reads a randomly initialised model of its real format
saved to a temporary folder, and the network is forbidden (HF_HUB_OFFLINE=1, sockets
patched to record any attempt).  Images are tiny (<= 64x96) to keep the suite fast.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from explorer.datasets import get_dataset
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
)
from explorer.models import registry

smp = pytest.importorskip("segmentation_models_pytorch")
torch.set_num_threads(min(2, torch.get_num_threads()))

CITYSCAPES = get_dataset("cityscapes")
VOC = get_dataset("voc")


# -- fixtures ------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def no_network(monkeypatch, tmp_path_factory):
    """Offline mode, empty download caches, and a record of every attempted connection."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network disabled in tests")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("EXPLORER_OFFLINE", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch_home")))
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path_factory.mktemp("hf_cache")))
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    yield attempts
    assert not attempts, f"the code tried to reach the network: {attempts}"


@pytest.fixture
def weights(tmp_path, monkeypatch):
    """An empty shipped-weights folder the registry scans (restored to the default afterwards)."""
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setenv("EXPLORER_WEIGHTS_DIR", str(folder))
    refresh_shipped()
    yield folder
    monkeypatch.delenv("EXPLORER_WEIGHTS_DIR")
    refresh_shipped()


def save_fp16_smp(net: nn.Module, folder: Path) -> None:
    """smp ``save_pretrained`` with the weights rewritten in float16 (as the trainer ships them)."""
    from safetensors.torch import load_file, save_file

    net.save_pretrained(str(folder))
    path = folder / "model.safetensors"
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in load_file(str(path)).items()}
    save_file(state, str(path), metadata={"format": "pt"})
    # the reference model now holds the float16-rounded weights, like the loaded one
    net.load_state_dict({k: (v.float() if v.is_floating_point() else v) for k, v in state.items()})


def make_shipped(root: Path, name: str, *, dataset: str = "cityscapes", arch: str = "FPN",
                 encoder: str = "mobilenet_v2", input_size=None, seed: int = 0, **card) -> nn.Module:
    """Write a randomly initialised fp16 smp model with its card.json; return the network."""
    torch.manual_seed(seed)
    classes = get_dataset(dataset).num_classes
    net = getattr(smp, arch)(encoder_name=encoder, encoder_weights=None, classes=classes).eval()
    folder = root / name
    save_fp16_smp(net, folder)
    card = {"name": name, "title": f"Tiny {arch}", "world": "street", "dataset": dataset,
            "arch": f"{arch.lower()}-{encoder}", "description": "random weights, for tests",
            "input_size": input_size, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), **card}
    (folder / "card.json").write_text(json.dumps(card))
    return net


def images(n: int = 1, h: int = 64, w: int = 64, seed: int = 0) -> torch.Tensor:
    """Random images in [0, 1]."""
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


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


# -- online loaders on local copies --------------------------------------------------------
def test_smp_hub_segformer_loader_round_trip(tmp_path):
    torch.manual_seed(0)
    net = smp.Segformer(encoder_name="mit_b0", encoder_weights=None, classes=19).eval()
    net.save_pretrained(str(tmp_path))  # float32, like smp-hub
    entry = get_model_entry("smp-segformer-b0-cityscapes")
    model = entry.load(str(tmp_path))
    assert model.input_size == (1024, 1024)  # the entry's default without an eval config
    assert model.size_divisor == 32 and model.name == entry.name and model.dataset is CITYSCAPES

    # smp-hub's albumentations eval config (0..255 units) sets resize and normalisation
    eval_config = {"transform": {"__class_fullname__": "Compose", "transforms": [
        {"__class_fullname__": "Resize", "height": 64, "width": 64, "interpolation": 1},
        {"__class_fullname__": "Normalize", "mean": [123.675, 116.28, 103.53],
         "std": [58.395, 57.12, 57.375], "max_pixel_value": 1.0}]}}
    (tmp_path / "albumentations_config_eval.json").write_text(json.dumps(eval_config))
    model = entry.load(str(tmp_path))
    assert model.input_size == (64, 64)
    torch.testing.assert_close(model.mean.flatten(), torch.tensor(IMAGENET_MEAN))
    torch.testing.assert_close(model.std.flatten(), torch.tensor(IMAGENET_STD))
    reference = SegmentationModel(net, CITYSCAPES, "ref", input_size=(64, 64), size_divisor=32).eval()
    x = images(1, 48, 96)
    with torch.no_grad():
        out = model(x)
        torch.testing.assert_close(out, reference(x))
    assert out.shape == (1, 19, 48, 96)


TORCHVISION = {
    "tv-deeplabv3-mobilenet-v3-voc": ("deeplabv3_mobilenet_v3_large", True),
    "tv-lraspp-mobilenet-v3-voc": ("lraspp_mobilenet_v3_large", False),
    "tv-fcn-resnet50-voc": ("fcn_resnet50", True),
}


def torchvision_net(name: str) -> nn.Module:
    """The real torchvision architecture of registry entry ``name``, randomly initialised."""
    import torchvision.models.segmentation as segmentation

    builder, aux = TORCHVISION[name]
    torch.manual_seed(0)
    kwargs = {"weights": None, "weights_backbone": None, "num_classes": 21}
    if aux:
        kwargs["aux_loss"] = True
    return getattr(segmentation, builder)(**kwargs).eval()


@pytest.mark.parametrize("name", list(TORCHVISION))
def test_torchvision_loader_round_trip(tmp_path, name):
    net = torchvision_net(name)
    path = tmp_path / "weights.pth"
    torch.save(net.state_dict(), path)
    model = get_model_entry(name).load(str(path))
    assert model.resize_short_side == 520 and model.dataset is VOC and model.output_key == "out"
    assert getattr(model.net, "aux_classifier", None) is None  # training-only head dropped
    model.resize_short_side = None  # compare at 64x64 (the 520 resize is tested on LR-ASPP)
    reference = SegmentationModel(net, VOC, "ref", output_key="out").eval()
    x = images(1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))


def test_torchvision_full_pipeline_and_safetensors(tmp_path):
    from safetensors.torch import save_file

    name = "tv-lraspp-mobilenet-v3-voc"
    net = torchvision_net(name)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "w.safetensors"))
    model = get_model_entry(name).load(str(tmp_path / "w.safetensors"))
    reference = SegmentationModel(net, VOC, "ref", resize_short_side=520).eval()
    x = images(1, 40, 60)
    with torch.no_grad():
        out = model(x)
        torch.testing.assert_close(out, reference(x))
    assert out.shape == (1, 21, 40, 60)


def test_torchvision_weights_are_never_unpickled(tmp_path):
    import argparse

    torch.save({"x": argparse.Namespace(a=1)}, tmp_path / "evil.pth")  # needs a full unpickler
    with pytest.raises(InputError, match="evil.pth"):
        get_model_entry("tv-lraspp-mobilenet-v3-voc").load(str(tmp_path / "evil.pth"))


def test_torchvision_cached_download_loads_offline():
    name = "tv-lraspp-mobilenet-v3-voc"
    import torchvision.models.segmentation as segmentation

    url = segmentation.LRASPP_MobileNet_V3_Large_Weights.DEFAULT.url
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    cache.mkdir(parents=True)
    net = torchvision_net(name)
    torch.save(net.state_dict(), cache / os.path.basename(url))
    model = load_model(name, device="cpu")  # HF_HUB_OFFLINE=1, but the file is cached
    model.resize_short_side = None
    with torch.no_grad():
        torch.testing.assert_close(model(images(1, 32, 32)), SegmentationModel(net, VOC, "r")(images(1, 32, 32)))


def test_hf_segformer_loader_round_trip(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.SegformerConfig(
        num_labels=19, hidden_sizes=[8, 16, 24, 32], num_attention_heads=[1, 1, 2, 2], depths=[1, 1, 1, 1],
        decoder_hidden_size=16)
    torch.manual_seed(0)
    net = transformers.SegformerForSemanticSegmentation(config).eval()
    net.save_pretrained(str(tmp_path))
    entry = get_model_entry("hf-segformer-b0-cityscapes")
    model = entry.load(str(tmp_path))
    assert model.input_size == (1024, 1024) and model.dataset is CITYSCAPES  # entry default
    model.input_size = None
    reference = SegmentationModel(net, CITYSCAPES, "ref").eval()
    x = images(2, 48, 64)
    with torch.no_grad():
        out = model(x)
        torch.testing.assert_close(out, reference(x))
    assert out.shape == (2, 19, 48, 64)  # 1/4-resolution logits upsampled

    processor = {"do_resize": True, "size": {"height": 32, "width": 32}, "do_normalize": True,
                 "image_mean": list(IMAGENET_MEAN), "image_std": list(IMAGENET_STD)}
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(processor))
    model = entry.load(str(tmp_path))
    assert model.input_size == (32, 32)
    assert model(images(1, 40, 56)).shape == (1, 19, 40, 56)


def test_hf_loader_without_transformers_says_to_install_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(InputError, match=r"\[hf\]"):
        get_model_entry("hf-segformer-b0-cityscapes").load(str(tmp_path))


# -- offline -------------------------------------------------------------------------------
@pytest.mark.parametrize("variable", ["HF_HUB_OFFLINE", "EXPLORER_OFFLINE"])
@pytest.mark.parametrize("name", ["smp-segformer-b0-cityscapes", "tv-deeplabv3-mobilenet-v3-voc",
                                  "hf-segformer-b0-cityscapes"])
def test_online_models_offline_name_the_shipped_alternatives(weights, monkeypatch, variable, name, no_network):
    if name.startswith("hf-"):
        pytest.importorskip("transformers")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv(variable, "1")
    make_shipped(weights, "street-fpn")
    refresh_shipped()
    with pytest.raises(InputError) as info:
        load_model(name, device="cpu")
    message = str(info.value)
    assert "network" in message and "street-fpn" in message and variable in message
    assert get_model_entry(name).source in message or "download.pytorch.org" in message
    assert not no_network  # refused before any connection attempt


def test_offline_message_without_shipped_models(weights):
    with pytest.raises(InputError, match="none are installed"):
        load_model("smp-segformer-b2-cityscapes", device="cpu")


def fake_hub_cache(repo_id: str, files: dict) -> None:
    """Lay ``files`` (name -> writer(path)) out as a cached hub snapshot of ``repo_id``."""
    import huggingface_hub.constants as hub_constants

    repo = Path(hub_constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for filename, write in files.items():
        write(snapshot / filename)


def test_cached_hub_checkpoints_load_offline(tmp_path):
    torch.manual_seed(0)
    net = smp.Segformer(encoder_name="mit_b0", encoder_weights=None, classes=19).eval()
    net.save_pretrained(str(tmp_path))
    eval_config = {"transform": {"transforms": [{"__class_fullname__": "Resize", "height": 32, "width": 64}]}}
    entry = get_model_entry("smp-segformer-b0-cityscapes")
    fake_hub_cache(entry.source, {
        "config.json": lambda p: p.write_bytes((tmp_path / "config.json").read_bytes()),
        "model.safetensors": lambda p: p.write_bytes((tmp_path / "model.safetensors").read_bytes()),
        "albumentations_config_eval.json": lambda p: p.write_text(json.dumps(eval_config)),
    })
    model = load_model(entry.name, device="cpu")  # HF_HUB_OFFLINE=1: read from the cache only
    assert model.input_size == (32, 64)
    reference = SegmentationModel(net, CITYSCAPES, "ref", input_size=(32, 64), size_divisor=32).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(images(1, 40, 40)), reference(images(1, 40, 40)))


def test_cached_transformers_checkpoint_loads_offline(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.SegformerConfig(num_labels=19, hidden_sizes=[8, 8, 8, 8], num_attention_heads=[1, 1, 1, 1],
                                          depths=[1, 1, 1, 1], decoder_hidden_size=8)
    transformers.SegformerForSemanticSegmentation(config).save_pretrained(str(tmp_path))
    entry = get_model_entry("hf-segformer-b0-cityscapes")
    fake_hub_cache(entry.source, {f: (lambda p, f=f: p.write_bytes((tmp_path / f).read_bytes()))
                                  for f in ("config.json", "model.safetensors")})
    model = load_model(entry.name, device="cpu")
    model.input_size = (32, 32)
    assert model(images(1, 24, 40)).shape == (1, 19, 24, 40)


@pytest.mark.parametrize("name", ["smp-segformer-b0-cityscapes", "hf-segformer-b0-cityscapes",
                                  "tv-fcn-resnet50-voc"])
def test_a_missing_local_source_is_an_input_error(name):
    if name.startswith("hf-"):
        pytest.importorskip("transformers")
    with pytest.raises(InputError, match="nonexistent"):
        get_model_entry(name).load("/nonexistent/folder")
