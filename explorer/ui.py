"""The Gradio explorer: a thin layer of widgets over :mod:`explorer.live` and :mod:`explorer.live.render`.

``build_demo()`` returns the ``gr.Blocks`` app; ``app.py`` at the repository root launches it.
Every event handler is a plain module-level function (unit-tested without a browser):

* :func:`preview` — the clean view (image, reference labels, clean prediction, target map);
* :func:`run_attack` — a generator streaming one run: curves as records arrive, images at
  most :data:`IMAGE_REFRESH_S` apart, then the metrics table, the replay slider and the
  downloads;
* :func:`stop_run` — asks every run of this browser session to stop (each ends within one
  iteration and keeps its partial result);
* :func:`replay` — the frame of a recorded iteration;
* :func:`compare_attacks` — several attacks on the same scene, curves overlaid;
* :func:`load_run_file` — set every control from a run file.

Attack controls are built from the registry's parameter schemas, so an attack added with
``@register_attack`` appears here without touching this file.  Sessions are isolated: a
running attack is listed in :data:`ACTIVE_RUNS` under the session's key (what Stop looks
up); a finished run is kept in the session's ``gr.State`` as a
:class:`~explorer.live.run.Replay` (plain data); files go to the session's folder under
:data:`FILES_ROOT`, named by :func:`session_key` — never by the client's session hash — and
removed when the session ends.

Runs in two processes (Hugging Face ZeroGPU).  Run and Compare are split in two: the
handler (server process) checks every argument, decodes the uploads (CPU work) and makes a
job of plain data — a :class:`RunJob` or :class:`CompareJob` with the run's folder and its
:class:`~explorer.live.stops.StopSignal`, both chosen by the server; the job's stream
(:func:`attack_stream`, :func:`compare_stream`) loads the model, attacks and yields plain
dicts.  With the ``spaces`` package installed the streams are wrapped in ``spaces.GPU``
(:func:`on_gpu`), which runs them in a GPU worker process and pickles each yielded value
back; without it they run in the server process, the same code.  Stop writes the run's
flag file, which the attack reads after every iteration, whichever process it runs in.
Previews run on the CPU when on ZeroGPU (outside any GPU function).
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import itertools
import logging
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import gradio as gr
import numpy as np
import pandas as pd
import torch

from explorer.attacks import ATTACKS, get_attack
from explorer.attacks.registry import ADV_THRESHOLD, ParamSpec
from explorer.data.decode import MAX_UPLOAD_BYTES
from explorer.data.samples import list_samples
from explorer.data.worlds import world_of_dataset
from explorer.errors import InputError
from explorer.live import render
from explorer.live.exports import (
    MAX_RUN_FILE_BYTES,
    RunSpec,
    image_digest,
    write_downloads,
    write_replay_animation,
)
from explorer.live.run import Frame, LiveAttack, Replay, Snapshot, friendly_error, run_metrics
from explorer.live.scene import (
    Scene,
    SceneInputs,
    build_scene,
    cached_model,
    clean_scores_per_sample,
    prepare_scene,
    read_scene_inputs,
)
from explorer.live.stops import StopSignal
from explorer.models import DEFAULT_MODEL, MODELS, ModelEntry, available_models, get_model_entry
from explorer.targets import TARGETS, target_choices
from explorer.validation import check_flag, check_seed, whole_number

#: seconds between image refreshes while a run streams (curves refresh every snapshot)
IMAGE_REFRESH_S = 0.5
#: seconds between snapshots (curve refreshes)
CURVE_REFRESH_S = 0.15
#: attack runs served at once (each also holds a thread); more wait in the queue
CONCURRENCY = int(os.environ.get("EXPLORER_CONCURRENCY", "2"))
#: waiting requests beyond which new ones are refused with a "queue full" message
QUEUE_SIZE = int(os.environ.get("EXPLORER_QUEUE_SIZE", "16"))
#: the iteration budget slider's range
MAX_STEPS = 2000
DEFAULT_ATTACK = "alma_prox"
#: the budget the page opens with: the default attack's own default (as choosing it sets)
DEFAULT_STEPS = get_attack(DEFAULT_ATTACK).defaults()["num_steps"]
#: device for attacks: $EXPLORER_DEVICE, else CUDA when available
DEVICE = os.environ.get("EXPLORER_DEVICE") or None
#: on a Hugging Face ZeroGPU Space (set by the Space; ``spaces`` reads the same variable)
ON_ZERO_GPU = os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true")
#: device of the previews: on ZeroGPU the server process has no GPU (only GPU functions do)
PREVIEW_DEVICE = "cpu" if ON_ZERO_GPU else DEVICE
#: GPU time booked for a job (ZeroGPU): a fixed part (model, clean prediction, downloads) plus
#: a part per model pass and pixel, within [GPU_SECONDS_MIN, GPU_SECONDS_MAX]; a run that
#: reaches its booking stops itself GPU_SECONDS_MARGIN early and keeps what it computed
GPU_SECONDS_FIXED = 20.0
GPU_SECONDS_PER_PASS_PIXEL = 1e-7
GPU_SECONDS_MIN, GPU_SECONDS_MAX, GPU_SECONDS_MARGIN = 30.0, 300.0, 5.0
#: model passes booked for the 8-bit finish: about six levels tried, each with a plain and
#: three stretched roundings plus ten repair steps (explorer.attacks.lattice.finish_8bit)
EIGHT_BIT_FINISH_PASSES = 6 * (4 + 10)
#: the one folder the app writes into (one folder per session, one per run inside it)
FILES_ROOT = Path(os.environ.get("EXPLORER_TMP") or Path(tempfile.gettempdir()) / "seg-attack-explorer")

LOG = logging.getLogger(__name__)

@dataclass(frozen=True)
class ActiveRun:
    """A run a session is streaming, as the server process knows it: what to call it and
    how to stop it (the run itself may live in a GPU worker process)."""

    title: str
    stop: StopSignal


#: session key -> the runs it is streaming (Run and Compare; Stop stops them all)
ACTIVE_RUNS: Dict[str, List[ActiveRun]] = {}
_ACTIVE_LOCK = threading.Lock()


# --------------------------------------------------------------------------- choices

def model_choices() -> List[Tuple[str, str]]:
    """(label, name) pairs: shipped models first, online ones marked.  A model whose loader
    needs a package this server lacks (transformers' models without the ``hf`` extra, as on
    the Space) is not offered: a visitor could not act on "pip install"."""
    out = []
    for name in available_models():
        entry = MODELS[name]
        if entry.missing_packages():
            continue
        out.append((f"{name} ({model_mark(entry)})", name))
    return out


def model_mark(entry: ModelEntry) -> str:
    """The menu's note on a model: where it comes from and, for a shipped model, how good it is
    before any attack (its card's validation mIoU), so a visitor can weigh what it shows."""
    if entry.kind != "shipped":
        return "online — downloads on first use"
    miou = entry.card.get("validation", {}).get("miou")
    robust = entry.card.get("adversarial_training", {}).get("summary")
    return ("shipped, offline" + ("" if miou is None else f", validation mIoU {miou:.2f}")
            + ("" if robust is None else f", adversarially trained: {robust}"))


def default_model() -> str:
    shipped = available_models("shipped")
    if DEFAULT_MODEL in shipped:
        return DEFAULT_MODEL
    return shipped[0] if shipped else available_models()[0]


@functools.lru_cache(maxsize=32)
def default_sample(model_name: str) -> Optional[str]:
    """The sample shown when a model is chosen: for a shipped model the sample of its world it
    segments best (highest clean mIoU, :func:`explorer.live.scene.clean_scores_per_sample`,
    computed once per model), so a first run starts from a correct map; for others (or if
    that fails) the first."""
    samples = samples_for(model_name)
    if not samples:
        return None
    if get_model_entry(model_name).kind == "shipped":
        try:
            scores = {name: score["miou"] for name, score in
                      clean_scores_per_sample(model_name, PREVIEW_DEVICE).items()}
        except Exception as error:  # a model that cannot load is reported by the preview
            LOG.warning("no clean accuracies for %s: %s", model_name, error)
            scores = {}
        ranked = sorted((name for name in samples if name in scores), key=lambda name: -scores[name])
        if ranked:
            return ranked[0]
    return samples[0]


def samples_for(model_name: str) -> List[str]:
    """The samples labelled with the model's classes (all samples if none are)."""
    world = world_of_dataset(get_model_entry(model_name).dataset)
    return (list_samples(world) if world else []) or list_samples()


def target_radio_choices(model_name: str) -> List[Tuple[str, str]]:
    dataset = get_model_entry(model_name).dataset_info
    return [(TARGETS[t], t) for t in target_choices(dataset)]


def attack_choices() -> List[Tuple[str, str]]:
    return [(f"{spec.label()} ({spec.kind})", name) for name, spec in ATTACKS.items()]


def controlled_params(spec) -> List[ParamSpec]:
    """The hyper-parameters that get a widget (the iteration budget has its own slider)."""
    return [p for p in spec.params if p.name != "num_steps"]


def param_component(attack: str, p: ParamSpec):
    """A widget for one hyper-parameter, from its schema."""
    label = f"{p.symbol} {p.name}".strip() if p.symbol else p.name
    common = dict(label=label, info=p.help, value=p.default, elem_id=f"param-{attack}-{p.name}")
    if p.type is bool:
        return gr.Checkbox(**common)
    if p.type is str:
        return gr.Dropdown(choices=list(p.choices or [p.default]), **common)
    return gr.Number(minimum=p.low, maximum=p.high, precision=0 if p.type is int else None, **common)


#: (attack, parameter) for every parameter widget, in the order they are passed to handlers
PARAM_KEYS: List[Tuple[str, str]] = [(name, p.name) for name, spec in ATTACKS.items()
                                     for p in controlled_params(spec)]


def params_from_widgets(attack: str, steps: Any, values: Sequence[Any]) -> Dict[str, Any]:
    """The chosen attack's hyper-parameters from the flat widget values (plus the budget)."""
    spec = get_attack(attack)
    params = {name: value for (owner, name), value in zip(PARAM_KEYS, values) if owner == attack}
    if "num_steps" in {p.name for p in spec.params}:
        params["num_steps"] = steps
    return params


# --------------------------------------------------------------------------- session helpers
#
# A session is named by the client: Gradio takes any string as its session hash ("../x",
# an absolute path, NUL, megabytes).  So no client string ever becomes a path.  A session's
# files live in ``FILES_ROOT/<key>/run-<n>/``, where ``key`` is an HMAC of the hash under a
# secret drawn when the server starts (fixed length, hex, unpredictable), and every delete
# checks that what it removes is one of those folders, directly under the root.

#: secret of this server process for naming session folders
_SESSION_SECRET = secrets.token_bytes(32)
#: how a session folder and a run folder are named (nothing else under FILES_ROOT is ever deleted)
_SESSION_FOLDER = re.compile(r"[0-9a-f]{32}")
_RUN_FOLDER = re.compile(r"run-[0-9]{6,}")
#: finished runs whose downloads a session keeps (older ones are deleted when a run finishes)
KEPT_RUNS_PER_SESSION = 4
_RUN_COUNTER = itertools.count(1)


def session_key(request: Optional[gr.Request]) -> str:
    """The server's name for a browser session: an HMAC of its client-supplied hash (any
    object, any string) under :data:`_SESSION_SECRET`; 32 hex digits."""
    raw = getattr(request, "session_hash", None)
    text = raw if isinstance(raw, str) else repr(raw)
    return hmac.new(_SESSION_SECRET, text.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:32]


def _owned_folder(folder: Path) -> bool:
    """True when ``folder`` is a session folder directly under :data:`FILES_ROOT`, or a run
    folder directly under one — real folders, not links — the only things the app deletes."""
    root = FILES_ROOT.resolve()
    if folder.is_symlink() or not folder.is_dir():
        return False
    resolved = folder.resolve()
    if _RUN_FOLDER.fullmatch(resolved.name):
        session = resolved.parent
        return _SESSION_FOLDER.fullmatch(session.name) is not None and session.parent == root
    return _SESSION_FOLDER.fullmatch(resolved.name) is not None and resolved.parent == root


def _remove(folder: Path) -> None:
    """Delete an app-owned folder (see :func:`_owned_folder`); anything else is left alone and logged."""
    if not _owned_folder(folder):
        if folder.exists():
            LOG.error("refusing to delete %r: not a folder of this app under %s", str(folder), FILES_ROOT)
        return
    shutil.rmtree(folder, ignore_errors=True)


def new_run_folder(request: Optional[gr.Request]) -> Path:
    """A fresh folder for one run's downloads, in its session's folder; the session's older
    run folders beyond :data:`KEPT_RUNS_PER_SESSION` are deleted (downloads already handed
    out for another run of the session stay until then)."""
    session = FILES_ROOT / session_key(request)
    session.mkdir(parents=True, exist_ok=True)
    folder = session / f"run-{next(_RUN_COUNTER):06d}"
    folder.mkdir()
    runs = sorted((p for p in session.iterdir() if _RUN_FOLDER.fullmatch(p.name)), key=lambda p: int(p.name[4:]))
    for old in runs[:-KEPT_RUNS_PER_SESSION]:
        _remove(old)
    return folder


def cleanup_session(request: gr.Request) -> None:
    """Stop the session's runs and delete its files (called when the browser tab closes)."""
    key = session_key(request)
    with _ACTIVE_LOCK:
        runs = ACTIVE_RUNS.pop(key, [])
    for run in runs:
        run.stop.request()
    _remove(FILES_ROOT / key)


def _register(request, run: ActiveRun) -> None:
    with _ACTIVE_LOCK:
        ACTIVE_RUNS.setdefault(session_key(request), []).append(run)


def _unregister(request, run: ActiveRun) -> None:
    key = session_key(request)
    with _ACTIVE_LOCK:
        runs = ACTIVE_RUNS.get(key, [])
        if run in runs:
            runs.remove(run)
        if not runs:
            ACTIVE_RUNS.pop(key, None)


def warn(message: str) -> str:
    """Show ``message`` as a warning toast and return it for the status line."""
    gr.Warning(message)
    return f"⚠️ {message}"


def problem_message(error: BaseException) -> str:
    """What to tell the user about an error raised while handling an event, so the app stays
    usable whatever happened: bad input and running out of memory are explained (see
    :func:`explorer.live.run.friendly_error`); anything else is logged with its traceback and
    named, with the reassurance that the server keeps serving.  No Gradio call: a GPU
    worker process uses it too."""
    error = friendly_error(error)
    if isinstance(error, InputError):
        return str(error)
    LOG.error("unexpected error in an event handler", exc_info=error)
    return (f"something went wrong ({type(error).__name__}: {str(error)[:300]}). The app is still "
            f"running: try again, or another image, model or attack")


def problem(error: BaseException) -> str:
    """:func:`problem_message` shown as a warning toast (server process only)."""
    return warn(problem_message(error))


# --------------------------------------------------------------------------- views

def views_of_frame(clean: np.ndarray, dataset, frame: Frame) -> Dict[str, Any]:
    """Pictures of one frame of a run on the (3, H, W) ``clean`` image: adversarial prediction,
    amplified perturbation, adversarial image, constraint mask."""
    delta = frame.perturbation.astype(np.float32)
    picture, gain = render.amplify_perturbation(delta)
    return {
        "prediction": render.upscale_nearest(render.colorize(frame.prediction, dataset)),
        "perturbation": (render.upscale_nearest(picture), gain),
        "adversarial": render.upscale_nearest(render.image_to_uint8(np.clip(clean + delta, 0, 1))),
        "mask": render.upscale_nearest(render.render_mask(frame.mask)),
    }


def status_line(run: LiveAttack, snap: Snapshot) -> str:
    """Iteration, speed, time left, current APSR and norms (Markdown)."""
    h = snap.history
    if not h["iteration"]:
        return f"**{run.spec.label(run.params)}** starting…"
    best = h["best_linf"][-1]
    best_text = "—" if not np.isfinite(best) else f"{best * 255:.3f}/255"
    state = "done" if snap.done else ("stopping…" if run.stopping else "running")
    return (f"**{run.spec.label(run.params)}** {state} · iteration **{snap.iteration}/{snap.num_steps}** · "
            f"{snap.rate:.1f} it/s · {snap.eta_s:.0f} s left · APSR {h['apsr'][-1]:.3f} · "
            f"ℓ∞ {h['linf'][-1] * 255:.3f}/255 · best successful ℓ∞ {best_text}")


#: the curves' titles, in plain words
APSR_TITLE = "APSR: share of the labelled pixels fooled"
LINF_TITLE = "ℓ∞: largest change to any pixel (×255)"


def curves(run: LiveAttack, snap: Snapshot):
    """The APSR and ℓ∞ figures of one run as it stands."""
    series = {run.spec.name: snap.history}
    titles = {run.spec.name: run.spec.label(run.params)}
    return (render.apsr_figure(series, run.adv_threshold, title=APSR_TITLE, titles=titles),
            render.linf_figure(series, title=LINF_TITLE, titles=titles))


def metrics_frame(metrics: Dict[str, Any]) -> pd.DataFrame:
    """The metrics dict as a two-column table with readable values."""
    def fmt(v):
        if isinstance(v, bool):
            return "yes" if v else "no"
        if isinstance(v, float):
            return f"{v:.4f}"
        return str(v)
    return pd.DataFrame({"metric": list(metrics), "value": [fmt(v) for v in metrics.values()]})


# --------------------------------------------------------------------------- event handlers

#: said when a picture is uploaded to a shipped model (they know only their procedural world)
OUTSIDE_WORLD_NOTICE = ("the shipped models were trained on procedural {world} scenes only: a photo is "
                        "segmented poorly, and the attack is measured against that clean prediction")


def preview(model_name: str, sample: Optional[str], upload: Any, target: str, target_upload: Any):
    """Clean view: image, reference labels, clean prediction, attack labels, the legend of
    their classes; a status line."""
    try:
        scene = prepare_scene(model_name, sample, upload, target, target_upload, device=PREVIEW_DEVICE)
    except Exception as error:
        return None, None, None, None, "", problem(error)
    dataset = scene.dataset
    # the photo at the maps' displayed size (pixel-art scaling for all), so they compare pixel for pixel
    image = render.upscale_nearest(render.image_to_uint8(scene.image))
    reference = render.upscale_nearest(render.colorize(scene.reference[0], dataset))
    clean = render.upscale_nearest(render.colorize(scene.clean_prediction[0], dataset))
    labels = render.upscale_nearest(render.colorize(scene.attack_labels[0], dataset))
    h, w = scene.image.shape[-2:]
    text = (f"{scene.model_name} · {scene.image_name} ({w}×{h}) · {TARGETS[scene.target]} · "
            f"reference: {scene.reference_name}. Press **Run**.")
    entry = get_model_entry(scene.model_name)
    notices = [scene.notice]
    if upload is not None and entry.kind == "shipped" and entry.world:
        notices.append(OUTSIDE_WORLD_NOTICE.format(world=entry.world))
    for notice in filter(None, notices):
        text += f"  \nℹ️ {notice}"
    legend = render.class_legend_html(dataset, scene.reference[0].cpu().numpy(),
                                      scene.clean_prediction[0].cpu().numpy(), scene.attack_labels[0].cpu().numpy())
    return image, reference, clean, labels, legend, text


def on_model_change(model_name: str, sample: Optional[str] = None, target: Optional[str] = None,
                    target_upload: Any = None, shown_dataset: Optional[str] = None):
    """New model: restrict the samples to its classes and the targets to those it supports
    (keeping the current choices when they still apply).  An uploaded target map was read
    for the classes of the model shown before (``shown_dataset``): for a model of other
    classes it is cleared, with a notice, instead of being resized and applied silently.
    Returns updates for (sample, target, target upload, shown dataset)."""
    try:
        entry = get_model_entry(model_name)
        samples = samples_for(model_name)
        targets = target_radio_choices(model_name)
    except InputError as error:
        raise gr.Error(str(error)) from None
    sample = sample if sample in samples else default_sample(model_name)
    clear_map = target_upload is not None and shown_dataset not in (None, entry.dataset)
    if clear_map:
        gr.Info(f"The uploaded target map was made for {shown_dataset} classes and {model_name} predicts "
                f"{entry.dataset} classes: it was cleared; upload a map for this model.")
        if target == "custom":
            target = "untargeted"
    target = target if target in [value for _, value in targets] else "untargeted"
    return (gr.update(choices=samples, value=sample), gr.update(choices=targets, value=target),
            gr.update(value=None) if clear_map else gr.update(), entry.dataset)


def on_attack_change(attack: str):
    """Show the chosen attack's hyper-parameter group, hide the others."""
    return [gr.update(visible=(name == attack)) for name in ATTACKS]


def default_steps(attack: str):
    """The iteration slider follows the attack chosen by the user: its own default ``num_steps``."""
    try:
        steps = get_attack(attack).defaults().get("num_steps")
    except InputError as error:
        raise gr.Error(str(error)) from None
    return gr.update(value=steps, interactive=True) if steps is not None else gr.update(interactive=False)


def budget_text(attack: str, steps: Any, *values: Any) -> str:
    """What the iteration budget means for the chosen attack, in model passes: SEA runs its
    members in turn, the bisection attacks run the budget at every search step."""
    try:
        spec = get_attack(attack)
        params = spec.validate_hyperparameters(params_from_widgets(spec.name, steps, values))
    except InputError as error:
        return f"⚠️ {error}"
    values_ = {**spec.defaults(), **params}
    factors = []
    if spec.ensemble_count(values_) > 1:
        factors.append(f"{spec.ensemble_count(values_)} attacks in turn")
    if "search_steps" in values_:
        factors.append(f"{values_['search_steps']} bisection steps")
    if int(values_.get("restarts", 1)) > 1:
        factors.append(f"{values_['restarts']} restarts")
    text = f"{spec.label(params)}: **{spec.gradient_passes(params)} forward+backward passes** of the model"
    if factors and "num_steps" in values_:
        text += " = " + " × ".join(factors + [f"{values_['num_steps']} iterations"])
    return text


def apply_preset(attack: str, preset: Optional[str]):
    """Set an attack's widgets to one of its registry presets (others to the defaults)."""
    spec = get_attack(attack)
    if preset and preset not in spec.presets:
        raise gr.Error(f"{spec.title} has no preset {str(preset)[:40]!r}; its presets are {list(spec.presets)}")
    values = {**spec.defaults(), **spec.presets.get(preset or "", {})}
    return [gr.update(value=values[p.name]) for p in controlled_params(spec)]


@dataclass(frozen=True)
class RunJob:
    """One Run as its stream receives it: plain data, checked in the server process (a
    ZeroGPU worker receives it pickled).  ``folder`` and ``stop`` are chosen by the server."""

    inputs: SceneInputs
    attack: str
    params: Dict[str, Any]
    seed: int
    adv_threshold: float
    image_label: str          #: the run file's image: a sample name or ``upload:<sha256>``
    folder: Path              #: the run's own folder (downloads, stop flag)
    stop: StopSignal
    gpu_seconds: float        #: GPU time booked (see :func:`gpu_seconds`)
    deadline_s: Optional[float] = None  #: stop after this long (on ZeroGPU: the booking)
    eight_bit: bool = False   #: hand out the 8-bit finish of the result (a PNG-exact image)


@dataclass(frozen=True)
class CompareJob:
    """One Compare as its stream receives it (see :class:`RunJob`)."""

    inputs: SceneInputs
    attacks: Tuple[str, ...]
    params: Tuple[Dict[str, Any], ...]  #: each attack's hyper-parameters (the shared budget)
    steps: int
    seed: int
    adv_threshold: float
    stop: StopSignal
    gpu_seconds: float
    deadline_s: Optional[float] = None


def gpu_seconds(passes: int, image: Any) -> float:
    """GPU seconds to book for ``passes`` model passes on ``image`` (…, H, W):
    :data:`GPU_SECONDS_FIXED` + passes × pixels × :data:`GPU_SECONDS_PER_PASS_PIXEL`, within
    [:data:`GPU_SECONDS_MIN`, :data:`GPU_SECONDS_MAX`]."""
    pixels = int(image.shape[-1]) * int(image.shape[-2])
    wanted = GPU_SECONDS_FIXED + passes * pixels * GPU_SECONDS_PER_PASS_PIXEL
    return float(min(GPU_SECONDS_MAX, max(GPU_SECONDS_MIN, wanted)))


def booked_seconds(job) -> float:
    """``spaces.GPU``'s duration callable: it receives the stream's arguments (the job)."""
    return job.gpu_seconds


def image_label(sample: Any, upload: Any) -> str:
    """How a run file names the image: the sample, or an upload by the sha256 of its bytes
    (a file) or of its pixels (an array, from the API or a notebook)."""
    if upload is None:
        return str(sample)
    return f"upload:{image_digest(upload if isinstance(upload, bytes) else np.asarray(upload))}"


def check_threshold(nu: Any) -> float:
    """ν (the success threshold), checked like every attack's ``adv_threshold``."""
    return float(ADV_THRESHOLD.validate(nu))


def run_job(model_name, sample, upload, attack, target, target_upload, steps, seed, nu, values,
            request, eight_bit=False) -> RunJob:
    """Check a Run's arguments, decode its pictures and give it a folder (server process)."""
    spec = get_attack(attack)
    params = spec.validate_hyperparameters(params_from_widgets(spec.name, steps, values))
    threshold, seed = check_threshold(nu), check_seed(seed)
    eight_bit = check_flag(eight_bit, "8-bit valid result")
    inputs = read_scene_inputs(model_name, sample, upload, target, target_upload)
    folder = new_run_folder(request)
    passes = spec.gradient_passes(params) + (EIGHT_BIT_FINISH_PASSES if eight_bit else 0)
    booked = gpu_seconds(passes, inputs.image)
    return RunJob(inputs=inputs, attack=spec.name, params=params, seed=seed, adv_threshold=threshold,
                  image_label=image_label(sample, upload), folder=folder, stop=StopSignal(folder),
                  gpu_seconds=booked, deadline_s=booked - GPU_SECONDS_MARGIN if ON_ZERO_GPU else None,
                  eight_bit=eight_bit)


def relay(stream: Iterator[Dict[str, Any]], request, title: str, stop: StopSignal) -> Iterator[Dict[str, Any]]:
    """Yield a job's updates in the server process: the run is listed for Stop while it
    streams, a ``warning`` entry becomes a toast and the status line, and an error of the
    GPU machinery itself (ZeroGPU's worker, a quota) is reported like any other.  A viewer
    who leaves (the generator is closed early) stops the run, wherever it runs."""
    active = ActiveRun(title=title, stop=stop)
    _register(request, active)
    finished = False
    try:
        for update in stream:
            update = dict(update)
            if "warning" in update:
                update["status"] = warn(update.pop("warning"))
            yield update
        finished = True
    except Exception as error:
        finished = True
        yield {"status": problem(error)}
    finally:
        _unregister(request, active)
        if not finished:
            stop.request()
            close = getattr(stream, "close", None)
            if close is not None:
                close()


def run_attack(model_name, sample, upload, attack, target, target_upload, steps, seed, nu, *values,
               eight_bit=False, request: gr.Request = None) -> Iterator[Dict[Any, Any]]:
    """Stream one run (see the module docstring).  Yields ``{output name: value}`` dicts
    consumed by ``wire_events``; the names are :data:`OUTPUT_NAMES`.  With ``eight_bit`` the
    run hands out its 8-bit finish: views, metrics and downloads are of the image on the
    1/255 lattice that the PNG download decodes to."""
    try:
        job = run_job(model_name, sample, upload, attack, target, target_upload, steps, seed, nu, values, request,
                      eight_bit)
    except Exception as error:
        yield {"status": problem(error)}
        return
    yield from relay(attack_on_gpu(job), request, get_attack(job.attack).label(job.params), job.stop)


def attack_stream(job: RunJob) -> Iterator[Dict[str, Any]]:
    """The GPU side of a Run: load the model, attack, stream curves and pictures, then the
    final update (:func:`finish_run`).  Yields plain, picklable dicts; a problem is yielded
    as ``{"warning": message}``."""
    try:
        scene = build_scene(job.inputs, DEVICE)
        run = LiveAttack(scene, job.attack, job.params, seed=job.seed, adv_threshold=job.adv_threshold,
                         stop_signal=job.stop, eight_bit=job.eight_bit)
    except Exception as error:
        yield {"warning": problem_message(error)}
        return
    last_images = 0.0
    clean = scene.image[0].detach().cpu().numpy()
    started, out_of_time = time.perf_counter(), False
    try:
        for snap in run.snapshots(interval=CURVE_REFRESH_S):
            if job.deadline_s is not None and time.perf_counter() - started > job.deadline_s and not run.stopping:
                run.stop()
                out_of_time = True
            update = {"status": status_line(run, snap)}
            update["apsr_plot"], update["linf_plot"] = curves(run, snap)
            now = time.perf_counter()
            if snap.frame is not None and (now - last_images >= IMAGE_REFRESH_S or snap.done):
                last_images = now
                views = views_of_frame(clean, scene.dataset, snap.frame)
                update.update(adv_prediction=views["prediction"], perturbation=views["perturbation"][0],
                              adversarial=views["adversarial"], mask=views["mask"])
            yield update
        final = finish_run(run, scene, job)
    except Exception as error:  # the curves streamed so far stay on the page
        yield {"warning": problem_message(error)}
        return
    if out_of_time:
        final["status"] += (f"  \n⏱️ Stopped at the {job.gpu_seconds:.0f} s of GPU time booked for this run: "
                            f"lower the iterations for a complete run.")
    yield final


def next_hint(run: LiveAttack, scene: Scene, result) -> str:
    """A "try this next" line after a run: one step that teaches something about this run."""
    if result.stopped:
        return "Run it to the end, or replay what it did so far with the slider."
    if not bool(result.success[0]):
        return ("It did not reach ν: raise the iterations, or (fixed-budget attacks) the radius ε — "
                "or lower ν to see how close it came.")
    if run.spec.kind == "fixed-budget":
        return ("Fixed-budget attacks use the whole radius ε. Try ALMA prox on the same scene: it finds the "
                "smallest perturbation that succeeds.")
    if not scene.targeted:
        return ("Try a target (all background, or the street layout): a targeted attack needs a larger "
                "perturbation, and its map comes out tidy instead of a patchwork.")
    return "Compare it with the other minimal-norm attacks in the Compare tab: who finds the smallest ℓ∞?"


def replay_slider_update(replay: Replay) -> Dict[str, Any]:
    """The replay slider for a finished run: over iterations 0 … last recorded, at the
    returned iterate; hidden when there is only one frame (a slider needs min < max)."""
    first, last = replay.frames[0].iteration, replay.frames[-1].iteration
    if len(replay.frames) < 2 or last <= first:
        return gr.update(visible=False, value=first)
    value = replay.returned.iteration if replay.returned is not None else last
    return gr.update(minimum=first, maximum=last, value=min(max(value, first), last), step=1, visible=True,
                     label=f"replay: iteration (0–{last}; {len(replay.frames)} frames recorded, every "
                           f"{replay.stride}; type a number or drag)")


def finish_run(run: LiveAttack, scene: Scene, job: RunJob) -> Dict[str, Any]:
    """After the stream: metrics, downloads (the movie of the run included), replay slider,
    and the returned (best) iterate's views beside the clean ones."""
    result, returned = run.result, run.returned
    with torch.no_grad():
        adv_prediction = scene.model(returned.adv_images[:1]).argmax(1)
    metrics = run_metrics(scene, result, adv_prediction)
    spec = RunSpec(model=scene.model_name, image=job.image_label, attack=run.spec.name, target=scene.target,
                   params=dict(run.params), seed=run.seed, adv_threshold=run.adv_threshold, eight_bit=job.eight_bit)
    stem = safe_stem(f"{scene.model_name}_{job.image_label[:24]}_{run.spec.name}")
    paths = write_downloads(result, scene.image, spec, job.folder, stem=stem)
    snap = run.snapshot()
    # the views show the returned iterate (best by the minimal-norm rule), not the last one
    kept = run.replay(returned=run.returned_frame(adv_prediction))
    paths["gif"] = write_replay_animation(kept, job.folder, stem)
    ending = "stopped" if result.stopped else "finished"
    best = "no success" if not bool(result.success[0]) else f"ℓ∞ = {float(result.linf[0]) * 255:.3f}/255"
    returned_text = f"returned iterate: APSR {float(result.apsr[0]):.3f}, {best}"
    if returned is not result:
        best_8bit = ("no success" if not bool(returned.success[0])
                     else f"ℓ∞ = {round(float(returned.linf[0]) * 255)}/255")
        returned_text += (f"; **8-bit valid result** (what the PNG download decodes to): "
                          f"APSR {float(returned.apsr[0]):.3f}, {best_8bit}")
    status = (f"**{run.spec.label(run.params)}** {ending} after {result.iterations} iterations in "
              f"{returned.elapsed_s:.1f} s · {returned_text}. "
              f"Replay any recorded iteration with the slider.  \n**Try this next:** "
              f"{next_hint(run, scene, returned)}")
    views = views_of_frame(kept.clean_image, kept.dataset, kept.returned)
    apsr_plot, linf_plot = curves(run, snap)
    clean = render.image_to_uint8(kept.clean_image)
    clean_prediction = render.colorize(scene.clean_prediction[0], scene.dataset)
    adv_map = kept.returned.prediction
    return {"status": status, "adv_prediction": views["prediction"], "perturbation": views["perturbation"][0],
            "adversarial": views["adversarial"], "mask": views["mask"],
            "apsr_plot": apsr_plot, "linf_plot": linf_plot,
            "replay": replay_slider_update(kept),
            "metrics": metrics_frame(metrics),
            "downloads": [str(p) for p in paths.values()],
            "state": kept,  # plain data (no model, thread or lock): picklable, safe to keep in the session
            "adv_legend": render.class_legend_html(scene.dataset, adv_map),
            "image_slider": tuple(render.same_size(clean, views["adversarial"])),
            "prediction_slider": tuple(render.same_size(clean_prediction,
                                                        render.colorize(adv_map, scene.dataset)))}


def safe_stem(text: str) -> str:
    """A file-name stem of letters, digits, ``-`` and ``_`` only (at most 80 characters)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text)[:80] or "run"


def stop_run(request: gr.Request = None) -> str:
    """Stop every run this session is streaming — a Run and a Compare alike (each returns its
    result after its current iteration)."""
    with _ACTIVE_LOCK:
        runs = list(ACTIVE_RUNS.get(session_key(request), []))
    if not runs:
        return "Nothing is running."
    for run in runs:
        run.stop.request()
    names = ", ".join(f"**{run.title}**" for run in runs)
    return f"{names}: stopping after the current iteration…"


def replay_frame(run: Replay, iteration: int) -> Frame:
    """The recorded frame nearest to ``iteration`` (frames are kept every ``stride``)."""
    return min(run.frames, key=lambda frame: (abs(frame.iteration - iteration), frame.iteration))


def replay(iteration: Any, run: Optional[Replay]):
    """The views of the session's last run (its :class:`Replay`) at ``iteration`` — a number
    typed or dragged on the slider, snapped to the nearest recorded frame — and the curves
    with a cursor there.  Iterations are counted from 0, as in the trace CSV.  Returns
    (prediction, perturbation, adversarial image, mask, APSR plot, ℓ∞ plot, status)."""
    keep = [gr.update()] * 6
    if not isinstance(run, Replay) or not run.frames:
        return *keep, "No run to replay yet."
    try:
        wanted = whole_number(0 if iteration is None else iteration, "the replay iteration", 0)
    except InputError as error:
        return *keep, warn(str(error))
    frame = replay_frame(run, wanted)
    views = views_of_frame(run.clean_image, run.dataset, frame)
    series = {run.attack: run.history}
    apsr_plot = render.apsr_figure(series, run.adv_threshold, title=APSR_TITLE, cursor=frame.iteration)
    linf_plot = render.linf_figure(series, title=LINF_TITLE, cursor=frame.iteration)
    snapped = "" if frame.iteration == wanted else f" (nearest recorded to {wanted}; frames every {run.stride})"
    text = (f"replaying iteration {frame.iteration} of 0–{run.num_steps - 1}{snapped}: APSR {frame.apsr:.3f}, "
            f"ℓ∞ {frame.linf * 255:.3f}/255 (perturbation shown ×{views['perturbation'][1]:.0f})")
    return (views["prediction"], views["perturbation"][0], views["adversarial"], views["mask"],
            apsr_plot, linf_plot, text)


def compare_job(model_name, sample, upload, target, target_upload, attacks, steps, seed, nu,
                request) -> CompareJob:
    """Check a Compare's arguments, decode its pictures and give it a folder (server process)."""
    if not isinstance(attacks, (list, tuple)) or not all(isinstance(name, str) for name in attacks):
        raise InputError(f"attacks must be a list of attack names, from {list(ATTACKS)}")
    specs = list({spec.name: spec for spec in map(get_attack, attacks)}.values())  # each once
    steps = whole_number(steps, "iterations", 1)
    params = tuple(spec.validate_hyperparameters({"num_steps": steps} if "num_steps" in spec.defaults() else {})
                   for spec in specs)
    threshold, seed = check_threshold(nu), check_seed(seed)
    inputs = read_scene_inputs(model_name, sample, upload, target, target_upload)
    folder = new_run_folder(request)
    booked = gpu_seconds(sum(spec.gradient_passes(p) for spec, p in zip(specs, params)), inputs.image)
    return CompareJob(inputs=inputs, attacks=tuple(spec.name for spec in specs), params=params, steps=steps,
                      seed=seed, adv_threshold=threshold, stop=StopSignal(folder), gpu_seconds=booked,
                      deadline_s=booked - GPU_SECONDS_MARGIN if ON_ZERO_GPU else None)


#: the Compare tab's outputs, in order
COMPARE_OUTPUTS = ("apsr", "linf", "table", "status")


def compare_attacks(model_name, sample, upload, target, target_upload, attacks, steps, seed, nu,
                    request: gr.Request = None):
    """Run each chosen attack (registry defaults, the same budget) in turn; overlay the curves.
    Yields (APSR figure, ℓ∞ figure, table, status) tuples."""
    if not attacks:
        yield None, None, None, warn("choose at least one attack to compare")
        return
    try:
        job = compare_job(model_name, sample, upload, target, target_upload, attacks, steps, seed, nu, request)
    except Exception as error:
        yield None, None, None, problem(error)
        return
    titles = " vs ".join(get_attack(name).label(p) for name, p in zip(job.attacks, job.params))
    for update in relay(compare_on_gpu(job), request, f"Compare ({titles})", job.stop):
        yield tuple(update.get(key, gr.update()) for key in COMPARE_OUTPUTS)


def compare_stream(job: CompareJob) -> Iterator[Dict[str, Any]]:
    """The GPU side of a Compare: each attack in turn on one scene, the curves overlaid, a
    table of final norms.  Yields plain dicts keyed by :data:`COMPARE_OUTPUTS` (or ``warning``)."""
    try:
        scene = build_scene(job.inputs, DEVICE)
    except Exception as error:
        yield {"warning": problem_message(error)}
        return
    series: Dict[str, Dict[str, List[float]]] = {}
    titles = {name: get_attack(name).label(params) for name, params in zip(job.attacks, job.params)}
    rows = []
    started = time.perf_counter()
    stopped_in: Optional[str] = None
    for name, params in zip(job.attacks, job.params):
        spec = get_attack(name)
        try:
            run = LiveAttack(scene, name, params, seed=job.seed, adv_threshold=job.adv_threshold,
                             stop_signal=job.stop)
            for snap in run.snapshots(interval=CURVE_REFRESH_S):
                if job.deadline_s is not None and time.perf_counter() - started > job.deadline_s:
                    run.stop()
                series[name] = snap.history
                yield {"apsr": render.apsr_figure(series, job.adv_threshold, title=APSR_TITLE, titles=titles),
                       "linf": render.linf_figure(series, titles=titles),
                       "status": f"comparing: {status_line(run, snap)}"}
        except Exception as error:
            yield {"warning": problem_message(error)}
            return
        result = run.result
        rows.append({"attack": spec.label(params), "success": "yes" if bool(result.success[0]) else "no",
                     "APSR": round(float(result.apsr[0]), 4),
                     "ℓ∞ × 255": round(float(result.linf[0]) * 255, 4) if bool(result.success[0]) else None,
                     "iterations": result.iterations, "time (s)": round(result.elapsed_s, 2)})
        if result.stopped:
            stopped_in = titles[name]
            break
    if stopped_in is None:
        status = f"compared {len(rows)} attacks with a budget of {job.steps} iterations each"
    else:
        status = (f"stopped during {stopped_in} after {rows[-1]['iterations']} iterations: "
                  f"{len(rows)} of {len(job.attacks)} attacks compared (the last one partly)")
    yield {"apsr": render.apsr_figure(series, job.adv_threshold, title=APSR_TITLE, titles=titles),
           "linf": render.linf_figure(series, titles=titles), "table": pd.DataFrame(rows), "status": status}


def load_run_file(path: Optional[str]):
    """Set the controls from an uploaded run file (JSON only; never executed)."""
    keep = [gr.update()] * (8 + len(PARAM_KEYS))
    if not path:
        return [*keep, ""]
    try:
        with open(path, "rb") as handle:  # a longer file is refused by from_json, unread beyond the limit
            spec = RunSpec.from_json(handle.read(MAX_RUN_FILE_BYTES + 1))
    except (InputError, OSError) as error:
        return [*keep, warn(f"run file not loaded: {error}")]
    except Exception as error:
        return [*keep, problem(error)]
    note = ""
    if spec.model not in [name for _, name in model_choices()]:
        return [*keep, warn(f"run file not loaded: model {spec.model!r} is not available on this server; "
                            f"its models: {[name for _, name in model_choices()]}")]
    try:  # the model first: the samples and targets offered depend on it
        samples, targets = samples_for(spec.model), target_radio_choices(spec.model)
    except InputError as error:
        return [*keep, warn(f"run file not loaded: {error}")]
    if spec.target not in [value for _, value in targets]:
        return [*keep, warn(f"run file not loaded: target {spec.target!r} is not available for {spec.model}")]
    sample_update = gr.update(choices=samples, value=spec.image)
    if spec.is_upload:
        sample_update = gr.update(choices=samples)
        note = f" The run used an uploaded image (sha256 {spec.image[7:19]}…): upload the same picture."
    if spec.target == "custom":
        note += " It used an uploaded target label map: upload the same map before pressing Run."
    defaults = get_attack(spec.attack).defaults()
    values = {**defaults, **spec.params}
    param_updates = [gr.update(value=values[name]) if owner == spec.attack else gr.update()
                     for owner, name in PARAM_KEYS]
    steps = values.get("num_steps", DEFAULT_STEPS)
    return [gr.update(value=spec.model), sample_update, gr.update(value=spec.attack),
            gr.update(choices=targets, value=spec.target), gr.update(value=steps), gr.update(value=spec.seed),
            gr.update(value=spec.adv_threshold), *param_updates, gr.update(value=spec.eight_bit),
            f"Run file loaded: {spec.attack} on {spec.model}.{note} Press **Run**."]


# --------------------------------------------------------------------------- layout

#: names of the run stream's outputs, in the order of the components list built in build_demo
#: (the API's outputs: new ones go at the end, so clients' indices keep their meaning)
OUTPUT_NAMES = ("status", "apsr_plot", "linf_plot", "adv_prediction", "perturbation", "adversarial",
                "mask", "replay", "metrics", "downloads", "state", "adv_legend", "image_slider",
                "prediction_slider")

CSS = """
#status {min-height: 2.5em}
.mask-legend {margin-top: 4px}
.class-legend {display: flex; flex-wrap: wrap; gap: 2px 12px; font-size: 0.85em}
.explain {font-size: 0.85em; opacity: 0.85}
#run-buttons {position: sticky; top: 0; z-index: 5; background: var(--background-fill-primary)}
#metrics-table .table-wrap {max-height: none !important}
"""

#: plain-words explanations shown next to the views (no equation numbers, no internal names)
EXPLAIN = {
    "curves": (
        "**APSR** (attack pixel success rate) is the share of labelled pixels the attack has fooled: "
        "changed from their true class (untargeted) or turned into the target's class (targeted). The run "
        "succeeds when it reaches **ν**. Near success the interesting part is the last few per cent, so "
        "the lower panel shows what is left to fool, **1 − APSR**, on a log scale. **ℓ∞** is the largest "
        "change made to any pixel channel, in units of 1/255 (one step of an 8-bit image): a perturbation "
        "of 1/255 is invisible."),
    "maps": (
        "Label maps colour each pixel by its class (legend below). Untargeted attacks only need each pixel "
        "to become *some* other class, so the adversarial map looks like a patchwork of whatever class was "
        "nearest for each pixel; a target (all background, the street layout, your map) makes it tidy."),
    "mask": (
        "The **constraint mask** shows, pixel by pixel, what the attack is working on: fooled pixels, pixels "
        "still to fool, pixels ALMA prox has stopped pushing because they cost too much (adaptive masking), "
        "and unlabelled pixels that do not count."),
    "perturbation": (
        "The **perturbation** is the adversarial image minus the clean one, amplified so it can be seen "
        "(grey = no change); the amplification is shown in the status line. Drag the sliders below to "
        "compare clean and adversarial."),
    "stages": (
        "SEA runs several attacks in turn (five by default), one per loss, each shrinking its radius from 2ε to "
        "ε; the "
        "bisection attacks rerun their whole budget at each of 13 radii, halving the interval each time. "
        "TsallisPGD and APGD also change their step size or radius in stages."),
}


def build_demo() -> gr.Blocks:
    """The app (call ``.queue(...)`` and ``.launch()``; :func:`launch` does both): the controls
    on the left, the Live and Compare tabs on the right, then the events that join them."""
    with gr.Blocks(title="Segmentation Attack Explorer", delete_cache=(900, 3600)) as demo:
        gr.Markdown("# Segmentation Attack Explorer\nPick a model, an image, an attack and a target, "
                    "then **Run** and watch the attack take the segmentation apart. "
                    "ALMA prox finds the smallest ℓ∞ perturbation that fools ≥ ν of the labelled pixels "
                    "(Rony et al., CVPR 2023).")
        run_state = gr.State(None)
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                controls = control_panel()
            with gr.Column(scale=3):
                status = gr.Markdown("Loading…", elem_id="status")
                with gr.Tab("Live"):
                    live = live_tab()
                with gr.Tab("Compare"):
                    compare = compare_tab()
        wire_events(demo, controls, live, compare, status, run_state)
    return demo


def control_panel() -> SimpleNamespace:
    """The left column: model, image, attack, target, budget, the Run and Stop buttons (kept
    in view), then the hyper-parameters and the run file."""
    model0 = default_model()
    samples0 = samples_for(model0)
    model = gr.Dropdown(model_choices(), value=model0, label="model", elem_id="model")
    sample = gr.Dropdown(samples0, value=default_sample(model0), label="sample image",
                         allow_custom_value=True, elem_id="sample")
    # uploads arrive as bytes and are decoded by explorer.data.decode (limits, clear messages),
    # never by the widget; the decoded picture is shown as the clean image
    upload = gr.File(type="binary", label="…or upload an image (PNG, JPEG, WebP, BMP, TIFF, GIF; "
                     "attacked against its clean prediction)", height=110, elem_id="upload")
    attack = gr.Dropdown(attack_choices(), value=DEFAULT_ATTACK, label="attack", elem_id="attack")
    # every target is a valid value (API clients); the page narrows the choices per model
    target = gr.Radio([(text, key) for key, text in TARGETS.items()], value="untargeted",
                      label="target", elem_id="target")
    target_upload = gr.File(type="binary", height=110, elem_id="target-upload",
                            label="target label map (PNG of class ids or palette colours)")
    steps = gr.Slider(1, MAX_STEPS, value=DEFAULT_STEPS, step=1, elem_id="steps",
                      label="iterations (the attack's num_steps)")
    budget = gr.Markdown(budget_text(DEFAULT_ATTACK, DEFAULT_STEPS), elem_id="budget", elem_classes="explain")
    with gr.Row(elem_id="run-buttons"):
        run_button = gr.Button("Run", variant="primary", elem_id="run-button")
        stop_button = gr.Button("Stop", variant="stop", elem_id="stop-button")
    with gr.Row():
        seed = gr.Number(0, precision=0, label="seed", elem_id="seed",
                         info="random start of the attacks that draw one; same seed, same run")
        # no minimum/maximum here: Gradio would answer a bad value with a bare "Error"; the
        # handlers' own checks name the field and its range
        nu = gr.Number(ADV_THRESHOLD.default, label="ν (success threshold)", elem_id="nu",
                       info=f"a run succeeds when ≥ ν of the labelled pixels are fooled "
                            f"({ADV_THRESHOLD.low:g} to {ADV_THRESHOLD.high:g})")
    with gr.Accordion("hyper-parameters", open=False):
        groups, param_widgets = [], []
        for name, spec in ATTACKS.items():
            with gr.Group(visible=(name == DEFAULT_ATTACK)) as group:
                gr.Markdown(f"**{spec.title}** — {spec.summary}  \n*{spec.reference}*")
                widgets = [param_component(name, p) for p in controlled_params(spec)]
                if spec.presets:
                    preset = gr.Dropdown(list(spec.presets), value=None, label="preset",
                                         elem_id=f"preset-{name}")
                    preset.change(partial_preset(name), preset, widgets, api_visibility="private")
            groups.append(group)
            param_widgets.extend(widgets)
        gr.Markdown(EXPLAIN["stages"], elem_classes="explain")
    # made after the parameter widgets: the /run API takes it as its last (optional) argument
    eight_bit = gr.Checkbox(False, label="8-bit valid result", elem_id="eight-bit",
                            info="round the result onto whole 1/255 steps, as saving a PNG does, and judge it on "
                                 "that image: the downloads are then exactly what was tested "
                                 "(ℓ∞ becomes a whole number of levels)")
    run_file = gr.File(label="load a run file (.json) to reproduce a run", file_types=[".json"],
                       type="filepath", elem_id="run-file")
    shown_dataset = gr.State(get_model_entry(model0).dataset)
    return SimpleNamespace(model=model, sample=sample, upload=upload, attack=attack, target=target,
                           target_upload=target_upload, steps=steps, budget=budget, seed=seed, nu=nu,
                           groups=groups, param_widgets=param_widgets, eight_bit=eight_bit, run_button=run_button,
                           stop_button=stop_button, run_file=run_file, shown_dataset=shown_dataset)


def live_tab() -> SimpleNamespace:
    """The Live tab: curves, clean and adversarial views with their legends, sliders to drag
    between clean and adversarial, replay, metrics, downloads — each with a line of explanation."""
    with gr.Row():
        apsr_plot = gr.Plot(render.empty_figure("APSR", "APSR", height=render.APSR_PLOT_HEIGHT), label="APSR",
                            elem_id="apsr-plot")
        linf_plot = gr.Plot(render.empty_figure("ℓ∞ × 255", "ℓ∞ × 255"), label="ℓ∞",
                            elem_id="linf-plot")
    gr.Markdown(EXPLAIN["curves"], elem_classes="explain")
    replay_slider = gr.Slider(0, 1, value=0, step=1, visible=False, label="replay", elem_id="replay-slider")
    with gr.Row():
        clean_image = gr.Image(label="clean image", interactive=False, elem_id="clean-image")
        reference = gr.Image(label="reference labels", interactive=False, elem_id="reference")
        clean_pred = gr.Image(label="clean prediction", interactive=False,
                              elem_id="clean-prediction")
    clean_legend = gr.HTML("", elem_id="clean-legend")
    with gr.Row():
        attack_labels = gr.Image(label="attack labels / target", interactive=False,
                                 elem_id="attack-labels")
        adv_prediction = gr.Image(label="adversarial prediction", interactive=False,
                                  elem_id="adv-prediction")
        mask = gr.Image(label="constraint mask", interactive=False, elem_id="mask-view")
    adv_legend = gr.HTML("", elem_id="adv-legend")
    gr.Markdown(EXPLAIN["maps"] + " " + EXPLAIN["mask"], elem_classes="explain")
    with gr.Row():
        perturbation = gr.Image(label="perturbation (amplified, grey = 0)", interactive=False,
                                elem_id="perturbation")
        adversarial = gr.Image(label="adversarial image", interactive=False,
                               elem_id="adversarial-image")
        gr.HTML(render.mask_legend_html(), elem_id="mask-legend")
    gr.Markdown(EXPLAIN["perturbation"], elem_classes="explain")
    with gr.Row():
        image_slider = gr.ImageSlider(label="clean ⟷ adversarial image", interactive=False,
                                      elem_id="image-slider")
        prediction_slider = gr.ImageSlider(label="clean ⟷ adversarial prediction", interactive=False,
                                           elem_id="prediction-slider")
    metrics = gr.Dataframe(pd.DataFrame({"metric": ["—"], "value": ["run an attack to fill this table"]}),
                           label="metrics", interactive=False, elem_id="metrics-table", max_height=2000)
    downloads = gr.File(label="downloads: adversarial PNG (8-bit), perturbation (.npy), trace (.csv), "
                        "run file (.json), the run as an animated GIF", file_count="multiple",
                        interactive=False, elem_id="downloads")
    return SimpleNamespace(apsr_plot=apsr_plot, linf_plot=linf_plot, clean_image=clean_image, reference=reference,
                           clean_pred=clean_pred, clean_legend=clean_legend, attack_labels=attack_labels,
                           adv_prediction=adv_prediction, mask=mask, adv_legend=adv_legend,
                           perturbation=perturbation, adversarial=adversarial, image_slider=image_slider,
                           prediction_slider=prediction_slider, replay_slider=replay_slider, metrics=metrics,
                           downloads=downloads)


def compare_tab() -> SimpleNamespace:
    """The Compare tab: several attacks on the same scene, curves overlaid, a table of norms."""
    compare_choice = gr.CheckboxGroup(attack_choices(), value=list(ATTACKS)[:2],
                                      label="attacks (registry defaults, same budget)",
                                      elem_id="compare-attacks")
    compare_button = gr.Button("Compare", variant="primary", elem_id="compare-button")
    with gr.Row():
        compare_apsr = gr.Plot(render.empty_figure("APSR", "APSR", message="Press Compare to see the curves",
                                                   height=render.APSR_PLOT_HEIGHT),
                               label="APSR", elem_id="compare-apsr-plot")
        compare_linf = gr.Plot(render.empty_figure("best ℓ∞ × 255", "ℓ∞ × 255",
                                                   message="Press Compare to see the curves"),
                               label="best ℓ∞", elem_id="compare-linf-plot")
    compare_table = gr.Dataframe(pd.DataFrame({"attack": ["—"], "result": ["press Compare"]}),
                                 label="final norms and APSR", interactive=False, elem_id="compare-table",
                                 max_height=2000)
    return SimpleNamespace(compare_choice=compare_choice, compare_button=compare_button, compare_apsr=compare_apsr,
                           compare_linf=compare_linf, compare_table=compare_table)


def scene_widgets_locked(locked: bool):
    """While a run streams, the scene's widgets wait (not interactive), so a run's views and
    downloads never sit beside another scene's inputs; they come back when it ends."""
    def handler():
        return [gr.update(interactive=not locked)] * 7
    return handler


def shown_dataset_of(model_name: str) -> Optional[str]:
    """The classes of the model the page shows (what an uploaded target map is read for)."""
    try:
        return get_model_entry(model_name).dataset
    except InputError:
        return None


def clear_results():
    """A new scene: the last run's views, legend, metrics, replay and downloads belong to the
    old one and are cleared (the session keeps no replay of it either)."""
    return (None, None, None, None, "", None, None,
            gr.update(visible=False, value=0),
            pd.DataFrame({"metric": ["—"], "value": ["run an attack to fill this table"]}), None, None,
            render.empty_figure("APSR", "APSR", height=render.APSR_PLOT_HEIGHT),
            render.empty_figure("ℓ∞ × 255", "ℓ∞ × 255"))


def wire_events(demo: gr.Blocks, c: SimpleNamespace, live: SimpleNamespace, compare: SimpleNamespace,
                status, run_state) -> None:
    """Join the widgets to the event handlers above (named API endpoints: run, stop, replay,
    compare, load_run_file; the others are private to the page)."""
    model, sample, upload, attack, target = c.model, c.sample, c.upload, c.attack, c.target
    target_upload, steps, seed, nu, param_widgets = c.target_upload, c.steps, c.seed, c.nu, c.param_widgets
    scene_inputs = [model, sample, upload, target, target_upload]
    preview_outputs = [live.clean_image, live.reference, live.clean_pred, live.attack_labels, live.clean_legend,
                       status]
    components = dict(status=status, apsr_plot=live.apsr_plot, linf_plot=live.linf_plot,
                      adv_prediction=live.adv_prediction, perturbation=live.perturbation,
                      adversarial=live.adversarial, mask=live.mask, replay=live.replay_slider,
                      metrics=live.metrics, downloads=live.downloads, state=run_state,
                      adv_legend=live.adv_legend, image_slider=live.image_slider,
                      prediction_slider=live.prediction_slider)
    outputs = [components[k] for k in OUTPUT_NAMES]
    cleared = [live.adv_prediction, live.perturbation, live.adversarial, live.mask, live.adv_legend,
               live.image_slider, live.prediction_slider, live.replay_slider, live.metrics, live.downloads,
               run_state, live.apsr_plot, live.linf_plot]
    locked_widgets = [model, sample, upload, target, target_upload, c.run_file, compare.compare_button]

    run_inputs = [model, sample, upload, attack, target, target_upload, steps, seed, nu, *param_widgets]

    def stream(values: dict, request: gr.Request):
        # inputs given as a set arrive as one {component: value} dict (keeps gr.Request injectable)
        for update in run_attack(*[values[component] for component in run_inputs], eight_bit=values[c.eight_bit],
                                 request=request):
            yield {components[k]: v for k, v in update.items()}

    private = dict(api_visibility="private")
    model_change = [model, sample, target, target_upload, c.shown_dataset]
    model_change_outputs = [sample, target, target_upload, c.shown_dataset]
    # Scene events are the user's own (.input, file uploads): a handler that sets several
    # widgets at once (a run file, a model's sample list) then chains the preview itself, so
    # no event ever reads a half-updated page.
    demo.load(on_model_change, model_change, model_change_outputs, **private).then(
        preview, scene_inputs, preview_outputs, **private)
    model.input(on_model_change, model_change, model_change_outputs, **private).then(
        clear_results, None, cleared, **private).then(preview, scene_inputs, preview_outputs, **private)
    for trigger in (sample.input, target.input, upload.change, target_upload.change):
        trigger(clear_results, None, cleared, queue=False, **private).then(
            preview, scene_inputs, preview_outputs, **private)
    attack.change(on_attack_change, attack, c.groups, **private)
    # .input fires on the user's choice only, so a loaded run file keeps its own budget
    attack.input(default_steps, attack, steps, **private)
    for trigger in (attack.change, steps.change, *[w.change for w in param_widgets]):
        trigger(budget_text, [attack, steps, *param_widgets], c.budget, queue=False, **private)
    run_event = c.run_button.click(scene_widgets_locked(True), None, locked_widgets, queue=False, **private)
    run_event.then(stream, {*run_inputs, c.eight_bit}, outputs, concurrency_id="attack", api_name="run",
                   show_progress="hidden").then(scene_widgets_locked(False), None, locked_widgets, **private)
    c.stop_button.click(stop_run, None, status, queue=False, api_name="stop")
    live.replay_slider.input(replay, [live.replay_slider, run_state],
                             [live.adv_prediction, live.perturbation, live.adversarial, live.mask,
                              live.apsr_plot, live.linf_plot, status],
                             api_name="replay", trigger_mode="always_last")
    compare_inputs = [model, sample, upload, target, target_upload, compare.compare_choice, steps, seed, nu]
    compare_event = compare.compare_button.click(scene_widgets_locked(True), None, locked_widgets, queue=False,
                                                 **private)
    compare_event.then(compare_attacks, compare_inputs,
                       [compare.compare_apsr, compare.compare_linf, compare.compare_table, status],
                       concurrency_id="attack", api_name="compare", show_progress="hidden").then(
        scene_widgets_locked(False), None, locked_widgets, **private)
    c.run_file.upload(load_run_file, c.run_file,
                      [model, sample, attack, target, steps, seed, nu, *param_widgets, c.eight_bit, status],
                      api_name="load_run_file").then(
        shown_dataset_of, model, c.shown_dataset, **private).then(
        clear_results, None, cleared, **private).then(preview, scene_inputs, preview_outputs, **private)
    demo.unload(cleanup_session)


def partial_preset(attack: str):
    """The preset handler of one attack (a closure, so each dropdown knows its attack)."""
    def handler(preset):
        return apply_preset(attack, preset)
    return handler


def on_gpu(stream: Callable, duration: Callable[..., float]) -> Callable:
    """``spaces.GPU(duration=duration)(stream)`` when the ``spaces`` package (Hugging Face
    Spaces) is installed — on ZeroGPU hardware the stream then runs in a GPU worker process,
    booked for ``duration(job)`` seconds, and what it yields is pickled back; ``spaces`` does
    nothing elsewhere — and ``stream`` itself without it."""
    try:
        import spaces  # type: ignore
    except ImportError:
        return stream
    return spaces.GPU(duration=duration)(stream)


#: the streams as the handlers call them (looked up at call time, so tests can run them in
#: another process the way ZeroGPU does)
attack_on_gpu = on_gpu(attack_stream, booked_seconds)
compare_on_gpu = on_gpu(compare_stream, booked_seconds)


def queued(demo: gr.Blocks, concurrency: Optional[int] = None, queue_size: Optional[int] = None) -> gr.Blocks:
    """Bound the work the server accepts: ``concurrency`` runs at once (default
    :data:`CONCURRENCY`), at most ``queue_size`` waiting (default :data:`QUEUE_SIZE`); a
    request beyond that is answered at once with Gradio's "queue is full" instead of
    piling up memory and threads."""
    return demo.queue(default_concurrency_limit=CONCURRENCY if concurrency is None else concurrency,
                      max_size=QUEUE_SIZE if queue_size is None else queue_size)


def warm_up() -> None:
    """Load the default model and rank its samples before serving, so the first visitor's
    preview does not wait for them (build_demo asks for both)."""
    started = time.perf_counter()
    model = default_model()
    try:
        cached_model(model, PREVIEW_DEVICE)
        default_sample(model)
    except Exception as error:  # the page still opens; its preview reports the problem
        LOG.warning("warm-up of %s failed: %s", model, error)
    LOG.info("default model %s ready in %.1f s", model, time.perf_counter() - started)


def launch(**kwargs) -> gr.Blocks:
    """Build, queue (bounded concurrency and size) and launch the app; uploads are limited to
    :data:`explorer.data.decode.MAX_UPLOAD_BYTES` by the server before our code sees them."""
    warm_up()
    demo = queued(build_demo())
    kwargs.setdefault("css", CSS)
    kwargs.setdefault("max_file_size", MAX_UPLOAD_BYTES)
    demo.launch(**kwargs)
    return demo


def main() -> None:
    """The ``explorer-app`` command: :func:`launch` with the defaults (``GRADIO_SERVER_NAME``,
    ``GRADIO_SERVER_PORT``, ``EXPLORER_DEVICE`` and ``EXPLORER_TMP`` are read from the environment)."""
    launch()
