"""Speed and memory check: each attack's time and peak memory over the model's own.

A first-order attack's floor is its model calls.  This command measures, in one run and on
the same inputs,

* the model alone: a forward+backward pass (gradient w.r.t. the input) and a forward pass
  without gradients, each timed over ``--steps`` passes;
* every attack of ``--attacks`` with ``num_steps = --steps`` (fixed-budget attacks at
  ``--eps``/255), and ALMA prox once more with the histogram prox solver;
* the proximity operator alone, with each solver;

and prints, per attack, ``time / floor`` where the floor is the time of the model calls the
attack counted (``backwards`` forward+backward passes plus ``forwards − backwards`` plain
forwards; goal for ALMA prox: <= 1.05) — from the fastest rounds of each, and ``paired``: the
median over rounds of the attack's time over a floor priced by forward+backward passes timed
just before it (on a machine whose load changes, the two measurements of a pair see the same
load) — and ``CPU / floor``, the same ratio in processor time (``time.process_time``: the
time the process's threads ran, which other jobs taking cores barely change; with one thread
on an idle machine it equals the wall-clock ratio) — and ``peak / model's peak``: the attack's
peak memory over one forward+backward pass's (goal <= 1.2).  Peak memory is the increase over the
memory in use before the call: on CUDA ``torch.cuda.max_memory_allocated``; on the CPU the
process's peak resident set (Linux ``VmHWM``, reset through ``/proc/self/clear_refs`` after
``malloc_trim``), so it counts what the allocator really took from the system.

Timings are interleaved rounds, each quantity keeping its fastest round, so a disturbance of
the machine during one measurement does not decide a ratio; every round's time is printed.

Usage::

    explorer-bench speed                       # FPN MobileNetV2, 19 classes, 256x512, every attack
    explorer-bench speed --arch segformer-b0 --height 1024 --width 2048 --steps 5 --rounds 1
    explorer-bench speed --attacks alma_prox,dag --steps 20

(``python -m explorer.bench speed`` from a checkout without the console scripts.)

The models have random weights (``encoder_weights=None``): speed does not depend on them.
"""
from __future__ import annotations

import argparse
import ctypes
import functools
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, NamedTuple, Optional, Tuple

import torch
from torch import nn

from explorer.attacks.prox import PROX_SOLVERS
from explorer.attacks.registry import ATTACKS, get_attack
from explorer.bench import checks
from explorer.data.datasets import get_dataset
from explorer.errors import InputError
from explorer.models import SegmentationModel
from explorer.models.architectures import ARCHITECTURES, build_network
from explorer.models.loaders import finish

#: the attacks timed by default: every attack with a per-iteration loop of its own (the
#: bisection attacks repeat I-FGSM/PGD's loop, which ``pgd`` already times)
DEFAULT_ATTACKS = ("alma_prox", "dag", "fmn", "pdpgd", "pgd", "segpgd", "cospgd", "apgd", "tsallis_pgd", "sea")


def build_model(arch: str, dataset: str) -> nn.Module:
    """A randomly initialised network of the trainer's architectures, wrapped like a shipped model."""
    info = get_dataset(dataset)
    return finish(SegmentationModel(build_network(arch, info.num_classes), info, name=f"random-{arch}"))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Seconds(NamedTuple):
    """A call's duration: wall-clock and processor time (all the process's threads)."""

    wall: float
    cpu: float


def timed(call: Callable[[], object], device: torch.device) -> Tuple[object, Seconds]:
    """``call()``'s value and :class:`Seconds` (the device synchronised before and after)."""
    _sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    value = call()
    _sync(device)
    return value, Seconds(time.perf_counter() - wall, time.process_time() - cpu)


def time_plain(model: nn.Module, images: torch.Tensor, num_steps: int) -> Seconds:
    """Time of ``num_steps`` forward+backward passes (gradient w.r.t. the input)."""
    def passes():
        for _ in range(num_steps):
            x = images.clone().requires_grad_(True)
            torch.autograd.grad(model(x).sum(), x)

    return timed(passes, images.device)[1]


def time_forward(model: nn.Module, images: torch.Tensor, num_steps: int) -> Seconds:
    """Time of ``num_steps`` forward passes without gradients."""
    def passes():
        with torch.no_grad():
            for _ in range(num_steps):
                model(images)

    return timed(passes, images.device)[1]


