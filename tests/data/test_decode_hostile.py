"""Hostile picture and label-map uploads (issue 8): damaged, foreign and oddly encoded files,
huge and tiny pictures, NaN and infinities, random and mutated bytes.  Each test names the
promise it checks; everything runs on the CPU with the shipped models and tiny pictures,
offline."""
from __future__ import annotations

import json
import subprocess
import time

import numpy as np
import pytest
import torch
from app_events import STREET
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pictures import assert_valid_picture, encode, label_png, noise, png
from PIL import Image

from explorer import ui
from explorer.attacks import get_attack
from explorer.data import decode
from explorer.data.datasets import get_dataset
from explorer.data.decode import (
    MAX_IMAGE_SIDE,
    MIN_IMAGE_SIDE,
    decode_image_file,
    decode_label_file,
    image_from_array,
    label_map_from_array,
)
from explorer.errors import InputError
from explorer.live.scene import prepare_scene

torch.set_num_threads(1)
pytestmark = pytest.mark.usefixtures("session_files")


# ============================================================================= bad input: pictures

@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"definitely not a picture", "not a picture"),
    (png()[:60], "damaged or truncated"),
    (png()[:-30], "damaged or truncated"),
    (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 32 32\n", "not a picture"),  # EPS would run Ghostscript
    (b'<svg xmlns="http://www.w3.org/2000/svg" width="32" height="32"/>', "not a picture"),
    (json.dumps({"format": "seg-attack-explorer/run"}).encode(), "not a picture"),
])
def test_corrupt_truncated_and_foreign_files_raise_one_clear_input_error(data, message):
    with pytest.raises(InputError, match=message):
        decode_image_file(data)


