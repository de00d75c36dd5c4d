"""Metrics for adversarial attacks on semantic segmentation.

Conventions (shared with the rest of :mod:`explorer`):

* a label map is an integer tensor of shape ``(N, H, W)``; a pixel is *labelled* when
  ``0 <= label < K`` (``K`` = number of classes) and *ignored* otherwise (255 by
  convention; negative values are ignored as well);
* a prediction is either an integer class map ``(N, H, W)`` with values in ``[0, K)`` or
  logits ``(N, K, H, W)``, which are reduced with an argmax over the class dimension;
* perturbation norms are per image, over all dimensions but the first.

Label maps and predictions may be given as torch tensors or numpy arrays.  Bad input
raises :class:`explorer.errors.InputError`.

The attack metrics follow [Rony2023] (Rony et al. 2023, "Proximal splitting adversarial
attacks for semantic segmentation"): the attack pixel success rate (APSR, eq. 19), the
failure-rate-versus-budget curve (Fig. 3) and the median / mean ℓ∞ norm with failed
images counted as 1 (§6, Table 1).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from explorer.errors import InputError
from explorer.validation import as_tensor, check_num_classes

__all__ = [
    "pixel_success",
    "labelled_mask",
    "apsr",
    "pixel_accuracy",
    "confusion_matrix",
    "iou_per_class",
    "mean_iou",
    "linf_norm",
    "l2_norm",
    "default_thresholds",
    "failure_rate_curve",
    "norm_summary",
]


# --------------------------------------------------------------------------- helpers


def _label_tensor(labels: Any, name: str = "labels") -> Tensor:
    """Validate an integer ``(N, H, W)`` label map and return it as int64."""
    t = as_tensor(labels, name)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise InputError(
            f"{name} must be an integer label map (N, H, W), got dtype {t.dtype}"
        )
    if t.ndim != 3:
        raise InputError(
            f"{name} must have shape (N, H, W), got shape {tuple(t.shape)}"
        )
    return t.long()


def _prediction_tensor(pred: Any, labels: Tensor, num_classes: int) -> Tensor:
    """Validate a prediction (class map or logits) against ``labels``; return int64 (N, H, W)."""
    p = as_tensor(pred, "pred")
    if p.ndim == 4:
        if not p.is_floating_point():
            raise InputError(
                "pred with 4 dimensions must be float logits (N, K, H, W), "
                f"got dtype {p.dtype}"
            )
        if p.shape[1] != num_classes:
            raise InputError(
                f"pred logits have {p.shape[1]} channels but num_classes is "
                f"{num_classes}; expected shape (N, {num_classes}, H, W)"
            )
        p = p.argmax(dim=1)
    elif p.ndim == 3:
        if p.is_floating_point() or p.is_complex() or p.dtype == torch.bool:
            raise InputError(
                "pred must be an integer class map (N, H, W) or float logits "
                f"(N, K, H, W), got a {p.dtype} tensor of shape {tuple(p.shape)}"
            )
        p = p.long()
    else:
        raise InputError(
            "pred must be a class map (N, H, W) or logits (N, K, H, W), "
            f"got shape {tuple(p.shape)}"
        )
    if p.shape != labels.shape:
        raise InputError(
            f"pred and labels must cover the same pixels: pred gives a "
            f"{tuple(p.shape)} map, labels have shape {tuple(labels.shape)}"
        )
    if p.numel() > 0:
        lo, hi = int(p.min()), int(p.max())
        if lo < 0 or hi >= num_classes:
            raise InputError(
                f"predicted classes must lie in [0, {num_classes}), found values in "
                f"[{lo}, {hi}]"
            )
    return p.to(labels.device)


def _labelled(labels: Tensor, num_classes: int) -> Tensor:
    return (labels >= 0) & (labels < num_classes)


def _per_image_fraction(hits: Tensor, labelled: Tensor, what: str) -> Tensor:
    """Fraction of labelled pixels that are ``hits``, per image; InputError if none labelled."""
    n_labelled = labelled.flatten(1).sum(dim=1)
    empty = (n_labelled == 0).nonzero().flatten()
    if empty.numel() > 0:
        i = int(empty[0])
        raise InputError(
            f"{what} is undefined: image {i} has no labelled pixel (every label is "
            "ignored, i.e. outside [0, num_classes)); give a label map with at least "
            "one labelled pixel per image"
        )
    n_hits = (hits & labelled).flatten(1).sum(dim=1)
    return n_hits.float() / n_labelled.float()


def _as_numpy_1d(x: Any, name: str, dtype: Any) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be a 1-D sequence of numbers") from exc
    if arr.ndim != 1:
        raise InputError(f"{name} must be 1-D (one value per image), got shape {arr.shape}")
    return arr


def _norms_and_success(norms: Any, success: Any) -> tuple[np.ndarray, np.ndarray]:
    n = _as_numpy_1d(norms, "norms", np.float64)
    s = _as_numpy_1d(success, "success", bool)
    if n.shape != s.shape:
        raise InputError(
            f"norms and success must have one entry per image each, got {n.shape[0]} "
            f"norms and {s.shape[0]} success flags"
        )
    if n.size == 0:
        raise InputError("norms and success are empty; give at least one image")
    if np.any(~np.isfinite(n[s])) or np.any(n[s] < 0):
        raise InputError(
            "the norm of every successful image must be a finite number >= 0"
        )
    return n, s


# --------------------------------------------------------------------------- pixels


def labelled_mask(labels: Any, num_classes: int) -> Tensor:
    """Boolean mask ``(N, H, W)`` of the labelled pixels, i.e. ``0 <= label < num_classes``."""
    k = check_num_classes(num_classes)
    return _labelled(_label_tensor(labels), k)


def pixel_success(
    pred: Any, labels: Any, num_classes: int, targeted: bool = False
) -> Tensor:
    """Boolean map ``(N, H, W)`` of the pixels the attack fooled.

    Untargeted: the prediction differs from the label; targeted (``labels`` is then the
    target map): the prediction equals the target.  Ignored pixels (label outside
    ``[0, num_classes)``) are never counted as fooled.
    """
    k = check_num_classes(num_classes)
    y = _label_tensor(labels)
    p = _prediction_tensor(pred, y, k)
    hit = p == y if targeted else p != y
    return hit & _labelled(y, k)


def apsr(pred: Any, labels: Any, num_classes: int, targeted: bool = False) -> Tensor:
    """Attack pixel success rate per image, [Rony2023] eq. 19; float32 tensor ``(N,)``.

    APSR = |{labelled pixels fooled}| / |{labelled pixels}|, where a pixel is fooled when
    its argmax prediction differs from the label (untargeted) or equals it (targeted:
    ``labels`` is the target map).  Raises :class:`InputError` if an image has no
    labelled pixel, since the rate is then undefined.
    """
    k = check_num_classes(num_classes)
    y = _label_tensor(labels)
    p = _prediction_tensor(pred, y, k)
    hit = p == y if targeted else p != y
    return _per_image_fraction(hit, _labelled(y, k), "APSR")


def pixel_accuracy(pred: Any, labels: Any, num_classes: int) -> Tensor:
    """Per-image pixel accuracy: fraction of labelled pixels predicted correctly, ``(N,)``.

    Raises :class:`InputError` if an image has no labelled pixel.
    """
    k = check_num_classes(num_classes)
    y = _label_tensor(labels)
    p = _prediction_tensor(pred, y, k)
    return _per_image_fraction(p == y, _labelled(y, k), "pixel accuracy")


# --------------------------------------------------------------------------- IoU


def confusion_matrix(
    pred: Any, labels: Any, num_classes: int, per_image: bool = False
) -> Tensor:
    """Confusion matrix of the labelled pixels: int64 ``(K, K)``, or ``(N, K, K)`` per image.

    Entry ``[t, p]`` counts the pixels of true class ``t`` predicted as class ``p``
    (rows = truth, columns = prediction).  Ignored pixels are left out; predicted classes
    outside ``[0, K)`` raise :class:`InputError`.  Without ``per_image`` the matrices of
    the batch are summed.
    """
    k = check_num_classes(num_classes)
    y = _label_tensor(labels)
    p = _prediction_tensor(pred, y, k)
    n = y.shape[0]
    keep = _labelled(y, k)
    # One flat bin per (image, true class, predicted class).
    image_index = torch.arange(n, device=y.device).view(n, 1, 1).expand_as(y)
    bins = (image_index * k + y) * k + p
    counts = torch.bincount(bins[keep], minlength=n * k * k).view(n, k, k)
    return counts if per_image else counts.sum(dim=0)


def iou_per_class(confusion: Any) -> Tensor:
    """Intersection over union per class, TP / (TP + FP + FN); float64 ``(K,)`` or ``(N, K)``.

    ``confusion`` is a ``(K, K)`` matrix (rows = truth, columns = prediction) or a batch
    ``(N, K, K)``.  A class absent from both the labels and the predictions has an
    undefined IoU, returned as NaN.
    """
    c = as_tensor(confusion, "confusion")
    if c.ndim not in (2, 3) or c.shape[-1] != c.shape[-2]:
        raise InputError(
            "confusion must be a square matrix (K, K) or a batch (N, K, K), "
            f"got shape {tuple(c.shape)}"
        )
    if c.is_complex() or c.dtype == torch.bool:
        raise InputError(f"confusion must hold counts, got dtype {c.dtype}")
    if c.device.type == "mps":  # no float64 there; confusion matrices are small
        c = c.cpu()
    c = c.double()
    if c.numel() > 0 and bool((c < 0).any()):
        raise InputError("confusion must hold counts >= 0, found a negative entry")
    tp = c.diagonal(dim1=-2, dim2=-1)
    union = c.sum(dim=-1) + c.sum(dim=-2) - tp  # TP + FN + FP
    iou = tp / union
    return torch.where(union > 0, iou, torch.full_like(iou, float("nan")))


def mean_iou(confusion: Any) -> float | Tensor:
    """Mean IoU: the mean over the classes with a defined IoU (NaN-mean of :func:`iou_per_class`).

    A ``(K, K)`` matrix gives a float; a batch ``(N, K, K)`` gives a float64 tensor
    ``(N,)``.  Dataset-level mIoU is ``mean_iou(confusion_matrix(pred, labels, K))``
    (matrices summed over images); per-image mIoU is
    ``mean_iou(confusion_matrix(pred, labels, K, per_image=True))``.  A matrix of zeros
    (no labelled pixel and no prediction) gives NaN.
    """
    iou = iou_per_class(confusion)
    miou = torch.nanmean(iou, dim=-1)
    return float(miou) if iou.ndim == 1 else miou


# --------------------------------------------------------------------------- norms


def _check_delta(delta: Any) -> Tensor:
    d = as_tensor(delta, "delta")
    if d.ndim < 2:
        raise InputError(
            "delta must be a batch of perturbations (N, ...) with at least 2 dimensions, "
            f"got shape {tuple(d.shape)}"
        )
    if not d.is_floating_point():
        d = d.double()
    return d


def linf_norm(delta: Any) -> Tensor:
    """ℓ∞ norm of each perturbation, max |δ| over all dimensions but the first; ``(N,)``."""
    d = _check_delta(delta)
    return torch.linalg.vector_norm(d.flatten(1), ord=float("inf"), dim=1)


def l2_norm(delta: Any) -> Tensor:
    """ℓ2 norm of each perturbation, over all dimensions but the first; ``(N,)``."""
    d = _check_delta(delta)
    return torch.linalg.vector_norm(d.flatten(1), ord=2, dim=1)


# --------------------------------------------------------------------------- curves


def default_thresholds(
    linear_points: int = 201, log_points: int = 200, knee: float = 2 / 255
) -> np.ndarray:
    """Default budget grid for :func:`failure_rate_curve`, float64.

    ``linear_points`` evenly spaced values on ``[0, knee]`` followed by ``log_points``
    log-spaced values on ``(knee, 1]`` (the last one is exactly 1).
    """
    if linear_points < 2 or log_points < 1 or not 0 < knee < 1:
        raise InputError(
            "default_thresholds needs linear_points >= 2, log_points >= 1 and "
            f"0 < knee < 1, got {linear_points}, {log_points}, {knee}"
        )
    linear = np.linspace(0.0, knee, linear_points)
    log = np.geomspace(knee, 1.0, log_points + 1)[1:]
    return np.concatenate([linear, log])


def failure_rate_curve(
    norms: Any, success: Any, thresholds: Sequence[float] | np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Attack failure rate as a function of the budget ε, [Rony2023] Fig. 3.

    An image counts as fooled at budget ε iff the attack succeeded on it and its
    perturbation norm is ``<= ε``; the failure rate at ε is the fraction of images that
    are not fooled at ε.  ``norms`` and ``success`` hold one entry per image (the norm of
    a failed image is not used and may be NaN).  ``thresholds`` defaults to
    :func:`default_thresholds` (linear on ``[0, 2/255]``, log-spaced on ``(2/255, 1]``).

    Returns ``(thresholds, failure_rate)``, two float64 numpy arrays of the same length.
    """
    n, s = _norms_and_success(norms, success)
    if thresholds is None:
        eps = default_thresholds()
    else:
        eps = _as_numpy_1d(thresholds, "thresholds", np.float64).copy()
        if np.any(np.isnan(eps)):
            raise InputError("thresholds must not contain NaN")
    fooled_norms = np.sort(n[s])
    n_fooled = np.searchsorted(fooled_norms, eps, side="right")
    failure = 1.0 - n_fooled.astype(np.float64) / n.size
    return eps, failure


