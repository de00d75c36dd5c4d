"""Every untrusted picture and label map, decoded in one place: uploads, API arrays, benchmark folders.

An upload is untrusted bytes.  :func:`decode_image_file` turns it into the (3, H, W) float
tensor in [0, 1] the attacks work on, and :func:`decode_label_file` turns a label map into
(H, W) int64 class ids of a dataset; both raise :class:`~explorer.errors.InputError` with a
message a person can act on — never another exception, whatever the bytes are (the test
suite fuzzes them).  :func:`image_from_array` and :func:`label_map_from_array` do the same
for arrays (the API, notebooks).  The app, the notebooks and the benchmark's folder source
all decode through these four functions.

The guards, and what each protects against:

* **file size** (:data:`MAX_UPLOAD_BYTES`): a huge upload would be read into memory;
  it is refused before it is read.
* **formats** (:data:`ALLOWED_FORMATS`): Pillow can open dozens of formats, some through
  external programs (EPS runs Ghostscript) or rarely exercised parsers; only common
  raster formats are tried, so an upload can never make the server run a program.
* **pixel count** (:data:`MAX_DECODE_PIXELS`): a few kilobytes of PNG can declare a
  100 000 × 100 000 picture (a "decompression bomb") that would take gigabytes once
  decoded; the size in the header is checked before any pixel is decoded.
* **cost bounded by the working size, not the file**: a picture is shrunk while it is
  still 8-bit (JPEGs are even decoded at a reduced scale) and becomes float32 only at the
  size the attack works at; a label map stays in its narrowest integer type at full size
  and is sampled (nearest neighbour) to the image's size *before* it is widened to int64.
  So a 128 KB label PNG declaring 6300 × 6300 costs its 40 MB of 8-bit pixels, not the
  1.6 GB of an int64 copy.  Benchmark: ``python -m explorer.data.decode`` prints the peak
  memory and time of the worst upload of each kind.
* **corrupt or truncated data**: Pillow raises many exception types on bad data
  (OSError, SyntaxError, ValueError, struct.error, EOFError, ...); all of them become
  one InputError saying the file is not a readable picture.
* **layouts**: EXIF orientation is applied (a phone photo is attacked the way it is
  shown); transparency is composited onto white (what a browser shows); palette,
  grey, 1-bit, CMYK, YCbCr, LAB and HSV become RGB; 16-bit and 32-bit integer pictures
  are scaled by their full range, not clipped at 255.  Every change is named in the
  returned notice.
* **label maps**: pixel values are class ids (grey, 16-bit, float TIFF of whole numbers,
  grey + alpha) or colours of the dataset's palette (RGB, RGBA).  A palette PNG whose
  palette holds the dataset's colours — what an image editor writes after painting with
  them — is read by its colours, not by its palette indices (which the editor numbers
  as it likes); a palette PNG written with the dataset's palette at the class ids (the
  shipped samples) reads the same either way.  Transparent pixels are ignored.
* **size**: pictures larger than :data:`MAX_IMAGE_SIDE` are downscaled (area averaging,
  with a notice); pictures smaller than :data:`MIN_IMAGE_SIDE` are refused.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor

from explorer.data.datasets import IGNORE_COLOUR, IGNORE_INDEX, DatasetInfo
from explorer.errors import InputError
from explorer.targets import resize_label_map

#: uploads larger than this are refused unread (the app's upload limit is the same)
MAX_UPLOAD_BYTES = 20 * 2 ** 20
#: pictures declaring more pixels than this are refused before decoding (about 40 megapixels)
MAX_DECODE_PIXELS = 40_000_000
#: the only formats Pillow is allowed to try
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")
#: uploaded images larger than this (either side) are downscaled, with a notice
MAX_IMAGE_SIDE = 1024
#: uploaded images smaller than this (either side) are refused
MIN_IMAGE_SIDE = 16

Source = Union[bytes, bytearray, memoryview, str, os.PathLike]


def is_file_upload(upload) -> bool:
    """True for an upload given as file bytes or a file path (decoded here), False for an array."""
    return isinstance(upload, (bytes, bytearray, memoryview, str, os.PathLike))


def read_upload(source: Source, max_bytes: Optional[int] = MAX_UPLOAD_BYTES) -> bytes:
    """The bytes of an upload given as bytes or a file path, refusing empty or too large files
    (the size of a path is checked before reading it; ``max_bytes=None`` means no limit,
    for the benchmark's local folders)."""
    limit = max_bytes if max_bytes is not None else float("inf")
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            size = path.stat().st_size
            if size > limit:
                raise InputError(f"the file is {size / 2 ** 20:.1f} MiB; uploads are limited to "
                                 f"{max_bytes / 2 ** 20:.0f} MiB")
            with open(path, "rb") as handle:
                data = handle.read() if max_bytes is None else handle.read(max_bytes + 1)
        except OSError as error:
            raise InputError(f"cannot read the file {path.name!r} ({error.strerror or error})") from None
    else:
        raise InputError(f"an upload must be file bytes or a file path; got {type(source).__name__}")
    if not data:
        raise InputError("the uploaded file is empty")
    if len(data) > limit:
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
    if _orientation(image) in (None, 1):
        return image  # upright already (exif_transpose would copy it for nothing)
    try:
        upright = ImageOps.exif_transpose(image)
    except Exception:  # an unreadable EXIF block is not worth refusing the picture for
        notices.append("its EXIF orientation could not be read: shown as stored")
        return image
    notices.append("turned upright by its EXIF orientation")
    return upright if upright is not None else image


def _orientation(image: Image.Image):
    try:
        return image.getexif().get(0x0112)
    except Exception:
        return None


# --------------------------------------------------------------------------- pictures

def downscaled_size(h: int, w: int, max_side: Optional[int] = MAX_IMAGE_SIDE) -> Tuple[int, int]:
    """(H', W') of an (h, w) picture shrunk so its longer side is ``max_side`` (neither side
    below :data:`MIN_IMAGE_SIDE`); unchanged when it already fits or ``max_side`` is None."""
    if max_side is None or max(h, w) <= max_side:
        return h, w
    scale = max_side / max(h, w)
    return max(MIN_IMAGE_SIDE, round(h * scale)), max(MIN_IMAGE_SIDE, round(w * scale))


def image_from_array(array, max_side: Optional[int] = MAX_IMAGE_SIDE) -> Tuple[Tensor, str]:
    """A picture given as an (H, W), (H, W, 1|3|4) uint8/uint16/float array as a (3, H, W)
    float tensor in [0, 1]; returns it with a notice ("" when nothing was changed).

    Grey is replicated, alpha dropped, 16-bit scaled, floats above 1 read as 0..255;
    images larger than ``max_side`` are downscaled (area) with a notice; smaller than
    :data:`MIN_IMAGE_SIDE` refused.
    """
    if array is None:
        raise InputError("no image: pick a sample or upload a picture")
    a = np.asarray(array)
    if a.dtype == object or a.ndim not in (2, 3) or a.size == 0:
        raise InputError(f"the image must be an (H, W) or (H, W, C) picture; got shape {a.shape}")
    if a.ndim == 2:
        a = a[:, :, None]
    if a.shape[2] not in (1, 3, 4):
        raise InputError(f"the image must have 1, 3 or 4 channels; got {a.shape[2]}")
    h, w = a.shape[:2]
    if min(h, w) < MIN_IMAGE_SIDE:
        raise InputError(f"the image is {w}×{h} pixels; it must be at least {MIN_IMAGE_SIDE} on each side")
    if a.dtype == np.uint8:
        scale = 255.0
    elif a.dtype == np.uint16:
        scale = 65535.0
    elif np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise InputError("the image contains NaN or infinite values")
        scale = 255.0 if a.max() > 1.0 + 1e-6 else 1.0
    else:
        raise InputError(f"unsupported image data type {a.dtype}; use uint8, uint16 or floats")
    channels = a[:, :, :3] if a.shape[2] >= 3 else a
    x = torch.from_numpy(np.ascontiguousarray(channels.transpose(2, 0, 1)).astype(np.float32) / scale)
    x = x.clamp_(0, 1).expand(3, h, w) if x.shape[0] == 1 else x.clamp_(0, 1)
    notice = ""
    size = downscaled_size(h, w, max_side)
    if size != (h, w):
        x = torch.nn.functional.interpolate(x[None], size=size, mode="area")[0].clamp(0, 1)
        notice = f"image downscaled from {w}×{h} to {size[1]}×{size[0]} (limit {max_side} px a side)"
    return x.contiguous(), notice


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


def _deep_array(image: Image.Image, notices: List[str]) -> np.ndarray:
    """(H, W) uint16 or float32 values of a deep grey picture (scaled by :func:`image_from_array`)."""
    if image.mode == "F":
        return np.asarray(image, dtype=np.float32)  # checked for NaN and scaled by image_from_array
    if image.mode == "I":
        notices.append("32-bit integer picture read as 16-bit (values clipped to 0..65535)")
        return np.clip(np.asarray(image), 0, 65535).astype(np.uint16)
    notices.append("16-bit picture scaled to [0, 1] by its full range")
    return np.asarray(image).astype(np.uint16)


def _colour_image(image: Image.Image, notices: List[str]) -> Image.Image:
    """An 8-bit picture as RGB, or as RGBA when it may be transparent (composited after the
    shrink: area averaging in premultiplied alpha commutes with compositing onto white)."""
    mode = image.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info):
        return image if mode == "RGBA" else image.convert("RGBA")
    if mode not in ("RGB", "L", "P", "1"):
        notices.append(f"converted from {mode} to RGB")
    return image if mode == "RGB" else image.convert("RGB")


