"""Class names and colour palettes of the datasets the explorer speaks.

* ``cityscapes``: the 19 train-id classes of Cityscapes (Cordts et al. 2016) with the
  official colours; 255 is ignored (void, ego vehicle, rectification border, ...).
* ``voc``: the 21 classes of Pascal VOC 2012 (background = 0) with the official colour
  map; 255 is ignored (the boundary bands around objects).

The procedural worlds (:mod:`explorer.data.worlds`) and every model (:mod:`explorer.models`)
use these, so a street model and a Cityscapes checkpoint draw the same colours.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from explorer.errors import InputError
from explorer.targets import IGNORE_INDEX  # noqa: F401  (one value of "ignored", defined with the target maps)

CITYSCAPES_CLASSES: Tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)
CITYSCAPES_PALETTE: Tuple[Tuple[int, int, int], ...] = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32),
)

VOC_CLASSES: Tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)


def _voc_colour(index: int) -> Tuple[int, int, int]:
    """Pascal VOC colour of class ``index`` (the bit-interleaving rule of the VOC devkit)."""
    r = g = b = 0
    for shift in range(8):
        r |= ((index >> 0) & 1) << (7 - shift)
        g |= ((index >> 1) & 1) << (7 - shift)
        b |= ((index >> 2) & 1) << (7 - shift)
        index >>= 3
    return r, g, b


VOC_PALETTE: Tuple[Tuple[int, int, int], ...] = tuple(_voc_colour(i) for i in range(len(VOC_CLASSES)))
#: colour drawn for ignored pixels in both datasets' visualisations (VOC's boundary colour)
IGNORE_COLOUR: Tuple[int, int, int] = (224, 224, 192)


@dataclass(frozen=True)
class DatasetInfo:
    """What a label map means: class names, colours, ignore index, background class."""

    name: str
    class_names: Tuple[str, ...]
    palette: Tuple[Tuple[int, int, int], ...]
    ignore_index: int = IGNORE_INDEX
    background_class: Optional[int] = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def palette_array(self) -> np.ndarray:
        """(256, 3) uint8 lookup table: class colours, the ignore colour, black elsewhere."""
        table = np.zeros((256, 3), dtype=np.uint8)
        table[: self.num_classes] = np.asarray(self.palette, dtype=np.uint8)
        table[self.ignore_index] = IGNORE_COLOUR
        return table


DATASETS = {
    "cityscapes": DatasetInfo("cityscapes", CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, background_class=None),
    "voc": DatasetInfo("voc", VOC_CLASSES, VOC_PALETTE, background_class=0),
}


def get_dataset(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` called ``name`` (``"cityscapes"`` or ``"voc"``)."""

    try:
        return DATASETS[name]
    except KeyError:
        raise InputError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}") from None
