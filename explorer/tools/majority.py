"""Compute the smoothed majority-label target ([Rony2023] §5.4, App. E) and save it as a PNG.

Two sources of label maps:

* the procedural street world (default): the label maps of the street *training* scenes,
  rendered unshuffled (the world's natural layout; shuffled scenes exist only to make the
  models rely on texture and would blur the layout);
* real Cityscapes, for users who have it: every ``gtFine/train/*/*_gtFine_labelTrainIds.png``
  under ``--cityscapes-root`` (or ``*_gtFine_labelIds.png``, mapped to train ids).

Usage::

    python -m explorer.tools.majority    # -> explorer/data/sample_images/street_majority_target.png
    python -m explorer.tools.majority --cityscapes-root /data/cityscapes --out cityscapes_majority.png

The default output is the samples folder (:data:`explorer.data.samples.SAMPLES_DIR`: the
package's ``sample_images`` in a checkout, or ``$EXPLORER_SAMPLES_DIR``).

Both call :func:`explorer.targets.majority_label_target`: per-pixel vote (the ignore
label votes too, so the bonnet and borders stay ignored), then a Gaussian smoothing of
the vote fractions that removes high spatial frequencies while keeping the layout.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Iterator, Optional, Tuple

import numpy as np
import torch
from PIL import Image

from explorer.data.datasets import get_dataset
from explorer.data.samples import majority_target_path, save_label_png
from explorer.data.splits import training_seeds
from explorer.data.worlds import WORLDS, render_scene
from explorer.errors import InputError
from explorer.targets import majority_label_target

#: Cityscapes label id -> train id (cityscapesScripts ``labels.py``); everything else -> 255.
CITYSCAPES_ID_TO_TRAIN_ID = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
                             24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
DEFAULT_OUT = majority_target_path()


def cityscapes_train_labels(root: Path) -> Iterator[np.ndarray]:
    """Yield the train-id label maps of Cityscapes ``gtFine/train`` under ``root``."""
    train_ids = sorted((root / "gtFine" / "train").glob("*/*_gtFine_labelTrainIds.png"))
    if train_ids:
        for path in train_ids:
            yield np.asarray(Image.open(path), dtype=np.int64)
        return
    label_ids = sorted((root / "gtFine" / "train").glob("*/*_gtFine_labelIds.png"))
    if not label_ids:
        raise InputError(f"no gtFine train label maps under {root}/gtFine/train/*/")
    lut = np.full(256, 255, dtype=np.int64)
    for label_id, train_id in CITYSCAPES_ID_TO_TRAIN_ID.items():
        lut[label_id] = train_id
    for path in label_ids:
        yield lut[np.asarray(Image.open(path), dtype=np.uint8)]


def street_training_labels(count: int, size: Tuple[int, int]) -> Iterator[torch.Tensor]:
    """Yield the label maps of ``count`` street training scenes (unshuffled)."""
    for seed in training_seeds(count):
        yield render_scene("street", seed, size[0], size[1])[1]


def compute_street_target(count: int = 400, size: Optional[Tuple[int, int]] = None,
                          smoothing: float = 0.04) -> torch.Tensor:
    """The smoothed majority-label target of the procedural street world, (H, W) int64."""
    size = size or WORLDS["street"].train_size
    return majority_label_target(street_training_labels(count, size), num_classes=19, smoothing=smoothing)


def save_target(target: torch.Tensor, path: Path) -> None:
    """Save a Cityscapes-class target map as a palette PNG (values are train ids)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_label_png(target.numpy(), path, get_dataset("cityscapes").palette_array())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Compute the smoothed majority-label target.")
    parser.add_argument("--cityscapes-root", type=Path, default=None,
                        help="Cityscapes root holding gtFine/train (default: use the procedural street world)")
    parser.add_argument("--count", type=int, default=400, help="street training scenes to vote over")
    parser.add_argument("--smoothing", type=float, default=0.04,
                        help="Gaussian sigma as a fraction of min(H, W)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.cityscapes_root is not None:
        target = majority_label_target(cityscapes_train_labels(args.cityscapes_root), num_classes=19,
                                       smoothing=args.smoothing)
        out = args.out or Path("cityscapes_majority_target.png")
    else:
        target = compute_street_target(args.count, smoothing=args.smoothing)
        out = args.out or DEFAULT_OUT
    save_target(target, out)
    labelled = target[target < 19]
    shares = torch.bincount(labelled, minlength=19).float() / max(labelled.numel(), 1)
    names = get_dataset("cityscapes").class_names
    summary = ", ".join(f"{names[i]} {shares[i]:.0%}" for i in shares.argsort(descending=True)[:6] if shares[i] > 0)
    print(f"wrote {out} ({target.shape[0]}x{target.shape[1]}); labelled-pixel shares: {summary}")


if __name__ == "__main__":
    main()
