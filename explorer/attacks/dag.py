"""DAG: Dense Adversary Generation (Xie et al. 2017), as in [Rony2023], Algorithm 2."""
from __future__ import annotations

from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn

from explorer.attacks.core import AttackResult, AttackRun, per_image_view
from explorer.attacks.losses import difference_of_logits
from explorer.attacks.registry import ParamSpec, register_attack

PARAMS = (
    ParamSpec("num_steps", int, 500, "maximum iterations (the attack stops per image at APSR >= ν)",
              low=1, high=100_000, symbol="N"),
    ParamSpec("step_size", float, 0.003, "ℓ∞ length of each normalised gradient step", low=1e-6, high=1.0,
              log=True, symbol="η"),
)


@register_attack(
    "dag", title="DAG", kind="minimal-norm",
    summary="normalised gradient steps on the difference of logits of not-yet-fooled pixels, "
            "stopping at APSR >= ν (does not minimise the norm)",
    reference="Xie et al., Adversarial Examples for Semantic Segmentation and Object Detection, ICCV 2017; "
              "[Rony2023], Algorithm 2",
    params=PARAMS,
    presets={"DAG η = 0.003": {"step_size": 0.003}, "DAG η = 0.001": {"step_size": 0.001}})
def dag(model: nn.Module, images: Tensor, labels: Tensor, *,
        targeted: bool = False, masks: Optional[Tensor] = None, adv_threshold: float = 0.99,
        num_steps: int = 500, step_size: float = 0.003,
        callback: Optional[Callable[..., Any]] = None, record_maps: bool = False) -> AttackResult:
    """DAG attack ([Rony2023], Algorithm 2).

    For ``t = 1 .. N``: the model sees ``x~ = clip(x + delta, 0, 1)``; with
    ``s = +1`` (untargeted) or ``-1`` (targeted) and ``dz = s * dl(z, y)`` the signed
    difference of logits, an image whose APSR reaches ν stops (its ``x~`` is returned);
    otherwise ``L = sum_{i in M} max(0, dz_i)`` — only pixels not yet adversarial
    contribute — and ``delta <- delta - η g / ||g||_inf`` with ``g = grad_delta L``.

    DAG does not minimise the norm: the reported norm is that of ``x~ - x`` where the
    image stopped (or, for an image never fooled, of its highest-APSR iterate).
    Images that have stopped are not forwarded again, so ``num_forwards`` differs per image.

    Parameters: ``num_steps`` [N] (500), ``step_size`` [η] (0.003; the paper also reports
    0.001, see the presets).  ``callback``/``record_maps``: see :mod:`explorer.attacks.core`.
    """
    run = AttackRun("dag", model, images, labels, masks, targeted, adv_threshold, num_steps, callback, record_maps)
    images = run.images
    n = len(images)
    sign = -1.0 if targeted else 1.0
    delta = torch.zeros_like(images)
    active = torch.ones(n, dtype=torch.bool, device=images.device)
    # per-image values for the records, kept for images that have stopped
    apsr_all = torch.zeros(n, device=images.device)
    linf_all = torch.zeros(n, device=images.device)
    loss_all = torch.zeros(n, device=images.device)
    prediction_all = states_all = None

    for i in range(num_steps):
        index = active.nonzero().squeeze(1)
        delta_active = delta[index].requires_grad_(True)
        clean = images[index]
        adv = (clean + delta_active).clamp(0, 1)
        # the norm is that of x~ - x (the clipped iterate); the top two classes give the prediction and dl
        ev = run.evaluate(adv, adv.detach() - clean, index, top_k=2)
        logits, prediction, pixel_adv, apsr, linf, is_adv = (ev.logits, ev.prediction, ev.pixel_adv, ev.apsr,
                                                             ev.linf, ev.is_adv)
        task = run.task

        masks_active, labels_active, _ = task.select(index)
        signed_dl = sign * difference_of_logits(logits, labels_active, ranked=ev.ranked)
        loss = (signed_dl.clamp(min=0) * masks_active).flatten(1).sum(dim=1)
        going = ~is_adv
        apsr_all[index], linf_all[index], loss_all[index] = apsr.float(), linf.float(), loss.detach().float()
        if run.observed and run.record_maps:
            if prediction_all is None:
                prediction_all = torch.zeros_like(task.labels)
                states_all = torch.zeros(task.labels.shape, dtype=torch.uint8, device=images.device)
            prediction_all[index] = prediction
            states_all[index] = task.pixel_states(pixel_adv, index=index)

        if going.any():
            grad = run.gradient(loss * going, delta_active, index[going])
            grad_norm = grad.flatten(1).abs().amax(dim=1).clamp_min(1e-12)
            step = step_size * grad / per_image_view(grad_norm, grad)
            delta[index[going]] = (delta_active.detach() - step)[going]
        active[index[is_adv]] = False

        stop = run.report(i, apsr=apsr_all, linf=linf_all, loss=loss_all,
                          step_size=torch.where(active, step_size, 0.0),
                          pixel_states=lambda: states_all, prediction=lambda: prediction_all)
        # nothing of this iteration's model output lives through the next forward (peak memory)
        ev = logits = prediction = pixel_adv = signed_dl = loss = grad = step = adv = delta_active = None
        if stop or not active.any():
            break
    return run.result()
