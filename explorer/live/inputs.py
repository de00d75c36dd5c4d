"""The app's uploads: decoded once, however often the page previews them.

The decoding itself — limits, formats, layouts, label-map readings — is
:mod:`explorer.data.decode`, shared with the notebooks and the benchmark's folders.  Here an
upload given as file bytes or a path is decoded once and remembered by the sha256 of its
bytes (the app previews the scene on every change); an array (the API, notebooks) goes
straight through.
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any, Callable, Tuple

import numpy as np
from torch import Tensor

from explorer.data.datasets import DatasetInfo
from explorer.data.decode import (
    decode_image_file,
    decode_label_file,
    image_from_array,
    is_file_upload,
    label_map_from_array,
    read_upload,
    resize_notice,
)

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
    :func:`explorer.data.decode.decode_image_file` (cached), an array by
    :func:`explorer.data.decode.image_from_array`."""
    if is_file_upload(upload):
        return _cached_decode("picture", upload, decode_image_file)
    return image_from_array(upload)


def decode_target_map(target_map: Any, dataset: DatasetInfo, size: Tuple[int, int]) -> Tuple[Tensor, str]:
    """An uploaded target label map as (H, W) class ids at the image's ``size``, with a notice:
    a file through :func:`explorer.data.decode.decode_label_file` (cached), an array through
    :func:`explorer.data.decode.label_map_from_array`.  Either way it is sampled to ``size``
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
