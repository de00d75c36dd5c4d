"""Core speed check: ALMA prox time over the model's own forward+backward time.

ALMA prox spends one forward and one backward propagation per iteration; everything else
(DLR constraints, adaptive masking, penalty, metric, proximity operator) is overhead.
This script measures, in one run and on the same inputs,

* ``plain``: ``num_steps`` forward+backward passes of the model (gradient w.r.t. the input),
* ``alma``: ``alma_prox`` with ``num_steps`` iterations, once with each prox solver
  ([Rony2023]'s ``ternary`` search, the default, and the ``histogram`` bracketing),
* ``prox``: ``num_steps`` calls of the proximity operator alone, with each solver,

and prints ``alma / plain`` (goal: <= 1.05).  The three are timed in interleaved rounds and
each keeps its fastest round, so a disturbance of the machine during one measurement does
not decide a ratio; every round's time is printed.

Usage::

    explorer-bench speed                       # FPN MobileNetV2, 19 classes, 256x512
    explorer-bench speed --arch segformer-b0 --height 512 --width 1024 --steps 20

(``python -m explorer.bench speed`` from a checkout without the console scripts.)

The models have random weights (``encoder_weights=None``): speed does not depend on them.
"""
from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from explorer.attacks import alma_prox
from explorer.attacks.prox import PROX_SOLVERS
from explorer.bench import checks
from explorer.data.datasets import get_dataset
from explorer.errors import InputError
from explorer.models import SegmentationModel
from explorer.models.architectures import ARCHITECTURES, build_network
from explorer.models.loaders import finish


def build_model(arch: str, dataset: str) -> nn.Module:
    """A randomly initialised network of the trainer's architectures, wrapped like a shipped model."""
    info = get_dataset(dataset)
    return finish(SegmentationModel(build_network(arch, info.num_classes), info, name=f"random-{arch}"))


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


#: the largest batch (pixels, all images together) the speed check allocates
MAX_PIXELS = 2 ** 28


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1 (sizes, steps, rounds)."""
    try:
        return checks.positive_int(text, "")
    except InputError as error:
        raise argparse.ArgumentTypeError(str(error).strip()) from None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="explorer-bench speed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", choices=sorted(ARCHITECTURES), default="fpn-mobilenet")
    parser.add_argument("--dataset", choices=["cityscapes", "voc"], default="cityscapes")
    parser.add_argument("--height", type=positive_int, default=256)
    parser.add_argument("--width", type=positive_int, default=512)
    parser.add_argument("--batch", type=positive_int, default=1)
    parser.add_argument("--steps", type=positive_int, default=50)
    parser.add_argument("--device", type=checks.argument(checks.device),
                        default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=checks.argument(checks.seed), default=0)
    parser.add_argument("--rounds", type=positive_int, default=3, help="interleaved timing rounds (fastest kept)")
    parser.add_argument("--threads", type=checks.argument(checks.threads), default=None,
                        help="torch CPU threads (>= 1)")
    args = parser.parse_args(argv)
    if args.batch * args.height * args.width > MAX_PIXELS:
        parser.error(f"--batch x --height x --width is {args.batch * args.height * args.width} pixels; "
                     f"the speed check allows at most {MAX_PIXELS}")
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    model = build_model(args.arch, args.dataset).to(device)
    images = torch.rand(args.batch, 3, args.height, args.width, device=device)
    with torch.no_grad():
        labels = model(images).argmax(1)

    time_plain(model, images, 3)  # warm-up
    # Interleaved rounds; each quantity keeps its fastest round (the least disturbed by the
    # rest of the machine), so the ratios compare like with like.
    plain, alma, prox, counts = [], {s: [] for s in PROX_SOLVERS}, {s: [] for s in PROX_SOLVERS}, {}
    for _ in range(args.rounds):
        plain.append(time_plain(model, images, args.steps))
        for solver in PROX_SOLVERS:
            result = alma_prox(model, images, labels, num_steps=args.steps, prox_solver=solver)
            alma[solver].append(result.elapsed_s)
            counts[solver] = (int(result.num_forwards[0]), int(result.num_backwards[0]))
            prox[solver].append(time_prox(images, args.steps, solver))
    plain_s = min(plain)

    print(f"model {args.arch}, {model.num_classes} classes, batch {args.batch} x 3 x {args.height} x {args.width}, "
          f"{args.steps} steps, device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"fastest of {args.rounds} interleaved rounds")
    print(f"plain forward+backward: {plain_s:8.3f} s  (rounds: {', '.join(f'{t:.3f}' for t in plain)})")
    for solver, times in alma.items():
        forwards, backwards = counts[solver]
        print(f"ALMA prox ({solver:9s}): {min(times):8.3f} s  (forwards {forwards}, backwards {backwards}; "
              f"rounds: {', '.join(f'{t:.3f}' for t in times)})")
    for solver, times in prox.items():
        print(f"prox alone ({solver:9s}): {min(times):7.3f} s")
    for solver, times in alma.items():
        print(f"ratio ALMA prox ({solver}) / plain = {min(times) / plain_s:.3f}   (goal <= 1.05)")
    for solver, times in prox.items():
        print(f"ratio prox ({solver}) / plain      = {min(times) / plain_s:.3f}")

if __name__ == "__main__":
    main()
