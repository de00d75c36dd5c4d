"""Side-by-side runs on the same model, images and budget, measured in one process.

* :func:`compare_with_reference` — our ALMA prox, DAG and PDPGD against the reference
  implementations in ``adv-lib`` (Rony et al.; optional ``bench`` extra), with the
  reference's settings from the ALMA prox paper's experiments.
* :func:`compare_penalty_gradients` — ALMA prox with the true derivative of the penalty
  (eq. 9) against the reference library's backward (``μ·y`` in place of ``μ``).

Every adversarial image is scored by the same code (:func:`explorer.metrics.apsr` of the
model's prediction; success is APSR ≥ ν), whatever produced it, and failures count as
255 in the medians (:func:`explorer.metrics.norm_summary`).
"""
from __future__ import annotations

import sys
import time
import types
from typing import Callable, Dict, List, Mapping, Tuple

import torch
from torch import Tensor

from explorer.attacks import ATTACKS, alma_prox
from explorer.errors import InputError
from explorer.metrics import apsr, linf_norm, norm_summary

ADV_LIB_INSTALL = "pip install --no-deps adv-lib==0.2.8"


def import_adv_lib() -> Dict[str, Callable]:
    """adv-lib's segmentation attacks, importable without ``visdom``.

    adv-lib imports ``visdom`` (a plotting server) at import time, only to type-hint an
    optional logger, and visdom's source distribution no longer builds with current
    setuptools.  When visdom is missing, a stand-in module is registered for the duration
    of the import; constructing its ``Visdom`` raises, so nothing can silently use it.
    """
    stub_added = False
    try:
        import visdom  # noqa: F401
    except ImportError:
        stub = types.ModuleType("visdom")

        class Visdom:  # noqa: D401 - a refusal, not a client
            def __init__(self, *args, **kwargs):
                raise RuntimeError("visdom is not installed; the explorer never logs to visdom")

        stub.Visdom = Visdom
        sys.modules["visdom"] = stub
        stub_added = True
    try:
        from adv_lib.attacks.segmentation import alma_prox, dag, pdpgd
    except ImportError as error:
        raise InputError(f"the reference comparison needs adv-lib: {ADV_LIB_INSTALL} ({error})") from None
    finally:
        if stub_added:
            sys.modules.pop("visdom", None)
    return {"alma_prox": alma_prox, "dag": dag, "pdpgd": pdpgd}


def score(model, images: Tensor, adv: Tensor, labels: Tensor, targeted: bool,
          adv_threshold: float = 0.99) -> Tuple[Tensor, Tensor]:
    """ℓ∞ norm and success (APSR ≥ ν) of adversarial images, by the explorer's metric."""
    with torch.no_grad():
        logits = model(adv)
    rate = apsr(logits.argmax(1), labels, logits.shape[1], targeted=targeted)
    return linf_norm(adv - images).cpu(), (rate >= adv_threshold).cpu()


def run_side_by_side(model, images: Tensor, labels: Tensor, targeted: bool,
                     runners: Mapping[str, Callable[[], Tensor]]) -> List[Dict[str, object]]:
    """Run each ``runner`` (returns adversarial images), time it, score it; one row per runner."""
    rows = []
    for name, runner in runners.items():
        if images.is_cuda:
            torch.cuda.synchronize(images.device)
        start = time.perf_counter()
        adv = runner()
        if images.is_cuda:
            torch.cuda.synchronize(images.device)
        seconds = time.perf_counter() - start
        norms, success = score(model, images, adv.detach(), labels, targeted)
        summary = norm_summary(norms, success)
        rows.append({"run": name, "median_255": summary["median_255"], "mean_255": summary["mean_255"],
                     "success_rate": summary["success_rate"], "seconds": seconds,
                     "norms_255": (norms * 255).tolist(), "success": success.tolist()})
    return rows


def ratio_row(ours: Mapping, reference: Mapping, name: str) -> Dict[str, object]:
    """Ours over the reference: median norm ratio, both success rates, time ratio."""
    return {"attack": name, "median_ratio": ours["median_255"] / max(reference["median_255"], 1e-12),
            "ours_median_255": ours["median_255"], "reference_median_255": reference["median_255"],
            "ours_success": ours["success_rate"], "reference_success": reference["success_rate"],
            "time_ratio": ours["seconds"] / max(reference["seconds"], 1e-12)}


def compare_with_reference(model, images: Tensor, labels: Tensor, targeted: bool, num_steps: int = 500,
                           attacks=("alma_prox", "dag", "pdpgd")) -> Tuple[List[Dict], List[Dict]]:
    """Our attacks and adv-lib's on the same inputs and budget; returns (runs, ratios)."""

    reference = import_adv_lib()

    def settings(name: str, steps: int) -> Dict[str, object]:  # the ALMA prox paper's settings for adv-lib
        return {"alma_prox": dict(num_steps=steps, lr_init=1e-3, lr_reduction=0.1, μ_init=1, ρ_init=0.01,
                                  scale_min=0.1, scale_max=1, scale_init=1, α=0.8, constraint_masking=True,
                                  mask_decay=True),
                "dag": dict(max_iter=steps, γ=0.003, p=float("inf")),
                "pdpgd": dict(norm=float("inf"), num_steps=steps, primal_lr=0.01, dual_ratio_init=1)}[name]

    ours = {"alma_prox": dict(num_steps=num_steps), "dag": dict(num_steps=num_steps, step_size=0.003),
            "pdpgd": dict(num_steps=num_steps)}
    for name in attacks:  # warm-up (adv-lib compiles its prox with torch.compile on first use): not timed
        reference[name](model, images[:1], labels[:1], targeted=targeted, **settings(name, 2))
        ATTACKS[name](model, images[:1], labels[:1], targeted=targeted, num_steps=2)
    runners: Dict[str, Callable[[], Tensor]] = {}
    for name in attacks:
        runners[f"{name} (ours)"] = (lambda n=name: ATTACKS[n](model, images, labels, targeted=targeted,
                                                              **ours[n]).adv_images)
        runners[f"{name} (adv-lib)"] = (lambda n=name: reference[n](model, images, labels, targeted=targeted,
                                                                   **settings(n, num_steps)))
    runs = run_side_by_side(model, images, labels, targeted, runners)
    by_name = {r["run"]: r for r in runs}
    ratios = [ratio_row(by_name[f"{n} (ours)"], by_name[f"{n} (adv-lib)"], n) for n in attacks]
    return runs, ratios


def compare_penalty_gradients(model, images: Tensor, labels: Tensor, targeted: bool,
                              num_steps: int = 500) -> Tuple[List[Dict], List[Dict]]:
    """ALMA prox with the true penalty derivative and with the reference's; returns (runs, ratios)."""

    runners = {f"alma_prox penalty_grad={g}": (lambda g=g: alma_prox(model, images, labels, targeted=targeted,
                                                                     num_steps=num_steps,
                                                                     penalty_grad=g).adv_images)
               for g in ("true", "reference")}
    runs = run_side_by_side(model, images, labels, targeted, runners)
    return runs, [ratio_row(runs[0], runs[1], "true / reference derivative")]