def _shrink(image: Image.Image, original: Tuple[int, int], max_side: Optional[int],
            notices: List[str]) -> Image.Image:
    """Downscale a picture beyond the side limit here, by area, before it becomes floats
    (``original`` is its upright size before any JPEG draft reduction, for the notice)."""
    w, h = image.size
    if max_side is None or max(w, h) <= max_side:
        return image
    new_h, new_w = downscaled_size(original[1], original[0], max_side)
    notices.append(f"downscaled from {original[0]}×{original[1]} to {new_w}×{new_h} "
                   f"(limit {max_side} px a side)")
    return image.resize((new_w, new_h), Image.Resampling.BOX)


def decode_image_file(source: Source, max_bytes: Optional[int] = MAX_UPLOAD_BYTES,
                      max_side: Optional[int] = MAX_IMAGE_SIDE) -> Tuple[Tensor, str]:
    """A picture file (bytes or path) as a (3, H, W) float tensor in [0, 1], with a notice
    naming what was changed ("" when nothing was).  Raises :class:`InputError` for anything
    that is not a readable picture within the limits (see the module docstring).
    ``max_side=None`` keeps the full resolution (the benchmark's folders)."""
    data = read_upload(source, max_bytes)
    notices: List[str] = []
    with _open(data, "picture") as image:
        declared = image.size
        if image.format == "JPEG" and max_side is not None:  # skip detail the downscale would average away
            image.draft("RGB", (max_side, max_side))
        upright = _decoded(image, "picture", notices)
        same_way = (upright.size[0] >= upright.size[1]) == (declared[0] >= declared[1])
        original = declared if same_way else declared[::-1]
        if min(original) < MIN_IMAGE_SIDE:  # before any downscale could pad it up to the minimum
            raise InputError(f"the image is {original[0]}×{original[1]} pixels; it must be at least "
                             f"{MIN_IMAGE_SIDE} on each side")
        try:  # shrink while the pixels are 8 or 16 bits, before anything becomes floats
            if upright.mode in _DEEP_MODES:
                array = _deep_array(_shrink(upright, original, max_side, notices), notices)
            else:
                small = _shrink(_colour_image(upright, notices), original, max_side, notices)
                array = np.asarray(_on_white(small, notices) if small.mode == "RGBA" else small)
        except Exception:  # a decoder that accepted the data but cannot convert it
            raise InputError("the picture is damaged and cannot be converted to RGB") from None
    tensor, notice = image_from_array(array, max_side)  # checks the values, replicates grey, scales to [0, 1]
    return tensor, "; ".join([*notices, notice] if notice else notices)


