"""What a run leaves behind: the run file that reproduces it, and the downloads.

* :class:`RunSpec` — model, image, attack, hyper-parameters, target, seed, ν — as JSON.
  Uploading a run file in the app (or ``RunSpec.from_json`` in code) sets everything up to
  repeat the run exactly.  Foreign or malformed files raise :class:`InputError`; the file is
  parsed as JSON only, never executed or unpickled.
* :func:`write_downloads` — the adversarial image as an 8-bit PNG, the exact float
  perturbation (``.npy``, float32 (3, H, W), ``adv - clean``), the per-iteration trace
  (CSV) and the run file.
"""
from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
from PIL import Image

from explorer.attacks import get_attack
from explorer.attacks.core import AttackResult
from explorer.errors import InputError

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

    def to_json(self) -> str:
        return json.dumps({"format": RUN_FORMAT, "version": RUN_VERSION, **asdict(self)}, indent=2) + "\n"

    @property
    def is_upload(self) -> bool:
        return self.image.startswith("upload:")

    @classmethod
    def from_json(cls, text: str) -> "RunSpec":
        """Parse and check a run file; raise :class:`InputError` saying what is wrong."""
        from explorer.live import TARGETS

        if isinstance(text, bytes):
            if len(text) > MAX_RUN_FILE_BYTES:
                raise InputError(f"run file too large ({len(text)} bytes; limit {MAX_RUN_FILE_BYTES})")
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError:
                raise InputError("run file is not UTF-8 text") from None
        if len(text) > MAX_RUN_FILE_BYTES:
            raise InputError(f"run file too large ({len(text)} characters; limit {MAX_RUN_FILE_BYTES})")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise InputError(f"run file is not valid JSON ({error.msg}, line {error.lineno})") from None
        if not isinstance(data, dict) or data.get("format") != RUN_FORMAT:
            raise InputError(f"not a run file of this explorer (expected \"format\": \"{RUN_FORMAT}\")")
        if data.get("version") != RUN_VERSION:
            raise InputError(f"run file version {data.get('version')!r} is not supported (expected {RUN_VERSION})")
        missing = [k for k in ("model", "image", "attack") if not isinstance(data.get(k), str)]
        if missing:
            raise InputError(f"run file lacks {missing} (text fields)")
        params = data.get("params", {})
        if not isinstance(params, dict):
            raise InputError("run file: params must be an object of name: value")
        spec = cls(model=data["model"], image=data["image"], attack=data["attack"],
                   target=data.get("target", "untargeted"), params=params,
                   seed=data.get("seed", 0), adv_threshold=data.get("adv_threshold", 0.99))
        if spec.target not in TARGETS:
            raise InputError(f"run file: unknown target {spec.target!r}; expected one of {list(TARGETS)}")
        if isinstance(spec.seed, bool) or not isinstance(spec.seed, int) or spec.seed < 0:
            raise InputError(f"run file: seed must be a whole number >= 0; got {spec.seed!r}")
        attack = get_attack(spec.attack)
        spec.params = attack.validate(spec.params)
        spec.adv_threshold = attack.validate({"adv_threshold": spec.adv_threshold})["adv_threshold"]
        return spec


def write_png(image, path: Path) -> Path:
    """Write a (3, H, W) image in [0, 1] (tensor or array) as an 8-bit RGB PNG."""
    from explorer.render import image_to_uint8

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
    """Write the four downloads of a run into ``folder``; return their paths by kind."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = stem or f"{spec.attack}"
    adv = result.adv_images[0].detach().cpu().float()
    clean = clean_image.reshape(adv.shape).detach().cpu().float()
    paths = {"png": write_png(adv, folder / f"{stem}_adversarial.png"),
             "npy": folder / f"{stem}_perturbation.npy",
             "csv": write_trace_csv(result, folder / f"{stem}_trace.csv"),
             "json": folder / f"{stem}_run.json"}
    np.save(paths["npy"], (adv - clean).numpy().astype(np.float32), allow_pickle=False)
    paths["json"].write_text(spec.to_json())
    return paths
