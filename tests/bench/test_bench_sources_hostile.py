"""The benchmark's folder image sources against damaged and unusual files: 16-bit PNGs,
truncated files, damaged headers and label maps, palette label maps, EXIF-rotated JPEGs,
pictures sharing a name, and folders of several sizes."""
from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from bench_helpers import refused

from explorer.bench.store import read_records
from explorer.data.datasets import get_dataset
from explorer.data.sources import open_source
from explorer.errors import InputError

CITYSCAPES = get_dataset("cityscapes")
STUB = types.SimpleNamespace(dataset=CITYSCAPES, name="stub", num_classes=19)  # what a folder source needs


def _folder(tmp_path):
    (tmp_path / "images").mkdir(parents=True)
    (tmp_path / "labels").mkdir()
    return tmp_path


def _save(path, array, mode=None, **kwargs):
    from PIL import Image

    (Image.fromarray(array, mode=mode) if mode else Image.fromarray(array)).save(path, **kwargs)


def test_a_16_bit_png_is_scaled_by_its_full_range(tmp_path):
    root = _folder(tmp_path)
    values = (np.arange(32 * 48, dtype=np.uint32).reshape(32, 48) * 40).astype(np.uint16)
    _save(root / "images" / "deep.png", values)
    _save(root / "labels" / "deep.png", np.full((32, 48), 3, np.uint8))
    source = open_source(str(root), STUB)
    x, y = source.load(source.ids)
    assert x.shape == (1, 3, 32, 48) and y.shape == (1, 32, 48)
    expected = torch.from_numpy(values.astype(np.float32) / 65535)
    torch.testing.assert_close(x[0, 0], expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(x[0, 1], x[0, 0])
    assert float(x.max()) < 0.95 and float((x == 1).float().mean()) == 0, "not white"
    assert int(y.unique().item()) == 3


def test_a_truncated_png_stops_with_one_line_naming_it(tmp_path, capsys):
    root = _folder(tmp_path)
    rng = np.random.default_rng(0)
    _save(root / "images" / "cut.png", rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    data = (root / "images" / "cut.png").read_bytes()
    (root / "images" / "cut.png").write_bytes(data[: len(data) // 2])
    _save(root / "labels" / "cut.png", np.zeros((64, 64), np.uint8))
    source = open_source(str(root), STUB)  # the header is intact: sizes are read without decoding
    with pytest.raises(InputError, match="cut.png") as error:
        source.load(source.ids)
    assert str(root / "images" / "cut.png") in str(error.value) and "\n" not in str(error.value)
    # through the command line: one line, status 1, no traceback, no record
    out = tmp_path / "r.jsonl"
    err = refused(["run", "--attacks", "dag:num_steps=2", "--modes", "untargeted", "--images", str(root),
                    "--threads", "1", "--no-progress", "--out", str(out)], capsys, code=1)
    assert "cut.png" in err and ("damaged" in err or "truncated" in err)
    assert read_records(out) == []


@pytest.mark.parametrize("content", [b"", b"not a picture at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40],
                         ids=["empty", "text", "damaged header"])
def test_a_damaged_header_is_refused_naming_the_file(content, tmp_path):
    root = _folder(tmp_path)
    (root / "images" / "bad.png").write_bytes(content)
    _save(root / "labels" / "bad.png", np.zeros((32, 32), np.uint8))
    with pytest.raises(InputError, match="bad.png") as error:
        open_source(str(root), STUB)
    assert str(root / "images" / "bad.png") in str(error.value)


def test_a_damaged_label_map_is_refused_naming_it(tmp_path):
    root = _folder(tmp_path)
    _save(root / "images" / "a.png", np.zeros((32, 32, 3), np.uint8))
    (root / "labels" / "a.png").write_bytes(b"GIF89a junk")
    with pytest.raises(InputError, match=str(root / "labels" / "a.png")):
        open_source(str(root), STUB)


def test_palette_label_maps_are_read_by_the_decoder(tmp_path):
    """A palette PNG painted with the dataset's colours at other indices is read by its colours;
    one written at the class ids (the shipped samples' way) by its indices."""
    from PIL import Image

    root = _folder(tmp_path)
    rng = np.random.default_rng(1)
    for name in ("editor", "ids"):
        _save(root / "images" / f"{name}.png", rng.integers(0, 255, (32, 40, 3), dtype=np.uint8))
    classes = np.zeros((32, 40), np.uint8)
    classes[:, 20:] = 2  # road | building
    classes[:4] = 255  # ignored
    # an image editor's palette: index 0 = building colour, 1 = road colour, 2 = the ignore colour
    editor = Image.fromarray(np.select([classes == 2, classes == 0], [0, 1], 2).astype(np.uint8), mode="P")
    editor.putpalette([*CITYSCAPES.palette[2], *CITYSCAPES.palette[0], 224, 224, 192] + [0] * (253 * 3))
    editor.save(root / "labels" / "editor.png")
    ids = Image.fromarray(classes, mode="P")
    ids.putpalette(CITYSCAPES.palette_array().ravel().tolist())
    ids.save(root / "labels" / "ids.png")
    source = open_source(str(root), STUB)
    _, y = source.load(source.ids)
    expected = torch.from_numpy(classes.astype(np.int64))
    assert torch.equal(y[0], expected) and torch.equal(y[1], expected)


def test_an_exif_rotated_jpeg_gets_its_upright_size_from_the_header(tmp_path):
    from PIL import Image

    root = _folder(tmp_path)
    stored = Image.fromarray(np.random.default_rng(2).integers(0, 255, (32, 48, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned by 90°: 32 wide, 48 high
    stored.save(root / "images" / "phone.jpg", exif=exif.tobytes())
    _save(root / "labels" / "phone.png", np.ones((48, 32), np.uint8))
    source = open_source(str(root), STUB)
    assert source.sizes == ((48, 32),)
    x, y = source.load(source.ids)
    assert x.shape == (1, 3, 48, 32) and y.shape == (1, 48, 32)


def test_pictures_sharing_a_name_are_refused(tmp_path):
    root = _folder(tmp_path)
    _save(root / "images" / "a.png", np.zeros((32, 32, 3), np.uint8))
    _save(root / "images" / "a.jpg", np.zeros((32, 32, 3), np.uint8))
    _save(root / "labels" / "a.png", np.zeros((32, 32), np.uint8))
    with pytest.raises(InputError, match="several pictures named a"):
        open_source(str(root), STUB)


def test_open_source_refuses_a_non_positive_limit(tmp_path):
    root = _folder(tmp_path)
    for name in "ab":
        _save(root / "images" / f"{name}.png", np.zeros((32, 32, 3), np.uint8))
        _save(root / "labels" / f"{name}.png", np.zeros((32, 32), np.uint8))
    assert len(open_source(str(root), STUB, limit=1).ids) == 1
    for bad in (-1, 0, 1.5, True):
        with pytest.raises(InputError, match="limit"):
            open_source(str(root), STUB, limit=bad)


def test_comparisons_refuse_a_folder_of_several_sizes_before_attacking(tmp_path, capsys, monkeypatch):
    import explorer.bench.compare as compare

    root = _folder(tmp_path / "data")
    for name, (h, w) in {"a": (32, 48), "b": (40, 40)}.items():
        _save(root / "images" / f"{name}.png", np.zeros((h, w, 3), np.uint8))
        _save(root / "labels" / f"{name}.png", np.zeros((h, w), np.uint8))
    monkeypatch.setattr(compare, "compare_penalty_gradients", lambda *a, **k: pytest.fail("attacked"))
    err = refused(["penalty", "--images", str(root), "--steps", "2", "--modes", "untargeted", "--threads", "1",
                    "--out", str(tmp_path / "o")], capsys, code=1)
    assert "must share one size" in err and "48x32" in err and "40x40" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