# --------------------------------------------------------------------------- label maps

def _nearest_indices(length: int, new_length: int) -> np.ndarray:
    """Source index of each of ``new_length`` samples of ``length`` by
    :func:`explorer.targets.resize_label_map`'s nearest-neighbour rule (the one rule for label maps)."""
    return resize_label_map(torch.arange(length)[None, :], (1, new_length))[0].numpy()


def _sample_nearest(array: np.ndarray, size: Optional[Sequence[int]]) -> np.ndarray:
    """``array`` (H, W[, C]) sampled to ``size`` (H', W') by nearest neighbour, keeping its dtype."""
    if size is None or tuple(array.shape[:2]) == tuple(size):
        return array
    rows, cols = _nearest_indices(array.shape[0], size[0]), _nearest_indices(array.shape[1], size[1])
    return array[rows[:, None], cols[None, :]]


def _picture_values(image: Image.Image, size: Optional[Sequence[int]]) -> np.ndarray:
    """The pixel values of a decoded picture as an array, sampled to ``size`` by nearest
    neighbour one row at a time, so no full-size copy is made beside Pillow's own."""
    if size is None or (image.size[1], image.size[0]) == tuple(size):
        return np.asarray(image)
    w, h = image.size
    rows, cols = _nearest_indices(h, size[0]), _nearest_indices(w, size[1])
    return np.stack([np.asarray(image.crop((0, int(r), w, int(r) + 1)))[0][cols] for r in rows])


