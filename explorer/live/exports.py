"""What a run leaves behind: the run file that reproduces it, and the downloads.

* :class:`RunSpec` — model, image, attack, hyper-parameters, target, seed, ν, whether the
  result was given the 8-bit finish — as JSON.
  Uploading a run file in the app (or ``RunSpec.from_json`` in code) sets everything up to
  repeat the run exactly.  Foreign or malformed files raise :class:`InputError`; the file is
  parsed as JSON only, never executed or unpickled.
* :func:`write_downloads` — the adversarial image as an 8-bit PNG, the exact float
  perturbation (``.npy``, float32 (3, H, W), ``adv - clean``), the per-iteration trace
  (CSV) and the run file.  For an 8-bit run the PNG and the perturbation are those of the
  8-bit finish: the PNG decodes to exactly the image whose success the app reports.
* :func:`write_replay_animation` — a finished run's recorded frames as an animated GIF
  (:func:`explorer.live.render.replay_animation`).
"""
from __future__ import annotations

import csv
import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
from PIL import Image

from explorer.attacks import get_attack
from explorer.attacks.core import AttackResult
from explorer.data.samples import list_samples
from explorer.errors import InputError
from explorer.live.render import ANIMATION_MAX_WIDTH, image_to_uint8, replay_animation
from explorer.live.run import Replay
from explorer.models import get_model_entry
from explorer.targets import target_choices
from explorer.validation import check_flag, check_seed

RUN_FORMAT = "seg-attack-explorer/run"
RUN_VERSION = 1
#: run files larger than this are refused unread
MAX_RUN_FILE_BYTES = 64 * 1024


def image_digest(image) -> str:
    """sha256 naming an upload in a run file: of the file's bytes when the upload is a file,
    of the pixels (with shape and dtype) when it is an array."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return hashlib.sha256(bytes(image)).hexdigest()
    a = np.ascontiguousarray(image)
    return hashlib.sha256(str(a.shape).encode() + str(a.dtype).encode() + a.tobytes()).hexdigest()


@dataclass
class RunSpec:
    """Everything that determines a run.  ``image`` is a sample name, or ``upload:<sha256>``."""

    model: str
    image: str
    attack: str
    target: str = "untargeted"
    params: Dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    adv_threshold: float = 0.99
    eight_bit: bool = False  #: the result was given the 8-bit finish (:mod:`explorer.attacks.lattice`)

    def to_json(self) -> str:
        return json.dumps({"format": RUN_FORMAT, "version": RUN_VERSION, **asdict(self)}, indent=2) + "\n"

    @property
    def is_upload(self) -> bool:
        return self.image.startswith("upload:")

    @classmethod
    def from_json(cls, text) -> "RunSpec":
        """Parse and check a run file (bytes or text); raise :class:`InputError` saying what is
        wrong.  A run file is untrusted: every field is checked against what this explorer
        offers — a known model, a shipped sample or ``upload:<sha256>``, a registered
        attack and only its hyper-parameters (never ``callback``, ``masks`` or the like), a
        target the model supports, a whole seed, a number for ν, true or false for
        ``eight_bit`` (absent: false) — and unknown fields are refused.  Nothing in it is ever
        used as a path, executed or unpickled."""
        data = _parse_json(text)
        if not isinstance(data, dict) or data.get("format") != RUN_FORMAT:
            raise InputError(f"not a run file of this explorer (expected \"format\": \"{RUN_FORMAT}\")")
        if data.get("version") != RUN_VERSION or isinstance(data.get("version"), bool):
            raise InputError(f"run file version {_shown(data.get('version'))} is not supported "
                             f"(expected {RUN_VERSION})")
        unknown = sorted(set(data) - RUN_FIELDS)
        if unknown:
            raise InputError(f"run file: unknown field(s) {_shown(unknown)}; a run file holds {sorted(RUN_FIELDS)}")
        missing = [k for k in ("model", "image", "attack") if not isinstance(data.get(k), str)]
        if missing:
            raise InputError(f"run file lacks {missing} (text fields)")
        entry = get_model_entry(data["model"])
        image = data["image"]
        if not (UPLOAD_NAME.fullmatch(image) or image in list_samples()):
            raise InputError(f"run file: image {_shown(image)} is neither a shipped sample nor "
                             f"upload:<sha256 of the picture>")
        attack = get_attack(data["attack"])
        target = data.get("target", "untargeted")
        choices = target_choices(entry.dataset_info)
        if not isinstance(target, str) or target not in choices:
            raise InputError(f"run file: target {_shown(target)} is not one of {choices} (those of {entry.name})")
        params = data.get("params", {})
        if not isinstance(params, dict):
            raise InputError("run file: params must be an object of name: value")
        seed = check_seed(data.get("seed", 0), "run file: seed")
        threshold = data.get("adv_threshold", 0.99)
        eight_bit = check_flag(data.get("eight_bit", False), "run file: eight_bit")
        return cls(model=entry.name, image=image, attack=attack.name, target=target,
                   params=attack.validate_hyperparameters(params), seed=seed,
                   adv_threshold=attack.validate_hyperparameters({"adv_threshold": threshold})["adv_threshold"],
                   eight_bit=eight_bit)


#: the fields of a run file
RUN_FIELDS = frozenset({"format", "version", "model", "image", "attack", "target", "params", "seed",
                        "adv_threshold", "eight_bit"})
#: how a run file names an uploaded picture
UPLOAD_NAME = re.compile(r"upload:[0-9a-f]{64}")


def _shown(value: Any) -> str:
    """``repr(value)`` cut to 60 characters, for messages about untrusted values."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _parse_json(text) -> Any:
    """JSON of a run file (bytes or str) within :data:`MAX_RUN_FILE_BYTES`, or InputError."""
    if isinstance(text, (bytes, bytearray, memoryview)):
        if len(text) > MAX_RUN_FILE_BYTES:
            raise InputError(f"run file too large ({len(text)} bytes; limit {MAX_RUN_FILE_BYTES})")
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise InputError("run file is not UTF-8 text") from None
    if not isinstance(text, str):
        raise InputError(f"a run file is JSON text or bytes; got {type(text).__name__}")
    if len(text) > MAX_RUN_FILE_BYTES:
        raise InputError(f"run file too large ({len(text)} characters; limit {MAX_RUN_FILE_BYTES})")
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as error:
        raise InputError(f"run file is not valid JSON ({error.msg}, line {error.lineno})") from None
    except RecursionError:
        raise InputError("run file is nested too deeply to be a run file") from None


