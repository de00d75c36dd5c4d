"""Minimal-norm attacks by bisection over a fixed-budget attack ([Rony2023] §5.5).

For every image, ``search_steps`` (13) bisection steps on ε over ``[0, eps_max]`` (1, so the
error is 2⁻¹³ ≈ 1e-4 as in the paper): run the fixed-budget attack at the midpoint; when it
reaches APSR >= ν the upper end moves down, else the lower end moves up.  Each image has its
own interval and radius (the inner attack takes an (N,) tensor of radii), and each keeps its
smallest successful iterate by the core's best-iterate rule, so a batch in which only some
images succeed — or, with restarts, only some improve — is handled per image (the public
harness mixes them up).  One record per bisection step: ``linf`` is the radius tried,
``best_linf`` the smallest success so far, ``step_size`` the interval width.

Rows of [Rony2023]'s Table 1: ``ifgsm_bisection`` (I-FGSM 13×20), ``mifgsm_bisection``
(MI-FGSM 13×20) and ``pgd_bisection`` (PGD CE/DLR 13×40 and 13×4×10, presets).
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

import torch
from torch import Tensor, nn

from explorer.attacks.core import AttackResult, AttackRun, SegmentationTask
from explorer.attacks.fixed_budget import sign_gradient_ascent
from explorer.attacks.losses import OBJECTIVES
from explorer.attacks.registry import EPS_MAX, SEARCH_STEPS, ParamSpec, register_attack, step_ratio_param

#: inner(eps (N,)) -> (the fixed-budget result at those radii, the inner run's task)
Inner = Callable[[Tensor], Tuple[AttackResult, SegmentationTask]]


def bisection(run: AttackRun, inner: Inner, search_steps: int, eps_max: float) -> AttackResult:
    """Bisection of ε per image around ``inner`` (module docstring)."""
    n = len(run.images)
    device = run.images.device
    low = torch.zeros(n, device=device)
    high = torch.full((n,), float(eps_max), device=device)
    for step in range(search_steps):
        mid = (low + high) / 2
        result, task = inner(mid)
        run.task = run.task or task
        run.add_counts(result.num_forwards, result.num_backwards)
        apsr = result.apsr.to(device)
        success = apsr >= run.adv_threshold
        run.track(result.adv_images, apsr, result.linf.to(device))
        high = torch.where(success, mid, high)
        low = torch.where(success, low, mid)
        prediction = None
        if run.observed and run.record_maps:  # one more forward, for the pictures only (checked, counted)
            with torch.no_grad():
                prediction = run.forward(result.adv_images).argmax(1)
        stop = run.report(step, apsr=apsr, linf=mid, loss=torch.zeros(n), step_size=high - low,
                          pixel_states=lambda: task.pixel_states(task.pixel_success(prediction)),
                          prediction=lambda: prediction)
        if stop or result.stopped:
            run.stopped = True
            break
    return run.result()


def _bisect_sign_pgd(name: str, model, images, labels, masks, targeted, adv_threshold, callback, record_maps, *,
                     search_steps: int, eps_max: float, num_steps: int, step_ratio: float, loss: str,
                     random_init: bool, restarts: int, momentum: float) -> AttackResult:
    """Bisection (``search_steps`` steps over ``[0, eps_max]``) around
    :func:`~explorer.attacks.fixed_budget.sign_gradient_ascent` with the other arguments."""
    run = AttackRun(name, model, images, labels, masks, targeted, adv_threshold, search_steps, callback, record_maps)

    def inner(eps: Tensor):
        # the outer run's checked inputs, and its constraint set once known: one input check,
        # and the model's class count is compared across every bisection step
        inner_run = AttackRun(name, model, run.images, run._labels, run._masks, targeted, adv_threshold,
                              restarts * num_steps, task=run.task)
        result = sign_gradient_ascent(inner_run, eps, num_steps, step_ratio, OBJECTIVES[loss], random_init,
                                      restarts, momentum)
        return result, inner_run.task

    return bisection(run, inner, search_steps, eps_max)


_REF = "Rony et al., CVPR 2023 [Rony2023] §5.5: 13-step bisection on ε around "


@register_attack(
    "ifgsm_bisection", title="I-FGSM", kind="minimal-norm",
    summary="smallest ε at which 20-step I-FGSM (α = ε/20, no random start) reaches APSR >= ν",
    reference=_REF + "I-FGSM (Kurakin et al. 2017)",
    params=(SEARCH_STEPS, EPS_MAX, ParamSpec("num_steps", int, 20, "I-FGSM iterations per bisection step",
                                             low=1, high=10_000, symbol="T")))
def ifgsm_bisection(model: nn.Module, images: Tensor, labels: Tensor, *, targeted: bool = False,
                    masks: Optional[Tensor] = None, adv_threshold: float = 0.99, search_steps: int = 13,
                    eps_max: float = 1.0, num_steps: int = 20,
                    callback: Optional[Callable[..., Any]] = None, record_maps: bool = False) -> AttackResult:
    """I-FGSM 13×20: bisection (module docstring) of CE sign-gradient ascent with α = ε/T."""
    return _bisect_sign_pgd("ifgsm_bisection", model, images, labels, masks, targeted, adv_threshold, callback,
                            record_maps, search_steps=search_steps, eps_max=eps_max, num_steps=num_steps,
                            step_ratio=1 / num_steps, loss="ce", random_init=False,
                            restarts=1, momentum=0.0)


@register_attack(
    "mifgsm_bisection", title="MI-FGSM", kind="minimal-norm",
    summary="smallest ε at which 20-step MI-FGSM (momentum 1, ℓ1-normalised gradients) reaches APSR >= ν",
    reference=_REF + "MI-FGSM (Dong et al. 2018)",
    params=(SEARCH_STEPS, EPS_MAX,
            ParamSpec("num_steps", int, 20, "MI-FGSM iterations per bisection step", low=1, high=10_000, symbol="T"),
            ParamSpec("momentum", float, 1.0, "momentum μ", low=0.0, high=10.0, symbol="μ")))
def mifgsm_bisection(model: nn.Module, images: Tensor, labels: Tensor, *, targeted: bool = False,
                     masks: Optional[Tensor] = None, adv_threshold: float = 0.99, search_steps: int = 13,
                     eps_max: float = 1.0, num_steps: int = 20, momentum: float = 1.0,
                     callback: Optional[Callable[..., Any]] = None, record_maps: bool = False) -> AttackResult:
    """MI-FGSM 13×20: bisection of CE sign-gradient ascent with momentum, α = ε/T."""
    return _bisect_sign_pgd("mifgsm_bisection", model, images, labels, masks, targeted, adv_threshold, callback,
                            record_maps, search_steps=search_steps, eps_max=eps_max, num_steps=num_steps,
                            step_ratio=1 / num_steps, loss="ce", random_init=False,
                            restarts=1, momentum=momentum)


@register_attack(
    "pgd_bisection", title="PGD", kind="minimal-norm",
    summary="smallest ε at which PGD (CE or DLR, random start, restarts) reaches APSR >= ν",
    reference=_REF + "PGD (Madry et al. 2018) with the CE or DLR (Croce & Hein 2020) loss",
    params=(SEARCH_STEPS, EPS_MAX,
            ParamSpec("num_steps", int, 40, "PGD iterations per restart", low=1, high=10_000, symbol="T"),
            ParamSpec("restarts", int, 1, "random restarts per bisection step; each image keeps its best",
                      low=1, high=100),
            ParamSpec("loss", str, "ce", "loss maximised", choices=("ce", "dlr")),
            step_ratio_param(2.5 / 40)),
    presets={"PGD CE 13×40": {"loss": "ce"},
             "PGD CE 13×4×10": {"loss": "ce", "num_steps": 10, "restarts": 4, "step_ratio": 0.25},
             "PGD DLR 13×40": {"loss": "dlr"},
             "PGD DLR 13×4×10": {"loss": "dlr", "num_steps": 10, "restarts": 4, "step_ratio": 0.25}})
def pgd_bisection(model: nn.Module, images: Tensor, labels: Tensor, *, targeted: bool = False,
                  masks: Optional[Tensor] = None, adv_threshold: float = 0.99, search_steps: int = 13,
                  eps_max: float = 1.0, num_steps: int = 40, restarts: int = 1, loss: str = "ce",
                  step_ratio: float = 2.5 / 40,
                  callback: Optional[Callable[..., Any]] = None, record_maps: bool = False) -> AttackResult:
    """PGD 13×T(×R): bisection of random-start PGD with ``restarts`` runs per step."""
    return _bisect_sign_pgd("pgd_bisection", model, images, labels, masks, targeted, adv_threshold, callback,
                            record_maps, search_steps=search_steps, eps_max=eps_max, num_steps=num_steps,
                            step_ratio=step_ratio, loss=loss, random_init=True,
                            restarts=restarts, momentum=0.0)
