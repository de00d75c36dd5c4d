"""Checks of the benchmark's inputs, made before anything is computed or written.

Every check raises :class:`~explorer.errors.InputError` with one line a person can act on;
:func:`argument` turns a check into an ``argparse`` ``type=`` function, so the command line
refuses a bad value with its usage line and exit status 2, before any model is loaded.  The
library entry points (:func:`explorer.bench.run.run_benchmark`, the image sources) call the
same checks, so a program calling them directly is protected the same way.
"""
from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Any, Callable, List, Sequence

import torch

from explorer.data.sources import warn  # noqa: F401  (the benchmark's one warning line)
from explorer.errors import InputError
from explorer.models.registry import get_model_entry
from explorer.validation import SEED_HIGH, SEED_LOW, whole_number

#: a batch adds up to a 32-bit offset to the base seed, which must stay a valid run seed
MAX_BASE_SEED = SEED_HIGH - 2 ** 32


def argument(check: Callable[..., Any]) -> Callable[[str], Any]:
    """An argparse ``type=`` function from a check that raises :class:`InputError`.

    argparse writes ``argument --limit: <message>``, so the check is called with an empty
    ``what`` and its message starts with what is wrong."""
    def parse(text: str):
        try:
            return check(text, "")
        except InputError as error:
            raise argparse.ArgumentTypeError(str(error).strip()) from None

    parse.__name__ = getattr(check, "__name__", "value").replace("_", " ")  # argparse names it on errors
    return parse


# --------------------------------------------------------------------------- numbers


def _integer(value: Any, what: str, expected: str = "a whole number") -> int:
    if isinstance(value, bool):
        raise InputError(f"{what} must be {expected}; got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    try:
        return int(str(value).strip())
    except ValueError:
        raise InputError(f"{what} must be {expected}; got {str(value)[:40]!r}") from None


def positive_int(value: Any, what: str = "the value") -> int:
    """``value`` as a whole number >= 1 (sizes, counts, steps, threads)."""
    number = _integer(value, what, "a whole number >= 1")
    if number < 1:
        raise InputError(f"{what} must be a whole number >= 1; got {number}")
    return number


def seed(value: Any, what: str = "--seed") -> int:
    """A benchmark's base seed: a run seed (:func:`explorer.validation.check_seed`) that stays
    one after a batch's offset is added."""
    return whole_number(value, what, SEED_LOW, MAX_BASE_SEED)


def _real(value: Any, what: str) -> float:
    if isinstance(value, bool):
        raise InputError(f"{what} must be a number; got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{what} must be a number; got {str(value)[:40]!r}") from None


def eps_255(value: Any, what: str = "--eps") -> float:
    """A budget ε × 255: finite, in (0, 255]."""
    number = _real(value, what)
    if not math.isfinite(number) or not 0 < number <= 255:
        raise InputError(f"{what} must be a finite budget ε × 255 in (0, 255]; got {value}")
    return number


def fraction(value: Any, what: str = "the value") -> float:
    """A fraction in (0, 1] (of an iteration budget, of a radius for a step)."""
    number = _real(value, what)
    if not math.isfinite(number) or not 0 < number <= 1:
        raise InputError(f"{what} must be a number in (0, 1]; got {value}")
    return number


def budget_fraction(value: Any, what: str = "--budget-fraction") -> float:
    return fraction(value, what)


def distinct(values: Sequence, what: str) -> List:
    """``values`` as a list, refusing repeats (they would compute and write the same records twice)."""
    seen, repeated = set(), []
    for v in values:
        if v in seen and v not in repeated:
            repeated.append(v)
        seen.add(v)
    if repeated:
        raise InputError(f"{what} repeats {', '.join(map(str, repeated))}; give each once")
    return list(values)


# --------------------------------------------------------------------------- devices and threads


def device(value: Any, what: str = "--device") -> str:
    """A device this machine has: ``cpu``, ``cuda``, ``cuda:N`` (N < number of GPUs), or ``mps``."""
    text = str(value).strip() if isinstance(value, (str, torch.device)) else None
    if not text:
        raise InputError(f"{what} must name a device: cpu, cuda or cuda:N; got {value!r}")
    try:
        resolved = torch.device(text)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"{what} {text!r} is not a device; use cpu, cuda or cuda:N") from None
    if resolved.type == "cpu":
        return str(resolved)
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"{what} {text!r}: CUDA is not available on this machine; use cpu")
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise InputError(f"{what} {text!r}: this machine has {count} CUDA device(s), "
                             f"cuda:0 to cuda:{count - 1}")
        return str(resolved)
    if resolved.type == "mps":
        backend = getattr(torch.backends, "mps", None)
        if backend is None or not backend.is_available():
            raise InputError(f"{what} {text!r}: MPS is not available on this machine; use cpu")
        return str(resolved)
    raise InputError(f"{what} {text!r}: the benchmark runs on cpu, cuda or cuda:N only")


def threads(value: Any, what: str = "--threads") -> int:
    number = positive_int(value, what)
    if number > 4096:
        raise InputError(f"{what} must be at most 4096; got {number}")
    return number


# --------------------------------------------------------------------------- files


def _existing_ancestor(path: Path) -> Path:
    for candidate in [path, *path.parents]:
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return Path(".")


def _creatable(path: Path, what: str) -> None:
    """Whether ``path`` (absent) can be made: its nearest existing ancestor is a writable folder."""
    base = _existing_ancestor(path.parent)
    if not base.is_dir():
        raise InputError(f"{what} {path} cannot be created: {base} is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise InputError(f"{what} {path} cannot be created: the folder {base} is not writable")


def output_folder(value: Any, what: str = "--out-dir") -> Path:
    """A folder that exists and is writable, or that can be created (no file in the way)."""
    path = Path(value)
    if str(value).strip() == "":
        raise InputError(f"{what} must name a folder")
    if path.exists() or path.is_symlink():
        if not path.is_dir():
            raise InputError(f"{what} {path} is a file, not a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise InputError(f"{what} {path}: the folder is not writable")
        return path
    _creatable(path, what)
    return path


def output_file(value: Any, what: str = "--out", readable: bool = False) -> Path:
    """A file that can be appended to (and read, when ``readable``), or created; nothing is written."""
    path = Path(value)
    if str(value).strip() == "" or path.name in ("", ".", ".."):
        raise InputError(f"{what} must name a file; got {str(value)!r}")
    if path.exists() or path.is_symlink():
        if path.is_dir():
            raise InputError(f"{what} {path} is a folder; give a file name inside it, "
                             f"e.g. {path / 'bench.jsonl'}")
        if not path.is_file():
            raise InputError(f"{what} {path} is not a regular file")
        try:
            with path.open("ab"):
                pass
            if readable:
                with path.open("rb"):
                    pass
        except OSError as error:
            raise InputError(f"{what} {path} cannot be {'read and ' if readable else ''}written "
                             f"({error.strerror or error})") from None
        return path
    _creatable(path, what)
    return path


def input_file(value: Any, what: str = "the results file") -> Path:
    """A regular file that exists and can be read."""
    path = Path(value)
    if not path.exists():
        raise InputError(f"{what} {path} does not exist")
    if path.is_dir():
        raise InputError(f"{what} {path} is a folder, not a file")
    try:
        with path.open("rb"):
            pass
    except OSError as error:
        raise InputError(f"{what} {path} cannot be read ({error.strerror or error})") from None
    return path


def model_names(names: Sequence[str], what: str = "--models") -> List[str]:
    """Registered model names (InputError listing the available ones), without repeats."""

    for name in names:
        get_model_entry(name)
    return distinct(names, what)

