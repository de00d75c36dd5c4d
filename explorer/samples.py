"""The shipped sample images: procedural scenes with ground-truth label maps.

``sample_images/`` (at the repository root) holds, per sample, ``<name>.png`` (the RGB
image) and ``<name>_labels.png`` (a palette PNG whose pixel values are the class ids,
255 = ignored), plus ``index.json`` listing names, worlds and seeds.  Samples come from
:data:`explorer.splits.SAMPLE_SEEDS`, which no model was trained on.

    >>> from explorer.samples import list_samples, load_sample
    >>> image, labels, world = load_sample(list_samples("street")[0])

Regenerate them with ``python -m explorer.samples --count 8``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch
from PIL import Image

from explorer.errors import InputError

#: Folder of the samples; ``EXPLORER_SAMPLES_DIR`` overrides it.
SAMPLES_DIR = Path(os.environ.get("EXPLORER_SAMPLES_DIR", Path(__file__).resolve().parent.parent / "sample_images"))
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _index(root: Optional[Path] = None) -> dict:
    root = Path(root or SAMPLES_DIR)
    path = root / "index.json"
    if not path.is_file():
        raise InputError(f"no sample index at {path}; regenerate the samples with `python -m explorer.samples`")
    return json.loads(path.read_text())


def read_label_png(path: Path) -> torch.Tensor:
    """Read a label PNG (palette or grey) as an (H, W) int64 map of its pixel values."""
    return torch.from_numpy(np.asarray(Image.open(path), dtype=np.int64))


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


def generate(count: int, root: Optional[Path] = None) -> List[dict]:
    """Render ``count`` samples per world from :data:`SAMPLE_SEEDS` at the training resolution."""
    from explorer.splits import SAMPLE_SEEDS
    from explorer.train import TRAIN_SIZE
    from explorer.worlds import WORLDS, render_scene

    root = Path(root or SAMPLES_DIR)
    root.mkdir(parents=True, exist_ok=True)
    samples = []
    for world, (height, width) in TRAIN_SIZE.items():
        palette = WORLDS[world].dataset.palette_array()
        for seed in list(SAMPLE_SEEDS)[:count]:
            image, labels = render_scene(world, seed, height, width)
            name = f"{world}-{seed:03d}"
            rgb = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            Image.fromarray(rgb).save(root / f"{name}.png", optimize=True)
            save_label_png(labels.numpy(), root / f"{name}_labels.png", palette)
            samples.append({"name": name, "world": world, "seed": seed, "height": height, "width": width})
    (root / "index.json").write_text(json.dumps({"samples": samples}, indent=1) + "\n")
    return samples


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Render the shipped sample images.")
    parser.add_argument("--count", type=int, default=8, help="samples per world")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    samples = generate(args.count, args.out)
    print(f"wrote {len(samples)} samples to {args.out or SAMPLES_DIR}")


if __name__ == "__main__":
    main()
