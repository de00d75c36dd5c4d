"""Run one attack live: the scene it works on, a background run that streams snapshots, metrics.

This is the framework-free engine under the Gradio app (and usable from a notebook):

* :func:`prepare_scene` loads a model (cached), an image (a shipped sample or an uploaded
  array), its reference labels (the ground truth of a sample, else the clean prediction)
  and the attack's label map for the chosen target — untargeted, all-background, the
  smoothed majority-label street layout (seed 001 §5.4) or an uploaded label map.
* :class:`LiveAttack` runs a registered attack in a worker thread with the core's
  callback, keeps the per-iteration curves, the latest maps and a bounded set of frames
  for replay, and stops within one iteration when asked (the partial result is kept).
  :meth:`LiveAttack.snapshots` is a generator of :class:`Snapshot` — the app streams it.
* :func:`run_metrics` is the after-run table: APSR, ℓ∞, clean and adversarial accuracy
  and mIoU, time, model calls, and whether the 8-bit PNG of the result still succeeds.
"""
from __future__ import annotations

import functools
import hashlib
import math
import queue
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from explorer.attacks import get_attack
from explorer.attacks.core import AttackResult, IterationRecord
from explorer.datasets import DatasetInfo
from explorer.errors import InputError
from explorer.images import (decode_image_file, decode_label_file, image_from_array, is_file_upload,
                             label_map_from_array, read_upload, resize_notice)
from explorer.metrics import apsr, confusion_matrix, mean_iou, pixel_accuracy
from explorer.models import load_model
from explorer.models.registry import check_name
from explorer.samples import SAMPLES_DIR, load_sample, read_label_png
from explorer.targets import TARGETS, background_target, custom_target, resize_label_map, target_choices

#: memory allowed for one run's replay frames (predictions, masks, float16 perturbations)
FRAME_BUDGET_BYTES = 64 * 2 ** 20
#: at most this many replay frames per run
MAX_FRAMES = 120
MAJORITY_TARGET_PNG = SAMPLES_DIR / "street_majority_target.png"


def cached_model(name: str, device: Optional[str] = None):
    """:func:`explorer.models.load_model`, cached: sessions share read-only models.  The name
    is checked first, so a client's junk never reaches the cache as a key."""
    return _shared_model(check_name(name), device if device is None else str(device))


@functools.lru_cache(maxsize=4)
def _shared_model(name: str, device: Optional[str]):
    model = load_model(name, device)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


# --------------------------------------------------------------------------- inputs

#: decoded uploads kept, so previews and runs of the same file do not decode it again
DECODE_CACHE_SIZE = 8
_DECODED: "OrderedDict[Tuple, Tuple[Tensor, str]]" = OrderedDict()
_DECODED_LOCK = threading.Lock()


def _cached_decode(kind: str, upload: Any, decode: Callable[[bytes], Tuple[Tensor, str]],
                   *key: Any) -> Tuple[Tensor, str]:
    """``decode(data)`` of an uploaded file, remembered by the sha256 of its bytes (and
    ``key``): the app previews the scene on every change, and a 20 MiB picture or a
    large label map must not be decoded each time.  Returns a copy (callers own it)."""
    data = read_upload(upload)
    entry = (kind, hashlib.sha256(data).hexdigest(), *key)
    with _DECODED_LOCK:
        hit = _DECODED.get(entry)
        if hit is not None:
            _DECODED.move_to_end(entry)
    if hit is None:
        hit = decode(data)
        with _DECODED_LOCK:
            _DECODED[entry] = hit
            while len(_DECODED) > DECODE_CACHE_SIZE:
                _DECODED.popitem(last=False)
    tensor, notice = hit
    return tensor.clone(), notice


def decode_upload(upload: Any) -> Tuple[Tensor, str]:
    """The picture of an upload: file bytes or a path are decoded by
    :func:`explorer.images.decode_image_file` (cached), an array by
    :func:`explorer.images.image_from_array`."""
    if is_file_upload(upload):
        return _cached_decode("picture", upload, decode_image_file)
    return image_from_array(upload)


