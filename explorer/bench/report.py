"""Tables and figures from a benchmark's JSONL results ([Rony2023] §6, Table 1 and Fig. 3).

* :func:`minimal_norm_table` — per model, mode and attack row: median and mean ℓ∞ × 255
  over the images, a failed image counted as 255 (:func:`explorer.metrics.norm_summary`),
  success rate, the same median and success of the 8-bit finishes (whole levels, judged on
  the PNG-decoded images; :func:`explorer.attacks.lattice.finish_8bit`), forwards/backwards
  per image (of the continuous attack).
* :func:`failure_curves` — failure rate against the budget ε, continuous and 8-bit
  (:func:`explorer.metrics.failure_rate_curve`), drawn linear on [0, 2/255] and log-scaled
  above (:func:`write_report` saves PNG and interactive HTML).
* :func:`fixed_budget_table` — dataset pixel accuracy ``Σ intersections / Σ labelled``, the
  mean of per-image accuracies (SEA's number, :func:`mean_image_accuracy`) and
  mIoU ``mean_k Σ_i I_ik / Σ_i U_ik`` (classes never labelled nor predicted left out) of the
  returned images against the ground truth, per attack and ε, with the clean row.
* :func:`timing_table` — seconds, forwards and backwards per image.

All four take the list of records of :func:`explorer.bench.store.read_records`, so they
can be checked on hand-made results.  A record whose fields are missing or of the wrong
type (a hand-edited or foreign file) is left out of every table — :func:`usable_records`
says which and why, and :func:`write_report` warns about them on stderr.
"""
from __future__ import annotations

import math
import numbers
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from explorer.bench.checks import warn
from explorer.bench.run import CLEAN_ROW
from explorer.metrics import failure_rate_curve, norm_summary

KNEE_255 = 2.0  # failure-rate plots: linear up to 2/255, log-scaled above
#: skipped records described one by one in a warning (the count covers them all)
LISTED_RECORDS = 3


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _finite(value) -> bool:
    return _is_number(value) and math.isfinite(value)


def _counts(value) -> bool:
    return isinstance(value, list) and all(_finite(v) and v >= 0 for v in value)


def record_problem(r) -> Optional[str]:
    """Why the tables cannot use record ``r`` (a missing field, a wrong type), or None.

    Only the fields the tables read are checked, and only those its kind of row needs:
    every record names its model, row and mode (strings) and ε × 255 (null or finite);
    a minimal-norm record has ``linf_255`` (a number) and ``success`` (true/false); a clean
    or fixed-budget record has per-class ``intersection`` and ``union`` (lists of the same
    length) and ``labelled``; an attack record has ``seconds``, ``forwards``, ``backwards``.
    """
    if not isinstance(r, Mapping):
        return f"a {type(r).__name__}, not a record"
    for name in ("model", "row", "mode"):
        if not isinstance(r.get(name), str):
            return f"{name!r} must be a string, got {r.get(name)!r}"[:120]
    eps = r.get("eps_255")
    if eps is not None and not _finite(eps):
        return f"'eps_255' must be null or a finite number, got {eps!r}"[:120]
    clean = r["row"] == CLEAN_ROW
    needed: List[Tuple[str, object, str]] = []
    if not clean:
        needed += [(name, _finite, "a finite number") for name in ("seconds", "forwards", "backwards")]
    if not clean and eps is None:
        needed += [("linf_255", lambda v: _is_number(v) and not math.isnan(v), "a number"),
                   ("success", lambda v: isinstance(v, bool), "true or false")]
    if clean or eps is not None:
        needed += [("intersection", _counts, "a list of counts"), ("union", _counts, "a list of counts"),
                   ("labelled", lambda v: _finite(v) and v >= 0, "a count")]
    for name, ok, expected in needed:
        if name not in r:
            return f"{name!r} is missing"
        if not ok(r[name]):
            return f"{name!r} must be {expected}, got {r[name]!r}"[:120]
    if (clean or eps is not None) and len(r["intersection"]) != len(r["union"]):
        return "'intersection' and 'union' have different lengths"
    return None


