"""Decoding uploaded pictures and label maps (explorer.data.decode, issue 13): every layout
becomes RGB in [0, 1], label maps are read as the user meant (ids or the dataset's colours),
at a cost bounded by the size the app works at."""
import tracemalloc

import numpy as np
import pytest
import torch
from pictures import encode
from PIL import Image

from explorer.data.datasets import get_dataset
from explorer.data.decode import (
    MAX_IMAGE_SIDE,
    decode_image_file,
    decode_label_file,
    image_from_array,
    label_map_from_array,
)
from explorer.data.samples import save_label_png
from explorer.errors import InputError
from explorer.targets import resize_label_map

CITYSCAPES = get_dataset("cityscapes")
VOC = get_dataset("voc")
ROAD, CAR = 0, 13


def palette_png(indices: np.ndarray, colours) -> bytes:
    """A palette PNG: pixel values ``indices``, palette entry i = ``colours[i]``."""
    image = Image.fromarray(indices.astype(np.uint8), mode="P")
    flat = [v for c in colours for v in c]
    image.putpalette(flat + [0] * (768 - len(flat)))
    return encode(image)


# ----------------------------------------------------------------------------- arrays

def test_uploaded_pictures_of_every_layout_become_rgb_in_unit_range():
    grey = np.full((20, 30), 51, np.uint8)
    x, notice = image_from_array(grey)
    assert x.shape == (3, 20, 30) and torch.allclose(x, torch.full_like(x, 0.2)) and notice == ""
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 7
    x, _ = image_from_array(rgba)
    assert x.shape == (3, 20, 30) and (x[0] == 1).all() and (x[1:] == 0).all()
    x, _ = image_from_array(np.full((20, 30, 3), 65535, np.uint16))
    assert (x == 1).all()
    x, _ = image_from_array(np.full((20, 30, 3), 127.5, np.float64))  # 0-255 floats
    assert torch.allclose(x, torch.full_like(x, 0.5))


def test_huge_images_are_downscaled_with_a_notice_and_tiny_ones_refused():
    x, notice = image_from_array(np.zeros((MAX_IMAGE_SIDE * 2, 100, 3), np.uint8))
    assert max(x.shape[1:]) == MAX_IMAGE_SIDE and "downscaled" in notice
    with pytest.raises(InputError, match="at least"):
        image_from_array(np.zeros((8, 100, 3), np.uint8))
    with pytest.raises(InputError, match="NaN"):
        image_from_array(np.full((20, 20, 3), np.nan))
    with pytest.raises(InputError, match="channels"):
        image_from_array(np.zeros((20, 20, 2), np.uint8))


def test_label_maps_read_as_ids_or_through_the_palette():
    voc = get_dataset("voc")
    ids = label_map_from_array(np.array([[0, 15], [255, 3]], np.uint8), voc)
    assert ids.tolist() == [[0, 15], [255, 3]]
    rgb = np.array([[voc.palette[15], voc.palette[0]], [(1, 2, 3), voc.palette[20]]], np.uint8)
    assert label_map_from_array(rgb, voc).tolist() == [[15, 0], [255, 20]]


# ----------------------------------------------------------------------------- files

def test_a_palette_png_painted_with_the_dataset_colours_is_read_by_colour():
    # what an editor writes: its own index order (0 = car colour, 1 = road colour)
    indices = np.array([[0, 1, 1], [1, 0, 0]] * 8)
    ids, notice = decode_label_file(palette_png(indices, [CITYSCAPES.palette[CAR], CITYSCAPES.palette[ROAD]]),
                                    CITYSCAPES)
    assert (ids[indices == 0] == CAR).all() and (ids[indices == 1] == ROAD).all()
    assert "colours" in notice
    # with a black "unlabelled" entry as well
    ids, _ = decode_label_file(palette_png(np.array([[0, 1, 2]] * 16), [(0, 0, 0), CITYSCAPES.palette[CAR],
                                                                       CITYSCAPES.palette[ROAD]]), CITYSCAPES)
    assert ids[0].tolist() == [255, CAR, ROAD]


def test_a_palette_png_of_class_ids_reads_as_ids(tmp_path):
    labels = np.array([[CAR, ROAD, 255, 5]] * 16)
    save_label_png(labels, tmp_path / "ids.png", CITYSCAPES.palette_array())  # the samples' format
    ids, notice = decode_label_file(tmp_path / "ids.png", CITYSCAPES)
    assert ids.tolist() == labels.tolist() and "colours" not in notice
    grey_ramp = [(i, i, i) for i in range(256)]  # a palette unrelated to the dataset: indices are the ids
    ids, _ = decode_label_file(palette_png(np.array([[CAR, ROAD]] * 16), grey_ramp), CITYSCAPES)
    assert ids[0].tolist() == [CAR, ROAD]


