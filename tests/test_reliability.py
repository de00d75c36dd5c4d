"""Reliability and security (issue 8): bad input, many users, faults, untrusted files.

Each test names the promise it checks.  Everything runs on the CPU with the shipped
models, tiny pictures and a handful of iterations, offline (HF_HUB_OFFLINE=1).  The
served tests launch the app on a localhost port with gradio_client sessions.
"""
from __future__ import annotations

import ast
import dataclasses
import gc
import hashlib
import io
import json
import subprocess
import threading
import time
import weakref
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from explorer import images, live, ui
from explorer.attacks import ATTACKS, get_attack
from explorer.datasets import get_dataset
from explorer.errors import InputError
from explorer.images import (MAX_IMAGE_SIDE, MIN_IMAGE_SIDE, decode_image_file, decode_label_file, image_from_array,
                             label_map_from_array)
from explorer.live import LiveAttack, prepare_scene
from explorer.metrics import apsr
from explorer.models import get_model_entry, load_model, refresh_shipped
from explorer.models.registry import weights_dir

torch.set_num_threads(1)
STREET, OBJECTS = "street-fpn-mobilenet", "objects-fpn-mobilenet"
PACKAGE = Path(live.__file__).resolve().parent


# ----------------------------------------------------------------------------- helpers

def encode(picture: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, fmt, **options)
    return buffer.getvalue()


def noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def png(h: int = 32, w: int = 48, seed: int = 0) -> bytes:
    return encode(Image.fromarray(noise(h, w, seed)))


def request(session: str):
    return SimpleNamespace(session_hash=session)


def widget_defaults():
    return [ATTACKS[a].param(n).default for a, n in ui.PARAM_KEYS]


def run_event(upload=None, sample=None, steps=2, seed=0, session="s", attack="alma_prox", model=STREET,
              target="untargeted", target_upload=None, nu=0.99):
    """All updates of the app's Run handler (the code path of the Run button)."""
    return list(ui.run_attack(model, sample, upload, attack, target, target_upload, steps, seed, nu,
                              *widget_defaults(), request=request(session)))


def assert_valid_picture(tensor):
    assert tensor.dtype == torch.float32 and tensor.ndim == 3 and tensor.shape[0] == 3
    assert bool(torch.isfinite(tensor).all()) and 0 <= float(tensor.min()) and float(tensor.max()) <= 1


