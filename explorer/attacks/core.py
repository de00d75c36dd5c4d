"""What every attack needs, written once.

An attack is a plain function ``attack(model, images, labels, *, targeted=False,
masks=None, adv_threshold=0.99, <hyper-parameters>, callback=None, record_maps=False)``
returning an :class:`AttackResult`.  Its loop is built from the pieces here:

* :func:`check_inputs` validates images, labels and masks (raising
  :class:`~explorer.errors.InputError`) and moves them to the model's device;
* :class:`SegmentationTask` holds the constraint set of seed 001 §4.1 — which pixels are
  labelled (the mask ``m``), the labels with ignored pixels replaced by a valid class,
  ``|M|`` per image — and computes pixel success and APSR (seed 001, eq. 19);
* :class:`AttackRun` counts forwards and backwards, keeps the best iterate by the
  minimal-norm rule, sends one :class:`IterationRecord` per iteration to the callback,
  honours the callback's stop request and assembles the :class:`AttackResult`.

The callback contract
---------------------
``callback(record: IterationRecord)`` is called once per iteration.  It may return a
truthy value (for example :data:`STOP`) to ask the attack to stop: the attack then ends
after the current iteration and returns a valid result (its best iterate so far).
Per-pixel maps (the constraint mask and the current prediction) are only put in the
record when the attack is called with ``record_maps=True``, since they cost memory.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
from torch import Tensor, nn

from explorer.errors import InputError

#: Value a callback may return to stop an attack (any truthy value works).
STOP = True


class PixelState(IntEnum):
    """State of one pixel's constraint, as drawn in the constraint-mask view."""

    IGNORED = 0    #: unlabelled (label >= K) or outside the caller's mask: not a constraint
    SATISFIED = 1  #: the pixel is adversarial (fooled / on target)
    VIOLATED = 2   #: the pixel is not adversarial yet
    DROPPED = 3    #: labelled, but left out of the objective by adaptive masking (seed 001, eq. 6)


@dataclass
class IterationRecord:
    """What an attack reports at one iteration; the same type for every attack.

    Per-image quantities are CPU tensors of shape (N,).  ``best_linf`` is ``inf`` for an
    image that has not succeeded yet.  ``extras`` holds attack-specific scalars (for
    ALMA prox: ``mu``, ``rho`` — means over labelled pixels — and the constraint scale
    ``w``).  ``constraint_mask`` ((N, H, W) uint8 of :class:`PixelState` codes) and
    ``prediction`` ((N, H, W) int64) — the argmax at the iterate this record describes —
    and ``adv_images`` ((N, 3, H, W), that iterate itself) are present only when the
    attack was called with ``record_maps=True``.
    """

    attack: str
    iteration: int
    num_steps: int
    apsr: Tensor
    linf: Tensor
    best_linf: Tensor
    best_apsr: Tensor
    success: Tensor
    loss: Tensor
    step_size: Tensor
    extras: Dict[str, Tensor] = field(default_factory=dict)
    constraint_mask: Optional[Tensor] = None
    prediction: Optional[Tensor] = None
    adv_images: Optional[Tensor] = None

    def without_maps(self) -> "IterationRecord":
        """The same record without its per-pixel maps (what the trace keeps)."""
        if self.constraint_mask is None and self.prediction is None and self.adv_images is None:
            return self
        return replace(self, constraint_mask=None, prediction=None, adv_images=None)

    def rows(self) -> List[Dict[str, float]]:
        """One flat dict per image, for CSV export and data frames."""
        out = []
        for j in range(len(self.apsr)):
            row = {"iteration": self.iteration, "image": j,
                   "apsr": float(self.apsr[j]), "linf": float(self.linf[j]),
                   "best_linf": float(self.best_linf[j]), "best_apsr": float(self.best_apsr[j]),
                   "success": bool(self.success[j]), "loss": float(self.loss[j]),
                   "step_size": float(self.step_size[j])}
            for name, value in self.extras.items():
                row[name] = float(value[j]) if value.ndim else float(value)
            out.append(row)
        return out