def time_prox(images: torch.Tensor, num_steps: int, solver: str = "ternary") -> Seconds:
    """Time of ``num_steps`` proximity operators on perturbations of the images' size."""
    g = torch.Generator(device=images.device).manual_seed(0)
    delta = torch.randn(images.shape, generator=g, device=images.device) * 2e-3
    metric = torch.rand(images.shape, generator=g, device=images.device) + 0.1
    lam = torch.full((len(images),), 1e-3, device=images.device)

    def calls():
        for _ in range(num_steps):
            PROX_SOLVERS[solver](delta, lam, -images, 1 - images, metric=metric)

    return timed(calls, images.device)[1]


# ----------------------------------------------------------------------------------------
# Peak memory of a call
# ----------------------------------------------------------------------------------------

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field_name: str) -> int:
    return int(re.search(rf"{field_name}:\s+(\d+) kB", _STATUS.read_text()).group(1))


def _trim_heap() -> None:
    """Give the C heap's free memory back to the system (glibc), so that memory freed by an
    earlier call is not silently reused by the next one and hidden from its peak."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def cpu_peak_supported() -> bool:
    """Whether this system can reset and read the process's peak resident set (Linux >= 4.0)."""
    try:
        _CLEAR_REFS.write_text("5")
        _status_kib("VmHWM")
        return True
    except (OSError, AttributeError):
        return False


def peak_memory(call: Callable[[], object], device: torch.device) -> Tuple[object, Optional[int]]:
    """Run ``call()``; return its value and the peak memory it added, in bytes (None if unmeasurable).

    CUDA: ``max_memory_allocated`` minus the memory allocated before the call.  CPU: the
    peak resident set during the call (``VmHWM`` after a reset) minus the resident set
    before it, after returning the C heap's free memory to the system.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        value = call()
        torch.cuda.synchronize(device)
        return value, torch.cuda.max_memory_allocated(device) - before
    if device.type != "cpu" or not cpu_peak_supported():
        return call(), None
    _trim_heap()
    _CLEAR_REFS.write_text("5")
    before = _status_kib("VmRSS")
    value = call()
    return value, (_status_kib("VmHWM") - before) * 1024


# ----------------------------------------------------------------------------------------
# The measurement
# ----------------------------------------------------------------------------------------

@dataclass
class Row:
    """One attack's measurements over the rounds."""

    label: str
    run: Callable[[], object]
    times: List[float] = field(default_factory=list)
    #: processor seconds per round (the attack's call, all threads)
    cpu_times: List[float] = field(default_factory=list)
    peaks: List[int] = field(default_factory=list)
    #: per round, the attack's time over the floor priced at the model's per-pass times
    #: measured just before it (paired: both see the same load on the machine)
    paired_ratios: List[float] = field(default_factory=list)
    forwards: int = 0
    backwards: int = 0

    def floor(self, fb_s: float, forward_s: float) -> float:
        """Seconds the model calls it counted cost alone (per-pass times of the model)."""
        return self.backwards * fb_s + max(self.forwards - self.backwards, 0) * forward_s


def attack_rows(names: List[str], model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                steps: int, eps: float) -> List[Row]:
    """A :class:`Row` per attack (ALMA prox twice: each prox solver), each running ``steps`` iterations."""
    rows = []
    for name in names:
        spec = get_attack(name)
        params = {"num_steps": steps}
        if "eps" in spec.defaults():
            params["eps"] = eps / 255
        variants = [("", {})]
        if name == "alma_prox":
            variants = [(f" ({solver} prox)", {"prox_solver": solver}) for solver in PROX_SOLVERS]
        for suffix, extra in variants:
            kwargs = {**params, **extra}
            run = functools.partial(spec, model, images, labels, **kwargs)
            rows.append(Row(spec.title + suffix, run))
    return rows


def attack_names(text: str) -> List[str]:
    """An argparse type: a comma-separated list of registered attack names."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in ATTACKS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"unknown attack {', '.join(map(repr, unknown)) or '(none given)'}; "
                                         f"choose among {', '.join(sorted(ATTACKS))}")
    return names


#: the largest batch (pixels, all images together) the speed check allocates
MAX_PIXELS = 2 ** 28


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1 (sizes, steps, rounds)."""
    try:
        return checks.positive_int(text, "")
    except InputError as error:
        raise argparse.ArgumentTypeError(str(error).strip()) from None


