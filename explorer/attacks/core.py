"""What every attack needs, written once.

An attack is a plain function ``attack(model, images, labels, *, targeted=False,
masks=None, adv_threshold=0.99, <hyper-parameters>, callback=None, record_maps=False)``
returning an :class:`AttackResult`.  Its loop is built from the pieces here:

* :func:`check_inputs` validates images, labels and masks (raising
  :class:`~explorer.errors.InputError`) and moves them to the model's device;
* :class:`SegmentationTask` holds the constraint set of [Rony2023] §4.1 — which pixels are
  labelled (the mask ``m``), the labels with ignored pixels replaced by a valid class,
  ``|M|`` per image — and computes pixel success and APSR ([Rony2023], eq. 19);
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

Every record is a snapshot: its tensors are CPU copies that the attack never touches
again (on CPU, ``.cpu()`` would return the attack's own buffer, so a stored record would
silently show later values), and the trace keeps its own copy of each record, so a
callback that modifies the record it was given cannot change ``result.trace``.

Broken models
-------------
Every forward goes through :meth:`AttackRun.forward`, which refuses (with an
:class:`~explorer.errors.InputError` naming the model) logits that are not finite, a class
count that changes between calls, and, when the attack differentiates, an output that is
not connected to the input by autograd.  Without these checks a NaN model "succeeds"
(the argmax of NaN logits is class 0, so APSR looks high) or crashes deep inside an
optimiser with a message about something else.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from explorer.attacks.losses import predicted_classes, top_classes
from explorer.attacks.registry import ADV_THRESHOLD, validate_common
from explorer.errors import InputError

#: Value a callback may return to stop an attack (any truthy value works).
STOP = True


class PixelState(IntEnum):
    """State of one pixel's constraint, as drawn in the constraint-mask view."""

    IGNORED = 0    #: unlabelled (label >= K) or outside the caller's mask: not a constraint
    SATISFIED = 1  #: the pixel is adversarial (fooled / on target)
    VIOLATED = 2   #: the pixel is not adversarial yet
    DROPPED = 3    #: labelled, but left out of the objective by adaptive masking ([Rony2023], eq. 6)


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

    A record is a snapshot: its tensors are its own, never the attack's running buffers,
    so it still shows this iteration's values after the attack moved on (see
    :meth:`AttackRun.report`).
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

    def copy(self, maps: bool = True) -> "IterationRecord":
        """An independent copy: a new record with its own tensors and its own ``extras`` dict.

        Changing one (assigning a field, writing into a tensor, adding an extra) leaves the
        other as it was.  ``maps=False`` leaves the per-pixel maps out.
        """
        return replace(self, apsr=_own(self.apsr), linf=_own(self.linf), best_linf=_own(self.best_linf),
                       best_apsr=_own(self.best_apsr), success=_own(self.success), loss=_own(self.loss),
                       step_size=_own(self.step_size), extras={k: _own(v) for k, v in self.extras.items()},
                       constraint_mask=_own(self.constraint_mask) if maps else None,
                       prediction=_own(self.prediction) if maps else None,
                       adv_images=_own(self.adv_images) if maps else None)

    def without_maps(self) -> "IterationRecord":
        """An independent copy without the per-pixel maps (what the trace keeps)."""
        return self.copy(maps=False)

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


def _own(value):
    """A tensor's own copy (other values are returned as they are)."""
    return value.clone() if torch.is_tensor(value) else value


@dataclass
class AttackResult:
    """Outcome of an attack on a batch of N images.

    ``adv_images`` are the returned adversarial images (the best iterate for minimal-norm
    attacks), ``linf`` their ℓ∞ distance to the clean images, ``apsr`` their attack pixel
    success rate and ``success`` whether ``apsr >= adv_threshold``.  ``num_forwards`` and
    ``num_backwards`` count the model propagations spent on each image.  ``params`` are the
    hyper-parameters the attack ran with, defaults included (recorded by the registry's
    wrapper, :func:`~explorer.attacks.registry.record_hyperparameters`).  ``trace`` holds
    the per-iteration records (without per-pixel maps) when a callback was given: the
    run's own copies, equal to what the callback was handed at each iteration whatever
    the callback did with its records afterwards.
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
    #: this minimal-norm result's 8-bit finish (:func:`explorer.attacks.lattice.with_8bit_finish`),
    #: else None: images on the 1/255 lattice, judged as decoded from a PNG
    eight_bit: Optional["AttackResult"] = None

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


def model_dtype(model: nn.Module, default: torch.dtype) -> torch.dtype:
    """Dtype of the model's first floating-point parameter (``default`` for a parameter-free model)."""
    if isinstance(model, nn.Module):
        for parameter in model.parameters():
            if parameter.is_floating_point():
                return parameter.dtype
    return default


