"""Target label maps for untargeted and targeted attacks.

An untargeted attack pushes the prediction away from a reference map (the ground truth,
or the clean prediction when there is none); a targeted attack pulls it towards a target
map.  This module builds and validates these maps.

Conventions: label maps are int64, ``(H, W)`` or ``(N, H, W)``; a value outside
``[0, K)`` marks an ignored pixel, written :data:`IGNORE_INDEX` (255) in the maps made
here.  Maps may be given as torch tensors or numpy arrays; results are torch tensors.
Bad input raises :class:`explorer.errors.InputError`.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

from explorer.errors import InputError
from explorer.validation import as_tensor, check_num_classes

__all__ = [
    "TARGETS",
    "target_choices",
    "IGNORE_INDEX",
    "untargeted_labels",
    "background_target",
    "resize_label_map",
    "majority_label_target",
    "custom_target",
]

#: the targets a user can choose, with the words shown for them
TARGETS: dict[str, str] = {
    "untargeted": "untargeted — fool every labelled pixel",
    "background": "all background",
    "majority": "smoothed majority-label street layout",
    "custom": "uploaded label map",
}


def target_choices(dataset) -> list[str]:
    """The targets that make sense for a dataset: background only with a background class,
    the majority layout only for street scenes (Cityscapes classes)."""
    out = ["untargeted"]
    if dataset.background_class is not None:
        out.append("background")
    if dataset.name == "cityscapes":
        out.append("majority")
    out.append("custom")
    return out


IGNORE_INDEX = 255
"""Label value of an ignored pixel in the maps this module returns."""


# --------------------------------------------------------------------------- helpers


def _integer_map(x: Any, name: str) -> Tensor:
    """Return ``x`` as an int64 tensor; floats are accepted only if every value is integral."""
    t = as_tensor(x, name)
    if t.is_complex():
        raise InputError(f"{name} must hold integer class labels, got dtype {t.dtype}")
    if t.is_floating_point():
        if t.numel() > 0 and not bool((t == t.round()).all()):
            raise InputError(
                f"{name} must hold integer class labels; it is a {t.dtype} array with "
                "non-integral values (or NaN/inf). Give an integer array, or a float "
                "array whose values are whole numbers"
            )
    return t.long()


def _check_size(size: Any) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in size)
        ok = all(float(v) == int(v) for v in size)
    except (TypeError, ValueError):
        ok = False
    if not ok or h < 1 or w < 1:
        raise InputError(f"size must be a pair of positive integers (H, W), got {size!r}")
    return h, w


def _nearest_indices(src: int, dst: int, device: torch.device) -> Tensor:
    """Source index of each destination index for a nearest resize (pixel centres aligned)."""
    # Built on the CPU in float64 (exact for any realistic size), then moved.
    idx = ((torch.arange(dst, dtype=torch.float64) + 0.5) * (src / dst)).floor()
    return idx.long().clamp_(0, src - 1).to(device)


def _blur_matrix(n: int, sigma: float, device: torch.device) -> Tensor:
    """(n, n) matrix applying a 1-D Gaussian blur with reflect padding to a length-n signal.

    Row ``i`` holds the weights of the Gaussian taps centred on ``i`` (truncated at
    4 sigma, normalised to sum 1); taps falling outside ``[0, n)`` are mirrored back
    about the end samples (the "reflect" rule, without repeating the edge, applied as
    many times as needed, so any sigma works whatever ``n``).
    """
    # Built on the CPU in float64 (not every accelerator has it), used in float32.
    radius = max(1, math.ceil(4.0 * sigma))
    offsets = torch.arange(-radius, radius + 1)
    taps = torch.exp(-0.5 * (offsets.double() / sigma) ** 2)
    taps = taps / taps.sum()
    rows = torch.arange(n).view(-1, 1).expand(n, offsets.numel())
    src = rows + offsets.view(1, -1)
    if n == 1:
        src = torch.zeros_like(src)
    else:
        period = 2 * (n - 1)
        src = src.remainder(period)
        src = torch.where(src >= n, period - src, src)
    matrix = torch.zeros(n, n, dtype=torch.float64)
    matrix.index_put_((rows, src), taps.expand_as(src), accumulate=True)
    return matrix.float().to(device)


def _gaussian_blur(maps: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur (std ``sigma`` pixels, reflect padding) of each channel of (C, H, W).

    Written as two matrix products, ``B_H @ maps @ B_W^T``, with the banded blur
    matrices of :func:`_blur_matrix`: exact for the truncated kernel and much faster
    than a long 1-D convolution for the large sigmas used here.  Same result as
    ``scipy.ndimage.gaussian_filter(x, sigma, mode="mirror", truncate=4)`` per channel.
    """
    _, h, w = maps.shape
    by = _blur_matrix(h, sigma, maps.device)
    bx = _blur_matrix(w, sigma, maps.device)
    return by @ maps.float() @ bx.T