def decode_target_map(target_map: Any, dataset: DatasetInfo, size: Tuple[int, int]) -> Tuple[Tensor, str]:
    """An uploaded target label map as (H, W) class ids at the image's ``size``, with a notice:
    a file through :func:`explorer.images.decode_label_file` (cached), an array through
    :func:`explorer.images.label_map_from_array`.  Either way it is sampled to ``size``
    before it is widened, so its cost is bounded by the image, not by the file."""
    if is_file_upload(target_map):
        labels, notice = _cached_decode("label map", target_map,
                                        lambda data: decode_label_file(data, dataset, size=size),
                                        dataset.name, tuple(size))
        return labels, notice
    array = np.asarray(target_map) if target_map is not None else None
    labels = label_map_from_array(array, dataset, size=size)
    notice = resize_notice(array.shape[:2], size)
    return labels, notice


@dataclass
class Scene:
    """What an attack works on: model, one image, reference labels and the attack's label map."""

    model_name: str
    model: torch.nn.Module
    image: Tensor              #: (1, 3, H, W) in [0, 1], on the model's device
    image_name: str            #: sample name, or "upload"
    ground_truth: Optional[Tensor]  #: (1, H, W) int64 when the image is a sample of the model's dataset
    clean_prediction: Tensor   #: (1, H, W) int64
    target: str                #: a key of TARGETS
    attack_labels: Tensor      #: (1, H, W): reference labels (untargeted) or the target map
    notice: str = ""

    @property
    def targeted(self) -> bool:
        return self.target != "untargeted"

    @property
    def dataset(self) -> DatasetInfo:
        return self.model.dataset

    @property
    def reference(self) -> Tensor:
        """Labels the clean and adversarial accuracy are measured against."""
        return self.ground_truth if self.ground_truth is not None else self.clean_prediction

    @property
    def reference_name(self) -> str:
        return "ground truth" if self.ground_truth is not None else "clean prediction"


def sample_dataset(world: str) -> str:
    """The dataset whose classes a world's samples are labelled with."""
    return {"street": "cityscapes", "objects": "voc"}[world]