@pytest.fixture(autouse=True)
def session_files(tmp_path, monkeypatch):
    """Offline, per-test download folders, and no run left registered afterwards."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(ui, "FILES_ROOT", tmp_path / "sessions")
    yield tmp_path / "sessions"
    assert not ui.ACTIVE_RUNS


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
    assert "EPS" not in images.ALLOWED_FORMATS


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
    side = int(images.MAX_DECODE_PIXELS ** 0.5) + 10
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


def test_nan_and_inf_are_refused_in_pictures_label_maps_and_attack_inputs():
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
    model = live.cached_model(STREET)
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


# ============================================================================= bad input: label maps

def label_png(ids: np.ndarray) -> bytes:
    return encode(Image.fromarray(ids.astype(np.uint8), mode="L"))


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


def test_apsr_is_undefined_without_a_labelled_pixel():
    with pytest.raises(InputError, match="no labelled pixel"):
        apsr(torch.zeros(1, 4, 4, dtype=torch.long), torch.full((1, 4, 4), 255), 19)


# ============================================================================= bad input: parameters, run files

@pytest.mark.parametrize("params, message", [
    ({"num_steps": 0}, "num_steps"),
    ({"num_steps": 10 ** 9}, "num_steps"),
    ({"alpha": float("nan")}, "alpha"),
    ({"alpha": "fast"}, "alpha"),
    ({"no_such_parameter": 1}, "no_such_parameter"),
])
def test_parameters_outside_the_schema_are_refused_before_a_run_starts(params, message):
    scene = prepare_scene(STREET, upload=noise(32, 32))
    with pytest.raises(InputError, match=message):
        LiveAttack(scene, "alma_prox", params)


def test_the_app_answers_bad_parameters_with_a_warning():
    for steps, seed, nu in ((10 ** 9, 0, 0.99), (3, "x", 0.99), (3, 0, 7.0), (3, float("inf"), 0.99)):
        updates = run_event(upload=png(), steps=steps, seed=seed, nu=nu)
        assert len(updates) == 1 and updates[0]["status"].startswith("⚠️")


@pytest.mark.parametrize("content", [
    png(),                                    # a picture, not a run file
    b"\x80\x04\x95" + b"\x00" * 40,           # a pickle header
    b"{" * 200_000,                           # too large
    json.dumps({"format": "other-tool/run", "version": 1}).encode(),
    json.dumps({"format": "seg-attack-explorer/run", "version": 1, "model": "../../etc", "image": "x",
                "attack": "dag"}).encode(),
])
def test_malformed_or_foreign_run_files_give_a_warning_and_change_nothing(tmp_path, content):
    path = tmp_path / "run.json"
    path.write_bytes(content)
    updates = ui.load_run_file(str(path))
    assert updates[-1].startswith("⚠️") and "run file not loaded" in updates[-1]
    assert all(u == {"__type__": "update"} for u in updates[:-1])


# ============================================================================= the app stays usable

def test_a_bad_upload_is_a_warning_and_the_app_keeps_working():
    for bad in (b"junk", png()[:80], png(4, 4)):
        *views, status = ui.preview(STREET, "street-000", bad, "untargeted", None)
        assert views == [None] * 4 and status.startswith("⚠️")
        updates = run_event(upload=bad)
        assert len(updates) == 1 and updates[0]["status"].startswith("⚠️")
    image, *_, status = ui.preview(STREET, "street-000", png(40, 60), "untargeted", None)
    assert image.shape == (40, 60, 3) and "upload" in status
    final = run_event(upload=png(40, 60))[-1]
    assert "finished after 2 iterations" in final["status"]
    spec = json.loads(Path([p for p in final["downloads"] if p.endswith(".json")][0]).read_text())
    assert spec["image"] == "upload:" + hashlib.sha256(png(40, 60)).hexdigest()


def test_an_unexpected_error_in_a_handler_is_a_warning_not_a_crash(monkeypatch):
    def broken(*args, **kwargs):
        raise KeyError("something internal")

    monkeypatch.setattr(ui, "prepare_scene", broken)
    *_, status = ui.preview(STREET, "street-000", None, "untargeted", None)
    assert status.startswith("⚠️") and "still running" in status
    assert run_event(sample="street-000")[0]["status"].startswith("⚠️")


# ============================================================================= untrusted files and names

@pytest.mark.parametrize("name", ["../../etc", "../weights/street-fpn-mobilenet", "/etc/passwd", "a/../b",
                                  "street-fpn-mobilenet/../../x"])
def test_model_and_sample_names_cannot_escape_their_folders(name):
    with pytest.raises(InputError):
        load_model(name)
    with pytest.raises(InputError):
        live.load_sample(name)
    *views, status = ui.preview(name, "street-000", None, "untargeted", None)
    assert views == [None] * 4 and status.startswith("⚠️")
    *views, status = ui.preview(STREET, name, None, "untargeted", None)
    assert views == [None] * 4 and status.startswith("⚠️")


class _Trap:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_weight_files_are_never_unpickled(tmp_path):
    marker = tmp_path / "code-ran"
    trap = tmp_path / "weights.pth"
    torch.save({"conv.weight": _Trap(str(marker))}, trap)
    with pytest.raises(InputError, match="never unpickled"):
        get_model_entry("tv-lraspp-mobilenet-v3-voc").load(str(trap))
    transformers = pytest.importorskip("transformers")
    folder = tmp_path / "segformer"
    transformers.SegformerConfig(num_labels=19, hidden_sizes=[8, 16, 24, 32], num_attention_heads=[1, 1, 2, 2],
                                 depths=[1, 1, 1, 1], decoder_hidden_size=16).save_pretrained(str(folder))
    torch.save({"x": _Trap(str(marker))}, folder / "pytorch_model.bin")
    with pytest.raises(InputError, match="never unpickled"):
        get_model_entry("hf-segformer-b0-cityscapes").load(str(folder))
    assert not marker.exists()


def _calls(tree, name):
    """Calls of ``name`` (``torch.load``, ``np.load``, ...) in an AST."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            dotted = (f"{getattr(func.value, 'id', '')}.{func.attr}" if isinstance(func, ast.Attribute)
                      else getattr(func, "id", ""))
            if dotted == name:
                yield node


