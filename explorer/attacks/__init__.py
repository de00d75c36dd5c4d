"""Adversarial attacks on segmentation models, one module per attack.

Every attack is a plain function with one signature::

    attack(model, images, labels, *, targeted=False, masks=None, adv_threshold=0.99,
           <hyper-parameters>, callback=None, record_maps=False) -> AttackResult

``ATTACKS`` maps each name to its :class:`AttackSpec` (function, parameter schema,
presets); ``get_attack(name)`` looks one up.  What every attack shares (input checks,
APSR, best-iterate tracking, the per-iteration record, stop requests) lives in
:mod:`explorer.attacks.core`.
"""
# Importing an attack module registers it.
from explorer.attacks.alma_prox import alma_prox  # noqa: E402
from explorer.attacks.bisection import ifgsm_bisection, mifgsm_bisection, pgd_bisection  # noqa: E402
from explorer.attacks.core import STOP, AttackResult, AttackRun, IterationRecord, PixelState, SegmentationTask
from explorer.attacks.dag import dag  # noqa: E402
from explorer.attacks.fixed_budget import apgd, cospgd, pgd, segpgd, tsallis_pgd  # noqa: E402
from explorer.attacks.fmn import fmn  # noqa: E402
from explorer.attacks.pdpgd import pdpgd  # noqa: E402
from explorer.attacks.prox import prox_linf_box
from explorer.attacks.registry import ADV_THRESHOLD, ATTACKS, AttackSpec, ParamSpec, get_attack
from explorer.attacks.sea import sea  # noqa: E402

__all__ = [
    "ATTACKS", "ADV_THRESHOLD", "AttackResult", "AttackRun", "AttackSpec", "IterationRecord",
    "ParamSpec", "PixelState", "STOP", "SegmentationTask", "alma_prox", "apgd", "cospgd", "dag", "fmn",
    "get_attack", "ifgsm_bisection", "mifgsm_bisection", "pdpgd", "pgd", "pgd_bisection", "prox_linf_box",
    "sea", "segpgd", "tsallis_pgd",
]
