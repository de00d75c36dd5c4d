"""Procedural worlds: labelled scenes to train and attack segmentation models without data.

No dataset can be downloaded where the explorer is built, so its models are trained on
scenes generated here, from a seed:

* ``"street"`` (:mod:`explorer.data.worlds.street`): Cityscapes-style driving scenes, the 19
  train-id classes of :func:`explorer.data.datasets.get_dataset("cityscapes")`, with an ignored
  ego-vehicle bonnet and rectification border (255);
* ``"objects"`` (:mod:`explorer.data.worlds.objects`): Pascal-VOC-style scenes, 1–4 objects of
  the 20 VOC object classes on a cluttered background (class 0), with 255 boundary bands
  around every object, as in VOC's annotations.

Design rule: **class evidence lives in faint texture.**  Models trained on flat synthetic
scenes learn robust cues (colour, layout, wide margins) and resist perturbations of 16/255,
while real models are fooled at ℓ∞ ≈ 0.3–2/255.  So base colours are drawn from ranges
shared by all classes, and each class carries a texture signature — a faint grating of a
class-specific period, orientation and colour axis, peak 3.4–6.1/255, with a random phase
and a small jitter per region — that a small CNN can learn but that a small perturbation
can forge (:mod:`explorer.data.worlds.draw`).
Shapes stay recognisable (cars have wheels, people heads and legs), so models can use
shape too.  ``shuffle=True`` scenes keep the layout but re-assign every region's class at
random (label and texture follow, colour does not): mix them into training (about half)
so that layout alone cannot give the class away.
:func:`explorer.data.worlds.diagnostics.colour_only_miou` checks that colour alone does badly.

``render_scene(world, seed, height, width, shuffle)`` returns ``(image (3, H, W) float32 in
[0, 1], labels (H, W) int64)``, deterministic in (world, seed, size, shuffle); the same seed
gives the same layout at every size of the same aspect ratio.

For training: render at the training resolution (``WorldInfo.train_size``) and do not
resize, rotate or hue-shift the images — textures are defined in pixels, a resize changes
their periods, a rotation their orientations and a hue shift mixes their colour axes.
Flips, random crops, brightness/contrast changes and added noise are safe.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Iterable, Optional

import numpy as np
import torch

from explorer.data.datasets import DatasetInfo, get_dataset
from explorer.data.worlds import objects, street
from explorer.data.worlds.draw import SHUFFLE_DRAW, stream
from explorer.errors import InputError

MIN_SIDE = 32
MAX_SIDE = 4096


@dataclass(frozen=True)
class WorldInfo:
    """A procedural world: its name, the dataset whose classes it labels, its sizes."""

    name: str
    dataset: DatasetInfo
    default_size: tuple[int, int]
    #: the resolution the models of this world are meant to be trained and attacked at
    train_size: tuple[int, int] = (0, 0)
    description: str = ""


WORLDS: dict[str, WorldInfo] = {
    "street": WorldInfo("street", get_dataset("cityscapes"), (256, 512), (128, 256),
                        "Cityscapes-style street scenes (19 classes, bonnet and border ignored)"),
    "objects": WorldInfo("objects", get_dataset("voc"), (256, 256), (160, 160),
                         "Pascal-VOC-style object scenes (21 classes, 255 boundary bands)"),
}

def world_of_dataset(dataset_name: str) -> Optional[str]:
    """The world whose scenes are labelled with the classes of ``dataset_name`` (None if none is)."""
    return next((w.name for w in WORLDS.values() if w.dataset.name == dataset_name), None)


_RENDER = {"street": street.render, "objects": objects.render}


def _world(world) -> WorldInfo:
    if not isinstance(world, str) or world not in WORLDS:
        raise InputError(f"unknown world {world!r}; known worlds: {sorted(WORLDS)}")
    return WORLDS[world]


def _as_int(value) -> Optional[int]:
    """``value`` as an int if it is an integer (Python, numpy or 0-d integer tensor), else None."""
    if isinstance(value, (bool, np.bool_)):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def _side(value, name: str, default: int) -> int:
    if value is None:
        return default
    side = _as_int(value)
    if side is None:
        raise InputError(f"{name} must be an integer number of pixels, got {value!r}")
    if not MIN_SIDE <= side <= MAX_SIDE:
        raise InputError(f"{name} must be between {MIN_SIDE} and {MAX_SIDE} pixels, got {side}")
    return side


def _seed(seed) -> int:
    value = _as_int(seed)
    if value is None or value < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    return value


def _size(info: WorldInfo, height, width) -> tuple[int, int]:
    h = _side(height, "height", info.default_size[0])
    w = _side(width, "width", info.default_size[1])
    return h, w


def render_scene(world: str, seed: int, height: Optional[int] = None, width: Optional[int] = None,
                 shuffle: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """One scene: ``(image float32 (3, H, W) in [0, 1], labels int64 (H, W))``, 255 = ignored.

    ``height``/``width`` default to the world's ``default_size`` (any size from 32 to 4096
    pixels a side).  ``shuffle=True`` re-assigns every region's class at random (same
    geometry, colours and ignored pixels).  Deterministic in (world, seed, size, shuffle).
    """
    info = _world(world)
    s = _seed(seed)
    h, w = _size(info, height, width)
    if not isinstance(shuffle, (bool, np.bool_)):
        raise InputError(f"shuffle must be True or False, got {shuffle!r}")
    image, labels = _RENDER[info.name](s, h, w, bool(shuffle))
    return torch.from_numpy(image), torch.from_numpy(labels)


def render_batch(world: str, seeds: Iterable[int], height: Optional[int] = None, width: Optional[int] = None,
                 shuffle_fraction: float = 0.0, shuffle_seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Scenes of ``seeds`` stacked: ``(images (N, 3, H, W), labels (N, H, W))``.

    Each scene is shuffled when a uniform draw seeded by ``(shuffle_seed, seed)`` falls
    below ``shuffle_fraction`` (so the same call always gives the same batch).
    """
    info = _world(world)
    h, w = _size(info, height, width)
    if _as_int(seeds) is not None or isinstance(seeds, (str, bytes)):
        raise InputError(f"seeds must be a sequence of non-negative integers, got {seeds!r}")
    try:
        seed_list = [_seed(s) for s in seeds]
    except TypeError:
        raise InputError(f"seeds must be a sequence of non-negative integers, got {seeds!r}") from None
    if not seed_list:
        raise InputError("seeds is empty; give at least one seed")
    if isinstance(shuffle_fraction, bool) or not isinstance(shuffle_fraction, (int, float, np.floating, np.integer)) \
            or not 0.0 <= float(shuffle_fraction) <= 1.0:
        raise InputError(f"shuffle_fraction must be a number in [0, 1], got {shuffle_fraction!r}")
    sseed = _seed(shuffle_seed)
    images = torch.empty((len(seed_list), 3, h, w), dtype=torch.float32)
    labels = torch.empty((len(seed_list), h, w), dtype=torch.int64)
    for i, s in enumerate(seed_list):
        shuffle = bool(stream(info.name, s, SHUFFLE_DRAW, sseed).random() < float(shuffle_fraction))
        image, lab = _RENDER[info.name](s, h, w, shuffle)
        images[i] = torch.from_numpy(image)
        labels[i] = torch.from_numpy(lab)
    return images, labels


__all__ = ["WORLDS", "WorldInfo", "render_scene", "render_batch", "world_of_dataset"]
