"""Our Table 1 on the sample images: every minimal-norm attack, and the fixed-budget attacks
as accuracy and mIoU against ε.

    python -m explorer.bench.tables --model street-fpn-mobilenet --out docs/attack_tables.md
    python -m explorer.bench.tables --model objects-fpn-mobilenet --quick   # small budgets

* **Minimal-norm** ([Rony2023] Table 1): median and mean ℓ∞ × 255 of each attack's returned
  perturbation, a failed image (APSR < ν) counted as 255 (:func:`explorer.metrics.norm_summary`),
  success rate, forwards/backwards per image and time, untargeted and targeted (the
  background target for models with a background class, the smoothed majority layout for
  street models).  Each attack at its paper budget (``--quick``: about a fifth).
* **Fixed-budget**: pixel accuracy and dataset mIoU of the returned images at each ε, and
  for SEA the greedy worst-case mIoU over its members [Croce2024].

Functions :func:`minimal_norm_rows` and :func:`fixed_budget_rows` return plain dicts, so the
benchmark, the notebooks and the tests use the same numbers.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import torch

from explorer.attacks import ATTACKS
from explorer.data.samples import list_samples, load_sample
from explorer.data.sources import attack_labels, world_of
from explorer.metrics import confusion_matrix, greedy_worst_case_miou, mean_iou, norm_summary
from explorer.models import load_model

#: minimal-norm rows of [Rony2023]'s Table 1: (row title, attack, parameters)
#: [Rony2023]'s Table 1, row by row: (attack, preset) — a row is the registry's preset of
#: that name (or the attack's defaults, titled by the attack), so the settings live in one place
TABLE1 = (
    ("ifgsm_bisection", None), ("mifgsm_bisection", None),
    ("pgd_bisection", "PGD CE 13×40"), ("pgd_bisection", "PGD CE 13×4×10"),
    ("pgd_bisection", "PGD DLR 13×40"), ("pgd_bisection", "PGD DLR 13×4×10"),
    ("dag", "DAG η = 0.003"), ("dag", "DAG η = 0.001"),
    ("fmn", None), ("pdpgd", None), ("alma_prox", None),
)
#: (title, attack, parameters) of each Table 1 row
TABLE1_ROWS = tuple((preset or ATTACKS[attack].label(), attack, dict(ATTACKS[attack].presets[preset]) if preset else {})
                    for attack, preset in TABLE1)
#: the fixed-budget attacks of `explorer-bench run --attacks fixed` ([Croce2024]'s evaluation adds APGD and SEA)
FIXED_BUDGET_ATTACKS = ("pgd", "segpgd", "cospgd", "apgd", "tsallis_pgd", "sea")


def quick_params(attack: str, params: Mapping[str, object], fraction: float) -> Dict[str, object]:
    """Scale an attack's iteration budget by ``fraction`` (at least 2 iterations)."""
    out = dict(params)
    spec = ATTACKS[attack]
    if "num_steps" in spec.defaults():
        steps = int(out.get("num_steps", spec.defaults()["num_steps"]))
        out["num_steps"] = max(2, int(round(steps * fraction)))
    return out


def run_batched(attack: str, model, images, labels, targeted: bool, batch_size: int, **params):
    """Run an attack over the images in batches; return (adv_images, linf, apsr, success, fwd, bwd, seconds)."""
    outs = []
    start = time.perf_counter()
    for i in range(0, len(images), batch_size):
        outs.append(ATTACKS[attack](model, images[i:i + batch_size], labels[i:i + batch_size], targeted=targeted,
                                    **params))
    seconds = time.perf_counter() - start
    cat = lambda name: torch.cat([getattr(o, name).cpu() for o in outs])  # noqa: E731
    members = None
    if outs[0].members is not None:
        members = {k: torch.cat([o.members[k].adv_images.cpu() for o in outs]) for k in outs[0].members}
    return dict(adv=cat("adv_images"), linf=cat("linf"), apsr=cat("apsr"), success=cat("success"),
                forwards=cat("num_forwards").float().mean().item(),
                backwards=cat("num_backwards").float().mean().item(),
                seconds=seconds, members=members)


def minimal_norm_rows(model, images, labels, targeted: bool, rows=TABLE1_ROWS, batch_size: int = 8,
                      fraction: float = 1.0) -> List[Dict[str, object]]:
    """One dict per Table-1 row: title, attack, median/mean ℓ∞ × 255, success rate, calls, seconds."""
    out = []
    for title, attack, params in rows:
        params = quick_params(attack, params, fraction) if fraction != 1.0 else dict(params)
        r = run_batched(attack, model, images, labels, targeted, batch_size, **params)
        summary = norm_summary(r["linf"], r["success"])
        out.append({"row": title, "attack": attack, "params": params, "median_255": summary["median_255"],
                    "mean_255": summary["mean_255"], "success_rate": summary["success_rate"],
                    "forwards": r["forwards"], "backwards": r["backwards"], "seconds": r["seconds"]})
    return out