def _iter_maps(label_maps: Any) -> Iterable[Any]:
    """Yield the individual (H, W) maps of a list / iterable or an (M, H, W) array."""
    if isinstance(label_maps, (Tensor, np.ndarray)):
        if label_maps.ndim == 2:
            return [label_maps]
        if label_maps.ndim == 3:
            return (label_maps[i] for i in range(label_maps.shape[0]))
        raise InputError(
            "label_maps must be a list of (H, W) maps or an (M, H, W) array, got an "
            f"array of shape {tuple(label_maps.shape)}"
        )
    try:
        return iter(label_maps)
    except TypeError as exc:
        raise InputError(
            "label_maps must be a list of (H, W) maps or an (M, H, W) array, got "
            f"{type(label_maps).__name__}"
        ) from exc


# --------------------------------------------------------------------------- public


def untargeted_labels(labels: Any = None, clean_logits: Any = None) -> Tensor:
    """Reference map ``(N, H, W)`` int64 for an untargeted attack.

    The ground truth ``labels`` when given (``(H, W)`` is read as one image), otherwise
    the argmax over the classes of ``clean_logits`` ``(N, K, H, W)`` (``(K, H, W)`` is
    read as one image), i.e. the clean prediction -- an uploaded photo has no ground
    truth.  When both are given, ``labels`` wins.
    """
    if labels is not None:
        y = _integer_map(labels, "labels")
        if y.ndim == 2:
            y = y.unsqueeze(0)
        if y.ndim != 3:
            raise InputError(
                f"labels must have shape (N, H, W) or (H, W), got {tuple(y.shape)}"
            )
        return y
    if clean_logits is not None:
        z = as_tensor(clean_logits, "clean_logits")
        if z.ndim == 3:
            z = z.unsqueeze(0)
        if z.ndim != 4 or not z.is_floating_point():
            raise InputError(
                "clean_logits must be float logits of shape (N, K, H, W), got a "
                f"{z.dtype} tensor of shape {tuple(z.shape)}"
            )
        return z.argmax(dim=1)
    raise InputError(
        "untargeted_labels needs the ground-truth labels or the clean logits; both are None"
    )


