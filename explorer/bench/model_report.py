"""How fragile are the shipped models?  ALMA prox on every sample image, per model.

For each shipped model, on the sample images of its world, run ALMA prox (500 steps by
default) untargeted (ground truth) and targeted (the smoothed majority-label target for
street models, the all-background target for objects models), and report the median and
mean ℓ∞ × 255 (failures counted as 255) and the success rate — the counterpart of
[Rony2023]'s Table 1 — plus the clean pixel accuracy and mIoU on the samples.

Usage::

    python -m explorer.bench.model_report                      # all shipped models, markdown to stdout
    python -m explorer.bench.model_report --steps 100 --models street-fpn-mobilenet --out docs/models.md
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

from explorer.attacks import alma_prox
from explorer.attacks.core import model_device
from explorer.data.samples import list_samples, load_sample, paper_target
from explorer.data.splits import VALIDATION_SEEDS
from explorer.data.worlds import render_batch
from explorer.live.scene import clean_scores_per_sample
from explorer.metrics import confusion_matrix, mean_iou, norm_summary, pixel_accuracy
from explorer.models import available_models, get_model_entry, load_model


def sample_batch(world: str):
    """All samples of a world as a batch: images (N,3,H,W), labels (N,H,W), names."""
    names = list_samples(world)
    loaded = [load_sample(n) for n in names]
    return torch.stack([s[0] for s in loaded]), torch.stack([s[1] for s in loaded]), names


def evaluate_model(name: str, steps: int = 500, device: Optional[str] = None) -> Dict[str, object]:
    """Clean quality and ALMA prox norms for one shipped model on its world's samples."""

    entry = get_model_entry(name)
    model = load_model(name, device=device)
    world = entry.world
    images, labels, _ = sample_batch(world)
    device = model_device(model, images.device)
    images, labels = images.to(device), labels.to(device)
    k = model.num_classes
    with torch.no_grad():
        pred = model(images).argmax(1)
    row: Dict[str, object] = {
        "model": name, "world": world, "images": len(images),
        "pixel_accuracy": float(pixel_accuracy(pred, labels, k).mean()),
        "miou": float(mean_iou(confusion_matrix(pred, labels, k)))}
    for scenario, targeted in (("untargeted", False), ("targeted", True)):
        y = paper_target(labels, model.dataset) if targeted else labels
        start = time.perf_counter()
        result = alma_prox(model, images, y, targeted=targeted, num_steps=steps)
        summary = norm_summary(result.linf.cpu(), result.success.cpu())
        row[scenario] = {"median_255": summary["median_255"], "mean_255": summary["mean_255"],
                         "success_rate": summary["success_rate"], "time_s": time.perf_counter() - start}
    return row


def update_card(row: Dict[str, object], steps: int) -> None:
    """Record the sample-set quality and ALMA prox norms in the model's ``card.json``."""
    import json


    path = Path(get_model_entry(row["model"]).source) / "card.json"
    card = json.loads(path.read_text())
    card["samples"] = {"images": row["images"], "pixel_accuracy": round(row["pixel_accuracy"], 4),
                       "miou": round(row["miou"], 4)}
    card["alma_prox_on_samples"] = {"steps": steps, **{k: {m: round(v, 4) for m, v in row[k].items()}
                                                       for k in ("untargeted", "targeted")}}
    path.write_text(json.dumps(card, indent=2) + "\n")