def test_grey_alpha_float_and_rgba_maps_are_read_and_bad_values_refused():
    grey = np.array([[CAR, ROAD, 3, 3]] * 16, np.uint8)
    alpha = np.full_like(grey, 255)
    alpha[:, 2] = 0  # transparent: ignored
    ids, _ = decode_label_file(encode(Image.fromarray(np.dstack([grey, alpha]), mode="LA")), CITYSCAPES)
    assert ids[0].tolist() == [CAR, ROAD, 255, 3]
    floats = grey.astype(np.float32)
    ids, _ = decode_label_file(encode(Image.fromarray(floats, mode="F"), "TIFF"), CITYSCAPES)
    assert ids[0].tolist() == [CAR, ROAD, 3, 3]
    with pytest.raises(InputError, match="whole class ids"):
        decode_label_file(encode(Image.fromarray(floats + 0.5, mode="F"), "TIFF"), CITYSCAPES)
    with pytest.raises(InputError, match="NaN"):
        decode_label_file(encode(Image.fromarray(np.full((16, 16), np.nan, np.float32), mode="F"), "TIFF"),
                          CITYSCAPES)
    rgba = np.zeros((16, 3, 4), np.uint8)
    rgba[:, 0, :3], rgba[:, 1, :3], rgba[:, 2, :3] = CITYSCAPES.palette[CAR], CITYSCAPES.palette[ROAD], (1, 2, 3)
    rgba[:, :, 3] = 255
    rgba[:, 1, 3] = 0
    ids, _ = decode_label_file(encode(Image.fromarray(rgba, mode="RGBA")), CITYSCAPES)
    assert ids[0].tolist() == [CAR, 255, 255]
    assert label_map_from_array(np.array([[-3, 2]]), CITYSCAPES).tolist() == [[255, 2]]


@pytest.mark.parametrize("mode", ["P", "L", "I;16", "RGB"])
def test_sampling_to_the_image_size_is_resize_label_maps_rule(mode):
    """The decoder samples files row by row; the result must be exactly
    :func:`resize_label_map` of the full map (brute-force comparison on odd sizes)."""
    rng = np.random.default_rng(1)
    for h, w, size in [(37, 91, (16, 40)), (200, 30, (64, 17)), (20, 20, (33, 50))]:
        ids = rng.integers(0, 19, (h, w))
        if mode == "RGB":
            picture = Image.fromarray(CITYSCAPES.palette_array()[ids])
        elif mode == "P":
            picture = Image.fromarray(ids.astype(np.uint8), mode="P")
            picture.putpalette([v for i in range(256) for v in (i, 255 - i, 7)])
        else:
            picture = Image.fromarray(ids.astype(np.uint8 if mode == "L" else np.uint16))
        got, notice = decode_label_file(encode(picture), CITYSCAPES, size=size)
        assert got.tolist() == resize_label_map(torch.from_numpy(ids), size).tolist()
        assert f"{w}×{h}" in notice and "resized" in notice


@pytest.mark.parametrize("mode, fill", [("P", 7), ("RGB", (0, 0, 142)), ("L", 7)])
def test_a_huge_label_map_costs_the_image_size_not_the_file_size(mode, fill):
    """A few kilobytes of PNG declaring 6300 × 6300: before issue 13 it was widened to int64
    at full size (1.6 GB).  Now no array beyond Pillow's own 8-bit pixels is made at full size:
    what numpy allocates stays below one full-size int64 map by far."""
    data = encode(Image.new(mode, (6300, 6300), fill))
    assert len(data) < 200_000
    tracemalloc.start()
    try:
        ids, notice = decode_label_file(data, CITYSCAPES, size=(512, 1024))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert ids.shape == (512, 1024) and ids.unique().numel() == 1
    assert peak < 60 * 2 ** 20, f"{peak / 2 ** 20:.0f} MiB allocated by numpy/torch (full int64: 303 MiB)"


def test_a_large_transparent_picture_is_shrunk_then_composited_like_the_reference():
    rng = np.random.default_rng(2)
    rgba = rng.integers(0, 256, (1500, 2100, 4)).astype(np.uint8)
    x, notice = decode_image_file(encode(Image.fromarray(rgba, mode="RGBA")))
    assert "composited onto white" in notice and "downscaled" in notice
    white = Image.new("RGBA", (2100, 1500), (255, 255, 255, 255))
    reference = Image.alpha_composite(white, Image.fromarray(rgba, mode="RGBA")).convert("RGB")
    reference = np.asarray(reference.resize((x.shape[2], x.shape[1]), Image.Resampling.BOX), np.float32) / 255
    error = np.abs(x.permute(1, 2, 0).numpy() - reference)
    assert error.max() <= 4 / 255 and error.mean() <= 1 / 255  # 8-bit rounding of premultiplied alpha