def usable_records(records: Sequence) -> Tuple[List[Mapping], List[Tuple[str, str]]]:
    """The records the tables can use, and ``(key, reason)`` for each one left out.

    Besides :func:`record_problem`, the per-class counts of one model must all have the
    length of its first such record (its number of classes)."""
    kept, skipped = [], []
    classes: Dict[str, int] = {}
    for r in records:
        problem = record_problem(r)
        if problem is None and isinstance(r.get("intersection"), list) and (
                r["row"] == CLEAN_ROW or r.get("eps_255") is not None):
            expected = classes.setdefault(r["model"], len(r["intersection"]))
            if len(r["intersection"]) != expected:
                problem = f"{len(r['intersection'])} classes, where other records of {r['model']} have {expected}"
        if problem is None:
            kept.append(r)
        else:
            key = r.get("key") if isinstance(r, Mapping) else None
            skipped.append((key if isinstance(key, str) else "?", problem))
    return kept, skipped


def describe_skipped(skipped: Sequence[Tuple[str, str]], source: str) -> str:
    """One line saying how many records of ``source`` were left out, and why (the first few)."""
    listed = "; ".join(f"{key}: {reason}" for key, reason in skipped[:LISTED_RECORDS])
    more = f"; and {len(skipped) - LISTED_RECORDS} more" if len(skipped) > LISTED_RECORDS else ""
    return (f"{source}: skipped {len(skipped)} record{'s' if len(skipped) != 1 else ''} with missing or "
            f"mistyped fields — {listed}{more}")


def _groups(records: Sequence[Mapping], keys: Sequence[str], keep) -> Dict[Tuple, List[Mapping]]:
    """Usable records grouped by ``keys`` (in first-seen order), keeping those ``keep`` accepts."""
    groups: Dict[Tuple, List[Mapping]] = defaultdict(list)
    for r in usable_records(records)[0]:
        if keep(r):
            groups[tuple(r[k] for k in keys)].append(r)
    return dict(groups)


def _is_minimal_norm(r: Mapping) -> bool:
    return r["row"] != CLEAN_ROW and r["eps_255"] is None


def minimal_norm_table(records: Sequence[Mapping]) -> List[Dict[str, object]]:
    """Table 1: one row per (model, mode, attack row) of the minimal-norm results."""
    rows = []
    for (model, mode, row), group in _groups(records, ("model", "mode", "row"), _is_minimal_norm).items():
        summary = norm_summary(np.array([r["linf_255"] / 255 for r in group]),
                               np.array([bool(r["success"]) for r in group]))
        eight_bit = _eight_bit_summary(group)
        rows.append({"model": model, "mode": mode, "row": row, "images": len(group),
                     "median_255": summary["median_255"], "mean_255": summary["mean_255"],
                     "success_rate": summary["success_rate"],
                     "median_8bit": eight_bit["median_255"], "mean_8bit": eight_bit["mean_255"],
                     "success_8bit": eight_bit["success_rate"],
                     "forwards": float(np.mean([r["forwards"] for r in group])),
                     "backwards": float(np.mean([r["backwards"] for r in group]))})
    untargeted_first = {"untargeted": 0, "targeted": 1}
    return sorted(rows, key=lambda r: (r["model"], untargeted_first.get(r["mode"], 2)))  # stable: row order kept


def _has_8bit(r: Mapping) -> bool:
    """Whether a minimal-norm record carries a usable 8-bit finish (records written before it did not)."""
    return _is_number(r.get("linf_8bit_255")) and not math.isnan(r["linf_8bit_255"]) \
        and isinstance(r.get("success_8bit"), bool)


def _eight_bit_summary(group: Sequence[Mapping]) -> Dict[str, Optional[float]]:
    """Median and mean ℓ∞ × 255 (whole levels) and success of the 8-bit finishes, None unless
    every record has one."""
    if not all(_has_8bit(r) for r in group):
        return {"median_255": None, "mean_255": None, "success_rate": None}
    return norm_summary(np.array([r["linf_8bit_255"] / 255 for r in group]),
                        np.array([r["success_8bit"] for r in group]))


def failure_curves(records: Sequence[Mapping], thresholds_255: Sequence[float] | None = None
                   ) -> Dict[Tuple[str, str], Dict[str, Tuple[np.ndarray, np.ndarray]]]:
    """``{(model, mode): {row: (ε × 255, failure rate)}}`` for the minimal-norm rows."""
    curves: Dict[Tuple[str, str], Dict[str, Tuple[np.ndarray, np.ndarray]]] = defaultdict(dict)
    thresholds = None if thresholds_255 is None else np.asarray(thresholds_255, dtype=np.float64) / 255
    for (model, mode, row), group in _groups(records, ("model", "mode", "row"), _is_minimal_norm).items():
        eps, failure = failure_rate_curve(np.array([r["linf_255"] / 255 for r in group]),
                                          np.array([bool(r["success"]) for r in group]), thresholds)
        curves[(model, mode)][row] = (eps * 255, failure)
        if all(_has_8bit(r) for r in group):
            eps, failure = failure_rate_curve(np.array([r["linf_8bit_255"] / 255 for r in group]),
                                              np.array([r["success_8bit"] for r in group]), thresholds)
            curves[(model, mode)][f"{row} (8-bit)"] = (eps * 255, failure)
    return dict(curves)


