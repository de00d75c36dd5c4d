"""SEA: the segmentation ensemble attack [Croce2024].

APGD runs with progressive radius reduction (2ε, 1.5ε, ε over 30/30/40 % of 300 iterations
each, :func:`explorer.attacks.fixed_budget.apgd_ascent`: step-size control on CE, each stage
started from the previous stage's best iterate), one per loss of
:data:`explorer.attacks.losses.OBJECTIVES`.  The ``members`` parameter picks the losses
(:data:`SEA_MEMBERS`):

* ``"eccv2024"`` — the authors' final release (3 members): class-balanced masked CE
  (``balanced_masked_ce``), masked CE, the Jensen–Shannon divergence (closed form);
* ``"arxiv2023"`` — the 2023 code (4 members): masked CE, balanced CE in the SegPGD weighting
  (``segpgd``), JS, the masked spherical loss;
* ``"all"`` (default) — the 5 distinct members of both: an extra member can only lower the
  per-image worst case, at ``num_steps`` more passes.

Per image the ensemble returns the member result with the highest APSR — untargeted, the
lowest pixel accuracy on ``M`` — so its accuracy is at most every member's.  The members'
results are kept in ``result.members``; :func:`explorer.metrics.greedy_worst_case_miou`
assigns members to images to lower a dataset's mIoU ([Croce2024]'s worst-case mIoU).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from explorer.attacks.core import AttackResult, AttackRun, IterationRecord, keep_better, linf_distance, per_image_eps
from explorer.attacks.fixed_budget import RADIUS_STAGES, apgd_ascent
from explorer.attacks.losses import OBJECTIVES
from explorer.attacks.registry import (
    APGD_TRACK,
    EPS,
    RANDOM_INIT,
    ParamSpec,
    register_attack,
    steps_param,
)

#: SEA's member losses for each ``members`` choice, in the order they run.  ``"all"`` is the
#: 2023 four followed by the ECCV-2024 class-balanced masked CE, so the member indices of the
#: 2023 members are unchanged.
SEA_MEMBERS: Dict[str, Tuple[str, ...]] = {
    "all": ("masked_ce", "segpgd", "js", "spherical", "balanced_masked_ce"),
    "eccv2024": ("balanced_masked_ce", "masked_ce", "js"),
    "arxiv2023": ("masked_ce", "segpgd", "js", "spherical"),
}
#: the default members (``members="all"``), in the order they run
SEA_LOSSES = SEA_MEMBERS["all"]
MEMBERS = ParamSpec("members", str, "all", "SEA's losses: the ECCV-2024 release's 3 ('eccv2024': balanced "
                    "masked CE, masked CE, JS), the 2023 code's 4 ('arxiv2023': masked CE, SegPGD CE, JS, "
                    "masked spherical) or all 5 ('all')", choices=tuple(SEA_MEMBERS))


@register_attack(
    "sea", title="SEA", kind="fixed-budget",
    summary="ensemble of APGD with radius reduction on masked CE, class-balanced masked CE, SegPGD CE, JS and "
            "masked spherical losses",
    reference="Croce, Singh & Hein, Towards Reliable Evaluation and Fast Training of Robust Semantic "
              "Segmentation Models, ECCV 2024 [Croce2024]",
    params=(EPS, steps_param(300), RANDOM_INIT, MEMBERS, APGD_TRACK),
    ensemble_size=lambda values: len(SEA_MEMBERS[values["members"]]))
def sea(model: nn.Module, images: Tensor, labels: Tensor, *, targeted: bool = False,
        masks: Optional[Tensor] = None, adv_threshold: float = 0.99, eps: float = 8 / 255,
        num_steps: int = 300, random_init: bool = True, members: str = "all", track: str = "ce",
        callback: Optional[Callable[..., Any]] = None, record_maps: bool = False) -> AttackResult:
    """SEA (module docstring).  ``num_steps`` iterations per member; ``track`` is the members'
    APGD step-size control (:func:`~explorer.attacks.fixed_budget.apgd_ascent`).

    The callback and ``result.trace`` see the ensemble's records: attack ``"sea"``,
    iterations numbered across members (``0 .. A × num_steps - 1`` for A members, contiguous),
    ``num_steps = A × num_steps`` and the member's index in ``SEA_MEMBERS[members]`` in
    ``extras["member"]`` — the same with or without ``record_maps``.  Each record is
    built anew from the member's (never by modifying it), so the members' own traces,
    in ``result.members``, keep their own names (``"sea/<loss>"``) and iteration numbers.
    A member's ``params`` are the ensemble's hyper-parameters and its ``loss``.
    """
    losses = SEA_MEMBERS[members]
    results_by_loss: Dict[str, AttackResult] = {}
    trace: Optional[List[IterationRecord]] = [] if callback is not None else None
    total_steps = len(losses) * num_steps
    offset = 0
    task = None
    run = None
    for index, loss in enumerate(losses):
        def relay(record: IterationRecord, _index: int = index, _offset: int = offset):
            extras = dict(record.extras)
            extras["member"] = torch.full_like(record.apsr, float(_index))
            ensemble = replace(record, attack="sea", iteration=record.iteration + _offset,
                               num_steps=total_steps, extras=extras)
            trace.append(ensemble.copy(maps=False))
            return callback(ensemble)

        if run is not None:  # the first member's checked inputs and constraint set (one input check)
            images, labels, masks = run.images, run._labels, run._masks
        run = AttackRun(f"sea/{loss}", model, images, labels, masks, targeted, adv_threshold, num_steps,
                        relay if callback is not None else None, record_maps, params=dict(loss=loss), task=task)
        eps_t = per_image_eps(eps, len(run.images), run.images.device)
        offset += apgd_ascent(run, eps_t, num_steps, OBJECTIVES[loss], random_init, RADIUS_STAGES, track=track)
        results_by_loss[loss] = run.result()
        task = run.task  # later members check the model's class count against the first's
        if results_by_loss[loss].stopped:
            break
    # per image, the member with the highest APSR
    results = list(results_by_loss.values())
    best_adv, best_apsr = results[0].adv_images, results[0].apsr
    for result in results[1:]:
        best_adv, best_apsr, _ = keep_better(best_adv, best_apsr, result.adv_images, result.apsr)
    return AttackResult(
        attack="sea", adv_images=best_adv, linf=linf_distance(best_adv, run.images), apsr=best_apsr,
        success=best_apsr >= run.adv_threshold, num_forwards=sum(r.num_forwards for r in results),
        num_backwards=sum(r.num_backwards for r in results), iterations=offset, stopped=results[-1].stopped,
        elapsed_s=sum(r.elapsed_s for r in results), targeted=run.targeted,
        adv_threshold=run.adv_threshold, trace=trace, members=results_by_loss)