def norm_summary(norms: Any, success: Any) -> dict[str, float]:
    """Median and mean ℓ∞ norm with failed images counted as 1, [Rony2023] §6 / Table 1.

    Each failed image contributes a norm of 1.0 (= 255/255, the largest ℓ∞ distance
    between two images in [0, 1]).  Returns a dict with ``median``, ``mean`` (in the
    [0, 1] image scale), ``median_255``, ``mean_255`` (times 255), ``success_rate``
    (fraction of successful images) and ``count`` (number of images).  The median of an
    even number of images is the mean of the two middle values (numpy convention).
    """
    n, s = _norms_and_success(norms, success)
    counted = np.where(s, n, 1.0)
    median = float(np.median(counted))
    mean = float(np.mean(counted))
    return {
        "median": median,
        "mean": mean,
        "median_255": median * 255.0,
        "mean_255": mean * 255.0,
        "success_rate": float(np.mean(s)),
        "count": int(n.size),
    }


def _miou_of_totals(totals: Tensor) -> Tensor:
    """mIoU of each ``(..., K, K)`` confusion in ``totals`` (float64), NaN (no defined class) as +inf."""
    mious = torch.nanmean(iou_per_class(totals), dim=-1)
    return torch.where(torch.isnan(mious), torch.full_like(mious, float("inf")), mious)