def best_of_attacks(records: Sequence[Mapping]) -> Dict[Tuple[str, str], Tuple[int, np.ndarray, np.ndarray]]:
    """``{(model, mode): (attacks, ℓ∞, success)}``: per image the smallest ℓ∞ any minimal-norm
    row found (success if any row succeeded), over the images every row of that model and mode
    attacked (ℓ∞ NaN where none did) — the envelope a robustness claim has to stand up to ([Croce2024]'s point: the
    worst case over attacks, not one attack's number)."""
    rows = _groups(records, ("model", "mode"), _is_minimal_norm)
    envelopes = {}
    for (model, mode), group in rows.items():
        names = sorted({r["row"] for r in group})
        by_image: Dict[str, Dict[str, Mapping]] = defaultdict(dict)
        for r in group:
            by_image[r["image"]][r["row"]] = r
        images = [image for image, found in by_image.items() if len(found) == len(names)]
        linf, success = [], []
        for image in images:
            won = [r["linf_255"] for r in by_image[image].values() if r["success"]]
            success.append(bool(won))
            linf.append(min(won) / 255 if won else math.nan)
        envelopes[(model, mode)] = (len(names), np.array(linf), np.array(success, dtype=bool))
    return envelopes


def model_comparison_curves(records: Sequence[Mapping], attack: str = "alma_prox"
                            ) -> Dict[str, Dict[str, Tuple[np.ndarray, np.ndarray]]]:
    """``{mode: {label: (ε × 255, failure rate)}}`` with, for each model, ``attack``'s curve and
    the best-of-all-attacks curve (:func:`best_of_attacks`) — several models on one plot (a
    normal and an adversarially trained one).  Empty unless the records hold two models or more."""
    if len({r["model"] for r in usable_records(records)[0]}) < 2:
        return {}
    curves: Dict[str, Dict[str, Tuple[np.ndarray, np.ndarray]]] = defaultdict(dict)
    singles = _groups(records, ("model", "mode"), lambda r: _is_minimal_norm(r) and r.get("attack") == attack)
    for (model, mode), (count, linf, success) in best_of_attacks(records).items():
        group = singles.get((model, mode))
        if group:
            eps, failure = failure_rate_curve(np.array([r["linf_255"] / 255 for r in group]),
                                              np.array([bool(r["success"]) for r in group]))
            curves[mode][f"{model}: {group[0]['row']}"] = (eps * 255, failure)
        if len(linf):
            eps, failure = failure_rate_curve(linf, success)
            curves[mode][f"{model}: best of {count} attacks"] = (eps * 255, failure)
    return dict(curves)


def accuracy_and_miou(group: Sequence[Mapping]) -> Tuple[float, float]:
    """Dataset pixel accuracy and mIoU from per-image intersections, unions and labelled counts."""
    intersection = np.sum([r["intersection"] for r in group], axis=0, dtype=np.float64)
    union = np.sum([r["union"] for r in group], axis=0, dtype=np.float64)
    labelled = float(sum(r["labelled"] for r in group))
    accuracy = float(intersection.sum() / labelled) if labelled else math.nan
    defined = union > 0
    miou = float(np.mean(intersection[defined] / union[defined])) if defined.any() else math.nan
    return accuracy, miou


def mean_image_accuracy(group: Sequence[Mapping]) -> float:
    """The mean over images of each image's pixel accuracy (the SEA authors' number; images
    without a labelled pixel left out).  Pooled accuracy weighs large images more."""
    values = [float(np.sum(r["intersection"])) / r["labelled"] for r in group if r["labelled"]]
    return float(np.mean(values)) if values else math.nan


