"""Pictures and label maps made in memory for the tests: random noise and its encoded files."""
from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image


def encode(picture: Image.Image, fmt: str = "PNG", **options) -> bytes:
    """The bytes of ``picture`` saved in format ``fmt`` (Pillow's ``save`` options pass through)."""
    buffer = io.BytesIO()
    picture.save(buffer, fmt, **options)
    return buffer.getvalue()


def noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    """An (h, w, 3) uint8 picture of uniform noise."""
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def png(h: int = 32, w: int = 48, seed: int = 0) -> bytes:
    """A PNG file of :func:`noise`."""
    return encode(Image.fromarray(noise(h, w, seed)))


def label_png(ids: np.ndarray) -> bytes:
    """A greyscale PNG whose pixel values are the class ids ``ids``."""
    return encode(Image.fromarray(ids.astype(np.uint8), mode="L"))


def assert_valid_picture(tensor):
    """A decoded picture: float32 (3, H, W), finite, in [0, 1]."""
    assert tensor.dtype == torch.float32 and tensor.ndim == 3 and tensor.shape[0] == 3
    assert bool(torch.isfinite(tensor).all()) and 0 <= float(tensor.min()) and float(tensor.max()) <= 1