def resize_notice(shape: Sequence[int], size: Optional[Sequence[int]]) -> str:
    """The notice for a label map of ``shape`` (H, W) sampled to the image's ``size`` ("" if the same)."""
    if size is None or tuple(shape) == tuple(size):
        return ""
    return (f"the label map ({shape[1]}×{shape[0]}) was resized to the image ({size[1]}×{size[0]}) "
            f"with nearest neighbour")


def _colour_codes(rgb: np.ndarray) -> np.ndarray:
    """One int32 per colour: ``r << 16 | g << 8 | b``."""
    rgb = rgb.astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def _ids_of_colours(rgb: np.ndarray, dataset: DatasetInfo) -> np.ndarray:
    """(H, W) class ids of (H, W, 3) colours through the dataset's palette (others: ignored)."""
    codes = _colour_codes(rgb)
    out = np.full(codes.shape, IGNORE_INDEX, np.int64)
    for k, colour in enumerate(dataset.palette):
        out[codes == int(_colour_codes(np.asarray(colour))[()])] = k
    return out


def _whole_ids(values: np.ndarray) -> np.ndarray:
    """Class ids of a numeric single-channel map (whole numbers only; negative or huge ones
    become ignored), as int64."""
    if values.dtype == bool:
        return values.astype(np.int64)
    if np.issubdtype(values.dtype, np.floating):
        if not np.isfinite(values).all():
            raise InputError("the label map contains NaN or infinite values; it must hold whole class ids")
        if not np.all(np.mod(values, 1) == 0):
            raise InputError("a single-channel label map must hold whole class ids (it has fractions)")
        values = np.where((values >= 0) & (values < 2 ** 31), values, IGNORE_INDEX)
    elif not np.issubdtype(values.dtype, np.integer):
        raise InputError(f"unsupported label map data type {values.dtype}")
    return np.where(values >= 0, values, IGNORE_INDEX).astype(np.int64)