def to_markdown(rows: List[Dict[str, object]], steps: int) -> str:
    """The report as a markdown table."""
    lines = [f"ALMA prox, {steps} steps, on the sample images; ℓ∞ × 255, failures counted as 255.", "",
             "| model | images | clean pixel acc. | clean mIoU | untargeted median | untargeted mean | "
             "untargeted success | targeted median | targeted mean | targeted success |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        u, t = r["untargeted"], r["targeted"]
        lines.append(f"| {r['model']} | {r['images']} | {r['pixel_accuracy']:.3f} | {r['miou']:.3f} | "
                     f"{u['median_255']:.2f} | {u['mean_255']:.2f} | {u['success_rate']:.0%} | "
                     f"{t['median_255']:.2f} | {t['mean_255']:.2f} | {t['success_rate']:.0%} |")
    return "\n".join(lines) + "\n"


def rows_from_cards(names: List[str]) -> List[Dict[str, object]]:
    """Rebuild report rows from the results recorded in the cards (``--update-cards``)."""

    rows = []
    for name in names:
        card = get_model_entry(name).card
        if "alma_prox_on_samples" not in card:
            continue
        attack = card["alma_prox_on_samples"]
        rows.append({"model": name, "world": card["world"], "images": card["samples"]["images"],
                     "pixel_accuracy": card["samples"]["pixel_accuracy"], "miou": card["samples"]["miou"],
                     "untargeted": attack["untargeted"], "targeted": attack["targeted"], "steps": attack["steps"]})
    return rows


def models_table(names: List[str]) -> str:
    """Markdown table of the shipped models' cards: architecture, size, time, validation quality."""

    lines = ["| model | world | architecture | weights | training time | validation pixel acc. | validation mIoU |",
             "|---|---|---|---|---|---|---|"]
    for name in names:
        entry = get_model_entry(name)
        card = entry.card
        size = sum(p.stat().st_size for p in Path(entry.source).glob("*.safetensors")) / 2 ** 20
        arch, minutes = card["arch"], f"{card['training_time_s'] / 60:.0f} min"
        adversarial = card.get("adversarial_training")
        if adversarial:  # the clean stages, then the adversarial fine-tuning
            arch += f", {adversarial['summary'].split(' (')[0]}"
            clean_s = card["training_time_s"] - adversarial["time_s"]
            minutes += f" ({clean_s / 60:.0f} + {adversarial['time_s'] / 60:.0f})"
        lines.append(f"| `{name}` | {card['world']} | {arch} | {size:.1f} MB | {minutes} | "
                     f"{card['validation']['pixel_accuracy']:.3f} | {card['validation']['miou']:.3f} |")
    return "\n".join(lines) + "\n"


#: issue 17's bar for a class of the default street model: a class covering at least
#: ``MIN_SHARE`` of the labelled validation pixels should reach IoU ``MIN_IOU``
MIN_SHARE, MIN_IOU = 0.01, 0.5


def validation_label_shares(world: str, size, num_classes: int) -> torch.Tensor:
    """Each class's share of the labelled pixels of the validation scenes (the cards' split)."""
    counts = torch.zeros(num_classes, dtype=torch.float64)
    seeds = list(VALIDATION_SEEDS)
    for start in range(0, len(seeds), 50):
        _, labels = render_batch(world, seeds[start:start + 50], size[0], size[1])
        labelled = labels[labels != 255]
        counts += torch.bincount(labelled.flatten(), minlength=num_classes)[:num_classes].double()
    return counts / counts.sum().clamp_min(1)


def classes_table(names: List[str]) -> str:
    """Markdown table per world: each class's share of the validation pixels and every shipped
    model's validation IoU for it (from its card).  A bold IoU marks a class that covers at
    least 1 % of the pixels but stays below IoU 0.5 — the classes a model still gets wrong
    often enough for a visitor to notice."""
    lines: List[str] = []
    for world in sorted({get_model_entry(n).world for n in names}):
        models = [n for n in names if get_model_entry(n).world == world]
        entry = get_model_entry(models[0])
        classes = entry.dataset_info.class_names
        shares = validation_label_shares(world, entry.card["input_size"], len(classes))
        lines += [f"**{world} world** — validation IoU per class ({len(VALIDATION_SEEDS)} unseen scenes; "
                  f"bold: share ≥ {MIN_SHARE:.0%} and IoU < {MIN_IOU})", "",
                  "| class | pixel share | " + " | ".join(f"`{m}`" for m in models) + " |",
                  "|---|---|" + "---|" * len(models)]
        for c, name in enumerate(classes):
            cells = []
            for m in models:
                iou = get_model_entry(m).card["validation"]["per_class_iou"][c]
                text = "—" if iou is None else f"{iou:.2f}"
                cells.append(f"**{text}**" if iou is not None and shares[c] >= MIN_SHARE and iou < MIN_IOU
                             else text)
            lines.append(f"| {name} | {100 * float(shares[c]):.2f} % | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def samples_table(names: List[str], device: Optional[str] = "cpu") -> str:
    """Markdown table of each shipped model's clean mIoU (and pixel accuracy) on every sample
    of its world: which scenes it sees well and which it does not, before any attack (the app
    opens on each model's best one)."""
    lines = []
    for name in names:
        scores = clean_scores_per_sample(name, device)
        if not scores:
            continue
        samples = sorted(scores)
        best = max(samples, key=lambda sample: scores[sample]["miou"])
        lines += [f"**{name}** (the app opens on {best})", "",
                  "| " + " | ".join(["", *samples]) + " |", "|" + "---|" * (len(samples) + 1),
                  "| clean mIoU | " + " | ".join(f"{scores[s]['miou']:.2f}" for s in samples) + " |",
                  "| clean pixel acc. | " + " | ".join(f"{scores[s]['pixel_accuracy']:.2f}" for s in samples) + " |",
                  ""]
    return "\n".join(lines)


def main(argv=None) -> None:

    parser = argparse.ArgumentParser(description="ALMA prox norms of the shipped models on the samples.")
    parser.add_argument("--models", nargs="*", default=None)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--update-cards", action="store_true",
                        help="write the sample-set results into each model's card.json")
    parser.add_argument("--samples-table", action="store_true",
                        help="print each model's clean mIoU and pixel accuracy per sample, attack nothing")
    parser.add_argument("--classes-table", action="store_true",
                        help="print each world's class pixel shares and the models' validation IoU per class")
    parser.add_argument("--from-cards", action="store_true",
                        help="print the tables from the results already in the cards, attack nothing")
    args = parser.parse_args(argv)
    names = args.models or available_models("shipped")
    if args.samples_table:
        print(samples_table(names, args.device or "cpu"))
        return
    if args.classes_table:
        print(classes_table(names))
        return
    if args.from_cards:
        rows = rows_from_cards(names)
        print(models_table(names))
        print(to_markdown(rows, rows[0]["steps"] if rows else args.steps))
        return
    rows = [evaluate_model(n, args.steps, args.device) for n in names]
    if args.update_cards:
        for row in rows:
            update_card(row, args.steps)
    text = to_markdown(rows, args.steps)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