def greedy_worst_case_miou(confusions: Any, local_search: bool = True,
                           max_passes: int = 1000) -> tuple[Tensor, float]:
    """Worst-case dataset mIoU over an ensemble: a member per image chosen to lower the mIoU [Croce2024].

    ``confusions`` is ``(A, N, K, K)``: for each of A attacks, each image's confusion matrix
    (:func:`confusion_matrix` with ``per_image=True``).

    1. Greedy pass: images are visited in order; each takes the attack whose confusion, added
       to the running total of the images before it, gives the lowest mIoU (ties: the first
       attack).
    2. Local search (``local_search``, as the ECCV-2024 code's ``worst_case_miou``): passes
       over the images in order; an image moves to the attack that gives the lowest
       *full-dataset* mIoU with every other image's choice fixed (ties: the first attack),
       when that is strictly lower than the current value.  Stops after a pass that moves
       nothing (or after ``max_passes``).  Deterministic, never above the greedy value, and
       the result is a local optimum: no single image can change attack to lower the mIoU.
       (The authors start from every image on one member and shuffle the image order; we
       start from the greedy choice in a fixed order.)

    Returns the chosen attack per image ``(N,)`` and the mIoU of the summed choice.  A
    heuristic, so an upper bound of the exact worst case (which is a search over ``A^N``
    assignments).
    """
    c = as_tensor(confusions, "confusions")
    if c.ndim != 4 or c.shape[-1] != c.shape[-2] or c.shape[0] < 1:
        raise InputError(f"confusions must have shape (A, N, K, K), got {tuple(c.shape)}")
    num_images = c.shape[1]
    total = torch.zeros(c.shape[-2:], dtype=torch.float64)
    choice = torch.zeros(num_images, dtype=torch.long)
    c = c.double().cpu()
    for i in range(num_images):
        candidates = total + c[:, i]
        choice[i] = int(torch.argmin(_miou_of_totals(candidates)))
        total = candidates[choice[i]]
    if local_search and c.shape[0] > 1:
        current = float(_miou_of_totals(total))
        for _ in range(max_passes):
            moved = False
            for i in range(num_images):
                # counts are whole numbers, exact in float64: removing and adding them is exact
                candidates = total - c[choice[i], i] + c[:, i]
                mious = _miou_of_totals(candidates)
                best = int(torch.argmin(mious))
                if float(mious[best]) < current:
                    choice[i], total, current = best, candidates[best], float(mious[best])
                    moved = True
            if not moved:
                break
    return choice, float(mean_iou(total))