@dataclass
class AttackResult:
    """Outcome of an attack on a batch of N images.

    ``adv_images`` are the returned adversarial images (the best iterate for minimal-norm
    attacks), ``linf`` their ℓ∞ distance to the clean images, ``apsr`` their attack pixel
    success rate and ``success`` whether ``apsr >= adv_threshold``.  ``num_forwards`` and
    ``num_backwards`` count the model propagations spent on each image.  ``trace`` holds
    the per-iteration records (without per-pixel maps) when a callback was given.
    """

    attack: str
    adv_images: Tensor
    linf: Tensor
    apsr: Tensor
    success: Tensor
    num_forwards: Tensor
    num_backwards: Tensor
    iterations: int
    stopped: bool
    elapsed_s: float
    targeted: bool
    adv_threshold: float
    params: Dict[str, Any] = field(default_factory=dict)
    trace: Optional[List[IterationRecord]] = None
    #: an ensemble's member results by name (SEA), else None
    members: Optional[Dict[str, "AttackResult"]] = None

    @property
    def linf_255(self) -> Tensor:
        """ℓ∞ norms in units of 1/255 (the unit of the paper's tables)."""
        return self.linf * 255


# ----------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------

def model_device(model: nn.Module, default: torch.device) -> torch.device:
    """Device of the model's first parameter or buffer (``default`` for a parameter-free model)."""
    if isinstance(model, nn.Module):
        for tensor in list(model.parameters()) + list(model.buffers()):
            return tensor.device
    return default


def check_inputs(model: nn.Module, images: Tensor, labels: Tensor, masks: Optional[Tensor],
                 adv_threshold: float):
    """Validate the common attack inputs and move them to the model's device.

    Returns ``(images, labels, masks)``; ``masks`` stays ``None`` when not given.
    Raises :class:`InputError` with a message naming what is wrong.
    """
    if not torch.is_tensor(images) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
        raise InputError(f"images must be a float tensor of shape (N, 3, H, W); got {shape}")
    if not images.is_floating_point():
        raise InputError(f"images must be floating point in [0, 1]; got dtype {images.dtype}")
    if images.numel() == 0:
        raise InputError("images is empty")
    if not torch.isfinite(images).all():
        raise InputError("images contain NaN or infinite values")
    if images.min() < 0 or images.max() > 1:
        raise InputError(f"images must lie in [0, 1] (normalisation belongs inside the model); "
                         f"got values in [{float(images.min()):.3g}, {float(images.max()):.3g}]")
    n, _, h, w = images.shape
    if not torch.is_tensor(labels) or tuple(labels.shape) != (n, h, w):
        shape = tuple(labels.shape) if torch.is_tensor(labels) else type(labels).__name__
        raise InputError(f"labels must have shape (N, H, W) = {(n, h, w)} to match the images; got {shape}")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise InputError(f"labels must be an integer tensor (int64); got dtype {labels.dtype}")
    if (labels < 0).any():
        raise InputError("labels must be >= 0 (use 255, or any value >= K, for ignored pixels)")
    if masks is not None:
        if not torch.is_tensor(masks) or tuple(masks.shape) != (n, h, w):
            raise InputError(f"masks must be a boolean tensor of shape {(n, h, w)}")
    if not 0 < float(adv_threshold) <= 1:
        raise InputError(f"adv_threshold must be in (0, 1]; got {adv_threshold}")
    device = model_device(model, images.device)
    images = images.to(device)
    labels = labels.to(device=device, dtype=torch.long)
    if masks is not None:
        masks = masks.to(device=device, dtype=torch.bool)
    return images, labels, masks


def check_logits(logits: Tensor, images: Tensor) -> int:
    """Check the model output is (N, K, H, W) logits at input resolution; return K."""
    n, _, h, w = images.shape
    if not torch.is_tensor(logits) or logits.ndim != 4 or logits.shape[0] != n or logits.shape[2:] != (h, w):
        shape = tuple(logits.shape) if torch.is_tensor(logits) else type(logits).__name__
        raise InputError(f"the model must return logits of shape (N, K, H, W) = ({n}, K, {h}, {w}) "
                         f"at the input resolution; it returned {shape}")
    if logits.shape[1] < 2:
        raise InputError("the model must return at least two classes")
    return logits.shape[1]


