"""Decoding uploaded picture files in our own code, with limits, for the app and the API.

An upload is untrusted bytes.  :func:`decode_image_file` turns it into the (3, H, W) float
tensor in [0, 1] the attacks work on, or raises :class:`~explorer.errors.InputError` with
a message a person can act on — never another exception, whatever the bytes are (the
test suite fuzzes it).  :func:`decode_label_file` does the same for an uploaded label map.

The guards, and what each protects against:

* **file size** (:data:`MAX_UPLOAD_BYTES`): a huge upload would be read into memory;
  it is refused before it is read.
* **formats** (:data:`ALLOWED_FORMATS`): Pillow can open dozens of formats, some through
  external programs (EPS runs Ghostscript) or rarely exercised parsers; only common
  raster formats are tried, so an upload can never make the server run a program.
* **pixel count** (:data:`MAX_DECODE_PIXELS`): a few kilobytes of PNG can declare a
  100 000 × 100 000 picture (a "decompression bomb") that would take gigabytes once
  decoded; the size in the header is checked before any pixel is decoded.
* **corrupt or truncated data**: Pillow raises many exception types on bad data
  (OSError, SyntaxError, ValueError, struct.error, EOFError, ...); all of them become
  one InputError saying the file is not a readable picture.
* **layouts**: EXIF orientation is applied (a phone photo is attacked the way it is
  shown); transparency is composited onto white (what a browser shows); palette,
  grey, 1-bit, CMYK, YCbCr, LAB and HSV become RGB; 16-bit and 32-bit integer pictures
  are scaled by their full range, not clipped at 255.  Every change is named in the
  returned notice.
* **size**: pictures larger than :data:`explorer.live.MAX_IMAGE_SIDE` are downscaled
  (area averaging, with a notice) while still integers, so a large photo never exists as
  float32 at full size (JPEGs are even decoded at a reduced scale); pictures smaller than :data:`explorer.live.MIN_IMAGE_SIDE` are
  refused (see :func:`explorer.live.image_from_array`, which finishes the job).
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import List, Tuple, Union

import numpy as np
from PIL import Image, ImageOps
from torch import Tensor

from explorer.errors import InputError

#: uploads larger than this are refused unread (the app's upload limit is the same)
MAX_UPLOAD_BYTES = 20 * 2 ** 20
#: pictures declaring more pixels than this are refused before decoding (about 40 megapixels)
MAX_DECODE_PIXELS = 40_000_000
#: the only formats Pillow is allowed to try
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")

Source = Union[bytes, bytearray, memoryview, str, os.PathLike]


def read_upload(source: Source, max_bytes: int = MAX_UPLOAD_BYTES) -> bytes:
    """The bytes of an upload given as bytes or a file path, refusing empty or too large files
    (the size of a path is checked before reading it)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            size = path.stat().st_size
            if size > max_bytes:
                raise InputError(f"the file is {size / 2 ** 20:.1f} MiB; uploads are limited to "
                                 f"{max_bytes / 2 ** 20:.0f} MiB")
            with open(path, "rb") as handle:
                data = handle.read(max_bytes + 1)
        except OSError as error:
            raise InputError(f"cannot read the uploaded file ({error.strerror or error})") from None
    else:
        raise InputError(f"an upload must be file bytes or a file path; got {type(source).__name__}")
    if not data:
        raise InputError("the uploaded file is empty")
    if len(data) > max_bytes:
        raise InputError(f"the file is {len(data) / 2 ** 20:.1f} MiB; uploads are limited to "
                         f"{max_bytes / 2 ** 20:.0f} MiB")
    return data


def _open(data: bytes, what: str) -> Image.Image:
    """Open (header only) within the allowed formats and check the declared size."""
    try:
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError:
        raise InputError(f"the {what} declares too many pixels to decode safely "
                         f"(limit {MAX_DECODE_PIXELS / 1e6:.0f} megapixels)") from None
    except Exception:  # UnidentifiedImageError, and whatever a damaged header makes a plugin raise
        raise InputError(f"the {what} file is not a picture this app can read (use PNG, JPEG, WebP, "
                         f"BMP, TIFF or GIF), or it is damaged") from None
    w, h = image.size
    if w * h > MAX_DECODE_PIXELS:
        raise InputError(f"the {what} is {w}×{h} pixels ({w * h / 1e6:.0f} megapixels); pictures are "
                         f"limited to {MAX_DECODE_PIXELS / 1e6:.0f} megapixels")
    if w < 1 or h < 1:
        raise InputError(f"the {what} has no pixels ({w}×{h})")
    return image


def _decoded(image: Image.Image, what: str, notices: List[str]) -> Image.Image:
    """The first frame, fully decoded, turned upright by its EXIF orientation."""
    try:
        image.seek(0)
        image.load()
    except Exception:  # truncated data, bad chunks or checksums, decoder errors, ...
        raise InputError(f"the {what} is damaged or truncated and cannot be decoded") from None
    try:
        upright = ImageOps.exif_transpose(image)
    except Exception:  # an unreadable EXIF block is not worth refusing the picture for
        notices.append("its EXIF orientation could not be read: shown as stored")
        return image
    if _orientation(image) not in (None, 1):
        notices.append("turned upright by its EXIF orientation")
    return upright if upright is not None else image


