"""The one model interface of the explorer: images in [0, 1] -> logits at input resolution.

:class:`SegmentationModel` wraps any segmentation network so that every model, shipped
or downloaded, obeys the contract the attacks rely on:

* input: images ``(N, 3, H, W)`` with values in [0, 1] (so an ℓ∞ budget is in pixel
  units: ``8/255`` is eight grey levels);
* output: logits ``(N, K, H, W)`` at the *input* resolution, ``K`` = the classes of the
  model's dataset (:mod:`explorer.data.datasets`).

Everything between the two lives inside the wrapper and is differentiable: per-channel
normalisation, an optional resize to the network's working resolution, zero padding to a
multiple of the network's stride, picking the logits out of dict / ``ModelOutput``
results, cropping the padding away and bilinear upsampling back to ``(H, W)``.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from explorer.data.datasets import DatasetInfo, get_dataset
from explorer.errors import InputError

IMAGENET_MEAN: Tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: Tuple[float, float, float] = (0.229, 0.224, 0.225)

Size = Tuple[int, int]


def _positive_int(value: Any, what: str) -> int:
    """``value`` as a positive int, or :class:`InputError` naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InputError(f"{what} must be a positive whole number; got {value!r}")
    return value


def _size_pair(value: Any, what: str) -> Size:
    """``value`` as an ``(height, width)`` pair of positive ints (an int means a square)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise InputError(f"{what} must be (height, width); got {value!r}")
    return _positive_int(value[0], f"{what} height"), _positive_int(value[1], f"{what} width")


def _channel_triple(value: Sequence[float], what: str, positive: bool = False) -> Tensor:
    """Three per-channel constants as a (1, 3, 1, 1) float32 tensor."""
    try:
        numbers = [float(v) for v in value]
    except (TypeError, ValueError):
        raise InputError(f"{what} must be three numbers (one per RGB channel); got {value!r}") from None
    if len(numbers) != 3:
        raise InputError(f"{what} must be three numbers (one per RGB channel); got {value!r}")
    if positive and min(numbers) <= 0:
        raise InputError(f"{what} must be positive; got {value!r}")
    return torch.tensor(numbers, dtype=torch.float32).view(1, 3, 1, 1)


class SegmentationModel(nn.Module):
    """Wrap a segmentation network: images in [0, 1] -> logits (N, K, H, W) at input size.

    Args:
        net: the network; called on normalised images, it returns logits as a tensor, a
            dict (torchvision: ``{"out": ...}``), an object with ``.logits`` (transformers)
            or a tuple whose first element is the logits.
        dataset: the :class:`~explorer.data.datasets.DatasetInfo` (or its name) whose classes the
            logits score.
        name: registry name of the model.
        mean, std: per-channel normalisation in [0, 1] units, applied first.
        output_key: key of the logits in a dict output (default: ``.logits``, then ``"out"``).
        input_size: ``(H, W)`` (or one int for a square) the input is resized to, bilinearly.
        size_divisor: zero-pad the (resized) input at the bottom/right to a multiple of this
            (smp encoders need multiples of 32); the padding is cropped off the logits.
        resize_short_side: resize so the shorter side has this length, keeping the aspect
            ratio (torchvision's evaluation transform); exclusive with ``input_size``.

    ``input_size``, ``size_divisor`` and ``resize_short_side`` are plain attributes read on
    every call, so a caller may change the working resolution after loading.  The
    normalisation constants are buffers (they follow ``.to(device)``).
    """

    mean: Tensor
    std: Tensor

    def __init__(self, net: nn.Module, dataset: Union[DatasetInfo, str], name: str,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 output_key: Optional[str] = None, input_size: Optional[Union[int, Sequence[int]]] = None,
                 size_divisor: Optional[int] = None, resize_short_side: Optional[int] = None) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise InputError(f"net must be a torch.nn.Module; got {type(net).__name__}")
        if input_size is not None and resize_short_side is not None:
            raise InputError("give input_size or resize_short_side, not both")
        self.net = net
        self.dataset: DatasetInfo = get_dataset(dataset) if isinstance(dataset, str) else dataset
        if not isinstance(self.dataset, DatasetInfo):
            raise InputError(f"dataset must be a DatasetInfo or a dataset name; got {dataset!r}")
        self.name = str(name)
        self.output_key = output_key
        self.input_size: Optional[Size] = None if input_size is None else _size_pair(input_size, "input_size")
        self.size_divisor = None if size_divisor is None else _positive_int(size_divisor, "size_divisor")
        self.resize_short_side = (None if resize_short_side is None
                                  else _positive_int(resize_short_side, "resize_short_side"))
        self.register_buffer("mean", _channel_triple(mean, "mean"), persistent=False)
        self.register_buffer("std", _channel_triple(std, "std", positive=True), persistent=False)

    # -- dataset metadata --------------------------------------------------------------
    @property
    def class_names(self) -> Tuple[str, ...]:
        """Names of the K classes, in logit order."""
        return self.dataset.class_names

    @property
    def palette(self) -> Tuple[Tuple[int, int, int], ...]:
        """RGB colour of each class, in logit order."""
        return self.dataset.palette

    @property
    def ignore_index(self) -> int:
        """Label value of ignored pixels (255)."""
        return self.dataset.ignore_index

    @property
    def background_class(self) -> Optional[int]:
        """Index of the background class (VOC: 0), or None (Cityscapes)."""
        return self.dataset.background_class

    @property
    def num_classes(self) -> int:
        """K, the number of logit channels."""
        return self.dataset.num_classes

    # -- forward -----------------------------------------------------------------------
    def working_size(self, height: int, width: int) -> Size:
        """Size the network sees for an (height, width) input, before padding."""
        if self.input_size is not None:
            return self.input_size
        if self.resize_short_side is not None:
            short, long = min(height, width), max(height, width)
            new_long = int(self.resize_short_side * long / short)  # as torchvision's resize
            if height <= width:
                return self.resize_short_side, new_long
            return new_long, self.resize_short_side
        return height, width

    def forward(self, images: Tensor) -> Tensor:
        """Logits (N, K, H, W) of images (N, 3, H, W) in [0, 1]."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise InputError(f"{self.name}: images must have shape (N, 3, H, W); got {tuple(images.shape)}")
        height, width = images.shape[-2:]
        x = (images - self.mean) / self.std
        size = self.working_size(height, width)
        if size != (height, width):
            downscale = size[0] < height or size[1] < width
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=downscale)
        pad_h = pad_w = 0
        if self.size_divisor is not None:
            pad_h, pad_w = -size[0] % self.size_divisor, -size[1] % self.size_divisor
            if pad_h or pad_w:
                x = F.pad(x, (0, pad_w, 0, pad_h))
        logits = self._logits(self.net(x))
        if pad_h or pad_w:  # crop the padded border, at the logits' own resolution
            out_h, out_w = logits.shape[-2:]
            keep_h = max(1, round(out_h * size[0] / (size[0] + pad_h)))
            keep_w = max(1, round(out_w * size[1] / (size[1] + pad_w)))
            logits = logits[..., :keep_h, :keep_w]
        if logits.shape[-2:] != (height, width):
            logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
        return logits

    def _logits(self, out: Any) -> Tensor:
        """The logits tensor inside a network's output, checked against the dataset."""
        if self.output_key is not None:
            if not isinstance(out, Mapping) or self.output_key not in out:
                raise InputError(f"{self.name}: the network output has no {self.output_key!r} entry")
            out = out[self.output_key]
        elif hasattr(out, "logits"):
            out = out.logits
        elif isinstance(out, Mapping):
            if "out" not in out:
                raise InputError(f"{self.name}: dict output without 'out'; set output_key "
                                 f"(keys: {sorted(out)})")
            out = out["out"]
        elif isinstance(out, (tuple, list)):
            out = out[0]
        if not isinstance(out, Tensor) or out.dim() != 4:
            raise InputError(f"{self.name}: the network must return (N, K, h, w) logits")
        if out.shape[1] != self.num_classes:
            raise InputError(f"{self.name}: the network returns {out.shape[1]} classes but dataset "
                             f"{self.dataset.name!r} has {self.num_classes}")
        return out

    def extra_repr(self) -> str:
        """Name, dataset and resizing settings, for ``print(model)``."""
        parts = [f"name={self.name!r}", f"dataset={self.dataset.name!r}"]
        if self.input_size is not None:
            parts.append(f"input_size={self.input_size}")
        if self.resize_short_side is not None:
            parts.append(f"resize_short_side={self.resize_short_side}")
        if self.size_divisor is not None:
            parts.append(f"size_divisor={self.size_divisor}")
        return ", ".join(parts)
