"""The 8-bit finish: a minimal perturbation that is still adversarial as an actual 8-bit image.

A minimal-norm attack's perturbation is continuous: at a typical 0.37/255 every entry rounds
to zero when the image is saved as a PNG, and the saved file is the clean image again
([Rony2023] names this limitation).  :func:`finish_8bit` turns any minimal-norm
:class:`~explorer.attacks.core.AttackResult` into images on the 1/255 lattice of the 8-bit
original — ``x = (X + D) / 255`` with ``X = round(255 x₀)`` and integer ``D`` — with the
smallest ℓ∞ norm in integer *levels* ``L = max |D|`` it can find, success judged on the
image decoded back from a real PNG write.

For each image, levels are tried one at a time, starting from ``max(1, ⌊255 ε⌋)`` with ``ε``
the continuous result's norm: upward until a lattice point at that level succeeds, or
downward while one does (a continuous attack that stopped short of its optimum does not
hold the finish back).  The upward search gives up ``patience`` levels above ``⌈255 ε⌉``
(default 4; never above ``max_level``): a perturbation stretched far beyond what the
continuous attack found mostly pushes pixels to other classes than the one wanted, and the
levels above would only cost time.  At a level ``L`` the candidates are, in order:

1. **rounding with a scale search** — ``D = clip(round(D_c), -L, L)``, the continuous
   perturbation ``D_c = 255 (x_adv - x₀)`` simply rounded (what saving it as a PNG does, so the
   finish is never worse than that), then ``D = clip(round(s · L/‖D_c‖∞ · D_c), -L, L)`` for
   the scales ``s`` of ``scales``: the attack's direction stretched to the level, then
   rounded (s > 1 turns more of its small entries into whole levels);
2. **lattice steps** — from the best candidate, ``steps`` iterations
   ``D ← clip(D + a ⊙ sign(∇ Σ_{p ∉ A} s·m_p), -L, L)`` on the pixels' margins
   ``m_p = z_y - max_{j≠y} z_j`` (untargeted, ``s = -1``; targeted ``m_p = z_t - max_{j≠t} z_j``,
   ``s = +1``) summed over the labelled pixels not yet adversarial (``A`` is the adversarial
   set): with ``repair`` (default) ``a = 2L`` on the pixels still not adversarial — each
   jumps to the corner of its level cube that its gradient points to, which for a pixel
   whose logits are linear in its own colour is that pixel's best lattice point against its
   strongest rival — and ``a = 0`` on the adversarial ones, which keep their values;
   without ``repair``, ``a = 1`` level on every pixel (plain sign PGD on the lattice).

Each candidate costs one forward, each lattice step one forward and one backward; the
iterate kept is the :class:`~explorer.attacks.core.AttackRun` best (the smallest successful
level, else the highest APSR).  ``docs/attacks.md`` ("The 8-bit finish") has the measured
comparison of the options.
"""
from __future__ import annotations

import io
from dataclasses import replace
from typing import Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from explorer.attacks.core import AttackResult, AttackRun, per_image_view
from explorer.attacks.losses import difference_of_logits
from explorer.errors import InputError

#: scale factors of the rounding candidates (see the module docstring)
SCALES = (1.0, 1.5, 2.0)


def png_round_trip(images: Tensor) -> Tensor:
    """Each image of ``images`` (N, 3, H, W) in [0, 1] written as an 8-bit RGB PNG (in memory)
    and decoded back, as float32 in [0, 1] on the images' device: what a saved file holds."""
    out = torch.empty_like(images, dtype=torch.float32)
    for i, image in enumerate(images):
        pixels = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        buffer = io.BytesIO()
        Image.fromarray(pixels, mode="RGB").save(buffer, format="PNG")
        buffer.seek(0)
        decoded = np.asarray(Image.open(buffer).convert("RGB"), dtype=np.uint8)
        out[i] = torch.from_numpy(decoded.copy()).permute(2, 0, 1).to(images.device).float() / 255
    return out