def label_map_from_array(array, dataset: DatasetInfo, size: Optional[Sequence[int]] = None) -> Tensor:
    """A label map given as an array, as (H, W) int64 class ids of ``dataset`` (or (H', W')
    when ``size`` is given: sampled by nearest neighbour before anything is widened).

    A single-channel map (grey, 16-bit, whole-number floats) holds class ids; an (H, W, 2)
    map is grey + alpha; an (H, W, 3|4) map holds colours, read through the dataset's
    palette (colours not in it, and transparent pixels, become ignored: 255).
    """
    if array is None:
        raise InputError("no label map uploaded")
    a = np.asarray(array)
    if a.dtype == object or a.size == 0:
        raise InputError(f"a label map must be a numeric (H, W) or (H, W, 3) array; got {a.dtype} {a.shape}")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (2, 3, 4)):
        raise InputError(f"a label map must be (H, W) class ids, (H, W, 2) ids + alpha or an (H, W, 3|4) "
                         f"palette picture; got shape {a.shape}")
    a = _sample_nearest(a, size)
    if a.ndim == 2:
        return torch.from_numpy(_whole_ids(a))
    transparent = a[:, :, -1] == 0 if a.shape[2] in (2, 4) else None
    if a.shape[2] == 2:
        ids = _whole_ids(a[:, :, 0])
    else:
        if a.dtype != np.uint8:
            raise InputError(f"a colour label map must be 8-bit (uint8); got {a.dtype}")
        ids = _ids_of_colours(a[:, :, :3], dataset)
    if transparent is not None:
        ids[transparent] = IGNORE_INDEX
    return torch.from_numpy(ids)


#: colours an editor uses for unlabelled pixels besides the dataset's own ignore colour
_VOID_COLOURS = ((0, 0, 0), (255, 255, 255), IGNORE_COLOUR)


def _palette_by_colour(image: Image.Image, used: np.ndarray, dataset: DatasetInfo) -> Optional[np.ndarray]:
    """For a palette picture: a 256-entry index → class id table when its palette holds the
    dataset's colours and its indices are not already the class ids; None to read indices."""
    palette = np.asarray(image.getpalette() or [], np.uint8)
    palette = np.resize(palette, 768).reshape(256, 3) if palette.size else np.zeros((256, 3), np.uint8)
    by_colour = _ids_of_colours(palette[None], dataset)[0]
    known = by_colour[used] != IGNORE_INDEX
    if not known.any():
        return None
    if not all(k or tuple(int(v) for v in palette[i]) in _VOID_COLOURS for k, i in zip(known, used)):
        return None  # arbitrary colours: the indices are the ids
    by_index = np.where(np.arange(256) < dataset.num_classes, np.arange(256), IGNORE_INDEX)
    if np.array_equal(by_colour[used], by_index[used]):
        return None  # written with the dataset's palette at the class ids: both readings agree
    return by_colour


