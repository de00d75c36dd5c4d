"""Core speed check: ALMA prox time over the model's own forward+backward time.

ALMA prox spends one forward and one backward propagation per iteration; everything else
(DLR constraints, adaptive masking, penalty, metric, proximity operator) is overhead.
This script measures, in one run and on the same inputs,

* ``plain``: ``num_steps`` forward+backward passes of the model (gradient w.r.t. the input),
* ``alma``: ``alma_prox`` with ``num_steps`` iterations, once with each prox solver
  (seed 001's ``ternary`` search, the default, and the ``histogram`` bracketing),
* ``prox``: ``num_steps`` calls of the proximity operator alone, with each solver,

and prints ``alma / plain`` (goal: <= 1.05).  The plain passes are timed before and after
the attack and averaged, so drift of the machine's speed shows in the spread.

Usage::

    python -m explorer.bench.speed                       # FPN MobileNetV2, 19 classes, 256x512
    python -m explorer.bench.speed --arch segformer-b0 --height 512 --width 1024 --steps 20

The models have random weights (``encoder_weights=None``): speed does not depend on them.
"""
from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from explorer.attacks import alma_prox
from explorer.models import SegmentationModel
from explorer.prox import PROX_SOLVERS
from explorer.train import ARCHITECTURES, build_network

def build_model(arch: str, dataset: str) -> nn.Module:
    """A randomly initialised network of the trainer's architectures, wrapped like a shipped model."""
    from explorer.datasets import get_dataset

    info = get_dataset(dataset)
    return SegmentationModel(build_network(arch, info.num_classes), info, name=f"random-{arch}").eval()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_plain(model: nn.Module, images: torch.Tensor, num_steps: int) -> float:
    """Seconds for ``num_steps`` forward+backward passes (gradient w.r.t. the input)."""
    _sync(images.device)
    start = time.perf_counter()
    for _ in range(num_steps):
        x = images.clone().requires_grad_(True)
        torch.autograd.grad(model(x).sum(), x)
    _sync(images.device)
    return time.perf_counter() - start


def time_prox(images: torch.Tensor, num_steps: int, solver: str = "ternary") -> float:
    """Seconds for ``num_steps`` proximity operators on perturbations of the images' size."""
    g = torch.Generator(device=images.device).manual_seed(0)
    delta = torch.randn(images.shape, generator=g, device=images.device) * 2e-3
    metric = torch.rand(images.shape, generator=g, device=images.device) + 0.1
    lam = torch.full((len(images),), 1e-3, device=images.device)
    _sync(images.device)
    start = time.perf_counter()
    for _ in range(num_steps):
        PROX_SOLVERS[solver](delta, lam, -images, 1 - images, metric=metric)
    _sync(images.device)
    return time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="explorer-bench speed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", choices=sorted(ARCHITECTURES), default="fpn-mobilenet")
    parser.add_argument("--dataset", choices=["cityscapes", "voc"], default="cityscapes")
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    model = build_model(args.arch, args.dataset).to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    images = torch.rand(args.batch, 3, args.height, args.width, device=device)
    with torch.no_grad():
        labels = model(images).argmax(1)

    time_plain(model, images, 3)  # warm-up
    plain_before = time_plain(model, images, args.steps)
    results = {solver: alma_prox(model, images, labels, num_steps=args.steps, prox_solver=solver)
               for solver in PROX_SOLVERS}
    plain_after = time_plain(model, images, args.steps)
    prox = {solver: time_prox(images, args.steps, solver) for solver in PROX_SOLVERS}
    plain = (plain_before + plain_after) / 2

    print(f"model {args.arch}, {model.num_classes} classes, batch {args.batch} x 3 x {args.height} x {args.width}, "
          f"{args.steps} steps, device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"plain forward+backward: {plain:8.3f} s  (before {plain_before:.3f}, after {plain_after:.3f})")
    for solver, r in results.items():
        print(f"ALMA prox ({solver:9s}): {r.elapsed_s:8.3f} s  (forwards {int(r.num_forwards[0])}, "
              f"backwards {int(r.num_backwards[0])})")
    for solver, seconds in prox.items():
        print(f"prox alone ({solver:9s}): {seconds:7.3f} s")
    for solver, r in results.items():
        print(f"ratio ALMA prox ({solver}) / plain = {r.elapsed_s / plain:.3f}   (goal <= 1.05)")
    for solver, seconds in prox.items():
        print(f"ratio prox ({solver}) / plain      = {seconds / plain:.3f}")


if __name__ == "__main__":
    main()