def model_name(model: Any) -> str:
    """How error messages name a model: its ``name`` attribute when it has a string one,
    else its class name (a plain function: its own name)."""
    name = getattr(model, "name", None)
    if isinstance(name, str) and name:
        return name
    if isinstance(model, nn.Module):
        return type(model).__name__
    return getattr(model, "__qualname__", None) or type(model).__name__


def check_inputs(model: nn.Module, images: Tensor, labels: Tensor, masks: Optional[Tensor],
                 adv_threshold: float):
    """Validate the common attack inputs and move them to the model's device and dtype.

    Returns ``(images, labels, masks)``; ``masks`` stays ``None`` when not given.
    Raises :class:`InputError` with a message naming what is wrong.

    * Images of any floating dtype (float64, float16, bfloat16, ...) are accepted and
      converted to the dtype of the model's first floating-point parameter, so a float32
      model given float64 images does not fail with a dtype mismatch inside its first
      layer; a parameter-free model gets the images' own dtype.
    * Images (and labels, masks) are detached: an attack result never stays attached to
      the caller's autograd graph, and no gradient flows back into the caller's tensors.
    * ``masks`` must be ``None`` or a boolean (N, H, W) tensor (a float mask is refused
      rather than guessed at).
    """
    if not torch.is_tensor(images) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
        raise InputError(f"images must be a float tensor of shape (N, 3, H, W); got {shape}")
    if not images.is_floating_point():
        raise InputError(f"images must be floating point in [0, 1]; got dtype {images.dtype}")
    if images.numel() == 0:
        raise InputError(f"images is empty (shape {tuple(images.shape)})")
    images = images.detach()
    if not torch.isfinite(images).all():
        raise InputError("images contain NaN or infinite values")
    if images.min() < 0 or images.max() > 1:
        raise InputError(f"images must lie in [0, 1] (normalisation belongs inside the model); "
                         f"got values in [{float(images.min()):.3g}, {float(images.max()):.3g}]")
    n, _, h, w = images.shape
    if not torch.is_tensor(labels) or tuple(labels.shape) != (n, h, w):
        shape = tuple(labels.shape) if torch.is_tensor(labels) else type(labels).__name__
        raise InputError(f"labels must have shape (N, H, W) = {(n, h, w)} to match the images; got {shape}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise InputError(f"labels must be an integer tensor (int64); got dtype {labels.dtype}")
    labels = labels.detach()
    if (labels < 0).any():
        raise InputError("labels must be >= 0 (use 255, or any value >= K, for ignored pixels)")
    if masks is not None:
        if not torch.is_tensor(masks) or tuple(masks.shape) != (n, h, w) or masks.dtype != torch.bool:
            got = (f"a {masks.dtype} tensor of shape {tuple(masks.shape)}" if torch.is_tensor(masks)
                   else type(masks).__name__)
            raise InputError(f"masks must be a boolean (torch.bool) tensor of shape (N, H, W) = {(n, h, w)}; "
                             f"got {got}")
        masks = masks.detach()
    ADV_THRESHOLD.validate(adv_threshold)
    device = model_device(model, images.device)
    images = images.to(device=device, dtype=model_dtype(model, images.dtype))
    labels = labels.to(device=device, dtype=torch.long)
    if masks is not None:
        masks = masks.to(device=device)
    return images, labels, masks


def check_logits(logits: Tensor, images: Tensor, model: Any = None, *, num_classes: Optional[int] = None,
                 needs_grad: bool = False) -> int:
    """Check the model output is (N, K, H, W) logits at input resolution; return K.

    ``num_classes``, when given, is the K of the model's earlier calls: a model whose class
    count changes between calls is refused (the constraint set was built for the first K).
    ``needs_grad`` says the attack will differentiate the logits with respect to the input:
    an output that does not require grad (a model that detaches it or runs under
    ``torch.no_grad``) is refused here, before a raw autograd error deep in the attack.
    Finiteness is checked by :meth:`AttackRun.forward`.
    """
    who = f"model {model_name(model)}" if model is not None else "the model"
    n, _, h, w = images.shape
    if not torch.is_tensor(logits) or logits.ndim != 4 or logits.shape[0] != n or logits.shape[2:] != (h, w):
        shape = tuple(logits.shape) if torch.is_tensor(logits) else type(logits).__name__
        raise InputError(f"{who} must return logits of shape (N, K, H, W) = ({n}, K, {h}, {w}) "
                         f"at the input resolution; it returned {shape}")
    if not logits.is_floating_point():
        raise InputError(f"{who} must return floating-point logits; it returned dtype {logits.dtype}")
    if logits.shape[1] < 2:
        raise InputError(f"{who} must return at least two classes; it returned {logits.shape[1]}")
    if num_classes is not None and logits.shape[1] != num_classes:
        raise InputError(f"{who} returned logits for K = {logits.shape[1]} classes after K = {num_classes} "
                         f"on an earlier call; a model's class count must not change between calls")
    if needs_grad and not logits.requires_grad:
        raise InputError(f"{who} returned logits that do not require grad, so the attack cannot "
                         f"differentiate them: the model detaches its output or runs under torch.no_grad")
    return logits.shape[1]


def nonfinite_logits_error(model: Any, logits: Optional[Tensor] = None, call: Optional[int] = None) -> InputError:
    """The :class:`InputError` for a model whose logits are NaN or infinite."""
    kinds = ""
    if logits is not None:
        found = [name for name, bad in (("NaN", torch.isnan(logits).any()),
                                        ("+inf", torch.isposinf(logits).any()),
                                        ("-inf", torch.isneginf(logits).any())) if bool(bad)]
        kinds = f" ({', '.join(found)})"
    when = f" at forward {call} of the attack" if call is not None else ""
    return InputError(f"model {model_name(model)} returned NaN or infinite logits{kinds}{when}; a model whose "
                      f"output is not finite cannot be attacked (check its weights, its input normalisation "
                      f"and its dtype)")


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
        """Attack pixel success rate per image ([Rony2023], eq. 19)."""
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


def all_finite(values: Tensor) -> Tensor:
    """Whether every entry is finite, as a 0-d bool tensor (no host synchronisation).

    The smallest and largest entries are finite exactly when every entry is (``aminmax``
    propagates NaN), and one ``aminmax`` pass costs a fraction of ``isfinite(...).all()``,
    which writes a boolean tensor the size of the logits (CPU: 0.3 ms against 7 ms for
    19 × 256 × 512 logits).
    """
    if values.numel() == 0:
        return torch.ones((), dtype=torch.bool, device=values.device)
    low, high = values.aminmax()
    return torch.isfinite(low) & torch.isfinite(high)


def linf_distance(adv_images: Tensor, images: Tensor) -> Tensor:
    """ℓ∞ distance per image."""
    return (adv_images - images).flatten(1).abs().amax(dim=1)


# ----------------------------------------------------------------------------------------
# The run: counters, best iterate, records, stop
# ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Evaluation:
    """One iterate evaluated by :meth:`AttackRun.evaluate` (for the images it was run on).

    ``logits`` (N, K, H, W) as the model returned them (attached to the autograd graph when
    gradients are on); ``ranked`` their :func:`~explorer.attacks.losses.top_classes` (N, k, H, W)
    when the attack asked for them (else None); ``prediction`` (N, H, W) the predicted classes;
    ``pixel_adv`` the adversarial pixels of ``M`` (pixel success); ``apsr`` the attack pixel
    success rate ([Rony2023], eq. 19), ``linf`` the ℓ∞ norm of the perturbation and
    ``is_adv`` whether APSR >= ν, per image.
    """

    logits: Optional[Tensor]
    prediction: Tensor
    pixel_adv: Tensor
    apsr: Tensor
    linf: Tensor
    is_adv: Tensor
    ranked: Optional[Tensor] = None


class AttackRun:
    """Book-keeping shared by every attack loop.

    Usage inside an attack::

        run = AttackRun("dag", model, images, labels, masks, targeted, adv_threshold,
                        num_steps, callback, record_maps)
        for i in range(num_steps):
            ev = run.evaluate(images + delta, delta)  # forward, APSR, ℓ∞, best iterate;
            ...                                       # the first call builds run.task
            grad = run.gradient(loss, delta)          # counts the backward
            if run.report(i, apsr=ev.apsr, linf=ev.linf, loss=..., step_size=...):
                break                                  # the callback asked to stop
        return run.result()

    The result's ``params`` are filled by the registry with the hyper-parameters the attack
    was called with (:func:`~explorer.attacks.registry.record_hyperparameters`); ``params``
    here holds only keys a run records beyond them (an ensemble member's ``loss``).

    ``task`` lets an inner run (a bisection step, an ensemble member) share the
    constraint set of the runs before it, so the model's class count is checked across
    all of them.

    The finite check of the logits is immediate on the CPU.  On an accelerator it is
    deferred, to add no host synchronisation per forward: a device flag accumulates the
    check and :meth:`check_model` reads it where the loop synchronises anyway — before a
    record is built for the callback, before a proximal step (whose search reads a bound
    on the host) and in :meth:`result` — so the error still surfaces before any crash or
    any result.  :attr:`defer_finite_check` overrides the choice (tests use it on the CPU).
    """

    #: None: defer the finite check of the logits on accelerators only; True / False: always / never
    defer_finite_check: Optional[bool] = None

    def __init__(self, attack: str, model: nn.Module, images: Tensor, labels: Tensor,
                 masks: Optional[Tensor], targeted: bool, adv_threshold: float, num_steps: int,
                 callback: Optional[Callable[[IterationRecord], Any]] = None,
                 record_maps: bool = False, params: Optional[Dict[str, Any]] = None,
                 task: Optional[SegmentationTask] = None):
        self.attack = attack
        if not callable(model):
            raise InputError(f"{attack}: the model must be callable (an nn.Module or a function); "
                             f"got {type(model).__name__}")
        self.model = model
        self.targeted = validate_common("targeted", targeted, attack)
        self.record_maps = validate_common("record_maps", record_maps, attack)
        self.callback = validate_common("callback", callback, attack)
        self.adv_threshold = ADV_THRESHOLD.validate(adv_threshold, attack)
        self.images, labels, masks = check_inputs(model, images, labels, masks, adv_threshold)
        self._labels, self._masks = labels, masks
        self.num_steps = int(num_steps)
        #: keys this run records beyond the call's hyper-parameters (which the registry adds)
        self.params = dict(params or {})
        self.task: Optional[SegmentationTask] = task

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
        self.trace: Optional[List[IterationRecord]] = [] if self.callback is not None else None
        self.iterations = 0
        self.stopped = False
        self._calls = 0
        defer = self.defer_finite_check
        self._defer = device.type != "cpu" if defer is None else bool(defer)
        #: device flag: every logits of the forwards not yet checked were finite (deferred mode)
        self._finite: Optional[Tensor] = None
        self._start = time.perf_counter()

    # -- model calls -----------------------------------------------------------------
    def forward(self, inputs: Tensor, index: Optional[Tensor] = None) -> Tensor:
        """Run the model on ``inputs`` (the images in ``index``, or all), counting the forward.

        Every model call of every attack goes through here, so a broken model is refused
        in one place (:func:`check_logits`: shape, class count across calls, autograd
        connection when gradients are on and ``inputs`` requires grad; then finiteness,
        see the class docstring).
        """
        logits = self.model(inputs)
        self._calls += 1
        reference = self.images if index is None else self.images[index]
        num_classes = check_logits(logits, reference, self.model,
                                   num_classes=None if self.task is None else self.task.num_classes,
                                   needs_grad=torch.is_grad_enabled() and inputs.requires_grad)
        finite = all_finite(logits.detach())
        if self._defer:
            self._finite = finite if self._finite is None else self._finite & finite
        elif not finite:
            raise nonfinite_logits_error(self.model, logits, self._calls)
        if self.task is None:
            self.task = SegmentationTask(self._labels, self._masks, num_classes,
                                         self.targeted, self.adv_threshold)
        self._count(self.num_forwards, index)
        return logits

    def check_model(self) -> None:
        """Raise :class:`InputError` if logits of a forward not yet checked were NaN or infinite.

        A no-op on the CPU (there the check is immediate); elsewhere one host
        synchronisation, so call it only where the loop synchronises anyway.
        """
        if self._finite is not None:
            finite, self._finite = bool(self._finite), None
            if not finite:
                raise nonfinite_logits_error(self.model)

    def gradient(self, loss: Tensor, inputs: Tensor, index: Optional[Tensor] = None) -> Tensor:
        """``∂ loss.sum() / ∂ inputs``, counted as one backward for the images in ``index`` (or all).

        Refuses a model whose output is not connected to its input (it detaches or
        replaces its input) with an :class:`InputError`, rather than autograd's error.
        """
        grad, = torch.autograd.grad(loss.sum(), inputs, allow_unused=True)
        if grad is None:
            raise InputError(f"model {model_name(self.model)} returned logits that do not depend on its input "
                             f"through autograd (it detaches or replaces its input), so the attack has no "
                             f"gradient to follow")
        self.count_backward(index)
        return grad

    def count_backward(self, index: Optional[Tensor] = None) -> None:
        """Record one backward propagation for the images in ``index`` (or all)."""
        self._count(self.num_backwards, index)

    @staticmethod
    def _count(counter: Tensor, index: Optional[Tensor]) -> None:
        if index is None:
            counter += 1
        else:
            counter[index.cpu()] += 1

    # -- evaluation ------------------------------------------------------------------
    def evaluate(self, adv: Tensor, perturbation: Tensor, index: Optional[Tensor] = None, *,
                 top_k: int = 0, budget: Optional[Tensor] = None) -> Evaluation:
        """Evaluate the iterate ``adv`` of the images in ``index`` (or all) and track it.

        In this order: the logits ``f(adv)`` (:meth:`forward`, counted and checked); the
        prediction, their argmax — or with ``top_k`` the first class of
        :func:`~explorer.attacks.losses.top_classes` ``(logits, top_k)``, kept in the
        evaluation for attacks whose loss needs the top logits too; pixel success and APSR
        ([Rony2023], eq. 19); the ℓ∞ norm of ``perturbation`` per image; the best iterate.
        Without ``budget`` the minimal-norm rule (:meth:`track`); with ``budget``, an (N,)
        radius, the fixed-budget rule (:meth:`track_highest_apsr`) over the iterates inside
        that ball — up to 1e-6, since ``||clip(x + δ) - x||`` can exceed ε by a rounding
        error of ``x`` (float32 ulp ≈ 6e-8 in [0, 1]); an iterate outside never counts.
        """
        logits = self.forward(adv, index)
        task = self.task
        ranked = top_classes(logits, top_k) if top_k else None
        prediction = predicted_classes(logits) if ranked is None else ranked[:, 0]
        pixel_adv = task.pixel_success(prediction, index)
        apsr = task.apsr(pixel_adv, index)
        linf = perturbation.detach().flatten(1).abs().amax(1)
        if budget is None:
            is_adv = self.track(adv, apsr, linf, index)
        else:
            inside = linf <= budget + 1e-6
            is_adv = self.track_highest_apsr(adv, torch.where(inside, apsr, torch.full_like(apsr, -1.0)), linf,
                                             index)
        return Evaluation(logits=logits, prediction=prediction, pixel_adv=pixel_adv, apsr=apsr, linf=linf,
                          is_adv=is_adv, ranked=ranked)

    # -- best iterate ----------------------------------------------------------------
    def track(self, adv_images: Tensor, apsr: Tensor, linf: Tensor,
              index: Optional[Tensor] = None) -> Tensor:
        """Update the best iterate ([Rony2023] best-iterate rule); return the images' success flags.

        Before an image's first success the iterate with the highest APSR is kept; from
        then on, the successful iterate with the smallest ℓ∞ norm.
        """
        apsr, linf = apsr.float(), linf.float()  # per-image book-keeping is float32 whatever the model's dtype
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
        apsr, linf = apsr.float(), linf.float()
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
               extras: Union[None, Dict[str, Tensor], Callable[[], Dict[str, Tensor]]] = None,
               pixel_states: Optional[Callable[[], Tensor]] = None,
               prediction: Optional[Callable[[], Tensor]] = None) -> bool:
        """End iteration ``iteration``: count it, send its record to the callback (if any);
        return True when the attack must stop.

        Call it at every iteration, observed or not: it keeps :attr:`iterations` true.
        ``extras`` may be a thunk (for extras that cost something to compute);
        ``pixel_states`` and ``prediction`` are thunks, evaluated only when maps were asked
        for.  The record holds copies only (see the module docstring), and the trace gets
        its own copy of it, made before the callback sees the record.
        """
        self.iterations = iteration + 1
        if self.callback is None:
            return False
        self.check_model()  # never hand out a record computed from broken logits
        n = len(self.images)

        def per_image(value) -> Tensor:
            value = torch.as_tensor(value).detach().to(device="cpu", dtype=torch.float32, copy=True)
            return value.expand(n).clone() if value.ndim == 0 else value

        def snapshot(value: Optional[Tensor]) -> Optional[Tensor]:
            return None if value is None else value.detach().to("cpu", copy=True)

        if callable(extras):
            extras = extras()
        record = IterationRecord(
            attack=self.attack, iteration=iteration, num_steps=self.num_steps,
            apsr=per_image(apsr), linf=per_image(linf),
            best_linf=snapshot(torch.where(self.found, self.best_linf, torch.full_like(self.best_linf, float("inf")))),
            best_apsr=snapshot(self.best_apsr.clamp_min(0)), success=snapshot(self.found),
            loss=per_image(loss), step_size=per_image(step_size),
            extras={k: per_image(v) for k, v in (extras or {}).items()},
            constraint_mask=snapshot(pixel_states()) if (self.record_maps and pixel_states) else None,
            prediction=snapshot(prediction()) if (self.record_maps and prediction) else None,
            adv_images=snapshot(self.current_adv),
        )
        self.trace.append(record.copy(maps=False))
        if self.callback(record):
            self.stopped = True
            return True
        return False

    # -- result ------------------------------------------------------------------------
    def result(self) -> AttackResult:
        """Assemble the :class:`AttackResult` from the best iterates (after the last model check)."""
        self.check_model()
        if self.images.is_cuda:
            torch.cuda.synchronize(self.images.device)
        adv = self.best_adv.clamp(0, 1)
        return AttackResult(
            attack=self.attack, adv_images=adv, linf=linf_distance(adv, self.images),
            apsr=self.best_apsr.clamp_min(0), success=self.found.clone(),
            num_forwards=self.num_forwards.clone(), num_backwards=self.num_backwards.clone(),
            iterations=self.iterations, stopped=self.stopped,
            elapsed_s=time.perf_counter() - self._start, targeted=self.targeted,
            adv_threshold=self.adv_threshold, params=dict(self.params), trace=self.trace)


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