def _orientation(image: Image.Image):
    try:
        return image.getexif().get(0x0112)
    except Exception:
        return None


def _on_white(rgba: Image.Image, notices: List[str]) -> Image.Image:
    """Composite onto white when any pixel is transparent; drop an opaque alpha silently."""
    alpha = rgba.getchannel("A")
    if alpha.getextrema()[0] < 255:
        notices.append("transparent areas composited onto white")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return rgba.convert("RGB")


#: single-channel modes deeper than 8 bits (kept deep until scaled to [0, 1])
_DEEP_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def _to_rgb_array(image: Image.Image, notices: List[str]) -> np.ndarray:
    """(H, W, 3) uint8, or (H, W) uint16 / float32 for deep grey pictures."""
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        notices.append("16-bit picture scaled to [0, 1] by its full range")
        return np.asarray(image).astype(np.uint16)
    if mode == "I":
        values = np.asarray(image)
        notices.append("32-bit integer picture read as 16-bit (values clipped to 0..65535)")
        return np.clip(values, 0, 65535).astype(np.uint16)
    if mode == "F":
        return np.asarray(image, dtype=np.float32)  # checked for NaN and scaled by image_from_array
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info):
        return np.asarray(_on_white(image.convert("RGBA"), notices))
    if mode not in ("RGB", "L", "P", "1"):
        notices.append(f"converted from {mode} to RGB")
    return np.asarray(image.convert("RGB"))


def _shrink(image: Image.Image, original: Tuple[int, int], notices: List[str]) -> Image.Image:
    """Downscale a picture beyond the side limit here, by area, before it becomes floats
    (``original`` is its upright size before any JPEG draft reduction, for the notice)."""
    from explorer.live import MAX_IMAGE_SIDE, downscaled_size

    w, h = image.size
    if max(w, h) <= MAX_IMAGE_SIDE:
        return image
    new_h, new_w = downscaled_size(*original[::-1])
    notices.append(f"downscaled from {original[0]}×{original[1]} to {new_w}×{new_h} "
                   f"(limit {MAX_IMAGE_SIDE} px a side)")
    return image.resize((new_w, new_h), Image.Resampling.BOX)


def decode_image_file(source: Source, max_bytes: int = MAX_UPLOAD_BYTES) -> Tuple[Tensor, str]:
    """An uploaded picture file (bytes or path) as a (3, H, W) float tensor in [0, 1], with a
    notice naming what was changed ("" when nothing was).  Raises :class:`InputError` for
    anything that is not a readable picture within the limits (see the module docstring)."""
    from explorer.live import MAX_IMAGE_SIDE, MIN_IMAGE_SIDE, image_from_array

    data = read_upload(source, max_bytes)
    notices: List[str] = []
    with _open(data, "picture") as image:
        declared = image.size
        if image.format == "JPEG":  # let the decoder skip detail the downscale would average away
            image.draft("RGB", (MAX_IMAGE_SIDE, MAX_IMAGE_SIDE))
        upright = _decoded(image, "picture", notices)
        same_way = (upright.size[0] >= upright.size[1]) == (declared[0] >= declared[1])
        original = declared if same_way else declared[::-1]
        if min(original) < MIN_IMAGE_SIDE:  # before any downscale could pad it up to the minimum
            raise InputError(f"the image is {original[0]}×{original[1]} pixels; it must be at least "
                             f"{MIN_IMAGE_SIDE} on each side")
        try:
            if upright.mode in _DEEP_MODES:  # one channel of 16/32 bits: shrink before it becomes floats
                array = _to_rgb_array(_shrink(upright, original, notices), notices)
            else:
                array = np.asarray(_shrink(Image.fromarray(_to_rgb_array(upright, notices)), original, notices))
        except Exception:  # a decoder that accepted the data but cannot convert it
            raise InputError("the picture is damaged and cannot be converted to RGB") from None
    tensor, notice = image_from_array(array)  # checks the values, replicates grey, scales to [0, 1]
    return tensor, "; ".join([*notices, notice] if notice else notices)


def decode_label_file(source: Source, max_bytes: int = MAX_UPLOAD_BYTES) -> np.ndarray:
    """An uploaded label map file as an array for :func:`explorer.live.label_map_from_array`:
    (H, W) integer class ids for palette, grey and 16-bit pictures (pixel values are the
    ids), (H, W, 3) uint8 colours for RGB(A) pictures (read through the dataset palette).
    Same guards as :func:`decode_image_file`; nothing is resized here."""
    data = read_upload(source, max_bytes)
    with _open(data, "label map") as image:
        upright = _decoded(image, "label map", [])
        try:
            if upright.mode in ("P", "L", "1", "I", "I;16", "I;16L", "I;16B", "I;16N"):
                return np.asarray(upright).astype(np.int64)
            return np.asarray(upright.convert("RGB"))
        except Exception:
            raise InputError("the label map is damaged and cannot be read") from None
