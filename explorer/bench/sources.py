"""Where the benchmark's images come from, and the labels each attack mode aims at.

An image source is named on the command line by one of

* ``samples`` — the shipped sample images of the model's world (``sample_images/``);
* ``seeds:A-B`` — procedural scenes of the model's world, seeds ``A`` to ``B`` inclusive,
  rendered at the world's training resolution (pick seeds outside
  :func:`explorer.splits.training_seeds`, e.g. the validation seeds 10000-10199);
* a folder path ``DIR`` holding ``DIR/images/<name>.<png|jpg|jpeg>`` and
  ``DIR/labels/<name>.png`` — label maps whose pixel values are the model's class ids
  (255 = ignored), as palette or grey PNGs.  Cityscapes users convert ``gtFine`` label ids
  to train ids first.

Every image gets a stable id (``samples/street_000``, ``seeds/10003``, ``folder/<name>``)
that keys its results in the JSONL file.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from explorer.errors import InputError

#: the procedural world whose labels use a dataset's classes
WORLD_OF_DATASET = {"cityscapes": "street", "voc": "objects"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class ImageSource:
    """An ordered list of image ids, their sizes, and a loader for a subset of them."""

    spec: str
    ids: Tuple[str, ...]
    sizes: Tuple[Tuple[int, int], ...]
    _load: Callable[[Sequence[str]], Tuple[Tensor, Tensor]]

    def load(self, ids: Sequence[str]) -> Tuple[Tensor, Tensor]:
        """Images (N,3,H,W) float in [0,1] and labels (N,H,W) int64 of ``ids`` (same size)."""
        return self._load(ids)


def world_of(model) -> str:
    """The procedural world labelled with the model's classes."""
    try:
        return WORLD_OF_DATASET[model.dataset.name]
    except KeyError:
        raise InputError(f"model {getattr(model, 'name', '?')} uses {model.dataset.name} classes, which no "
                         f"procedural world or sample set has: benchmark it on a folder of images") from None


def open_source(spec: str, model, limit: int | None = None) -> ImageSource:
    """The image source named by ``spec`` (module docstring) for ``model``, first ``limit`` images."""
    if spec == "samples":
        source = _samples_source(world_of(model))
    elif spec.startswith("seeds:"):
        source = _seeds_source(spec, world_of(model))
    elif Path(spec).is_dir():
        source = _folder_source(Path(spec))
    else:
        raise InputError(f"unknown image source {spec!r}: use 'samples', 'seeds:A-B' or a folder with "
                         "images/ and labels/")
    if limit is not None:
        source = ImageSource(source.spec, source.ids[:limit], source.sizes[:limit], source._load)
    if not source.ids:
        raise InputError(f"image source {spec!r} holds no image")
    return source


def _samples_source(world: str) -> ImageSource:
    from explorer.samples import SAMPLES_DIR, list_samples, load_sample

    names = list_samples(world)
    sizes = []
    for n in names:  # from the PNG header: the pixels are read once, when a batch runs
        with Image.open(SAMPLES_DIR / f"{n}.png") as im:
            sizes.append((im.size[1], im.size[0]))

    def load(ids):
        loaded = [load_sample(i.split("/", 1)[1]) for i in ids]
        return torch.stack([x for x, _, _ in loaded]), torch.stack([y for _, y, _ in loaded])

    return ImageSource("samples", tuple(f"samples/{n}" for n in names), tuple(sizes), load)


def _seeds_source(spec: str, world: str) -> ImageSource:
    from explorer.worlds import WORLDS, render_batch

    match = re.fullmatch(r"seeds:(\d+)-(\d+)", spec)
    if not match or int(match[1]) > int(match[2]):
        raise InputError(f"bad seed range {spec!r}: write seeds:A-B with A <= B, e.g. seeds:10000-10099")
    first, last = int(match[1]), int(match[2])
    size = WORLDS[world].train_size

    def load(ids):
        x, y = render_batch(world, [int(i.split("/", 1)[1]) for i in ids], size[0], size[1])
        return (x * 255).round() / 255, y  # 8-bit, like the shipped samples

    ids = tuple(f"seeds/{s}" for s in range(first, last + 1))
    return ImageSource(spec, ids, (tuple(size),) * len(ids), load)


def _folder_source(root: Path) -> ImageSource:
    from explorer.samples import read_label_png

    images_dir, labels_dir = root / "images", root / "labels"
    if not images_dir.is_dir() or not labels_dir.is_dir():
        raise InputError(f"{root} must hold images/ and labels/ folders")
    paths = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    pairs: List[Tuple[Path, Path]] = []
    for p in paths:
        label = labels_dir / f"{p.stem}.png"
        if not label.is_file():
            raise InputError(f"{p.name} has no label map {label}")
        pairs.append((p, label))
    by_id = {f"folder/{p.stem}": pair for pair, p in zip(pairs, paths)}
    sizes = []
    for image_path, label_path in pairs:
        with Image.open(image_path) as im, Image.open(label_path) as lab:
            if im.size != lab.size:
                raise InputError(f"{image_path.name} is {im.size[0]}x{im.size[1]} but its label map is "
                                 f"{lab.size[0]}x{lab.size[1]}")
            sizes.append((im.size[1], im.size[0]))

    def load(ids):
        xs, ys = [], []
        for i in ids:
            image_path, label_path = by_id[i]
            with Image.open(image_path) as im:
                array = np.asarray(im.convert("RGB"), dtype=np.float32) / 255
            xs.append(torch.from_numpy(array).permute(2, 0, 1))
            ys.append(read_label_png(label_path))
        return torch.stack(xs), torch.stack(ys)

    return ImageSource(str(root), tuple(by_id), tuple(sizes), load)


def attack_labels(model, labels: Tensor, mode: str) -> Tensor:
    """The labels an attack is given: the ground truth (untargeted), or seed 001's targets.

    Targeted follows seed 001 §6: the background class for datasets that have one (VOC),
    otherwise the smoothed majority-label street layout (Cityscapes), resized to the labels.
    """
    from explorer.live import MAJORITY_TARGET_PNG
    from explorer.samples import read_label_png
    from explorer.targets import background_target, resize_label_map

    if mode == "untargeted":
        return labels
    dataset = model.dataset
    if dataset.background_class is not None:
        return background_target(labels, dataset.background_class, num_classes=dataset.num_classes)
    if dataset.name == "cityscapes":
        layout = read_label_png(MAJORITY_TARGET_PNG)
        return resize_label_map(layout, labels.shape[-2:]).expand_as(labels).to(labels.device)
    raise InputError(f"no targeted setting for {dataset.name} classes (no background class, no layout)")
