"""Fixed-budget attacks: the most damage inside the ℓ∞ ball of radius ε.

Two optimisers, written once and shared by every fixed-budget attack:

* :func:`sign_gradient_ascent` — PGD / I-FGSM / MI-FGSM steps
  ``δ ← Π_ε(δ + α sign(g))`` (with MI-FGSM's momentum on ℓ1-normalised gradients when
  ``momentum > 0``), optional random start and restarts (the first run starts at 0 unless
  ``random_init``; every later restart from a random draw, so restarts never repeat one
  another).  Used by ``pgd``, ``segpgd``, ``cospgd`` and the bisection attacks.
* :func:`apgd_ascent` — APGD (Croce & Hein 2020): step ``2ε``, momentum 0.75, checkpoints
  ``p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)`` (of the
  iterations, :func:`apgd_checkpoints`); at a checkpoint
  the step is halved and the iterate restarts from the best point when fewer than 75 % of
  the steps since the previous checkpoint increased the tracked loss, or when neither the
  step nor the best tracked loss changed.  The tracked loss (``track``) is by default the
  per-image CE over ``M`` (minus the CE to the target when targeted), as in both authors'
  codes, whatever objective the gradient follows; ``track="objective"`` tracks the objective
  itself (our earlier behaviour).  Optional *radius stages* (SEA / TsallisPGD, seeds
  003–004): the budget is split into stages of radius ``2ε, 1.5ε, ε`` over 30/30/40 % of the
  iterations, the optimiser state reset at each stage, and each stage starts from the
  previous stage's highest-APSR iterate (ties: the later), projected onto the new ball
  (``stage_start="last"``: from its last iterate).  Used by ``apgd``, ``tsallis_pgd`` and ``sea``.

Every iteration evaluates the current iterate (one forward and one backward), keeps the
iterate with the highest APSR inside the final ball (the fixed-budget best-iterate rule of
:meth:`~explorer.attacks.core.AttackRun.track_highest_apsr`: untargeted, the lowest pixel
accuracy on ``M``) and reports the same :class:`~explorer.attacks.core.IterationRecord` as
every attack.  The last iterate of each run is evaluated too (one more forward).  The
objectives are :data:`explorer.attacks.losses.OBJECTIVES`, maximised and averaged over ``M``.

``eps`` is in pixel units of images in [0, 1] (8/255 ≈ 0.0314); internally it may be an
(N,) tensor, one radius per image, which the bisection attacks use.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from explorer.attacks.core import (
    AttackResult,
    AttackRun,
    Evaluation,
    per_image_eps,
    per_image_view,
    project_linf,
    random_start,
)
from explorer.attacks.losses import OBJECTIVES
from explorer.attacks.registry import (
    APGD_TRACK,
    EPS,
    OBJECTIVE,
    RANDOM_INIT,
    ParamSpec,
    register_attack,
    step_ratio_param,
    steps_param,
)

Objective = Callable[..., Tensor]
#: what drives APGD's step-size control (:data:`explorer.attacks.registry.APGD_TRACK`)
TRACKS = APGD_TRACK.choices
#: where a radius stage starts: the previous stage's highest-APSR iterate, or its last iterate
STAGE_STARTS = ("best", "last")
#: SEA / TsallisPGD radius stages: (radius factor, fraction of the iterations)
RADIUS_STAGES: Tuple[Tuple[float, float], ...] = ((2.0, 0.3), (1.5, 0.3), (1.0, 0.4))
SINGLE_STAGE: Tuple[Tuple[float, float], ...] = ((1.0, 1.0),)


# --------------------------------------------------------------------------- shared pieces

def mean_over_mask(run: AttackRun, per_pixel: Tensor) -> Tensor:
    """Per-image mean of a per-pixel map over the labelled pixels ``M``."""
    task = run.task
    return (per_pixel * task.masks).flatten(1).sum(1) / task.mask_count


def evaluate(run: AttackRun, delta: Tensor, objective: Objective, progress: float,
             eps_final: Tensor, with_grad: bool = True,
             track_ce: bool = False) -> Tuple[Evaluation, Tensor, Optional[Tensor], Optional[Tensor]]:
    """Evaluate ``x + δ`` (:meth:`~explorer.attacks.core.AttackRun.evaluate`, fixed-budget rule
    inside ``eps_final``) and the per-image mean of ``objective`` over ``M``.

    An objective with the attribute ``uses_mask`` (the class-balanced masked CE, whose class
    weights come from the labelled pixels) also gets ``mask=M``.  Returns the evaluation
    (without its logits, which the loops do not keep), the objective (detached), its gradient
    with respect to ``δ`` (when ``with_grad``, else None) and, when ``track_ce``, the
    per-image CE over ``M`` of the same logits (``-CE(z, t)`` targeted; detached, no extra
    forward), else None."""
    delta = delta.detach().requires_grad_(with_grad)
    with torch.set_grad_enabled(with_grad):
        ev = run.evaluate(run.images + delta, delta, budget=eps_final)
        task = run.task
        extra = {"mask": task.masks} if getattr(objective, "uses_mask", False) else {}
        per_pixel = objective(ev.logits, task.labels, task.targeted, ev.pixel_adv, progress, **extra)
        loss = mean_over_mask(run, per_pixel)
    tracked = None
    if track_ce:
        with torch.no_grad():
            tracked = mean_over_mask(run, OBJECTIVES["ce"](ev.logits.detach(), task.labels, task.targeted))
    grad = None
    if with_grad:
        grad = run.gradient(loss, delta)
    return replace(ev, logits=None), loss.detach(), grad, tracked


def report(run: AttackRun, iteration: int, ev: Evaluation, loss: Tensor, step_size: Tensor, extras=None) -> bool:
    """Send the record of an evaluated iterate (its objective ``loss``); True when the callback asks to stop."""
    return run.report(iteration, apsr=ev.apsr, linf=ev.linf, loss=loss, step_size=step_size,
                      extras=extras, pixel_states=lambda: run.task.pixel_states(ev.pixel_adv),
                      prediction=lambda: ev.prediction)


# --------------------------------------------------------------------------- sign-gradient PGD

def sign_gradient_ascent(run: AttackRun, eps: Tensor, num_steps: int, step_ratio: float,
                         objective: Objective, random_init: bool, restarts: int = 1,
                         momentum: float = 0.0) -> AttackResult:
    """``restarts`` × ``num_steps`` sign-gradient steps of size ``α = step_ratio · ε`` (see the
    module docstring); MI-FGSM when ``momentum > 0``: ``g ← μ g + ∇ / ||∇||_1``.

    The first run starts at ``δ = 0`` unless ``random_init``; every later restart starts from
    a uniform draw in the ball whatever ``random_init`` says (as the ALMA prox harness does),
    so restarts never repeat the first run."""
    images = run.images
    step = per_image_view(step_ratio * eps, images)
    iteration = 0
    for restart in range(restarts):
        delta = random_start(images, eps) if (random_init or restart > 0) else torch.zeros_like(images)
        velocity = torch.zeros_like(images)
        for t in range(num_steps):
            ev, loss, grad, _ = evaluate(run, delta, objective, t / num_steps, eps)
            if momentum > 0:
                l1 = per_image_view(grad.flatten(1).abs().sum(1).clamp_min(1e-12), grad)
                velocity = momentum * velocity + grad / l1
                direction = velocity.sign()
            else:
                direction = grad.sign()
            delta = project_linf(delta + step * direction, images, eps)
            stop = report(run, iteration, ev, loss, step.flatten())
            iteration += 1
            if stop:
                return run.result()
        evaluate(run, delta, objective, 1.0, eps, with_grad=False)  # the last iterate counts too
    return run.result()


# --------------------------------------------------------------------------- APGD

def apgd_checkpoints(num_steps: int) -> list:
    """Iterations at which APGD checks its progress (Croce & Hein 2020, §3.2), in the
    reference's integer form: the first after ``⌊0.22 n⌋`` steps, then intervals shrinking
    by ``⌊0.03 n⌋`` down to ``⌊0.06 n⌋`` (each at least 1)."""
    interval = max(int(0.22 * num_steps), 1)
    decrease, minimum = max(int(0.03 * num_steps), 1), max(int(0.06 * num_steps), 1)
    points, at = [], interval
    while at < num_steps:
        points.append(at)
        interval = max(interval - decrease, minimum)
        at += interval
    return points


def stage_lengths(num_steps: int, stages: Sequence[Tuple[float, float]]) -> list:
    """Iterations of each radius stage (the last takes the remainder)."""
    lengths = [int(round(fraction * num_steps)) for _, fraction in stages[:-1]]
    return lengths + [num_steps - sum(lengths)]


def apgd_ascent(run: AttackRun, eps: Tensor, num_steps: int, objective: Objective, random_init: bool,
                stages: Sequence[Tuple[float, float]] = SINGLE_STAGE, momentum: float = 0.75,
                rho: float = 0.75, iteration_offset: int = 0, track: str = "ce",
                stage_start: str = "best") -> int:
    """APGD over ``stages`` (module docstring); returns the number of iterations reported.

    The gradient is that of ``objective``; the step-size control — the count of increases
    behind the oscillation test, the "no improvement" test and the best point (and its
    gradient) that a halved image restarts from — follows the per-image CE over ``M``
    (``track="ce"``; ``-CE(z, t)`` targeted) or the objective itself (``track="objective"``).
    Masked and scheduled objectives (masked CE, SegPGD's λ_t, Tsallis' moving q) are not
    comparable across iterates; both authors' codes track CE.

    Each radius stage after the first starts from the previous stage's best iterate
    (``stage_start="best"``): the highest APSR among the iterates evaluated in that stage,
    its last iterate included, inside that stage's ball — ties go to the later iterate, as in
    the authors' codes — projected onto the new ball; ``stage_start="last"`` starts from the
    last iterate.  What the attack returns is unaffected: the best iterate inside the final
    ball over every stage (:meth:`~explorer.attacks.core.AttackRun.track_highest_apsr`).

    The objective's ``progress`` restarts at 0 in every stage (TsallisPGD's q schedule)."""
    if track not in TRACKS:
        raise ValueError(f"track must be one of {list(TRACKS)}, got {track!r}")
    if stage_start not in STAGE_STARTS:
        raise ValueError(f"stage_start must be one of {list(STAGE_STARTS)}, got {stage_start!r}")
    track_ce = track == "ce"
    images = run.images
    n = len(images)
    iteration = iteration_offset
    delta = random_start(images, stages[0][0] * eps) if random_init else torch.zeros_like(images)
    for (factor, _), length in zip(stages, stage_lengths(num_steps, stages)):
        if length <= 0:
            continue
        radius = factor * eps
        delta = project_linf(delta, images, radius)
        eta = 2 * radius
        checkpoints = set(apgd_checkpoints(length))
        previous = delta
        best_loss = torch.full((n,), -float("inf"), device=images.device)
        best_delta, best_grad = delta, None
        increases = torch.zeros(n, device=images.device)
        last_loss = None
        since, eta_at_check, best_at_check = 0, eta.clone(), best_loss.clone()
        # this stage's highest-APSR iterate inside its own ball (ties: the later), for the next stage
        stage_apsr = torch.full((n,), -float("inf"), device=images.device)
        stage_best = delta

        def keep_stage_best(ev: Evaluation, iterate: Tensor):
            nonlocal stage_apsr, stage_best
            inside = ev.linf <= radius + 1e-6
            better = inside & (ev.apsr >= stage_apsr)
            stage_apsr = torch.where(better, ev.apsr.to(stage_apsr.dtype), stage_apsr)
            stage_best = torch.where(per_image_view(better, iterate), iterate, stage_best)

        for k in range(length):
            ev, loss, grad, tracked = evaluate(run, delta, objective, k / length, eps, track_ce=track_ce)
            keep_stage_best(ev, delta)
            control = tracked if track_ce else loss
            if last_loss is not None:
                increases += (control > last_loss).float()
            last_loss = control
            better = control > best_loss
            best_loss = torch.where(better, control, best_loss)
            best_delta = torch.where(per_image_view(better, delta), delta, best_delta)
            best_grad = grad if best_grad is None else torch.where(per_image_view(better, grad), grad, best_grad)
            since += 1
            stop = report(run, iteration, ev, loss, eta)
            iteration += 1
            if stop:
                return iteration - iteration_offset
            if k in checkpoints:
                too_few = increases < rho * since
                stalled = (eta == eta_at_check) & (best_loss == best_at_check)
                shrink = too_few | stalled
                eta = torch.where(shrink, eta / 2, eta)
                # restart the shrunk images from their best point (and its gradient)
                delta = torch.where(per_image_view(shrink, delta), best_delta, delta)
                grad = torch.where(per_image_view(shrink, grad), best_grad, grad)
                previous = torch.where(per_image_view(shrink, delta), delta, previous)
                increases.zero_()
                since, eta_at_check, best_at_check = 0, eta.clone(), best_loss.clone()
            z = project_linf(delta + per_image_view(eta, delta) * grad.sign(), images, radius)
            if k == 0:
                new = z
            else:
                new = project_linf(delta + momentum * (z - delta) + (1 - momentum) * (delta - previous),
                                   images, radius)
            previous, delta = delta, new
        ev, _, _, _ = evaluate(run, delta, objective, 1.0, eps, with_grad=False)  # the last iterate counts too
        keep_stage_best(ev, delta)
        if stage_start == "best":
            delta = stage_best
    return iteration - iteration_offset


# --------------------------------------------------------------------------- registered attacks

def _run(name, model, images, labels, masks, targeted, adv_threshold, num_steps, callback, record_maps, eps):
    """The attack's run and ``eps`` as an (N,) tensor on the images' device."""
    run = AttackRun(name, model, images, labels, masks, targeted, adv_threshold, num_steps, callback, record_maps)
    return run, per_image_eps(eps, len(run.images), run.images.device)


PGD_PARAMS = (
    EPS, steps_param(40), step_ratio_param(2.5 / 40, "step size α as a fraction of ε (Madry et al.: 2.5/T)"),
    OBJECTIVE, RANDOM_INIT,
    ParamSpec("restarts", int, 1, "independent runs; each image keeps its best", low=1, high=100),
    ParamSpec("momentum", float, 0.0, "MI-FGSM momentum μ on ℓ1-normalised gradients (0: plain PGD)",
              low=0.0, high=10.0, symbol="μ"),
)


@register_attack(
    "pgd", title="PGD", kind="fixed-budget",
    summary="projected sign-gradient ascent on a per-pixel loss inside the ε-ball (CE by default)",
    reference="Madry et al., Towards Deep Learning Models Resistant to Adversarial Attacks, ICLR 2018",
    params=PGD_PARAMS,
    presets={"PGD CE 40": {"loss": "ce"}, "PGD DLR 40": {"loss": "dlr"},
             "PGD CE 4×10": {"loss": "ce", "num_steps": 10, "restarts": 4, "step_ratio": 0.25},
             "I-FGSM 20": {"num_steps": 20, "step_ratio": 0.05, "random_init": False},
             "MI-FGSM 20": {"num_steps": 20, "step_ratio": 0.05, "random_init": False, "momentum": 1.0}})
def pgd(model: nn.Module, images: Tensor, labels: Tensor, *, targeted: bool = False,
        masks: Optional[Tensor] = None, adv_threshold: float = 0.99, eps: float = 8 / 255,
        num_steps: int = 40, step_ratio: float = 2.5 / 40, loss: str = "ce", random_init: bool = True,
        restarts: int = 1, momentum: float = 0.0,
        callback: Optional[Callable[..., Any]] = None, record_maps: bool = False) -> AttackResult:
    """PGD (ℓ∞): ``δ ← clip(x + clip(δ + α sign(∇L), -ε, ε), 0, 1) - x`` with ``L`` the mean of
    the per-pixel ``loss`` over ``M``; I-FGSM is ``random_init=False``; MI-FGSM adds
    ``momentum`` (Dong et al. 2018).  Returns the highest-APSR iterate (module docstring)."""
    run, eps_t = _run("pgd", model, images, labels, masks, targeted, adv_threshold, restarts * num_steps,
                      callback, record_maps, eps)
    return sign_gradient_ascent(run, eps_t, num_steps, step_ratio, OBJECTIVES[loss], random_init, restarts,
                                momentum)


SEGPGD_PARAMS = (EPS, steps_param(20), step_ratio_param(0.25), RANDOM_INIT)


@register_attack(
    "segpgd", title="SegPGD", kind="fixed-budget",
    summary="PGD on CE re-weighted between correct and wrong pixels, λ_t = t/(2T)",
    reference="Gu et al., SegPGD: An Effective and Efficient Adversarial Attack for Evaluating and "
              "Boosting Segmentation Robustness, ECCV 2022 [Gu2022]",
    params=SEGPGD_PARAMS)
def segpgd(model: nn.Module, images: Tensor, labels: Tensor, *, targeted: bool = False,
           masks: Optional[Tensor] = None, adv_threshold: float = 0.99, eps: float = 8 / 255,
           num_steps: int = 20, step_ratio: float = 0.25, random_init: bool = True,
           callback: Optional[Callable[..., Any]] = None, record_maps: bool = False) -> AttackResult:
    """SegPGD ([Gu2022], eq. 5): ``L_t = ((1-λ_t) Σ_correct CE + λ_t Σ_wrong CE) / |M|``,
    ``λ_t = t / (2T)``, correct/wrong recomputed (detached) at every step.  Targeted: see
    :func:`explorer.attacks.losses.segpgd_weights`."""
    run, eps_t = _run("segpgd", model, images, labels, masks, targeted, adv_threshold, num_steps, callback,
                      record_maps, eps)
    return sign_gradient_ascent(run, eps_t, num_steps, step_ratio, OBJECTIVES["segpgd"], random_init)


@register_attack(
    "cospgd", title="CosPGD", kind="fixed-budget",
    summary="PGD on CE weighted per pixel by the cosine between softmax and one-hot label",
    reference="Agnihotri et al., CosPGD: an efficient white-box adversarial attack for pixel-wise "
              "prediction tasks, ICML 2024",
    params=SEGPGD_PARAMS)
def cospgd(model: nn.Module, images: Tensor, labels: Tensor, *, targeted: bool = False,
           masks: Optional[Tensor] = None, adv_threshold: float = 0.99, eps: float = 8 / 255,
           num_steps: int = 20, step_ratio: float = 0.25, random_init: bool = True,
           callback: Optional[Callable[..., Any]] = None, record_maps: bool = False) -> AttackResult:
    """CosPGD: ``L = Σ_M cos(softmax(z), onehot(y)) CE / |M|`` (weight detached); targeted
    weight ``1 - cos`` on ``-CE(z, t)``."""
    run, eps_t = _run("cospgd", model, images, labels, masks, targeted, adv_threshold, num_steps, callback,
                      record_maps, eps)
    return sign_gradient_ascent(run, eps_t, num_steps, step_ratio, OBJECTIVES["cospgd"], random_init)


APGD_PARAMS = (
    EPS, steps_param(100), OBJECTIVE, RANDOM_INIT,
    ParamSpec("radius_reduction", bool, False, "SEA's stages: radius 2ε, 1.5ε, ε over 30/30/40 % of the steps"),
    APGD_TRACK,
    ParamSpec("stage_start", str, "best", "where a radius stage starts: the previous stage's highest-APSR "
              "iterate ('best', as SEA's code) or its last iterate ('last')", choices=STAGE_STARTS),
)


@register_attack(
    "apgd", title="APGD", kind="fixed-budget",
    summary="auto-PGD: step 2ε halved at checkpoints, momentum 0.75; any per-pixel loss",
    reference="Croce & Hein, Reliable evaluation of adversarial robustness with an ensemble of diverse "
              "parameter-free attacks, ICML 2020",
    params=APGD_PARAMS)
def apgd(model: nn.Module, images: Tensor, labels: Tensor, *, targeted: bool = False,
         masks: Optional[Tensor] = None, adv_threshold: float = 0.99, eps: float = 8 / 255,
         num_steps: int = 100, loss: str = "ce", random_init: bool = True, radius_reduction: bool = False,
         track: str = "ce", stage_start: str = "best",
         callback: Optional[Callable[..., Any]] = None, record_maps: bool = False) -> AttackResult:
    """APGD (module docstring) on ``loss``; ``radius_reduction`` adds SEA's radius stages, each
    started from the previous stage's best iterate (``stage_start``); ``track`` picks what
    drives the step-size control (:func:`apgd_ascent`)."""
    run, eps_t = _run("apgd", model, images, labels, masks, targeted, adv_threshold, num_steps, callback,
                      record_maps, eps)
    apgd_ascent(run, eps_t, num_steps, OBJECTIVES[loss], random_init,
                RADIUS_STAGES if radius_reduction else SINGLE_STAGE, track=track, stage_start=stage_start)
    return run.result()


@register_attack(
    "tsallis_pgd", title="TsallisPGD", kind="fixed-budget",
    summary="APGD with radius reduction on the Tsallis loss, q from -2 to 1 in every stage",
    reference="[TsallisPGD2026] (Tsallis-entropy losses for segmentation attacks)",
    params=(EPS, steps_param(300), RANDOM_INIT, APGD_TRACK))
def tsallis_pgd(model: nn.Module, images: Tensor, labels: Tensor, *, targeted: bool = False,
                masks: Optional[Tensor] = None, adv_threshold: float = 0.99, eps: float = 8 / 255,
                num_steps: int = 300, random_init: bool = True, track: str = "ce",
                callback: Optional[Callable[..., Any]] = None, record_maps: bool = False) -> AttackResult:
    """TsallisPGD [TsallisPGD2026]: :func:`explorer.attacks.losses.tsallis_objective` with q linear from −2 to 1,
    restarted in each radius stage (2ε, 1.5ε, ε over 30/30/40 %) of SEA's APGD optimiser; the step-size
    control follows CE (``track="ce"``, as the authors' ``objective: "ce"``) and each stage starts from the
    previous one's best iterate (:func:`apgd_ascent`)."""
    run, eps_t = _run("tsallis_pgd", model, images, labels, masks, targeted, adv_threshold, num_steps,
                      callback, record_maps, eps)
    apgd_ascent(run, eps_t, num_steps, OBJECTIVES["tsallis"], random_init, RADIUS_STAGES, track=track)
    return run.result()