def test_the_package_has_no_unsafe_loader_or_code_runner():
    """Static proof for every module: torch.load only with weights_only=True, np.load only
    with allow_pickle=False, no pickle/marshal/shelve loads, no eval/exec, no shell."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for call in _calls(tree, "torch.load"):
            if not any(k.arg == "weights_only" and getattr(k.value, "value", None) is True for k in call.keywords):
                found.append(f"{path.name}:{call.lineno} torch.load without weights_only=True")
        for call in _calls(tree, "np.load"):
            if not any(k.arg == "allow_pickle" and getattr(k.value, "value", None) is False for k in call.keywords):
                found.append(f"{path.name}:{call.lineno} np.load without allow_pickle=False")
        for name in ("pickle.load", "pickle.loads", "marshal.loads", "shelve.open", "eval", "exec",
                     "os.system", "os.popen"):
            found += [f"{path.name}:{c.lineno} {name}" for c in _calls(tree, name)]
        for call in _calls(tree, "subprocess.run"):
            if any(k.arg == "shell" and getattr(k.value, "value", None) is True for k in call.keywords):
                found.append(f"{path.name}:{call.lineno} subprocess with shell=True")
    assert not found, found


def test_uploads_are_size_limited_by_the_server_and_by_the_decoder():
    assert ui.MAX_UPLOAD_BYTES == images.MAX_UPLOAD_BYTES
    with pytest.raises(InputError, match="limited to 20 MiB"):
        decode_image_file(b"\x89PNG" + bytes(images.MAX_UPLOAD_BYTES))


# ============================================================================= faults: stop, models, memory

@pytest.fixture(scope="module")
def small_scene():
    return prepare_scene(STREET, upload=noise(32, 32, 3))


def _check_partial(scene, result, at_most):
    assert result.stopped and 1 <= result.iterations <= at_most
    adv = result.adv_images
    assert adv.shape == scene.image.shape and bool(torch.isfinite(adv).all())
    assert ((adv >= 0) & (adv <= 1)).all()
    linf = (adv - scene.image).flatten(1).abs().amax(1)
    assert torch.allclose(result.linf, linf, atol=1e-6) or not bool(result.success[0])
    assert 0 <= float(result.apsr[0]) <= 1


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_stop_always_returns_a_valid_partial_result(small_scene, attack):
    # a bisection attack's iteration is a whole inner attack: keep those short here
    params = {"num_steps": 3} if "search_steps" in ATTACKS[attack].defaults() else {}
    # stop before the first iteration: the attack ends after it
    run = LiveAttack(small_scene, attack, params)
    run.stop()
    _check_partial(small_scene, run.run(), at_most=2)
    # stop as soon as the viewer sees progress
    run = LiveAttack(small_scene, attack, params)
    for snap in run.snapshots(interval=0.0):
        if snap.iteration >= 2 and not run.stopping:
            run.stop()
    _check_partial(small_scene, run.result, at_most=snap.num_steps)


def test_a_model_that_cannot_load_is_reported_and_the_shipped_ones_keep_working(tmp_path, monkeypatch):
    # offline hub, empty cache
    import huggingface_hub.constants as hub_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    *views, status = ui.preview("smp-segformer-b0-cityscapes", "street-000", None, "untargeted", None)
    assert views == [None] * 4 and "network" in status and STREET in status
    # corrupt weights next to the shipped models
    folder = tmp_path / "weights"
    folder.mkdir()
    for shipped in weights_dir().iterdir():
        if (shipped / "card.json").is_file():
            (folder / shipped.name).symlink_to(shipped, target_is_directory=True)
    broken = folder / "street-broken"
    broken.mkdir()
    for name in ("card.json", "config.json"):
        (broken / name).write_bytes((weights_dir() / STREET / name).read_bytes())
    (broken / "model.safetensors").write_bytes(b"\x00" * 64)
    monkeypatch.setenv("EXPLORER_WEIGHTS_DIR", str(folder))
    try:
        assert "street-broken" in refresh_shipped()
        with pytest.raises(InputError, match="model.safetensors.*still work"):
            load_model("street-broken", device="cpu")
        *views, status = ui.preview("street-broken", "street-000", None, "untargeted", None)
        assert views == [None] * 4 and "cannot be loaded" in status
        image, *_, status = ui.preview(STREET, "street-000", None, "untargeted", None)
        assert image is not None and "Press" in status
    finally:
        monkeypatch.delenv("EXPLORER_WEIGHTS_DIR")
        refresh_shipped()


class RunsOutOfMemory(torch.nn.Module):
    """A model that fails with the given error from its ``after``-th call on."""

    def __init__(self, model, error, after):
        super().__init__()
        self.model, self.error, self.after, self.calls = model, error, after, 0

    @property
    def dataset(self):
        return self.model.dataset

    def forward(self, x):
        self.calls += 1
        if self.calls > self.after:
            raise self.error
        return self.model(x)


@pytest.mark.parametrize("error", [
    torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: "
                 "you tried to allocate 123456789 bytes"),
    MemoryError(),
])
def test_out_of_memory_during_an_attack_is_reported_with_a_suggestion(small_scene, error):
    scene = dataclasses.replace(small_scene, model=RunsOutOfMemory(small_scene.model, error, after=4))
    run = LiveAttack(scene, "alma_prox", {"num_steps": 50})
    with pytest.raises(InputError) as info:
        run.run()
    message = str(info.value)
    assert "out of memory" in message and "smaller image" in message and "fewer" in message
    assert len(run.history["iteration"]) >= 1  # the curves computed so far are kept
    assert LiveAttack(small_scene, "alma_prox", {"num_steps": 2}).run().iterations == 2


def run_out_of_memory_in_the_app(monkeypatch):
    """Make the app's scenes use a model that runs out of CUDA memory after 3 forwards;
    returns the real ``prepare_scene`` to put back."""
    real = ui.prepare_scene

    def failing_scene(*args, **kwargs):
        scene = real(*args, **kwargs)
        error = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")
        return dataclasses.replace(scene, model=RunsOutOfMemory(scene.model, error, after=3))

    monkeypatch.setattr(ui, "prepare_scene", failing_scene)
    return real


def test_out_of_memory_in_the_app_is_a_warning_and_the_next_run_works(monkeypatch):
    real = run_out_of_memory_in_the_app(monkeypatch)
    updates = run_event(upload=png(), steps=20)
    assert updates[-1]["status"].startswith("⚠️") and "smaller image" in updates[-1]["status"]
    assert any("apsr_plot" in u for u in updates[:-1])  # the curves streamed before stay shown
    monkeypatch.setattr(ui, "prepare_scene", real)
    assert "finished after 2" in run_event(upload=png())[-1]["status"]


# ============================================================================= many users: memory

def _rss() -> int:
    psutil = pytest.importorskip("psutil")
    return psutil.Process().memory_info().rss


def test_memory_and_temp_files_stay_flat_over_50_runs(session_files):
    """50 runs through the Run handler (frames, metrics, downloads written), 5 sessions in
    turn.  After a warm-up of 10, RSS grows by less than 30 MiB over the next 40 runs, no
    run object survives its session's result being dropped, and the download folders
    hold the last ``KEPT_RUNS_PER_SESSION`` runs' files per session.  Closing the sessions
    removes every file."""
    upload = png(48, 48, 7)
    sessions = [f"m{i}" for i in range(5)]
    alive = []
    files_after = {}
    for i in range(50):
        final = run_event(upload=upload, steps=2, session=sessions[i % 5])[-1]
        assert "finished after 2" in final["status"]
        alive.append(weakref.ref(final["state"]))
        del final
        if i + 1 in (10, 30, 50):
            gc.collect()
            files_after[i + 1] = sorted(p.relative_to(session_files) for p in session_files.rglob("*"))
            if i + 1 == 10:
                baseline = _rss()
    growth = _rss() - baseline
    assert growth < 30 * 2 ** 20, f"RSS grew by {growth / 2 ** 20:.1f} MiB over 40 runs"
    assert sum(ref() is not None for ref in alive) == 0, "runs (and their frames) are kept alive"
    kept = ui.KEPT_RUNS_PER_SESSION
    per_session = 1 + kept * (1 + 4)  # the session folder, its run folders, four downloads in each
    assert len(files_after[30]) == len(files_after[50]) == 5 * per_session
    assert len(files_after[10]) == 5 * (1 + 2 * (1 + 4))
    for session in sessions:
        ui.cleanup_session(request(session))
    assert not any(session_files.iterdir())


# ============================================================================= many users: served app

SESSIONS, CONCURRENCY = 8, 2


@pytest.fixture(scope="module")
def small_app():
    """The app with 2 runs at a time and 6 waiting: 8 sessions fit, a 9th does not."""
    from app_server import served_app

    with served_app(concurrency=CONCURRENCY, queue_size=SESSIONS - CONCURRENCY) as url:
        yield url


def _wait(condition, timeout, what):
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def test_eight_sessions_get_their_own_results_and_a_ninth_is_told_the_queue_is_full(small_app, tmp_path,
                                                                                     monkeypatch, session_files):
    """Eight gradio_client sessions, each with its own picture and iteration count, submit at
    once while the first two are held at the door: two run, six wait, the ninth is refused
    by the queue limit.  Released, each session gets its own run (its picture's digest and
    its iteration count in its run file, in its own download folder)."""
    from gradio_client import Client, handle_file
    from gradio_client.utils import QueueError, Status

    gate, entered = threading.Event(), []
    real = ui.prepare_scene

    def held(*args, **kwargs):  # holds the running requests until the queue has been filled
        entered.append(1)
        assert gate.wait(60), "the test never opened the gate"
        return real(*args, **kwargs)

    monkeypatch.setattr(ui, "prepare_scene", held)
    files = []
    for i in range(SESSIONS + 1):
        path = tmp_path / f"picture{i}.png"
        path.write_bytes(png(24, 32, seed=100 + i))
        files.append(path)
    clients = [Client(small_app, verbose=False) for _ in range(SESSIONS + 1)]
    assert len({c.session_hash for c in clients}) == SESSIONS + 1

    def submit(i):
        return clients[i].submit("street-fpn-mobilenet", None, handle_file(str(files[i])), "alma_prox",
                                 "untargeted", None, 2 + i, 0, 0.99, api_name="/run")

    try:
        jobs = [submit(i) for i in range(CONCURRENCY)]
        _wait(lambda: len(entered) == CONCURRENCY, 30, "the first runs to start")
        jobs += [submit(i) for i in range(CONCURRENCY, SESSIONS)]
        _wait(lambda: all(j.status().code == Status.IN_QUEUE for j in jobs[CONCURRENCY:]), 30,
              "six requests to wait in the queue")
        ninth = submit(SESSIONS)
        with pytest.raises(QueueError, match="Queue is full"):
            ninth.result(timeout=30)
        assert len(entered) == CONCURRENCY
    finally:
        gate.set()
    for i, job in enumerate(jobs):
        final = job.result(timeout=120)
        steps = 2 + i
        assert f"finished after {steps} iterations" in final[0], final[0]
        downloads = [Path(p) for p in final[9]]
        run_file = json.loads([p for p in downloads if p.suffix == ".json"][0].read_text())
        assert run_file["image"] == "upload:" + hashlib.sha256(files[i].read_bytes()).hexdigest()
        assert run_file["params"]["num_steps"] == steps
        # on the server, the session's own folder holds this run's file and no other
        own, = (session_files / ui.session_key(request(clients[i].session_hash))).glob("run-*/*_run.json")
        assert json.loads(own.read_text()) == run_file
    assert len(entered) == SESSIONS
    assert sorted(p.name for p in session_files.iterdir()) == sorted(ui.session_key(request(c.session_hash))
                                                                     for c in clients[:SESSIONS])


def test_the_served_app_warns_about_bad_files_and_out_of_memory_and_keeps_serving(small_app, tmp_path,
                                                                                  monkeypatch):
    from gradio_client import Client, handle_file

    client = Client(small_app, verbose=False)
    corrupt = tmp_path / "photo.png"
    corrupt.write_bytes(png()[:100])
    final = client.predict("street-fpn-mobilenet", None, handle_file(str(corrupt)), "alma_prox", "untargeted",
                           None, 3, 0, 0.99, api_name="/run")
    assert final[0].startswith("⚠️") and "damaged" in final[0]
    real = run_out_of_memory_in_the_app(monkeypatch)
    good = tmp_path / "good.png"
    good.write_bytes(png())
    final = client.predict("street-fpn-mobilenet", None, handle_file(str(good)), "alma_prox", "untargeted",
                           None, 20, 0, 0.99, api_name="/run")
    assert final[0].startswith("⚠️") and "smaller image" in final[0]
    monkeypatch.setattr(ui, "prepare_scene", real)
    final = client.predict("street-fpn-mobilenet", None, handle_file(str(good)), "alma_prox", "untargeted",
                           None, 3, 0, 0.99, api_name="/run")
    assert "finished after 3 iterations" in final[0]


def test_the_browser_shows_a_warning_for_a_damaged_upload_and_then_takes_a_good_one(small_app, tmp_path):
    from app_server import app_page

    damaged, good = tmp_path / "damaged.png", tmp_path / "good.png"
    damaged.write_bytes(png(40, 60)[:120])
    good.write_bytes(png(40, 60))
    with app_page(small_app) as page:
        page.set_input_files("#upload input[type=file]", str(damaged))
        page.wait_for_function("document.querySelector('#status').innerText.includes('damaged')",
                               timeout=30000)
        page.click("#upload button[aria-label='Clear']")
        page.set_input_files("#upload input[type=file]", str(good))
        page.wait_for_function("document.querySelector('#status').innerText.includes('upload (60×40)')",
                               timeout=30000)
