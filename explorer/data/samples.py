"""The shipped sample images: procedural scenes with ground-truth label maps.

``explorer/data/sample_images/`` (package data: a wheel installs it) holds, per sample,
``<name>.png`` (the RGB image) and ``<name>_labels.png`` (a palette PNG whose pixel values
are the class ids, 255 = ignored), plus ``index.json`` listing names, worlds and seeds, and
the majority-label street target.  Samples come from
:data:`explorer.data.splits.SAMPLE_SEEDS`, which no model was trained on.

    >>> from explorer.data.samples import list_samples, load_sample
    >>> image, labels, world = load_sample(list_samples("street")[0])

Regenerate them with ``python -m explorer.tools.samples --count 8``.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch
from PIL import Image

from explorer.data.resources import package_folder
from explorer.errors import InputError
from explorer.targets import background_target, resize_label_map

#: the environment variable naming another samples folder (read once, at import)
SAMPLES_DIR_VARIABLE = "EXPLORER_SAMPLES_DIR"
#: the samples shipped inside the package, read through importlib.resources
SHIPPED_SAMPLES_DIR = package_folder("explorer.data", "sample_images")
#: Folder of the samples: ``$EXPLORER_SAMPLES_DIR`` if set, else :data:`SHIPPED_SAMPLES_DIR`.
SAMPLES_DIR = Path(os.environ.get(SAMPLES_DIR_VARIABLE) or SHIPPED_SAMPLES_DIR).expanduser()
#: the smoothed majority-label street layout (made by ``python -m explorer.tools.majority``)
MAJORITY_TARGET_NAME = "street_majority_target.png"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _index(root: Optional[Path] = None) -> dict:
    root = Path(root or SAMPLES_DIR)
    path = root / "index.json"
    if not path.is_file():
        raise InputError(f"no sample index at {path}; regenerate the samples with `python -m explorer.tools.samples`")
    return json.loads(path.read_text())


def read_label_png(path: Path) -> torch.Tensor:
    """Read a label PNG (palette or grey) as an (H, W) int64 map of its pixel values."""
    return torch.from_numpy(np.asarray(Image.open(path), dtype=np.int64))


def majority_target_path(root: Optional[Path] = None) -> Path:
    """Where the majority-label street target lives: in the samples folder (``EXPLORER_SAMPLES_DIR``)."""
    return Path(root or SAMPLES_DIR) / MAJORITY_TARGET_NAME


def load_majority_target(root: Optional[Path] = None) -> torch.Tensor:
    """The smoothed majority-label street layout ([Rony2023] §5.4), (H, W) int64 Cityscapes ids."""
    path = majority_target_path(root)
    if not path.is_file():
        raise InputError(f"no majority target at {path}; make it with `python -m explorer.tools.majority`")
    return read_label_png(path)


def paper_target(labels: torch.Tensor, dataset) -> torch.Tensor:
    """The targeted setting of [Rony2023] §6 for label maps ``labels`` (N, H, W) of ``dataset``:
    the background class for datasets that have one (VOC), otherwise the smoothed
    majority-label street layout (Cityscapes) resized to the labels.  Pixels ignored in
    ``labels`` stay ignored in a background target."""
    if dataset.background_class is not None:
        return background_target(labels, dataset.background_class, num_classes=dataset.num_classes)
    if dataset.name != "cityscapes":
        raise InputError(f"no targeted setting for {dataset.name} classes (no background class, no layout)")
    layout = resize_label_map(load_majority_target(), labels.shape[-2:])
    return layout.to(labels.device).expand_as(labels).clone()


def list_samples(world: Optional[str] = None, root: Optional[Path] = None) -> List[str]:
    """Names of the shipped samples, optionally only those of one world ("street" or "objects")."""
    samples = _index(root)["samples"]
    return [s["name"] for s in samples if world is None or s["world"] == world]


def load_sample(name: str, root: Optional[Path] = None) -> Tuple[torch.Tensor, torch.Tensor, str]:
    """Load a sample: image float (3,H,W) in [0,1], labels int64 (H,W) with 255 ignored, world name."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise InputError(f"invalid sample name {repr(name)[:60]}")
    root = Path(root or SAMPLES_DIR)
    entries = {s["name"]: s for s in _index(root)["samples"]}
    if name not in entries:
        raise InputError(f"unknown sample {repr(name)[:60]}; available: {sorted(entries)}")
    image = np.asarray(Image.open(root / f"{name}.png").convert("RGB"), dtype=np.float32) / 255
    labels = read_label_png(root / f"{name}_labels.png")
    return torch.from_numpy(image).permute(2, 0, 1).contiguous(), labels, entries[name]["world"]


def save_label_png(labels: np.ndarray, path: Path, palette: np.ndarray) -> None:
    """Write a label map as a palette PNG: pixel values are class ids, colours the dataset's."""
    image = Image.fromarray(np.asarray(labels, dtype=np.uint8), mode="P")
    image.putpalette(palette.reshape(-1).tolist())
    image.save(path, optimize=True)
