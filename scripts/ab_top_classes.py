"""A/B in one process: the attacks with their top classes from ``torch.topk`` or from ``top_classes``.

On a shared machine, separate ``explorer-bench speed`` runs differ by more than a few
milliseconds per iteration; alternating the two variants (and plain forward+backward passes)
round by round in one process lets both see the same load.  Prints, per attack, the median
seconds per iteration of each variant over the median plain forward+backward.

Usage::

    python scripts/ab_top_classes.py fpn-mobilenet 8     # architecture, rounds (5 iterations each)
    python scripts/ab_top_classes.py segformer-b0 6
"""
import importlib
import statistics
import sys
import time

import torch

from explorer.attacks.registry import get_attack
from explorer.bench.speed import build_model, time_plain

ATTACKS = ("alma_prox", "dag", "fmn")
STEPS = 5


def topk_classes(logits, k):
    """The previous ranking: ``torch.topk`` over the class dimension (ties in unspecified order)."""
    return logits.detach().topk(min(k, logits.shape[1]), dim=1).indices


def main(arch: str, rounds: int) -> None:
    torch.set_num_threads(1)
    losses = importlib.import_module("explorer.attacks.losses")
    core = importlib.import_module("explorer.attacks.core")
    variants = {"topk": topk_classes, "top_classes": losses.top_classes}
    torch.manual_seed(0)
    model = build_model(arch, "cityscapes")
    images = torch.rand(1, 3, 256, 512)
    with torch.no_grad():
        labels = model(images).argmax(1)
    time_plain(model, images, 2)  # warm-up
    plain, times = [], {(v, a): [] for v in variants for a in ATTACKS}
    for _ in range(rounds):
        for variant, ranking in variants.items():
            losses.top_classes = core.top_classes = ranking  # what the attacks call
            for name in ATTACKS:
                start = time.perf_counter()
                get_attack(name)(model, images, labels, num_steps=STEPS)
                times[variant, name].append((time.perf_counter() - start) / STEPS)
        plain.append(time_plain(model, images, STEPS).wall / STEPS)
    losses.top_classes = core.top_classes = variants["top_classes"]
    fb = statistics.median(plain)
    print(f"{arch}, 1 x 3 x 256 x 512, one thread: plain forward+backward {fb * 1000:.1f} ms "
          f"(median of {rounds} rounds of {STEPS} iterations, alternating)")
    for name in ATTACKS:
        a, b = (statistics.median(times[v, name]) for v in variants)
        print(f"  {name:10s} topk {a * 1000:6.1f} ms/it ({a / fb:.3f})   top_classes {b * 1000:6.1f} ms/it "
              f"({b / fb:.3f})   saved {1000 * (a - b):5.1f} ms/it")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "fpn-mobilenet", int(sys.argv[2]) if len(sys.argv) > 2 else 8)