def _mib(value: Optional[int]) -> str:
    return "n/a" if value is None else f"{value / 2 ** 20:.0f}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="explorer-bench speed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", choices=sorted(ARCHITECTURES), default="fpn-mobilenet")
    parser.add_argument("--dataset", choices=["cityscapes", "voc"], default="cityscapes")
    parser.add_argument("--height", type=positive_int, default=256)
    parser.add_argument("--width", type=positive_int, default=512)
    parser.add_argument("--batch", type=positive_int, default=1)
    parser.add_argument("--steps", type=positive_int, default=20)
    parser.add_argument("--attacks", type=attack_names, default=list(DEFAULT_ATTACKS),
                        help="comma-separated attack names (default: " + ",".join(DEFAULT_ATTACKS) + ")")
    parser.add_argument("--eps", type=float, default=4.0, help="radius × 255 of the fixed-budget attacks")
    parser.add_argument("--channels-last", action="store_true",
                        help="run the network in the channels-last memory format (what the app does on the CPU "
                             "for the CNN architectures)")
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
    if not 0 < args.eps <= 255:
        parser.error(f"--eps must be in (0, 255] (a radius × 255), got {args.eps}")
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    model = build_model(args.arch, args.dataset).to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    images = torch.rand(args.batch, 3, args.height, args.width, device=device)
    with torch.no_grad():
        labels = model(images).argmax(1)

    time_plain(model, images, 2)  # warm-up
    rows = attack_rows(args.attacks, model, images, labels, args.steps, args.eps)
    plain, forward, plain_peaks, prox = [], [], [], {s: [] for s in PROX_SOLVERS}
    for _ in range(args.rounds):
        seconds, peak = peak_memory(lambda: time_plain(model, images, args.steps), device)
        plain.append(seconds)
        plain_peaks.append(peak)
        forward.append(time_forward(model, images, args.steps))
        for row in rows:
            adjacent = time_plain(model, images, args.steps)
            (result, spent), peak = peak_memory(lambda: timed(row.run, device), device)
            row.times.append(result.elapsed_s)
            row.cpu_times.append(spent.cpu)
            row.peaks.append(peak)
            row.forwards, row.backwards = int(result.num_forwards.max()), int(result.num_backwards.max())
            plain.append(adjacent)
            row.paired_ratios.append(result.elapsed_s / row.floor(adjacent.wall / args.steps,
                                                                  min(f.wall for f in forward) / args.steps))
        for solver in PROX_SOLVERS:
            prox[solver].append(time_prox(images, args.steps, solver))
    fb_s, forward_s = min(p.wall for p in plain) / args.steps, min(f.wall for f in forward) / args.steps
    fb_cpu, forward_cpu = min(p.cpu for p in plain) / args.steps, min(f.cpu for f in forward) / args.steps
    model_peak = None if None in plain_peaks else max(plain_peaks)

    print(f"model {args.arch}, {model.num_classes} classes, batch {args.batch} x 3 x {args.height} x {args.width}, "
          f"{args.steps} steps, device {device}{', channels-last' if args.channels_last else ''}, "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"fastest of {args.rounds} interleaved rounds; fixed-budget attacks at ε = {args.eps:g}/255")
    print(f"model alone: forward+backward {fb_s * 1000:.1f} ms, forward {forward_s * 1000:.1f} ms per pass; "
          f"processor time forward+backward {fb_cpu * 1000:.1f} ms, forward {forward_cpu * 1000:.1f} ms per pass "
          f"(rounds of {args.steps} forward+backward: {', '.join(f'{t.wall:.3f}' for t in plain)} s); "
          f"peak memory of a forward+backward {_mib(model_peak)} MiB")
    print()
    print("| attack | forwards | backwards | time s | floor s | time / floor | paired | CPU s | CPU / floor "
          "| peak MiB | peak / model's |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        floor = row.floor(fb_s, forward_s)
        cpu = min(row.cpu_times)
        peak = None if None in row.peaks else max(row.peaks)
        peak_ratio = "n/a" if peak is None or not model_peak else f"{peak / model_peak:.2f}"
        print(f"| {row.label} | {row.forwards} | {row.backwards} | {min(row.times):.3f} | {floor:.3f} | "
              f"{min(row.times) / floor:.3f} | {statistics.median(row.paired_ratios):.3f} | {cpu:.3f} | "
              f"{cpu / row.floor(fb_cpu, forward_cpu):.3f} | {_mib(peak)} | {peak_ratio} |")
    print()
    print("attack rounds (s): " + "; ".join(f"{row.label}: {', '.join(f'{t:.3f}' for t in row.times)}"
                                              for row in rows))
    for solver, times in prox.items():
        fastest = min(t.wall for t in times)
        print(f"prox alone ({solver}): {fastest:.3f} s for {args.steps} calls, "
              f"{fastest / (args.steps * fb_s):.3f} of the forward+backward time")


if __name__ == "__main__":
    main()