def _evaluate_offsets(run: AttackRun, base: Tensor, offsets: Tensor, images: Tensor, index: Optional[Tensor]):
    """Evaluate the lattice point ``(base + offsets) / 255`` of the images in ``index`` (all when None; tracked
    by ``run`` as an iterate), without a gradient."""
    adv = (base + offsets) / 255
    with torch.no_grad():
        return run.evaluate(adv, adv - images, index)


def _margin_gradient(run: AttackRun, base: Tensor, offsets: Tensor, images: Tensor, index: Tensor):
    """Evaluate ``(base + offsets) / 255`` for the images in ``index`` (tracked as an iterate) and
    return the evaluation and ``sign`` of the gradient, with respect to the image, of the summed
    margins of the labelled pixels not yet adversarial (module docstring)."""
    adv = ((base + offsets) / 255).requires_grad_(True)
    ev = run.evaluate(adv, adv.detach() - images, index)
    masks, labels, _ = run.task.select(index)
    margin = difference_of_logits(ev.logits, labels)
    pending = masks & ~ev.pixel_adv
    sign = 1.0 if run.task.targeted else -1.0
    objective = (sign * margin * pending).flatten(1).sum(1)
    grad = run.gradient(objective, adv, index)
    return ev, grad.sign()


def finish_8bit(model: nn.Module, images: Tensor, labels: Tensor, result: AttackResult, *,
                masks: Optional[Tensor] = None, scales: Sequence[float] = SCALES, steps: int = 10,
                repair: bool = True, patience: int = 4, max_level: int = 255) -> AttackResult:
    """The 8-bit finish of ``result`` (module docstring): a new :class:`AttackResult` whose
    ``adv_images`` lie on the 1/255 lattice of the 8-bit ``images``, whose ``linf`` is a whole
    number of levels over 255 (measured to ``images``; exactly ``L/255`` when ``images`` are
    8-bit already), and whose ``apsr``/``success`` are those of the images decoded from a PNG
    write of ``adv_images`` (:func:`png_round_trip`) — exactly the file a user downloads.

    ``labels``, ``masks``, the mode and ν are those of ``result``'s attack; ``num_forwards`` /
    ``num_backwards`` add the finish's own model calls to the continuous attack's.  An image the
    finish cannot make adversarial at any level it tries keeps its highest-APSR lattice point
    (``success`` False)."""
    if not isinstance(result, AttackResult):
        raise InputError(f"result must be an AttackResult, got {type(result).__name__}")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise InputError(f"steps must be an integer >= 0, got {steps!r}")
    if not isinstance(patience, int) or isinstance(patience, bool) or patience < 0:
        raise InputError(f"patience must be an integer >= 0, got {patience!r}")
    if not isinstance(max_level, int) or isinstance(max_level, bool) or not 1 <= max_level <= 255:
        raise InputError(f"max_level must be an integer in [1, 255], got {max_level!r}")
    scales = tuple(float(s) for s in scales)
    if not scales or any(not s > 0 for s in scales):
        raise InputError(f"scales must be positive numbers, got {scales!r}")
    if not bool(torch.isfinite(result.adv_images).all()):
        raise InputError("result holds non-finite adversarial images (NaN or inf); the 8-bit finish needs the "
                         "continuous attack's images in [0, 1]")
    if result.adv_images.shape != images.shape:
        raise InputError(f"result holds images of shape {tuple(result.adv_images.shape)}, "
                         f"not the images' {tuple(images.shape)}")

    run = AttackRun(f"{result.attack} 8-bit", model, images, labels, masks, result.targeted, result.adv_threshold,
                    num_steps=0, callback=None, record_maps=False)
    images = run.images
    base = (images * 255).round()
    continuous = (result.adv_images.to(images.device, images.dtype) - images) * 255
    continuous_levels = continuous.flatten(1).abs().amax(1)
    n = len(images)
    everyone = torch.arange(n, device=images.device)

    # level 0: the 8-bit original itself (already adversarial, or the highest-APSR fallback)
    clean = _evaluate_offsets(run, base, torch.zeros_like(base), images, None)
    level = continuous_levels.floor().clamp(1, max_level).long()
    start = level.clone()
    highest = (continuous_levels.ceil().long() + patience).clamp(1, max_level)
    going_down = torch.zeros(n, dtype=torch.bool, device=images.device)
    active = ~clean.is_adv

    while bool(active.any()):
        index = everyone[active]
        succeeded = _try_level(run, base[index], continuous[index], continuous_levels[index], images[index],
                               level[index], index, scales, steps, repair)
        at = level[index]
        # first try at the start level decides the direction: down after a success, up after a failure
        first = at == start[index]
        going_down[index] = torch.where(first, succeeded & (at > 1), going_down[index])
        down, up = going_down[index], ~going_down[index]
        finished = (down & (~succeeded | (at <= 1))) | (up & (succeeded | (at >= highest[index])))
        level[index] = torch.where(down, at - 1, at + 1).clamp(1, max_level)
        active[index] = ~finished

    continuous_result = run.result()
    decoded = png_round_trip(continuous_result.adv_images)
    with torch.no_grad():
        final = run.evaluate(decoded, decoded - images)
    return replace(continuous_result, adv_images=decoded, linf=final.linf, apsr=final.apsr.float(),
                   success=final.is_adv.to(continuous_result.success.device),
                   num_forwards=run.num_forwards + result.num_forwards,
                   num_backwards=run.num_backwards + result.num_backwards,
                   elapsed_s=continuous_result.elapsed_s + result.elapsed_s,
                   params={**result.params, "8-bit finish": {"scales": list(scales), "steps": steps,
                                                             "repair": repair, "patience": patience}},
                   trace=None)