def prepare_scene(model_name: str, sample: Optional[str] = None, upload: Any = None,
                  target: str = "untargeted", target_map: Any = None,
                  device: Optional[str] = None) -> Scene:
    """Load model and image, predict, and build the attack's labels for ``target``.

    ``upload`` (an array, or the bytes or path of a picture file, decoded by
    :func:`explorer.images.decode_image_file`) wins over ``sample`` (a shipped sample
    name); ``target_map`` likewise (an array, or a label map file).  A sample keeps its
    ground truth when it is labelled with the model's classes; an upload (or a sample of
    the other dataset) is attacked against the clean prediction.  A target map of
    another size is resized to the image (nearest neighbour) with a notice.
    """
    if not isinstance(target, str) or target not in TARGETS:
        raise InputError(f"unknown target {repr(target)[:60]}; choose one of {list(TARGETS)}")
    model = cached_model(model_name, device)
    dataset = model.dataset
    if target not in target_choices(dataset):
        raise InputError(f"target {TARGETS[target]!r} is not available for {model_name} "
                         f"({dataset.name} classes); choose one of {target_choices(dataset)}")
    ground_truth = None
    notice = ""
    if upload is not None:
        image, notice = decode_upload(upload)
        image_name = "upload"
    elif sample:
        image, labels, world = load_sample(sample)
        image_name = sample
        if sample_dataset(world) == dataset.name:
            ground_truth = labels[None]
        else:
            notice = f"{sample} is labelled with {sample_dataset(world)} classes: attacking the clean prediction"
    else:
        raise InputError("no image: pick a sample or upload a picture")
    device_ = next(model.parameters()).device
    image = image[None].to(device_)
    with torch.no_grad():
        clean_prediction = model(image).argmax(1)
    if ground_truth is not None:
        ground_truth = ground_truth.to(device_)
    reference = ground_truth if ground_truth is not None else clean_prediction
    size = tuple(image.shape[-2:])
    if target == "untargeted":
        labels = reference
    elif target == "background":
        labels = background_target(reference, dataset.background_class, keep_ignored=True,
                                   num_classes=dataset.num_classes)
    elif target == "majority":
        layout = read_label_png(MAJORITY_TARGET_PNG)
        labels = resize_label_map(layout, size)[None].to(device_)
    else:
        uploaded, map_notice = decode_target_map(target_map, dataset, size)
        notice = "; ".join(filter(None, [notice, map_notice]))
        labels = custom_target(uploaded, dataset.num_classes)[None].to(device_)
    return Scene(model_name=model_name, model=model, image=image, image_name=image_name,
                 ground_truth=ground_truth, clean_prediction=clean_prediction, target=target,
                 attack_labels=labels.to(device=device_, dtype=torch.long), notice=notice)


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
    ``stride`` iterations, where the stride keeps at most :data:`MAX_FRAMES` frames and
    :data:`FRAME_BUDGET_BYTES` bytes.
    """

    def __init__(self, scene: Scene, attack: str, params: Mapping[str, Any], seed: int = 0,
                 adv_threshold: float = 0.99, frame_budget_bytes: int = FRAME_BUDGET_BYTES,
                 max_frames: int = MAX_FRAMES):
        self.scene = scene
        self.spec = get_attack(attack)
        self.params = self.spec.validate_hyperparameters(params)
        self.adv_threshold = float(self.spec.validate_hyperparameters({"adv_threshold": adv_threshold})["adv_threshold"])
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2 ** 63:
            raise InputError(f"seed must be a whole number >= 0; got {repr(seed)[:60]}")
        self.seed = int(seed)
        # the records' own count (restarts, bisection steps, ensemble members) replaces this guess
        self.num_steps = int(self.params.get("num_steps", self.spec.defaults().get("num_steps", 1)))
        h, w = scene.image.shape[-2:]
        frame_bytes = h * w * (2 + 1 + 3 * 2)
        self._keep = max(2, min(max_frames, frame_budget_bytes // frame_bytes))
        self.stride = max(1, math.ceil(self.num_steps / self._keep))
        self.history: Dict[str, List[float]] = {k: [] for k in HISTORY_KEYS}
        self.frames: List[Frame] = []
        self.latest: Optional[Frame] = None
        self.result: Optional[AttackResult] = None
        self.error: Optional[BaseException] = None
        self._stop = threading.Event()
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
            self.stride = max(1, math.ceil(self.num_steps / self._keep))
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
        self._news.put(record.iteration)
        return self._stop.is_set()

    def _work(self) -> None:
        out_of_memory = False
        try:
            torch.manual_seed(self.seed)
            self.result = self.spec(self.scene.model, self.scene.image, self.scene.attack_labels,
                                    targeted=self.scene.targeted, adv_threshold=self.adv_threshold,
                                    callback=self._on_record, record_maps=True, **self.params)
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
        """Start if needed and yield a snapshot at most every ``interval`` seconds while
        iterations arrive, then a final one.  Raises the worker's error (as
        :class:`InputError` when it is one a user can act on) after a last snapshot of
        the iterations done before it.  Closing the generator
        early (a viewer went away) stops the attack."""
        self.start()
        try:
            finished = False
            while not finished:
                item = self._news.get()
                if item is None:
                    finished = True
                deadline = time.perf_counter() + interval
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
    model's argmax on the returned image — is computed here unless the caller has it."""
    model, k = scene.model, scene.dataset.num_classes
    adv = result.adv_images[:1]
    if adv_prediction is None:
        adv_prediction = model(adv).argmax(1)
    prediction_8bit = model((adv * 255).round() / 255).argmax(1)
    apsr_8bit = float(apsr(prediction_8bit, scene.attack_labels, k, targeted=scene.targeted)[0])
    reference = scene.reference

    def miou(pred):
        return float(mean_iou(confusion_matrix(pred, reference, k)))

    return {
        "attack": result.attack,
        "target": scene.target,
        "iterations": result.iterations,
        "stopped early": bool(result.stopped),
        "success (APSR ≥ ν)": bool(result.success[0]),
        "APSR": float(result.apsr[0]),
        "ℓ∞ × 255": float(result.linf[0] * 255),
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
