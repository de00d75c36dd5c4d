"""Checks of the worlds' design: colour alone must not tell the class; previews to look at.

* :func:`colour_only_miou` fits a per-pixel multinomial logistic regression on RGB (plus a
  bias) to training scenes and returns its validation mIoU.  The worlds put the class
  evidence in faint texture and draw base colours from distributions shared by all
  classes, so this number must stay far below a trained model's (at most 60 % of it).
* :func:`save_preview` writes images next to their colour-coded label maps as one PNG.
* :func:`render_times` measures rendering speed.

``python -m explorer.data.worlds.diagnostics`` prints all three for both worlds.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from explorer.data.worlds import WORLDS, _world, render_batch, render_scene
from explorer.metrics import confusion_matrix, mean_iou


def _scenes(world: str, seeds: Sequence[int], height: Optional[int], width: Optional[int], shuffle_fraction: float):

    return render_batch(world, list(seeds), height, width, shuffle_fraction=shuffle_fraction)


class _one_thread:
    """Run small tensor ops on one thread: on a shared CPU, multi-threaded ops of this size
    spend their time waiting for each other (60x slower measured on 2 busy cores)."""

    def __enter__(self):
        self.threads = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc):
        torch.set_num_threads(self.threads)


def fit_colour_classifier(images: torch.Tensor, labels: torch.Tensor, num_classes: int, *, steps: int = 300,
                          max_pixels: int = 100_000, seed: int = 0) -> torch.nn.Module:
    """Multinomial logistic regression on per-pixel RGB (a 1x1 convolution with bias),
    fitted by full-batch L-BFGS on at most ``max_pixels`` labelled pixels."""
    with _one_thread():
        return _fit(images, labels, num_classes, steps, max_pixels, seed)


def _fit(images, labels, num_classes, steps, max_pixels, seed):
    x = images.permute(0, 2, 3, 1).reshape(-1, 3).double()
    y = labels.reshape(-1)
    keep = (y >= 0) & (y < num_classes)
    x, y = x[keep], y[keep]
    g = torch.Generator().manual_seed(seed)
    if x.shape[0] > max_pixels:
        idx = torch.randperm(x.shape[0], generator=g)[:max_pixels]
        x, y = x[idx], y[idx]
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    xs = (x - mean) / std
    weight = torch.zeros(3, num_classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=steps, history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xs @ weight + bias, y)
        loss.backward()
        return loss

    opt.step(closure)
    conv = torch.nn.Conv2d(3, num_classes, 1)
    with torch.no_grad():  # fold the standardisation into the 1x1 convolution
        w = (weight / std[:, None]).T
        conv.weight.copy_(w.float()[:, :, None, None])
        conv.bias.copy_((bias - (mean[None, :] @ (weight / std[:, None]))[0]).float())
    return conv.eval()


def colour_only_miou(world: str, train_seeds: Sequence[int], val_seeds: Sequence[int], height: Optional[int] = None,
                     width: Optional[int] = None, *, train_shuffle_fraction: float = 0.0,
                     val_shuffle_fraction: float = 0.0, steps: int = 300, max_pixels: int = 100_000,
                     seed: int = 0) -> float:
    """Validation mIoU of a per-pixel RGB logistic regression fitted on ``train_seeds``.

    Dataset-level mIoU: one confusion matrix accumulated over all validation scenes,
    IoU = TP / (TP + FP + FN) per class, mean over the classes present in the labels or
    the predictions; ignored pixels (255) are left out of both fitting and scoring.
    """

    info = _world(world)
    k = info.dataset.num_classes
    images, labels = _scenes(info.name, train_seeds, height, width, train_shuffle_fraction)
    model = fit_colour_classifier(images, labels, k, steps=steps, max_pixels=max_pixels, seed=seed)
    del images, labels
    conf = torch.zeros(k, k, dtype=torch.int64)
    vals = list(val_seeds)
    with torch.no_grad(), _one_thread():
        for i in range(0, len(vals), 8):
            v_img, v_lab = _scenes(WORLDS[info.name].name, vals[i : i + 8], height, width, val_shuffle_fraction)
            conf += confusion_matrix(model(v_img).argmax(1), v_lab, k)
    return float(mean_iou(conf))


def save_preview(world: str, seeds: Sequence[int], path: str | Path, height: Optional[int] = None,
                 width: Optional[int] = None, shuffle: bool = False) -> Path:
    """One PNG: a row per seed, the image on the left, its colour-coded labels on the right."""
    from PIL import Image


    info = _world(world)
    palette = WORLDS[info.name].dataset.palette_array()
    rows = []
    for s in seeds:
        img, lab = render_scene(info.name, s, height, width, shuffle=shuffle)
        rgb = (img.permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
        rows.append(np.concatenate([rgb, palette[lab.numpy()]], axis=1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)
    return path


def render_times(world: str, seeds: Sequence[int], height: Optional[int] = None, width: Optional[int] = None) -> dict:
    """Median and max milliseconds per :func:`render_scene` call (after one warm-up call)."""

    render_scene(world, seeds[0], height, width)
    times = []
    for s in seeds:
        t = time.perf_counter()
        render_scene(world, s, height, width)
        times.append((time.perf_counter() - t) * 1e3)
    return {"median_ms": float(np.median(times)), "max_ms": float(np.max(times))}


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=40, help="training scenes for the colour-only baseline")
    parser.add_argument("--val", type=int, default=20, help="validation scenes")
    parser.add_argument("--preview", default=None, help="folder to write preview PNGs to")
    args = parser.parse_args(argv)
    sizes = {"street": (128, 256), "objects": (128, 128)}
    for world, (h, w) in sizes.items():
        miou = colour_only_miou(world, range(args.train), range(10_000, 10_000 + args.val), h, w)
        times = render_times(world, list(range(20)))
        print(f"{world}: colour-only mIoU {miou:.3f} at {h}x{w}; render at default size "
              f"{times['median_ms']:.1f} ms median, {times['max_ms']:.1f} ms max")
        if args.preview:
            for shuffle in (False, True):
                p = save_preview(world, range(4), Path(args.preview) / f"{world}{'_shuffled' if shuffle else ''}.png",
                                 shuffle=shuffle)
                print("  wrote", p)


if __name__ == "__main__":
    main()
