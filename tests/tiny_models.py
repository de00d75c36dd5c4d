"""Tiny models in the formats the explorer loads: randomly initialised smp networks saved with
their card.json as the trainer ships them, and random images to feed them."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from explorer.data.datasets import get_dataset
from explorer.models import IMAGENET_MEAN, IMAGENET_STD


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
    import segmentation_models_pytorch as smp

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