def background_target(
    labels_or_shape: Any,
    background_class: int = 0,
    keep_ignored: bool = True,
    num_classes: int | None = None,
) -> Tensor:
    """Constant target map of ``background_class``, int64.

    ``labels_or_shape`` is a label map (its shape and device are used) or a shape tuple
    ``(N, H, W)`` / ``(H, W)``.  When ``keep_ignored`` is true and both a label map and
    ``num_classes`` are given, the pixels ignored in the label map (values outside
    ``[0, num_classes)``) are :data:`IGNORE_INDEX` in the target too.
    """
    if isinstance(background_class, bool) or not isinstance(
        background_class, (int, np.integer)
    ) or background_class < 0:
        raise InputError(
            f"background_class must be an integer >= 0, got {background_class!r}"
        )
    if num_classes is not None:
        k = check_num_classes(num_classes)
        if background_class >= k:
            raise InputError(
                f"background_class must be in [0, {k}) for num_classes={k}, "
                f"got {background_class}"
            )
    if isinstance(labels_or_shape, (tuple, list, torch.Size)) and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool)
        for v in labels_or_shape
    ):
        shape = tuple(int(v) for v in labels_or_shape)
        if len(shape) not in (2, 3) or min(shape) < 1:
            raise InputError(
                f"a shape must be (N, H, W) or (H, W) with positive sizes, got {shape}"
            )
        return torch.full(shape, int(background_class), dtype=torch.long)
    labels = _integer_map(labels_or_shape, "labels_or_shape")
    if labels.ndim not in (2, 3):
        raise InputError(
            "labels_or_shape must be a label map (N, H, W) / (H, W) or such a shape, "
            f"got an array of shape {tuple(labels.shape)}"
        )
    target = torch.full_like(labels, int(background_class))
    if keep_ignored and num_classes is not None:
        ignored = (labels < 0) | (labels >= num_classes)
        target[ignored] = IGNORE_INDEX
    return target


def resize_label_map(label_map: Any, size: Sequence[int]) -> Tensor:
    """Nearest-neighbour resize of a label map ``(H, W)`` or ``(N, H, W)`` to ``size`` (H', W').

    Every output pixel copies the input pixel whose cell contains its centre (the
    "nearest-exact" rule, like PIL / OpenCV), so no new value is ever invented; the
    dtype is kept.
    """
    t = as_tensor(label_map, "label_map")
    if t.ndim not in (2, 3) or t.shape[-1] < 1 or t.shape[-2] < 1:
        raise InputError(
            f"label_map must have shape (H, W) or (N, H, W), got {tuple(t.shape)}"
        )
    h, w = _check_size(size)
    src_h, src_w = t.shape[-2], t.shape[-1]
    if (h, w) == (src_h, src_w):
        return t.clone()
    rows = _nearest_indices(src_h, h, t.device)
    cols = _nearest_indices(src_w, w, t.device)
    return t[..., rows[:, None], cols[None, :]]


