"""Render the shipped sample images: ``python -m explorer.tools.samples --count 8``.

Samples come from :data:`explorer.data.splits.SAMPLE_SEEDS` (no model was trained on them),
rendered at each world's training resolution, and are written with an ``index.json`` that
:mod:`explorer.data.samples` reads, by default into the package's ``explorer/data/sample_images/``
(:data:`explorer.data.samples.SAMPLES_DIR`, which ``$EXPLORER_SAMPLES_DIR`` overrides).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import List, Optional

import numpy as np
from PIL import Image

from explorer.data.samples import SAMPLES_DIR, save_label_png
from explorer.data.splits import SAMPLE_SEEDS
from explorer.data.worlds import WORLDS, render_scene


def generate(count: int, root: Optional[Path] = None) -> List[dict]:
    """Render ``count`` samples per world from :data:`SAMPLE_SEEDS` at the training resolution."""
    root = Path(root or SAMPLES_DIR)
    root.mkdir(parents=True, exist_ok=True)
    samples = []
    for world, info in WORLDS.items():
        height, width = info.train_size
        palette = info.dataset.palette_array()
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