def fixed_budget_table(records: Sequence[Mapping]) -> List[Dict[str, object]]:
    """Pixel accuracy and mIoU per (model, mode, attack row, ε), the clean row of each model first."""
    rows = []
    clean = _groups(records, ("model",), lambda r: r["row"] == CLEAN_ROW)
    fixed = _groups(records, ("model", "mode", "row", "eps_255"), lambda r: r["eps_255"] is not None)
    for (model,), group in clean.items():
        accuracy, miou = accuracy_and_miou(group)
        rows.append({"model": model, "mode": "-", "row": CLEAN_ROW, "eps_255": 0.0, "images": len(group),
                     "accuracy": accuracy, "image_accuracy": mean_image_accuracy(group), "miou": miou})
        for (m, mode, row, eps), g in sorted(fixed.items(), key=lambda kv: (kv[0][1], kv[0][3], kv[0][2])):
            if m == model:
                accuracy, miou = accuracy_and_miou(g)
                rows.append({"model": model, "mode": mode, "row": row, "eps_255": eps, "images": len(g),
                             "accuracy": accuracy, "image_accuracy": mean_image_accuracy(g), "miou": miou})
    return rows


def timing_table(records: Sequence[Mapping]) -> List[Dict[str, object]]:
    """Mean seconds, forwards and backwards per image, per (model, attack row, mode, ε)."""
    rows = []
    for (model, row, mode, eps), group in _groups(records, ("model", "row", "mode", "eps_255"),
                                                   lambda r: r["row"] != CLEAN_ROW).items():
        seconds = [r["seconds"] for r in group]
        rows.append({"model": model, "row": row, "mode": mode, "eps_255": eps, "images": len(group),
                     "seconds_per_image": float(np.mean(seconds)), "total_seconds": float(np.sum(seconds)),
                     "forwards": float(np.mean([r["forwards"] for r in group])),
                     "backwards": float(np.mean([r["backwards"] for r in group]))})
    return rows


# --------------------------------------------------------------------------- writing


def markdown_table(rows: Sequence[Mapping], columns: Sequence[Tuple[str, str, str]]) -> str:
    """A Markdown table: ``columns`` are (header, key, format)."""
    lines = ["| " + " | ".join(h for h, _, _ in columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = []
        for _, key, fmt in columns:
            value = r[key]
            cells.append("–" if value is None or (isinstance(value, float) and math.isnan(value))
                         else format(value, fmt))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


MINIMAL_COLUMNS = (("model", "model", ""), ("mode", "mode", ""), ("attack", "row", ""), ("images", "images", "d"),
                   ("median ℓ∞×255", "median_255", ".2f"), ("mean ℓ∞×255", "mean_255", ".2f"),
                   ("success", "success_rate", ".0%"), ("8-bit median ×255", "median_8bit", ".0f"),
                   ("8-bit mean ×255", "mean_8bit", ".2f"), ("8-bit success", "success_8bit", ".0%"),
                   ("fwd/image", "forwards", ".0f"),
                   ("bwd/image", "backwards", ".0f"))
FIXED_COLUMNS = (("model", "model", ""), ("mode", "mode", ""), ("attack", "row", ""), ("ε×255", "eps_255", ".2f"),
                 ("images", "images", "d"), ("pixel accuracy", "accuracy", ".3f"),
                 ("mean per-image accuracy", "image_accuracy", ".3f"), ("mIoU", "miou", ".3f"))
TIMING_COLUMNS = (("model", "model", ""), ("attack", "row", ""), ("mode", "mode", ""), ("ε×255", "eps_255", ".2f"),
                  ("images", "images", "d"),
                  ("s/image", "seconds_per_image", ".2f"), ("total s", "total_seconds", ".1f"),
                  ("fwd/image", "forwards", ".0f"), ("bwd/image", "backwards", ".0f"))


def plot_failure_png(curves: Mapping[str, Tuple[np.ndarray, np.ndarray]], title: str, path: Path,
                     dashed: Sequence[str] = ()) -> None:
    """Failure rate against ε × 255: linear panel on [0, 2], log panel on [2, 255] ([Rony2023] Fig. 3).
    Curves named in ``dashed`` are drawn dashed and wider (visible where they coincide with another)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, sharey=True, figsize=(10, 3.6), gridspec_kw={"wspace": 0.04})
    colors = plt.get_cmap("tab20").colors  # enough distinct colours for all of Table 1's rows
    for i, (row, (eps, failure)) in enumerate(curves.items()):
        color = colors[(2 * i) % 20 + (2 * i) // 20 % 2]
        style = dict(color=color, **(dict(ls="--", lw=2.5, alpha=0.8) if row in dashed else {}))
        left.plot(eps[eps <= KNEE_255], failure[eps <= KNEE_255], label=row, **style)
        right.plot(eps[eps >= KNEE_255], failure[eps >= KNEE_255], **style)
    left.set_xlim(0, KNEE_255)
    right.set_xscale("log")
    right.set_xlim(KNEE_255, 255)
    left.set_ylim(0, 1.02)
    left.set_ylabel("failure rate")
    fig.supxlabel("ℓ∞ budget ε × 255 (linear to 2, log above)", y=-0.04)
    left.set_title(title, loc="left", fontsize=10)
    fig.legend(fontsize=7, loc="center left", bbox_to_anchor=(0.91, 0.5), frameon=False)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def plot_failure_html(curves: Mapping[str, Tuple[np.ndarray, np.ndarray]], title: str, path: Path) -> None:
    """The same figure as interactive plotly HTML (plotly.js inlined: opens offline)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.02)
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
               "#bcbd22", "#17becf", "#393b79", "#637939"]
    for i, (row, (eps, failure)) in enumerate(curves.items()):
        color = palette[i % len(palette)]
        low, high = eps <= KNEE_255, eps >= KNEE_255
        fig.add_trace(go.Scatter(x=eps[low], y=failure[low], name=row, legendgroup=row, line_color=color), 1, 1)
        fig.add_trace(go.Scatter(x=eps[high], y=failure[high], name=row, legendgroup=row, showlegend=False,
                                 line_color=color), 1, 2)
    fig.update_xaxes(range=[0, KNEE_255], title_text="ε × 255 (linear)", row=1, col=1)
    fig.update_xaxes(type="log", range=[math.log10(KNEE_255), math.log10(255)], title_text="ε × 255 (log)",
                     row=1, col=2)
    fig.update_yaxes(range=[0, 1.02], title_text="failure rate", row=1, col=1)
    fig.update_layout(title=title, template="plotly_white", height=420)
    fig.write_html(str(path), include_plotlyjs=True, full_html=True)


