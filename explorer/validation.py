"""Small input checks shared by the core modules (they raise :class:`InputError`)."""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor

from explorer.errors import InputError


def as_tensor(x: Any, name: str) -> Tensor:
    """Return ``x`` as a tensor (numpy arrays and nested lists are converted)."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    try:
        return torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InputError(f"{name} must be a torch tensor or a numpy array, got {type(x).__name__}") from exc


def check_num_classes(num_classes: Any) -> int:
    """Return ``num_classes`` as an int, or raise if it is not a positive integer."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise InputError(f"num_classes must be a positive integer, got {num_classes!r}")
    return int(num_classes)


#: the seeds a run accepts: what ``torch.manual_seed`` takes, from 0
SEED_LOW, SEED_HIGH = 0, 2 ** 63 - 1


def whole_number(value: Any, what: str, low: Optional[int] = None, high: Optional[int] = None) -> int:
    """``value`` as an int in ``[low, high]``: ints, whole floats and digit strings are taken;
    booleans, fractions, NaN, infinities and anything else raise :class:`InputError` naming
    ``what`` (a widget's number, a run file's field, a command-line argument)."""
    number: Optional[int] = None
    if isinstance(value, (bool, np.bool_)):
        number = None
    elif isinstance(value, (int, np.integer)):
        number = int(value)
    elif isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().lstrip("+-").isdigit() and len(value.strip()) <= 40:
        number = int(value.strip())
    bounds = (f" in [{low}, {high}]" if low is not None and high is not None
              else f" >= {low}" if low is not None else f" <= {high}" if high is not None else "")
    if number is None or (low is not None and number < low) or (high is not None and number > high):
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise InputError(f"{what} must be a whole number{bounds}; got {shown}")
    return number


def check_seed(value: Any, what: str = "seed") -> int:
    """A run's random seed: a whole number in [0, 2**63 - 1] (see :func:`whole_number`)."""
    return whole_number(value, what, SEED_LOW, SEED_HIGH)


def check_flag(value: Any, what: str) -> bool:
    """A yes/no option (a checkbox, a run file's field): ``True`` or ``False`` only — not 1,
    "true" or ``None`` — else :class:`InputError` naming ``what``."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    raise InputError(f"{what} must be true or false; got {shown}")