def _try_level(run: AttackRun, base: Tensor, continuous: Tensor, continuous_levels: Tensor, images: Tensor,
               level: Tensor, index: Tensor, scales: Sequence[float], steps: int, repair: bool) -> Tensor:
    """Search the lattice points of ``level`` (per image) for the images in ``index``; return
    which of them found an adversarial one (every candidate is tracked by ``run``)."""
    limit = per_image_view(level.to(base.dtype), base)
    low, high = torch.maximum(-limit, -base), torch.minimum(limit, 255 - base)  # the level cube ∩ [0, 255]
    stretch = per_image_view(level / continuous_levels.clamp_min(1e-12), base)
    best_offsets, best_apsr = None, None
    success = torch.zeros(len(index), dtype=torch.bool, device=base.device)
    for factor in [torch.ones_like(stretch)] + [stretch * scale for scale in scales]:
        offsets = torch.maximum(torch.minimum((continuous * factor).round(), high), low)
        ev = _evaluate_offsets(run, base, offsets, images, index)
        success |= ev.is_adv
        if best_apsr is None:
            best_offsets, best_apsr = offsets, ev.apsr
        else:
            better = ev.apsr > best_apsr
            best_offsets = torch.where(per_image_view(better, offsets), offsets, best_offsets)
            best_apsr = torch.where(better, ev.apsr, best_apsr)
    offsets = best_offsets
    for _ in range(steps):
        pending = ~success
        if not bool(pending.any()):
            break
        ev, direction = _margin_gradient(run, base, offsets, images, index)
        success |= ev.is_adv
        if repair:
            unfooled = (run.task.select(index)[0] & ~ev.pixel_adv).unsqueeze(1).to(base.dtype)
            moved = offsets + 2 * limit * direction * unfooled
        else:
            moved = offsets + direction
        # images that already succeeded at this level keep their lattice point
        offsets = torch.where(per_image_view(pending & ~ev.is_adv, offsets),
                              torch.maximum(torch.minimum(moved, high), low), offsets)
    if steps and bool((~success).any()):  # the last step's point has not been evaluated yet
        success |= _evaluate_offsets(run, base, offsets, images, index).is_adv
    return success


def with_8bit_finish(model: nn.Module, images: Tensor, labels: Tensor, result: AttackResult, **options) -> AttackResult:
    """``result`` carrying its 8-bit finish as ``result.eight_bit`` (a copy: ``result`` itself is
    not changed), so one value holds both: the continuous norm, APSR and success, and the 8-bit
    ones.  ``options`` are :func:`finish_8bit`'s."""
    return replace(result, eight_bit=finish_8bit(model, images, labels, result, **options))