class SegmentationTask:
    """The constraint set of an attack: which pixels count, against which labels.

    Built from the first logits (which give K).  ``masks`` is the set ``M`` of seed
    001 — labelled pixels (label < K), intersected with the caller's mask — and
    ``labels`` has every ignored pixel replaced by class 0 so it can index logits.
    In targeted mode the labels are the target map.
    """

    def __init__(self, labels: Tensor, masks: Optional[Tensor], num_classes: int,
                 targeted: bool, adv_threshold: float):
        labelled = labels < num_classes
        self.masks = labelled if masks is None else labelled & masks
        self.labels = labels.masked_fill(~self.masks, 0)
        self.num_classes = num_classes
        self.targeted = targeted
        self.adv_threshold = float(adv_threshold)
        self.mask_count = self.masks.flatten(1).sum(dim=1)
        #: |M| per image on the host, so loops can size things without synchronising
        self.mask_count_host: List[int] = self.mask_count.tolist()
        empty = [i for i, c in enumerate(self.mask_count_host) if c == 0]
        if empty:
            kind = "target map" if targeted else "label map"
            raise InputError(f"image(s) {empty} have no labelled pixel in their {kind} "
                             f"(every value is >= K = {num_classes} or masked out): APSR is undefined")

    def select(self, index: Optional[Tensor]):
        """(masks, labels, mask_count) restricted to the images in ``index`` (all when None)."""
        if index is None:
            return self.masks, self.labels, self.mask_count
        return self.masks[index], self.labels[index], self.mask_count[index]

    def pixel_success(self, prediction: Tensor, index: Optional[Tensor] = None) -> Tensor:
        """Pixels of ``M`` that are adversarial: argmax != label, or == target when targeted."""
        masks, labels, _ = self.select(index)
        hit = prediction == labels
        return (hit if self.targeted else ~hit) & masks

    def apsr(self, pixel_success: Tensor, index: Optional[Tensor] = None) -> Tensor:
        """Attack pixel success rate per image (seed 001, eq. 19)."""
        _, _, count = self.select(index)
        return pixel_success.flatten(1).sum(dim=1) / count

    def pixel_states(self, pixel_success: Tensor, kept: Optional[Tensor] = None,
                     index: Optional[Tensor] = None) -> Tensor:
        """Constraint-mask map of :class:`PixelState` codes (uint8)."""
        masks, _, _ = self.select(index)
        states = torch.full(masks.shape, int(PixelState.VIOLATED), dtype=torch.uint8, device=masks.device)
        states[pixel_success] = int(PixelState.SATISFIED)
        if kept is not None:
            states[masks & ~kept] = int(PixelState.DROPPED)
        states[~masks] = int(PixelState.IGNORED)
        return states


def linf_distance(adv_images: Tensor, images: Tensor) -> Tensor:
    """ℓ∞ distance per image."""
    return (adv_images - images).flatten(1).abs().amax(dim=1)


# ----------------------------------------------------------------------------------------
# The run: counters, best iterate, records, stop
# ----------------------------------------------------------------------------------------