def _slug(text: str) -> str:
    """A file-name part for ``text``: letters, digits, '-' and '_' (a long one shortened, with a checksum)."""
    import zlib

    slug = "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_" for c in text)
    return slug if len(slug) <= 80 else f"{slug[:60]}_{zlib.crc32(text.encode()):08x}"


def write_report(records: Sequence[Mapping], out_dir: Path, source: str = "the results") -> Path:
    """Write ``report.md`` with the four tables and the failure-rate figures (PNG + HTML).

    Records the tables cannot use are left out with a warning on stderr naming ``source``."""

    records, skipped = usable_records(records)
    if skipped:
        warn(describe_skipped(skipped, source))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = [f"# Benchmark report\n\n{len(records)} per-image results.\n"]
    minimal = minimal_norm_table(records)
    if minimal:
        parts.append("## Minimal-norm attacks ([Rony2023] Table 1; failures counted as 255)\n\n"
                     + markdown_table(minimal, MINIMAL_COLUMNS))
        for (model, mode), curves in failure_curves(records).items():
            stem = f"failure_rate_{_slug(model)}_{mode}"
            title = f"{model}, {mode}"
            plot_failure_png(curves, title, out_dir / f"{stem}.png")
            plot_failure_html(curves, title, out_dir / f"{stem}.html")
            parts.append(f"![failure rate, {title}]({stem}.png) ([interactive]({stem}.html))\n")
        for mode, curves in model_comparison_curves(records).items():
            stem = f"failure_rate_models_{mode}"
            title = f"models side by side, {mode}"
            plot_failure_png(curves, title, out_dir / f"{stem}.png",
                             dashed=[label for label in curves if ": best of " in label])
            plot_failure_html(curves, title, out_dir / f"{stem}.html")
            parts.append(f"![failure rate, {title}]({stem}.png) ([interactive]({stem}.html))\n")
    fixed = fixed_budget_table(records)
    if fixed:
        parts.append("## Accuracy and mIoU against the ground truth (clean, and fixed-budget attacks)\n\n"
                     + markdown_table(fixed, FIXED_COLUMNS))
    timings = timing_table(records)
    if timings:
        parts.append("## Time per image\n\n" + markdown_table(timings, TIMING_COLUMNS))
    path = out_dir / "report.md"
    path.write_text("\n".join(parts))
    return path