def drop_largest(constraints: Tensor, masks: Tensor, counts: Union[Sequence[int], Tensor],
                 k_max: Optional[int] = None) -> Tensor:
    """Mask ``m~``: the labelled pixels minus exactly ``counts[i]`` largest constraints of image i.

    Adaptive constraint masking, [Rony2023], eq. 6.  Exact count (ties included) and safe
    for batches whose images drop different numbers of pixels, including zero.

    ``counts`` is a sequence of ints, or an (N,) integer tensor on the constraints' device
    together with ``k_max >= max(counts)`` known on the host — then building the mask
    needs no host-to-device copy, which on an accelerator would wait for the queued work
    at every iteration.
    """
    if torch.is_tensor(counts):
        if k_max is None:
            raise ValueError("drop_largest: a tensor of counts needs k_max (the largest count, known on the host)")
        counts_t = counts.to(constraints.device).view(-1, 1)
    else:
        k_max = max(counts) if len(counts) else 0
        counts_t = None
    if k_max == 0:
        return masks
    n = constraints.shape[0]
    candidates = constraints.detach().masked_fill(~masks, float("-inf")).flatten(1)
    top_index = candidates.topk(k_max, dim=1).indices
    if counts_t is None:
        counts_t = torch.as_tensor(list(counts), device=constraints.device).view(n, 1)
    dropped_rank = torch.arange(k_max, device=constraints.device).view(1, k_max) < counts_t
    dropped = torch.zeros_like(candidates, dtype=torch.bool)
    dropped.scatter_(1, top_index, dropped_rank)
    return masks & ~dropped.view_as(masks)