def fixed_budget_rows(model, images, labels, eps_values: Sequence[float], attacks=FIXED_BUDGET_ATTACKS,
                      batch_size: int = 8, fraction: float = 1.0) -> List[Dict[str, object]]:
    """Pixel accuracy and dataset mIoU (against ``labels``) of each attack's images at each ε."""
    k = model.num_classes
    rows = []
    clean = _predict(model, images, batch_size)
    rows.append({"attack": "clean", "eps_255": 0.0, **prediction_accuracy_and_miou(clean, labels, k), "seconds": 0.0})
    for eps in eps_values:
        for attack in attacks:
            params = quick_params(attack, {}, fraction) if fraction != 1.0 else {}
            r = run_batched(attack, model, images, labels, False, batch_size, eps=eps, **params)
            prediction = _predict(model, r["adv"], batch_size)
            row = {"attack": attack, "eps_255": eps * 255, **prediction_accuracy_and_miou(prediction, labels, k),
                   "seconds": r["seconds"]}
            if r["members"] is not None:
                member_predictions = {name: _predict(model, adv, batch_size) for name, adv in r["members"].items()}
                confusions = torch.stack([confusion_matrix(p, labels, k, per_image=True)
                                          for p in member_predictions.values()])
                row["member_accuracy"] = {name: _accuracy(c.sum(0)) for name, c in
                                          zip(member_predictions, confusions)}
                row["worst_case_miou"] = greedy_worst_case_miou(confusions)[1]
            rows.append(row)
    return rows


def _predict(model, images, batch_size):
    with torch.no_grad():
        return torch.cat([model(images[i:i + batch_size]).argmax(1).cpu() for i in range(0, len(images), batch_size)])


def _accuracy(confusion) -> float:
    """Dataset pixel accuracy from a confusion matrix: correct labelled pixels over labelled pixels."""
    return float(confusion.diag().sum() / confusion.sum().clamp_min(1))


def prediction_accuracy_and_miou(prediction, labels, k) -> Dict[str, float]:
    """Pooled pixel accuracy and mIoU of a batch of predicted maps, from one confusion matrix."""
    confusion = confusion_matrix(prediction, labels, k)
    return {"accuracy": _accuracy(confusion), "miou": float(mean_iou(confusion))}


def minimal_norm_markdown(minimal: Dict[str, List[Dict[str, object]]]) -> str:
    """The Table-1 rows of each mode (``{mode: rows}``) side by side, as Markdown."""
    modes = list(minimal)
    columns = " | ".join(f"{m} median | {m} mean | {m} success" for m in modes)
    header = f"| attack | {columns} | fwd/bwd per image |"
    lines = [header, "|---|" + "---|" * (3 * len(modes)) + "---|"]
    for i, row in enumerate(minimal[modes[0]]):
        cells = []
        for m in modes:
            r = minimal[m][i]
            cells += [f"{r['median_255']:.2f}", f"{r['mean_255']:.2f}", f"{r['success_rate']:.0%}"]
        lines.append(f"| {row['row']} | " + " | ".join(cells) + f" | {row['forwards']:.0f}/{row['backwards']:.0f} |")
    return "\n".join(lines) + "\n"


def fixed_budget_markdown(fixed: List[Dict[str, object]]) -> str:
    """The fixed-budget rows as Markdown."""
    lines = ["| attack | ε × 255 | pixel accuracy | mIoU | worst-case mIoU (SEA, greedy) | seconds |",
             "|---|---|---|---|---|---|"]
    for r in fixed:
        worst = f"{r['worst_case_miou']:.3f}" if "worst_case_miou" in r else ""
        lines.append(f"| {r['attack']} | {r['eps_255']:.1f} | {r['accuracy']:.3f} | {r['miou']:.3f} | {worst} | "
                     f"{r['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> None:

    parser = argparse.ArgumentParser(description="Table 1 (minimal-norm) and fixed-budget tables on the samples.")
    parser.add_argument("--model", default="street-fpn-mobilenet")
    parser.add_argument("--samples", type=int, default=8, help="how many sample images of the model's world")
    parser.add_argument("--quick", action="store_true", help="about a fifth of each budget")
    parser.add_argument("--eps", type=float, nargs="*", default=[0.25, 0.5, 1.0], help="fixed-budget ε × 255")
    parser.add_argument("--skip-fixed", action="store_true")
    parser.add_argument("--skip-minimal", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown tables here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model)
    names = list_samples(world_of(model))[: args.samples]
    images = torch.stack([load_sample(n)[0] for n in names]).to(next(model.parameters()).device)
    labels = torch.stack([load_sample(n)[1] for n in names]).to(images.device)
    fraction = 0.2 if args.quick else 1.0
    target_name = "background" if model.dataset.background_class is not None else "majority layout"
    targets = {"untargeted": labels, f"targeted ({target_name})": attack_labels(model, labels, "targeted")}
    minimal = {}
    for mode, y in ({} if args.skip_minimal else targets).items():
        minimal[mode] = minimal_norm_rows(model, images, y, mode != "untargeted", fraction=fraction)
        print(minimal_norm_markdown({mode: minimal[mode]}))
    fixed = [] if args.skip_fixed else fixed_budget_rows(model, images, labels, [e / 255 for e in args.eps],
                                                         fraction=fraction)
    text = "\n".join(part for part in (minimal_norm_markdown(minimal) if minimal else "",
                                        fixed_budget_markdown(fixed) if fixed else "") if part)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