class AttackRun:
    """Book-keeping shared by every attack loop.

    Usage inside an attack::

        run = AttackRun("dag", model, images, labels, masks, targeted, adv_threshold,
                        num_steps, callback, record_maps, params)
        for i in range(num_steps):
            logits = run.forward(images + delta)      # first call builds run.task
            ...
            run.track(adv, apsr, linf)                # best-iterate rule
            if run.report(i, apsr=..., linf=..., loss=..., step_size=...):
                break                                  # the callback asked to stop
        return run.result()
    """

    def __init__(self, attack: str, model: nn.Module, images: Tensor, labels: Tensor,
                 masks: Optional[Tensor], targeted: bool, adv_threshold: float, num_steps: int,
                 callback: Optional[Callable[[IterationRecord], Any]] = None,
                 record_maps: bool = False, params: Optional[Dict[str, Any]] = None):
        self.attack = attack
        self.model = model
        self.images, labels, masks = check_inputs(model, images, labels, masks, adv_threshold)
        self._labels, self._masks = labels, masks
        self.targeted = bool(targeted)
        self.adv_threshold = float(adv_threshold)
        self.num_steps = int(num_steps)
        self.callback = callback
        self.record_maps = bool(record_maps)
        self.params = dict(params or {})
        self.task: Optional[SegmentationTask] = None

        n = len(self.images)
        device = self.images.device
        self.num_forwards = torch.zeros(n, dtype=torch.long)
        self.num_backwards = torch.zeros(n, dtype=torch.long)
        # best iterate: before the first success the highest APSR, after it the smallest norm
        self.best_adv = self.images.clone()
        self.best_linf = torch.full((n,), float("inf"), device=device)
        self.best_apsr = torch.full((n,), -1.0, device=device)
        self.found = torch.zeros(n, dtype=torch.bool, device=device)
        #: the iterate last evaluated (kept only with record_maps, for the records)
        self.current_adv: Optional[Tensor] = self.images.clone() if self.record_maps else None
        self.trace: Optional[List[IterationRecord]] = [] if callback is not None else None
        self.iterations = 0
        self.stopped = False
        self._start = time.perf_counter()

    # -- model calls -----------------------------------------------------------------
    def forward(self, inputs: Tensor, index: Optional[Tensor] = None) -> Tensor:
        """Run the model on ``inputs`` (the images in ``index``, or all), counting the forward."""
        logits = self.model(inputs)
        reference = self.images if index is None else self.images[index]
        num_classes = check_logits(logits, reference)
        if self.task is None:
            self.task = SegmentationTask(self._labels, self._masks, num_classes,
                                         self.targeted, self.adv_threshold)
        self._count(self.num_forwards, index)
        return logits

    def count_backward(self, index: Optional[Tensor] = None) -> None:
        """Record one backward propagation for the images in ``index`` (or all)."""
        self._count(self.num_backwards, index)

    @staticmethod
    def _count(counter: Tensor, index: Optional[Tensor]) -> None:
        if index is None:
            counter += 1
        else:
            counter[index.cpu()] += 1

    # -- best iterate ----------------------------------------------------------------
    def track(self, adv_images: Tensor, apsr: Tensor, linf: Tensor,
              index: Optional[Tensor] = None) -> Tensor:
        """Update the best iterate (seed 001 best-iterate rule); return the images' success flags.

        Before an image's first success the iterate with the highest APSR is kept; from
        then on, the successful iterate with the smallest ℓ∞ norm.
        """
        is_adv = apsr >= self.adv_threshold
        sel = slice(None) if index is None else index
        found, best_linf, best_apsr = self.found[sel], self.best_linf[sel], self.best_apsr[sel]
        better = (is_adv & (~found | (linf <= best_linf))) | (~found & ~is_adv & (apsr > best_apsr))
        self.best_linf[sel] = torch.where(better, linf, best_linf)
        self.best_apsr[sel] = torch.where(better, apsr, best_apsr)
        self.best_adv[sel] = torch.where(better.view(-1, 1, 1, 1), adv_images.detach(), self.best_adv[sel])
        self.found[sel] = found | is_adv
        if self.current_adv is not None:
            self.current_adv[sel] = adv_images.detach()
        return is_adv

    def track_highest_apsr(self, adv_images: Tensor, apsr: Tensor, linf: Tensor,
                           index: Optional[Tensor] = None) -> Tensor:
        """Fixed-budget rule: keep the iterate with the highest APSR (lowest accuracy on
        ``M`` when untargeted); every iterate lies inside the budget, so the norm plays no part.
        Returns the images' success flags (APSR >= ν)."""
        is_adv = apsr >= self.adv_threshold
        sel = slice(None) if index is None else index
        best_apsr, best_linf = self.best_apsr[sel], self.best_linf[sel]
        better = apsr > best_apsr
        self.best_apsr[sel] = torch.where(better, apsr, best_apsr)
        self.best_linf[sel] = torch.where(better, linf, best_linf)
        self.best_adv[sel] = torch.where(better.view(-1, 1, 1, 1), adv_images.detach(), self.best_adv[sel])
        self.found[sel] = self.found[sel] | is_adv
        if self.current_adv is not None:
            self.current_adv[sel] = adv_images.detach()
        return is_adv

    def add_counts(self, forwards: Tensor, backwards: Tensor) -> None:
        """Add model calls spent by an inner attack (wrappers such as the bisection)."""
        self.num_forwards += forwards.cpu()
        self.num_backwards += backwards.cpu()

    # -- callback ----------------------------------------------------------------------
    @property
    def observed(self) -> bool:
        """Whether records are wanted (build per-iteration extras only then)."""
        return self.callback is not None

    def report(self, iteration: int, *, apsr: Tensor, linf: Tensor, loss: Tensor, step_size: Tensor,
               extras: Optional[Dict[str, Tensor]] = None,
               pixel_states: Optional[Callable[[], Tensor]] = None,
               prediction: Optional[Callable[[], Tensor]] = None) -> bool:
        """Send this iteration's record to the callback; return True when the attack must stop.

        ``pixel_states`` and ``prediction`` are thunks, evaluated only when maps were asked for.
        """
        self.iterations = iteration + 1
        if self.callback is None:
            return False
        n = len(self.images)

        def per_image(value) -> Tensor:
            value = torch.as_tensor(value).detach().float().cpu()
            return value.expand(n).clone() if value.ndim == 0 else value

        record = IterationRecord(
            attack=self.attack, iteration=iteration, num_steps=self.num_steps,
            apsr=per_image(apsr), linf=per_image(linf),
            best_linf=torch.where(self.found, self.best_linf, torch.full_like(self.best_linf, float("inf"))).cpu(),
            best_apsr=self.best_apsr.clamp_min(0).cpu(), success=self.found.cpu(),
            loss=per_image(loss), step_size=per_image(step_size),
            extras={k: per_image(v) for k, v in (extras or {}).items()},
            constraint_mask=pixel_states().cpu() if (self.record_maps and pixel_states) else None,
            prediction=prediction().cpu() if (self.record_maps and prediction) else None,
            adv_images=self.current_adv.cpu() if self.current_adv is not None else None,
        )
        self.trace.append(record.without_maps())
        if self.callback(record):
            self.stopped = True
            return True
        return False

    # -- result ------------------------------------------------------------------------
    def result(self) -> AttackResult:
        """Assemble the :class:`AttackResult` from the best iterates."""
        if self.images.is_cuda:
            torch.cuda.synchronize(self.images.device)
        adv = self.best_adv.clamp(0, 1)
        return AttackResult(
            attack=self.attack, adv_images=adv, linf=linf_distance(adv, self.images),
            apsr=self.best_apsr.clamp_min(0), success=self.found.clone(),
            num_forwards=self.num_forwards, num_backwards=self.num_backwards,
            iterations=self.iterations, stopped=self.stopped,
            elapsed_s=time.perf_counter() - self._start, targeted=self.targeted,
            adv_threshold=self.adv_threshold, params=self.params, trace=self.trace)