def decode_label_file(source: Source, dataset: DatasetInfo, size: Optional[Sequence[int]] = None,
                      max_bytes: Optional[int] = MAX_UPLOAD_BYTES) -> Tuple[Tensor, str]:
    """A label map file (bytes or path) as (H, W) int64 class ids of ``dataset`` — (H', W')
    when ``size`` is given, sampled by nearest neighbour while the pixels are still in their
    file's narrow type — with a notice saying how it was read ("" for plain class ids).
    Same guards as :func:`decode_image_file`; the readings are in the module docstring."""
    data = read_upload(source, max_bytes)
    notices: List[str] = []
    with _open(data, "label map") as image:
        upright = _decoded(image, "label map", notices)
        notices.append(resize_notice(upright.size[::-1], size))
        try:
            mode = upright.mode
            if mode == "P":
                indices = _picture_values(upright, size)
                used = np.flatnonzero(np.bincount(indices.ravel(), minlength=256))
                table = _palette_by_colour(upright, used, dataset)
                transparency = upright.info.get("transparency")
                if table is None:
                    ids = _whole_ids(indices)
                else:
                    ids = table[indices]
                    notices.append("palette PNG read by its colours (its palette holds the "
                                   f"{dataset.name} colours)")
                if isinstance(transparency, int):
                    ids[indices == transparency] = IGNORE_INDEX
                return torch.from_numpy(ids), "; ".join(filter(None, notices))
            if mode in ("L", "1", "I", "F", "I;16", "I;16L", "I;16B", "I;16N", "LA", "RGB", "RGBA"):
                values = _picture_values(upright, size)
            else:  # CMYK, YCbCr, ...: colours
                values = _picture_values(upright.convert("RGB"), size)
        except InputError:
            raise
        except Exception:
            raise InputError("the label map is damaged and cannot be read") from None
    if values.ndim == 3 and values.shape[2] >= 3:
        notices.append(f"colours read through the {dataset.name} palette (other colours ignored)")
    return label_map_from_array(values, dataset), "; ".join(filter(None, notices))


# --------------------------------------------------------------------------- benchmark

def _upload_benchmark() -> None:
    """Print the peak memory and time of the worst upload of each kind (``python -m explorer.data.decode``).

    Each file is made here, then decoded in a fresh process that reads it, resets its peak
    resident memory (Linux: ``/proc/self/clear_refs``), decodes as the app does (the picture
    at :data:`MAX_IMAGE_SIDE`, the label map to a 1024 × 1024 image) and prints the peak
    added and the time taken."""
    import subprocess
    import sys
    import tempfile

    cases = {
        "picture: 40 MP RGB PNG": Image.new("RGB", (7900, 5000), (10, 200, 30)),
        "picture: 40 MP RGBA PNG (transparent)": Image.new("RGBA", (7900, 5000), (10, 200, 30, 0)),
        "picture: 40 MP 16-bit grey PNG": Image.new("I;16", (7900, 5000), 300),
        "picture: 40 MP JPEG": Image.new("RGB", (7900, 5000), (10, 200, 30)),
        "label map: 6300x6300 palette PNG": Image.new("P", (6300, 6300), 7),
        "label map: 6300x6300 RGB PNG": Image.new("RGB", (6300, 6300), (0, 0, 142)),
        "label map: 6300x6300 float TIFF": Image.new("F", (6300, 6300), 7.0),
    }
    child = """
import sys, time
from explorer.data.datasets import DATASETS
from explorer.data.decode import decode_image_file, decode_label_file

def rss_kib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])

data = open(sys.argv[1], "rb").read()
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current size
base = rss_kib("VmRSS:")
start = time.perf_counter()
if sys.argv[2] == "picture":
    decode_image_file(data)
else:
    decode_label_file(data, DATASETS["cityscapes"], size=(1024, 1024))
took = time.perf_counter() - start
print(len(data), took, (rss_kib("VmHWM:") - base) / 1024)
"""
    print(f"{'upload':40s} {'file':>9s} {'time':>7s} {'peak memory added':>18s}")
    with tempfile.TemporaryDirectory() as folder:
        for name, image in cases.items():
            path = Path(folder) / "upload"
            if image.mode == "F":
                image.save(path, "TIFF", compression="tiff_deflate")
            else:
                image.save(path, "JPEG" if "JPEG" in name else "PNG")
            done = subprocess.run([sys.executable, "-c", child, str(path), name.split(":")[0]],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                print(f"{name:40s} failed: {done.stderr.strip().splitlines()[-1]}")
                continue
            size, took, added = done.stdout.split()
            print(f"{name:40s} {int(size) / 1024:8.0f}K {float(took):6.2f}s {float(added):14.0f} MiB")


if __name__ == "__main__":
    _upload_benchmark()