def test_no_format_that_runs_a_program_is_ever_tried(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError(f"an upload started a program: {args}")

    monkeypatch.setattr(subprocess, "Popen", forbidden)
    monkeypatch.setattr(subprocess, "run", forbidden)
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 32 32\nshowpage\n"
    with pytest.raises(InputError):
        decode_image_file(eps)
    assert "EPS" not in decode.ALLOWED_FORMATS


def test_every_layout_becomes_rgb_in_unit_range_with_a_notice_of_what_changed():
    rgb = noise(20, 30)
    plain, notice = decode_image_file(png(20, 30))
    assert notice == ""
    # RGBA: transparent pixels become white, opaque ones keep their colour
    rgba = np.dstack([rgb, np.full((20, 30), 255, np.uint8)])
    rgba[:, :15, 3] = 0
    x, notice = decode_image_file(encode(Image.fromarray(rgba)))
    assert "white" in notice and (x[:, :, :15] == 1).all()
    assert torch.allclose(x[:, :, 15:], torch.from_numpy(rgb[:, 15:].transpose(2, 0, 1) / 255).float())
    opaque = np.dstack([rgb, np.full((20, 30), 255, np.uint8)])
    assert decode_image_file(encode(Image.fromarray(opaque)))[1] == ""
    # palette, grey, 1-bit
    x, _ = decode_image_file(encode(Image.fromarray(rgb).convert("P")))
    assert_valid_picture(x)
    x, _ = decode_image_file(encode(Image.fromarray(np.full((20, 30), 51, np.uint8))))
    assert torch.allclose(x, torch.full_like(x, 0.2))
    x, _ = decode_image_file(encode(Image.fromarray(np.eye(20, 30, dtype=bool))))
    assert set(x.unique().tolist()) == {0.0, 1.0}
    # 16-bit grey is scaled by 65535 (not clipped at 255)
    x, notice = decode_image_file(encode(Image.fromarray(np.full((20, 30), 32768, np.uint16))))
    assert "16-bit" in notice and torch.allclose(x, torch.full_like(x, 32768 / 65535))
    # CMYK (JPEG and TIFF) is converted
    for fmt in ("JPEG", "TIFF"):
        x, notice = decode_image_file(encode(Image.fromarray(rgb).convert("CMYK"), fmt))
        assert "CMYK" in notice and x.shape == (3, 20, 30)
        assert_valid_picture(x)
    # other formats of the same picture decode to the same pixels
    for fmt in ("BMP", "TIFF", "GIF", "WEBP"):
        options = {"lossless": True} if fmt == "WEBP" else {}
        x, _ = decode_image_file(encode(Image.fromarray(rgb if fmt != "GIF" else rgb // 64 * 64), fmt, **options))
        assert x.shape == (3, 20, 30)


def test_exif_orientation_is_applied():
    rgb = np.zeros((20, 40, 3), np.uint8)
    rgb[0, 0] = 255  # a white top-left corner as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    x, notice = decode_image_file(encode(Image.fromarray(rgb), "PNG", exif=exif))
    assert x.shape == (3, 40, 20) and "EXIF" in notice
    assert (x[:, 0, -1] == 1).all() and float(x.sum()) == 3  # the corner is now top-right


def test_huge_pictures_are_downscaled_with_a_notice_and_bombs_refused_before_decoding(tmp_path):
    x, notice = decode_image_file(encode(Image.new("RGB", (3000, 2000), (10, 200, 30)), "JPEG"))
    assert x.shape == (3, 683, 1024) and "downscaled from 3000×2000 to 1024×683" in notice
    assert_valid_picture(x)
    deep = encode(Image.fromarray(np.full((40, 2100), 65535, np.uint16)))
    x, notice = decode_image_file(deep)
    assert max(x.shape[1:]) == MAX_IMAGE_SIDE and "downscaled" in notice
    # a few KB declaring ~400 megapixels: refused from the header, fast
    bomb = encode(Image.new("1", (20000, 20000)))
    started = time.perf_counter()
    with pytest.raises(InputError, match="megapixels"):
        decode_image_file(bomb)
    assert time.perf_counter() - started < 2
    # just over the explorer's own limit (below Pillow's): refused with the size named
    side = int(decode.MAX_DECODE_PIXELS ** 0.5) + 10
    with pytest.raises(InputError, match=f"{side}×{side}"):
        decode_image_file(encode(Image.new("1", (side, side))))
    # files over the size limit are refused unread (path: by their size on disk)
    big = tmp_path / "big.png"
    big.write_bytes(png())
    with pytest.raises(InputError, match="limited to"):
        decode_image_file(big, max_bytes=100)
    with pytest.raises(InputError, match="limited to"):
        decode_image_file(png(), max_bytes=100)
    assert decode_image_file(big)[0].shape == (3, 32, 48)


def test_tiny_pictures_are_refused_even_when_the_other_side_is_long():
    with pytest.raises(InputError, match=f"at least {MIN_IMAGE_SIDE}"):
        decode_image_file(png(8, 8))
    with pytest.raises(InputError, match=f"at least {MIN_IMAGE_SIDE}"):
        decode_image_file(encode(Image.new("RGB", (5000, 10))))
    assert decode_image_file(png(MIN_IMAGE_SIDE, MIN_IMAGE_SIDE))[0].shape == (3, 16, 16)


def test_nan_and_inf_are_refused_in_pictures_label_maps_and_attack_inputs(street_model):
    for bad in (np.nan, np.inf, -np.inf):
        picture = np.full((20, 20, 3), 0.5, np.float32)
        picture[3, 4, 1] = bad
        with pytest.raises(InputError, match="NaN or infinite"):
            image_from_array(picture)
        floats = np.zeros((20, 20), np.float32)
        floats[0, 0] = bad
        with pytest.raises(InputError):
            label_map_from_array(floats, get_dataset("cityscapes"))
    float_tiff = encode(Image.fromarray(np.full((20, 20), np.nan, np.float32)), "TIFF")
    with pytest.raises(InputError, match="NaN"):
        decode_image_file(float_tiff)
    model = street_model
    images_ = torch.full((1, 3, 32, 32), 0.5)
    images_[0, 0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        get_attack("dag")(model, images_, torch.zeros(1, 32, 32, dtype=torch.long), num_steps=1)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_fuzz_random_bytes_decode_or_raise_input_error(data):
    try:
        tensor, notice = decode_image_file(data)
    except InputError:
        return
    assert_valid_picture(tensor)
    assert isinstance(notice, str)


_SEEDS = {fmt: encode(Image.fromarray(noise(24, 32, 1)), fmt) for fmt in ("PNG", "JPEG", "GIF", "BMP", "TIFF")}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(_SEEDS)),
       st.lists(st.tuples(st.integers(0, 10 ** 6), st.integers(0, 255)), min_size=1, max_size=8),
       st.one_of(st.none(), st.integers(0, 10 ** 6)))
def test_fuzz_mutated_valid_files_decode_or_raise_input_error(fmt, flips, cut):
    data = bytearray(_SEEDS[fmt])
    for position, value in flips:
        data[position % len(data)] = value
    if cut is not None:
        data = data[:cut % len(data)]
    try:
        tensor, _ = decode_image_file(bytes(data))
    except InputError:
        return
    assert_valid_picture(tensor)


def test_uploads_are_size_limited_by_the_server_and_by_the_decoder():
    assert ui.MAX_UPLOAD_BYTES == decode.MAX_UPLOAD_BYTES
    with pytest.raises(InputError, match="limited to 20 MiB"):
        decode_image_file(b"\x89PNG" + bytes(decode.MAX_UPLOAD_BYTES))


# ============================================================================= bad input: label maps

def test_label_maps_of_another_size_are_resized_with_a_notice():
    layout = np.full((64, 100), 13, np.uint8)  # "car" everywhere, another size and aspect ratio
    scene = prepare_scene(STREET, "street-001", target="custom", target_map=label_png(layout))
    assert scene.attack_labels.shape == (1, 128, 256) and (scene.attack_labels == 13).all()
    assert "resized" in scene.notice and "100×64" in scene.notice


def test_label_map_values_out_of_range_are_ignored_and_an_all_ignored_map_is_refused():
    layout = np.full((128, 256), 250, np.uint8)
    layout[:, :10] = 7
    scene = prepare_scene(STREET, "street-001", target="custom", target_map=label_png(layout))
    assert set(scene.attack_labels.unique().tolist()) == {7, 255}
    with pytest.raises(InputError, match="no labelled pixel"):
        prepare_scene(STREET, "street-001", target="custom", target_map=label_png(np.full((8, 8), 19)))
    deep = encode(Image.fromarray(np.full((16, 16), 40000, np.uint16)))  # 16-bit ids, all out of range
    with pytest.raises(InputError, match="no labelled pixel"):
        prepare_scene(STREET, "street-001", target="custom", target_map=deep)


def test_label_maps_read_as_ids_or_palette_colours_and_damaged_ones_refused():
    voc = get_dataset("voc")
    palette_png = encode(Image.fromarray(np.array([[voc.palette[15], voc.palette[0]]] * 4, np.uint8)))
    ids, _ = decode_label_file(palette_png, voc)
    assert ids[0].tolist() == [15, 0]
    assert decode_label_file(label_png(np.array([[3, 4]] * 16)), voc)[0][0].tolist() == [3, 4]
    for bad in (b"", b"junk", label_png(np.ones((20, 20)))[:50]):
        with pytest.raises(InputError):
            decode_label_file(bad, voc)
