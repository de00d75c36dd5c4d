"""One attack run live: a worker thread that streams snapshots, stops on request, keeps
replay frames, and the after-run numbers.

* :class:`LiveAttack` runs a registered attack on a :class:`~explorer.live.scene.Scene` in a
  worker thread with the core's callback, keeps the per-iteration curves, the latest maps
  and a bounded set of frames for replay, and stops within one iteration when asked (the
  partial result is kept).  :meth:`LiveAttack.snapshots` is a generator of
  :class:`Snapshot` — the app streams it.
* :func:`run_metrics` is the after-run table: APSR, ℓ∞, clean and adversarial accuracy
  and mIoU, time, model calls, and whether the 8-bit PNG of the result still succeeds.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from explorer.attacks import get_attack
from explorer.attacks.core import AttackResult, IterationRecord, SegmentationTask
from explorer.attacks.lattice import with_8bit_finish
from explorer.data.datasets import DatasetInfo
from explorer.errors import InputError
from explorer.live.scene import Scene
from explorer.live.stops import StopSignal
from explorer.metrics import apsr, confusion_matrix, mean_iou, pixel_accuracy
from explorer.validation import check_flag, check_seed

#: memory allowed for one run's replay frames (predictions, masks, float16 perturbations)
FRAME_BUDGET_BYTES = 64 * 2 ** 20
#: at most this many replay frames per run
MAX_FRAMES = 120


# --------------------------------------------------------------------------- live run

@dataclass
class Frame:
    """One iteration's picture: prediction, constraint mask and perturbation of image 0."""

    iteration: int
    apsr: float
    linf: float
    prediction: np.ndarray     #: (H, W) int16
    mask: np.ndarray           #: (H, W) uint8 PixelState codes
    perturbation: np.ndarray   #: (3, H, W) float16

    @property
    def nbytes(self) -> int:
        return self.prediction.nbytes + self.mask.nbytes + self.perturbation.nbytes


@dataclass(frozen=True)
class Replay:
    """What viewing a finished run needs, as plain data: numbers, lists and numpy arrays — no
    model, thread or lock — so it can be kept in a browser session's state or cross a process
    boundary.  ``frames`` are the recorded frames, ``returned`` the frame of the iterate the
    attack returned, ``history`` its curves (as in :class:`Snapshot`)."""

    attack: str                #: the attack's label (title and budget)
    frames: Tuple[Frame, ...]
    returned: Optional[Frame]
    num_steps: int
    stride: int
    history: Dict[str, List[float]]
    clean_image: np.ndarray    #: (3, H, W) float32 in [0, 1]
    dataset: DatasetInfo
    adv_threshold: float = 0.99  #: ν of the run (drawn on its APSR curve)


@dataclass
class Snapshot:
    """What a viewer needs at one moment of a run (the curves so far and the latest frame)."""

    iteration: int             #: iterations done
    num_steps: int
    history: Dict[str, List[float]]
    frame: Optional[Frame]
    elapsed_s: float
    done: bool

    @property
    def rate(self) -> float:
        """Iterations per second so far."""
        return self.iteration / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float:
        """Seconds left at the current rate (0 once done)."""
        if self.done or self.rate == 0:
            return 0.0
        return (self.num_steps - self.iteration) / self.rate


HISTORY_KEYS = ("iteration", "apsr", "best_apsr", "linf", "best_linf")