def majority_label_target(
    label_maps: Any,
    num_classes: int,
    size: Sequence[int] | None = None,
    smoothing: float = 0.04,
    ignore_index: int = IGNORE_INDEX,
) -> Tensor:
    """Per-pixel majority label over a set of label maps, smoothed; int64 ``(H, W)``.

    This is the dataset-wide target of [Rony2023] (§5.4 and App. E, the Cityscapes target):

    1. Vote.  Each pixel counts, over the maps, how often each class occurs; the ignored
       label takes part as a class of its own (every value outside ``[0, num_classes)``,
       ``ignore_index`` or not, counts as ignored), so a region that is mostly unlabelled
       (ego-vehicle bonnet, image border) stays ``ignore_index``.
    2. Smooth (if ``smoothing > 0``).  The vote fraction of each class (ignore included)
       is blurred with a separable Gaussian of standard deviation
       ``smoothing * min(H, W)`` pixels (reflect padding, truncated at 4 sigma), which
       removes isolated pixels and ragged edges but keeps the layout.
    3. Each pixel takes the class with the largest (blurred) fraction; ties go to the
       lowest class index, the ignore "class" ranking after every real class.

    The result is deterministic.  ``label_maps`` is a list (or any iterable) of
    ``(H, W)`` maps, or an ``(M, H, W)`` tensor / array; maps of another size than the
    first are resized to it with :func:`resize_label_map` (nearest) before voting.
    Float maps are accepted if their values are integral.  Counts are accumulated map by
    map (memory ``(K + 1) * H * W`` counters, whatever the number of maps).  ``size``
    (H', W') resizes the result with nearest neighbour.
    """
    k = check_num_classes(num_classes)
    if not isinstance(smoothing, numbers.Real) or not math.isfinite(smoothing) or smoothing < 0:
        raise InputError(f"smoothing must be a finite number >= 0, got {smoothing!r}")
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
        raise InputError(f"ignore_index must be an integer, got {ignore_index!r}")
    if 0 <= ignore_index < k:
        raise InputError(
            f"ignore_index {ignore_index} is a real class for num_classes={k}; it must "
            f"be outside [0, {k}) (255 by convention)"
        )

    counts: Tensor | None = None  # (K + 1, H*W); row K counts the ignored votes
    n_maps = 0
    shape: tuple[int, int] = (0, 0)
    pixel = torch.empty(0, dtype=torch.long)  # flat pixel indices, set by the first map
    for i, raw in enumerate(_iter_maps(label_maps)):
        m = _integer_map(raw, f"label map {i}")
        if m.ndim == 3 and m.shape[0] == 1:
            m = m[0]
        if m.ndim != 2 or m.numel() == 0:
            raise InputError(
                f"label map {i} must be a non-empty (H, W) map, got shape {tuple(m.shape)}"
            )
        if counts is None:
            shape = (m.shape[0], m.shape[1])
            counts = torch.zeros(k + 1, shape[0] * shape[1], dtype=torch.int32, device=m.device)
            pixel = torch.arange(shape[0] * shape[1], device=m.device)
        elif tuple(m.shape) != shape:
            m = resize_label_map(m, shape)
        cls = m.to(counts.device).flatten()
        cls = torch.where((cls >= 0) & (cls < k), cls, torch.full_like(cls, k))
        # Each pixel receives exactly one vote per map, at (class, pixel).
        counts.view(-1).index_add_(
            0, cls * pixel.numel() + pixel, torch.ones_like(cls, dtype=torch.int32)
        )
        n_maps += 1
    if counts is None:
        raise InputError("label_maps is empty; give at least one label map")

    h, w = shape
    votes = counts.view(k + 1, h, w)
    if smoothing > 0:
        fractions = votes.float() / n_maps
        votes = _gaussian_blur(fractions, smoothing * min(h, w))
    # argmax returns the first maximum: ties go to the lowest index, ignore (= K) last.
    winner = votes.argmax(dim=0)
    target = torch.where(winner == k, torch.full_like(winner, int(ignore_index)), winner)
    if size is not None:
        target = resize_label_map(target, size)
    return target


def custom_target(label_map: Any, num_classes: int, size: Sequence[int] | None = None) -> Tensor:
    """Validate a user-supplied target map; int64 of the same rank, ignored pixels = 255.

    ``label_map`` is ``(H, W)``, ``(1, H, W)`` or ``(N, H, W)`` (the rank is kept), with
    integer values (a float array is accepted when all its values are whole numbers).
    Values outside ``[0, num_classes)`` become :data:`IGNORE_INDEX`.  ``size`` (H', W')
    resizes it with nearest neighbour.  A map (or any map of a batch) with no labelled
    pixel raises :class:`InputError`, since a targeted attack would then have no goal.
    """
    k = check_num_classes(num_classes)
    t = _integer_map(label_map, "the target")
    if t.ndim not in (2, 3) or t.numel() == 0:
        raise InputError(
            "the target must be a label map of shape (H, W), (1, H, W) or (N, H, W), "
            f"got shape {tuple(t.shape)}"
        )
    t = torch.where((t >= 0) & (t < k), t, torch.full_like(t, IGNORE_INDEX))
    if size is not None:
        t = resize_label_map(t, size)
    labelled = (t != IGNORE_INDEX).flatten(start_dim=t.ndim - 2).any(dim=-1)
    if not bool(labelled.all()):
        which = "" if t.ndim == 2 else f" (map {int((~labelled).nonzero()[0])} of the batch)"
        raise InputError(
            f"the target has no labelled pixel{which}: every value is outside "
            f"[0, {k}); give a map with at least one class in [0, {k})"
        )
    return t
