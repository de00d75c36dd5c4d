"""Small input checks shared by the core modules (they raise :class:`InputError`)."""
from __future__ import annotations

from typing import Any

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