class LiveAttack:
    """One attack run on a :class:`Scene`, in a worker thread, observable and stoppable.

    ``params`` are the attack's hyper-parameters (validated against the registry schema
    here, so a bad value fails before anything starts).  Frames for replay are kept every
    ``stride`` iterations, the stride doubling as the run goes so that at most
    :data:`MAX_FRAMES` frames and :data:`FRAME_BUDGET_BYTES` bytes are kept, plus the last.
    Besides :meth:`stop` (same process), a :class:`~explorer.live.stops.StopSignal` is looked
    at after every iteration: a stop asked for by another process ends the run within one
    iteration too.

    With ``eight_bit`` the attack's result gets the 8-bit finish
    (:func:`~explorer.attacks.lattice.with_8bit_finish`): :attr:`returned` is then the image
    on the 1/255 lattice that survives a PNG write, judged on that exact image, and
    :attr:`result` carries both (``result.eight_bit``).
    """

    def __init__(self, scene: Scene, attack: str, params: Mapping[str, Any], seed: int = 0,
                 adv_threshold: float = 0.99, frame_budget_bytes: int = FRAME_BUDGET_BYTES,
                 max_frames: int = MAX_FRAMES, stop_signal: Optional[StopSignal] = None,
                 eight_bit: bool = False):
        self.scene = scene
        self.eight_bit = check_flag(eight_bit, "8-bit valid result")
        self.spec = get_attack(attack)
        self.params = self.spec.validate_hyperparameters(params)
        checked = self.spec.validate_hyperparameters({"adv_threshold": adv_threshold})
        self.adv_threshold = float(checked["adv_threshold"])
        self.seed = check_seed(seed)
        # the records' own count (restarts, bisection steps, ensemble members) replaces this guess
        self.num_steps = int(self.params.get("num_steps", self.spec.defaults().get("num_steps", 1)))
        h, w = scene.image.shape[-2:]
        frame_bytes = h * w * (2 + 1 + 3 * 2)
        self._keep = max(2, min(max_frames, frame_budget_bytes // frame_bytes))
        #: frames are kept every ``stride`` iterations; the stride starts at 1 and doubles
        #: whenever the kept frames would exceed the budget (:meth:`_thin`)
        self.stride = 1
        self.history: Dict[str, List[float]] = {k: [] for k in HISTORY_KEYS}
        self.frames: List[Frame] = []
        self.latest: Optional[Frame] = None
        self.result: Optional[AttackResult] = None
        self.error: Optional[BaseException] = None
        self._stop = threading.Event()
        self._stop_signal = stop_signal
        self._news = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._start = 0.0
        self._end: Optional[float] = None

    # -- control -----------------------------------------------------------------------
    def start(self) -> "LiveAttack":
        """Start the worker thread (once)."""
        if self._thread is None:
            self._start = time.perf_counter()
            self._thread = threading.Thread(target=self._work, name=f"attack-{self.spec.name}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the attack to stop after its current iteration (its result is kept)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def join(self, timeout: Optional[float] = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def done(self) -> bool:
        return self._thread is not None and not self._thread.is_alive()

    # -- worker --------------------------------------------------------------------------
    def _on_record(self, record: IterationRecord):
        if record.iteration == 0 and record.num_steps != self.num_steps:
            self.num_steps = record.num_steps
        frame = Frame(iteration=record.iteration, apsr=float(record.apsr[0]), linf=float(record.linf[0]),
                      prediction=record.prediction[0].numpy().astype(np.int16),
                      mask=record.constraint_mask[0].numpy(),
                      perturbation=(record.adv_images[0] - self.scene.image[0].cpu()).numpy().astype(np.float16))
        last = record.iteration == record.num_steps - 1
        with self._lock:
            for key in HISTORY_KEYS:
                value = record.iteration if key == "iteration" else float(getattr(record, key)[0])
                self.history[key].append(value)
            self.latest = frame
            if record.iteration % self.stride == 0 or last:
                self.frames.append(frame)
                if len(self.frames) > self._keep and not last:
                    self._thin()
        self._news.put(record.iteration)
        if self._stop_signal is not None and self._stop_signal.requested():
            self._stop.set()
        return self._stop.is_set()

    def _thin(self) -> None:
        """Double the stride and keep every other frame (those on the new grid, since the
        kept ones are the multiples of the old stride from 0): however long the run, or
        wherever it is stopped, between half the budget and the budget of frames stays,
        evenly spread — a 2000-iteration run stopped at 57 keeps all 58."""
        self.stride *= 2
        self.frames = [f for f in self.frames if f.iteration % self.stride == 0]

    def _work(self) -> None:
        out_of_memory = False
        try:
            torch.manual_seed(self.seed)
            self.result = self.spec(self.scene.model, self.scene.image, self.scene.attack_labels,
                                    targeted=self.scene.targeted, adv_threshold=self.adv_threshold,
                                    callback=self._on_record, record_maps=True, **self.params)
            if self.eight_bit:
                self.result = with_8bit_finish(self.scene.model, self.scene.image, self.scene.attack_labels,
                                               self.result)
            with self._lock:  # the last iteration is always replayable
                if self.latest is not None and (not self.frames or self.frames[-1] is not self.latest):
                    self.frames.append(self.latest)
        except BaseException as error:  # reported to the viewer by snapshots()
            self.error = friendly_error(error)
            out_of_memory = is_out_of_memory(error)
        finally:
            if out_of_memory:  # the failed step's tensors died with the traceback: hand the memory back
                release_memory()
            self._end = time.perf_counter()
            self._news.put(None)

    # -- viewing -------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """The run as it is now."""
        with self._lock:
            history = {k: list(v) for k, v in self.history.items()}
            frame = self.latest
        end = self._end if self._end is not None else time.perf_counter()
        return Snapshot(iteration=len(history["iteration"]), num_steps=self.num_steps, history=history,
                        frame=frame, elapsed_s=end - self._start, done=self.done and self._end is not None)

    def snapshots(self, interval: float = 0.1) -> Iterator[Snapshot]:
        """Start if needed and yield a snapshot as soon as the first iteration arrives, then
        at most every ``interval`` seconds while iterations arrive, then a final one.  Raises the worker's error (as
        :class:`InputError` when it is one a user can act on) after a last snapshot of
        the iterations done before it.  Closing the generator
        early (a viewer went away) stops the attack."""
        self.start()
        try:
            finished, first = False, True
            while not finished:
                item = self._news.get()
                if item is None:
                    finished = True
                # the first iteration is shown as soon as it arrives (the visitor waits for it);
                # later ones are gathered for up to ``interval`` seconds
                deadline = time.perf_counter() + (0.0 if first else interval)
                first = False
                while not finished:  # drain what arrived during the interval
                    try:
                        item = self._news.get(timeout=max(0.0, deadline - time.perf_counter()))
                    except queue.Empty:
                        break
                    if item is None:
                        finished = True
                if finished:
                    self.join()
                if self.error is not None:
                    if self.history["iteration"]:  # show what was computed before the failure
                        yield self.snapshot()
                    raise self.error
                yield self.snapshot()
        finally:
            if not self.done:
                self.stop()

    @property
    def returned(self) -> AttackResult:
        """What the run hands out: the 8-bit finish when asked for, else the attack's result."""
        if self.result is not None and self.result.eight_bit is not None:
            return self.result.eight_bit
        return self.result

    def returned_frame(self, prediction: Tensor) -> Frame:
        """A :class:`Frame` of the image the run returned (the attack's best iterate, not its
        last, or its 8-bit finish), given the model's ``prediction`` on it (1, H, W): its
        constraint mask is computed here."""
        result, scene = self.returned, self.scene
        task = SegmentationTask(scene.attack_labels, None, scene.dataset.num_classes, scene.targeted,
                                self.adv_threshold)
        states = task.pixel_states(task.pixel_success(prediction))
        return Frame(iteration=self.result.iterations - 1, apsr=float(result.apsr[0]), linf=float(result.linf[0]),
                     prediction=prediction[0].cpu().numpy().astype(np.int16), mask=states[0].cpu().numpy(),
                     perturbation=(result.adv_images[0] - scene.image[0]).cpu().numpy().astype(np.float16))

    def replay(self, returned: Optional[Frame] = None) -> Replay:
        """The finished run as a :class:`Replay` (copies: the run may be dropped afterwards)."""
        with self._lock:
            frames, history = tuple(self.frames), {k: list(v) for k, v in self.history.items()}
        return Replay(attack=self.spec.label(self.params), frames=frames, returned=returned, num_steps=self.num_steps,
                      stride=self.stride, history=history,
                      clean_image=self.scene.image[0].detach().cpu().numpy().astype(np.float32),
                      dataset=self.scene.dataset, adv_threshold=self.adv_threshold)

    def run(self) -> AttackResult:
        """Run to the end without viewing; return the result."""
        for _ in self.snapshots(interval=3600):
            pass
        return self.result


#: what the runtime says when an allocation fails (CUDA, MPS, the CPU allocator)
_OUT_OF_MEMORY = ("out of memory", "can't allocate memory", "cannot allocate memory")
OUT_OF_MEMORY_MESSAGE = ("the attack ran out of memory. Try a smaller image (downscale it), fewer "
                         "iterations (fewer replay frames are kept) or a smaller model; "
                         "the app is still running")


def is_out_of_memory(error: BaseException) -> bool:
    """True for an allocation failure: MemoryError, torch's OutOfMemoryError, or a RuntimeError
    whose message says the allocator failed."""
    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if isinstance(error, MemoryError) or (oom_type is not None and isinstance(error, oom_type)):
        return True
    message = str(error).lower()
    return isinstance(error, RuntimeError) and any(words in message for words in _OUT_OF_MEMORY)


def release_memory() -> None:
    """Give cached accelerator memory back after an allocation failure, so the next run
    (this session's or another's) starts from a clean slate."""
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def friendly_error(error: BaseException) -> BaseException:
    """Turn errors a user can act on into :class:`InputError` with a suggestion: bad input
    stays as it is; running out of memory becomes :data:`OUT_OF_MEMORY_MESSAGE` (call
    :func:`release_memory` once the original error, and the tensors its traceback holds,
    are gone).  Anything else is returned unchanged."""
    if isinstance(error, InputError):
        return error
    if is_out_of_memory(error):
        return InputError(OUT_OF_MEMORY_MESSAGE)
    return error


# --------------------------------------------------------------------------- after the run

@torch.no_grad()
def run_metrics(scene: Scene, result: AttackResult, adv_prediction: Optional[Tensor] = None) -> Dict[str, Any]:
    """The after-run numbers, by name (see the module docstring).  ``adv_prediction`` — the
    model's argmax on the returned image — is computed here unless the caller has it.  A
    result carrying its 8-bit finish is reported by that finish (the image handed out), with
    the continuous attack's ℓ∞, APSR and success beside it."""
    continuous, result = result, (result.eight_bit if result.eight_bit is not None else result)
    model, k = scene.model, scene.dataset.num_classes
    adv = result.adv_images[:1]
    if adv_prediction is None:
        adv_prediction = model(adv).argmax(1)
    prediction_8bit = model((adv * 255).round() / 255).argmax(1)
    apsr_8bit = float(apsr(prediction_8bit, scene.attack_labels, k, targeted=scene.targeted)[0])
    reference = scene.reference

    def miou(pred):
        return float(mean_iou(confusion_matrix(pred, reference, k)))

    finished = {}
    if continuous is not result:
        finished = {"8-bit valid result": True,
                    "continuous ℓ∞ × 255": float(continuous.linf[0] * 255),
                    "continuous APSR": float(continuous.apsr[0]),
                    "continuous success": bool(continuous.success[0])}
    return {
        "attack": continuous.attack,
        "target": scene.target,
        "iterations": continuous.iterations,
        "stopped early": bool(continuous.stopped),
        "success (APSR ≥ ν)": bool(result.success[0]),
        "APSR": float(result.apsr[0]),
        "ℓ∞ × 255": float(result.linf[0] * 255),
        **finished,
        "reference labels": scene.reference_name,
        "clean pixel accuracy": float(pixel_accuracy(scene.clean_prediction, reference, k)[0]),
        "clean mIoU": miou(scene.clean_prediction),
        "adversarial pixel accuracy": float(pixel_accuracy(adv_prediction, reference, k)[0]),
        "adversarial mIoU": miou(adv_prediction),
        "8-bit PNG APSR": apsr_8bit,
        "8-bit PNG still succeeds": apsr_8bit >= result.adv_threshold,
        "time (s)": float(result.elapsed_s),
        "forwards": int(result.num_forwards[0]),
        "backwards": int(result.num_backwards[0]),
    }
