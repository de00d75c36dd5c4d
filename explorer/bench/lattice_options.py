"""Which 8-bit finish?  The options of :func:`explorer.attacks.lattice.finish_8bit`, measured.

On a model's sample images, one continuous minimal-norm attack per mode, then every finish
option on the same results: the 8-bit level each reaches (median and mean over the images,
failures counted as 255), its success rate on the PNG-decoded images, and the model calls it
adds.  The first row is what a PNG of the continuous result holds (plain rounding, no search).

    explorer-bench lattice --model street-unet-mobilenet --attack alma_prox --steps 500
"""
from __future__ import annotations

import time
from typing import Dict, List

import torch

from explorer.attacks import get_attack
from explorer.attacks.lattice import finish_8bit, png_round_trip
from explorer.metrics import apsr, norm_summary

#: the options compared: name -> finish_8bit keyword arguments
OPTIONS: Dict[str, Dict[str, object]] = {
    "rounding only (plain, and stretched to the level)": dict(scales=(1.0,), steps=0),
    "+ scale search (1, 1.5, 2)": dict(steps=0),
    "+ 10 lattice sign steps of 1 level": dict(steps=10, repair=False),
    "+ 10 repair steps (corner jumps of unfooled pixels; default)": dict(steps=10, repair=True),
}


def _summary(levels: torch.Tensor, success: torch.Tensor) -> Dict[str, float]:
    """Median and mean level (failures counted as 255, :func:`explorer.metrics.norm_summary`) and success rate."""
    summary = norm_summary((levels / 255).numpy(), success.numpy())
    return {"median_levels": summary["median_255"], "mean_levels": summary["mean_255"],
            "success_rate": summary["success_rate"]}


def compare_options(model, images: torch.Tensor, labels_by_mode: Dict[str, torch.Tensor], attack: str = "alma_prox",
                    steps: int = 500) -> List[Dict[str, object]]:
    """One row per (mode, option): median/mean 8-bit level, success rate, added model calls,
    time.  ``labels_by_mode`` maps "untargeted"/"targeted" to the ground truth / target maps."""
    rows: List[Dict[str, object]] = []
    for mode, y in labels_by_mode.items():
        targeted = mode == "targeted"
        result = get_attack(attack).function(model, images, y, targeted=targeted, num_steps=steps)
        decoded = png_round_trip(result.adv_images)
        with torch.no_grad():
            rounded_apsr = apsr(model(decoded).argmax(1), y, model.num_classes, targeted=targeted)
        rounded_levels = ((decoded - images).flatten(1).abs().amax(1) * 255).round().cpu()
        rows.append({"mode": mode, "option": "continuous result saved as PNG (plain rounding)",
                     "continuous_median_255": float(result.linf.median() * 255),
                     **_summary(rounded_levels, (rounded_apsr >= result.adv_threshold).cpu()),
                     "extra_forwards": 0.0, "extra_backwards": 0.0, "seconds": 0.0})
        for option, kwargs in OPTIONS.items():
            start = time.perf_counter()
            finished = finish_8bit(model, images, y, result, **kwargs)
            rows.append({"mode": mode, "option": option,
                         "continuous_median_255": float(result.linf.median() * 255),
                         **_summary((finished.linf * 255).round().cpu(), finished.success.cpu()),
                         "extra_forwards": float((finished.num_forwards - result.num_forwards).float().mean()),
                         "extra_backwards": float((finished.num_backwards - result.num_backwards).float().mean()),
                         "seconds": time.perf_counter() - start})
    return rows


COLUMNS = (("mode", "mode", ""), ("option", "option", ""), ("continuous median ×255", "continuous_median_255", ".2f"),
           ("8-bit median (levels)", "median_levels", ".1f"), ("8-bit mean", "mean_levels", ".2f"),
           ("8-bit success", "success_rate", ".0%"), ("+forwards / image", "extra_forwards", ".1f"),
           ("+backwards / image", "extra_backwards", ".1f"), ("seconds", "seconds", ".1f"))
