"""Tests of explorer.models' loaders of online models, on local copies, and offline behaviour.

Nothing is downloaded: each loader reads a randomly initialised model of its real format
saved to a temporary folder or laid out as a cached download, and the network is forbidden
(HF_HUB_OFFLINE=1, sockets patched to record any attempt: the ``no_network`` fixture of this
folder's conftest.py).  Images are tiny to keep the suite fast.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch
from tiny_models import images, make_shipped
from torch import nn

from explorer.data.datasets import get_dataset
from explorer.errors import InputError
from explorer.models import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SegmentationModel,
    get_model_entry,
    load_model,
    refresh_shipped,
)

smp = pytest.importorskip("segmentation_models_pytorch")
torch.set_num_threads(min(2, torch.get_num_threads()))

CITYSCAPES = get_dataset("cityscapes")
VOC = get_dataset("voc")
pytestmark = pytest.mark.usefixtures("no_network")


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