def _no_constant(name: str):
    raise InputError(f"run file holds {name}, which is not JSON; write a number")


def write_png(image, path: Path) -> Path:
    """Write a (3, H, W) image in [0, 1] (tensor or array) as an 8-bit RGB PNG."""

    Image.fromarray(image_to_uint8(image)).save(path)
    return path


def write_trace_csv(result: AttackResult, path: Path) -> Path:
    """The per-iteration trace (one row per iteration and image) as CSV."""
    rows: List[Dict[str, Any]] = [row for record in (result.trace or []) for row in record.rows()]
    columns = list(rows[0]) if rows else ["iteration", "image", "apsr", "linf", "best_linf"]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_downloads(result: AttackResult, clean_image, spec: RunSpec, folder: Path,
                    stem: Optional[str] = None) -> Dict[str, Path]:
    """Write the four downloads of a run into ``folder``; return their paths by kind.  When
    ``spec.eight_bit``, the PNG and perturbation are ``result.eight_bit``'s (the trace stays the
    continuous attack's: the finish has no iterations)."""
    if spec.eight_bit and result.eight_bit is None:
        raise ValueError("spec.eight_bit is set, but the result carries no 8-bit finish (with_8bit_finish)")
    folder.mkdir(parents=True, exist_ok=True)
    stem = stem or f"{spec.attack}"
    handed_out = result.eight_bit if spec.eight_bit else result
    adv = handed_out.adv_images[0].detach().cpu().float()
    clean = clean_image.reshape(adv.shape).detach().cpu().float()
    paths = {"png": write_png(adv, folder / f"{stem}_adversarial.png"),
             "npy": folder / f"{stem}_perturbation.npy",
             "csv": write_trace_csv(result, folder / f"{stem}_trace.csv"),
             "json": folder / f"{stem}_run.json"}
    np.save(paths["npy"], (adv - clean).numpy().astype(np.float32), allow_pickle=False)
    paths["json"].write_text(spec.to_json())
    return paths


def write_replay_animation(replay: Replay, folder: Path, stem: Optional[str] = None,
                           max_width: int = ANIMATION_MAX_WIDTH) -> Path:
    """Write the run's movie (:func:`~explorer.live.render.replay_animation`: one frame per
    recorded frame — prediction, constraint mask, perturbation — looping) as
    ``folder/<stem>_replay.gif`` and return its path.  ``stem`` defaults to the attack's title
    made file-safe (letters, digits, ``-`` and ``_``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem = stem or re.sub(r"[^A-Za-z0-9_-]+", "_", replay.attack).strip("_") or "run"
    path = folder / f"{stem}_replay.gif"
    path.write_bytes(replay_animation(replay, "gif", max_width=max_width))
    return path