def per_image_view(values: Tensor, like: Tensor) -> Tensor:
    """Reshape (N,) per-image values to broadcast against ``like`` (N, ...)."""
    return values.view(-1, *([1] * (like.ndim - 1)))


def project_linf(delta: Tensor, images: Tensor, eps: Tensor) -> Tensor:
    """Projection onto the ℓ∞ ball of radius ``eps`` (per image, (N,)) intersected with the
    box: ``clip(x + clip(δ, -ε, ε), 0, 1) - x``."""
    radius = per_image_view(eps, delta)
    return (images + torch.maximum(torch.minimum(delta, radius), -radius)).clamp(0, 1) - images


def random_start(images: Tensor, eps: Tensor) -> Tensor:
    """A uniform draw in the ℓ∞ ball ``U(-ε, ε)`` (torch's global generator), projected onto the box."""
    noise = torch.rand_like(images)
    return project_linf((2 * noise - 1) * per_image_view(eps, images), images, eps)


def per_image_eps(eps, n: int, device: torch.device) -> Tensor:
    """``eps`` (a number or an (N,) tensor) as an (N,) float tensor on ``device``."""
    eps = torch.as_tensor(eps, dtype=torch.float32, device=device)
    return eps.expand(n).clone() if eps.ndim == 0 else eps.to(device)


def keep_better(best_adv: Tensor, best_score: Tensor, adv: Tensor, score: Tensor):
    """Per-image merge of restarts: take ``adv`` where ``score > best_score``.

    Batch-safe: images that did not improve keep their previous best.  Returns the new
    ``(best_adv, best_score, improved)``."""
    improved = score > best_score
    return (torch.where(improved.view(-1, *([1] * (adv.ndim - 1))), adv, best_adv),
            torch.where(improved, score, best_score), improved)


def drop_largest(constraints: Tensor, masks: Tensor, counts: Sequence[int]) -> Tensor:
    """Mask ``m~``: the labelled pixels minus exactly ``counts[i]`` largest constraints of image i.

    Adaptive constraint masking, seed 001, eq. 6.  Exact count (ties included) and safe
    for batches whose images drop different numbers of pixels, including zero.
    """
    k_max = max(counts) if len(counts) else 0
    if k_max == 0:
        return masks
    n = constraints.shape[0]
    candidates = constraints.detach().masked_fill(~masks, float("-inf")).flatten(1)
    top_index = candidates.topk(k_max, dim=1).indices
    counts_t = torch.as_tensor(list(counts), device=constraints.device).view(n, 1)
    dropped_rank = torch.arange(k_max, device=constraints.device).view(1, k_max) < counts_t
    dropped = torch.zeros_like(candidates, dtype=torch.bool)
    dropped.scatter_(1, top_index, dropped_rank)
    return masks & ~dropped.view_as(masks)
