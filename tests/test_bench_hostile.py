"""The benchmark against hostile input: kills at any byte, junk in the results file, bad
command-line arguments, unwritable outputs, damaged and unusual image files."""
from __future__ import annotations

import json
import os
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from explorer.bench import report, store
from explorer.bench.cli import main
from explorer.bench.sources import open_source
from explorer.bench.store import append_records, merge_parts, part_path, read_records, record_key
from explorer.datasets import get_dataset
from explorer.errors import InputError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
CITYSCAPES = get_dataset("cityscapes")
STUB = types.SimpleNamespace(dataset=CITYSCAPES, name="stub", num_classes=19)  # what a folder source needs


def record(row="A", image="i", *, model="m", mode="untargeted", eps=None, linf_255=1.0, success=True,
           intersection=(1, 0), union=(2, 1), labelled=2, seconds=1.0, forwards=3, backwards=3):
    return {"key": record_key(model, row, mode, eps, image), "model": model, "row": row, "mode": mode,
            "eps_255": eps, "image": image, "linf_255": linf_255, "success": success,
            "intersection": list(intersection), "union": list(union), "labelled": labelled,
            "seconds": seconds, "forwards": forwards, "backwards": backwards}


def _warnings(err: str):
    return [line for line in err.splitlines() if "warning" in line]


# --------------------------------------------------------------------------- kills and junk in the store


def test_a_kill_at_every_byte_of_a_line_loses_no_complete_record(tmp_path, capsys):
    first = [record(image="a"), record(image="b")]
    torn = record(image="c", row="Ünïcode ℓ∞")  # a record whose line is being written when the kill lands
    line = (json.dumps(torn, sort_keys=True) + "\n").encode()
    later = [record(image="d"), record(image="e")]
    base = tmp_path / "base.jsonl"
    append_records(base, first)
    for cut in range(len(line) + 1):
        out = tmp_path / f"cut{cut}.jsonl"
        out.write_bytes(base.read_bytes() + line[:cut])  # the run was killed after `cut` bytes of the line
        append_records(out, later)  # the next run appends its records
        keys = [r["key"] for r in read_records(out)]
        complete = cut >= len(line) - 1  # everything but the newline: the JSON itself is whole
        expected = [r["key"] for r in first] + ([torn["key"]] if complete else []) + [r["key"] for r in later]
        assert keys == expected, f"kill after {cut} of {len(line)} bytes"
        assert out.read_bytes().endswith(b"\n")
        err = capsys.readouterr().err
        if 0 < cut < len(line) - 1:  # a fragment is left: said once, with its file and line
            (warning,) = _warnings(err)
            assert str(out) in warning and "skipped 1 unreadable line" in warning and "line 3" in warning
        else:
            assert not _warnings(err)


def test_a_kill_inside_a_part_file_is_merged_without_losing_records(tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    append_records(out, [record(image="a")])
    part = part_path(out, 1)
    append_records(part, [record(image="b")])
    with part.open("ab") as f:
        f.write(b'{"key": "m|A|untargeted|-|c", "linf')  # rank 1 killed mid-line
    append_records(part, [record(image="d")])  # its restart
    assert merge_parts(out) == 2
    assert not part.exists()
    assert [r["image"] for r in read_records(out)] == ["a", "b", "d"]
    assert str(part) in capsys.readouterr().err


JUNK = {
    "a number": b"42",
    "null": b"null",
    "an empty object": b"{}",
    "a JSON list": b'[{"key": "x"}]',
    "a string": b'"m|A|untargeted|-|z"',
    "a record with a numeric key": b'{"key": 5, "model": "m"}',
    "a record with a null key": b'{"key": null}',
    "invalid UTF-8": b'{"key": "\xff\xfe bad"}',
    "binary junk": bytes(range(256)).replace(b"\n", b""),
    "deep nesting": b"[" * 100_000,
    "NaN": b"NaN",
    "a huge number": b"9" * 10_000,
}


@pytest.mark.parametrize("kind", sorted(JUNK))
def test_a_junk_line_is_skipped_and_reported(kind, tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    good = [record(image="a"), record(image="b")]
    out.write_bytes(json.dumps(good[0]).encode() + b"\n" + JUNK[kind] + b"\n" + json.dumps(good[1]).encode() + b"\n")
    assert [r["image"] for r in read_records(out)] == ["a", "b"]
    (warning,) = _warnings(capsys.readouterr().err)
    assert str(out) in warning and "line 2" in warning and "skipped 1 unreadable line" in warning
    append_records(out, [record(image="c")])
    assert [r["image"] for r in read_records(out)] == ["a", "b", "c"]
    assert len(_warnings(capsys.readouterr().err)) == 1, "every read says it"
    with store.one_warning_per_file():  # what a command does: however often it reads the file
        for _ in range(3):
            assert len(read_records(out)) == 3
    assert len(_warnings(capsys.readouterr().err)) == 1


def test_many_junk_lines_give_one_warning_with_their_count(tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    lines = [json.dumps(record(image="a")).encode()] + list(JUNK.values()) + [json.dumps(record(image="b")).encode()]
    out.write_bytes(b"\n".join(lines))  # the last line has no newline but is whole
    assert [r["image"] for r in read_records(out)] == ["a", "b"]
    (warning,) = _warnings(capsys.readouterr().err)
    assert f"skipped {len(JUNK)} unreadable lines" in warning
    assert "line 2:" in warning and "line 3:" in warning and f"and {len(JUNK) - store.LISTED_LINES} more" in warning


def test_part_files_are_found_by_name_not_by_a_glob_pattern(tmp_path):
    out = tmp_path / "bench[1].jsonl"
    append_records(part_path(out, 0), [record(image="a")])
    append_records(part_path(out, 12), [record(image="b")])
    (tmp_path / "bench1.jsonl.part0").write_text(json.dumps(record(image="other")) + "\n")  # [1] would glob it
    (tmp_path / "bench[1].jsonl.partial").write_text("not a part\n")
    assert [r["image"] for r in read_records(out)] == ["a", "b"]
    assert merge_parts(out) == 2
    assert (tmp_path / "bench1.jsonl.part0").exists() and (tmp_path / "bench[1].jsonl.partial").exists()


def test_report_survives_junk_lines_and_mistyped_records(tmp_path, capsys):
    results = tmp_path / "r.jsonl"
    good = [record(image=str(i), linf_255=v) for i, v in enumerate([0.3, 0.6, 5.0])]
    good.append(record(row="clean", image="0"))
    bad = [dict(record(image="x1"), linf_255="abc"), dict(record(image="x2"), success="yes"),
           dict(record(image="x3"), model=7), dict(record(row="clean", image="x4"), intersection="1,2"),
           dict(record(row="clean", image="x5"), intersection=[1, 2, 3], union=[1, 2, 3]),  # other class count
           dict(record(image="x6"), eps_255="1"), {k: v for k, v in record(image="x7").items() if k != "seconds"},
           dict(record(image="x8"), forwards=None), dict(record(row="clean", image="x9"), labelled=[3])]
    with results.open("wb") as f:
        for r in good[:2] + bad + good[2:]:
            f.write(json.dumps(r).encode() + b"\n")
        f.write(b"\x00\x01junk\n42\n{\"key\": \"torn")
    main(["report", str(results), "--out-dir", str(tmp_path / "rep")])
    captured = capsys.readouterr()
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "4 per-image results" in text
    assert "| m | untargeted | A | 3 | 0.60 | 1.97 | 100% |" in text  # only the good records counted
    warnings = _warnings(captured.err)
    assert len(warnings) == 2
    assert any("skipped 3 unreadable lines" in w and str(results) in w for w in warnings)
    assert any(f"skipped {len(bad)} records" in w and "linf_255" in w for w in warnings)
    # the table functions themselves leave mistyped records out rather than crash
    assert len(report.timing_table(good + bad)) == 1
    assert report.fixed_budget_table(good + bad)[0]["images"] == 1


def test_report_of_nothing_usable_fails_with_a_message(tmp_path, capsys):
    results = tmp_path / "r.jsonl"
    results.write_bytes(b"42\nnull\n" + json.dumps(dict(record(), linf_255=[1])).encode() + b"\n")
    with pytest.raises(SystemExit) as stop:
        main(["report", str(results)])
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert "holds no usable benchmark record" in err and "Traceback" not in err
    assert not (tmp_path / "r_report").exists()


def test_long_and_odd_model_names_make_safe_figure_names(tmp_path):
    records = [record(model="m/" + "x" * 400, image=str(i)) for i in range(2)]
    path = report.write_report(records, tmp_path)
    assert path.exists()
    names = [p.name for p in tmp_path.glob("failure_rate_*.png")]
    assert len(names) == 1 and len(names[0]) < 120 and "/" not in names[0]


# --------------------------------------------------------------------------- the command line


@pytest.fixture
def no_compute(monkeypatch):
    """Fail the test if a command reaches model loading or an attack."""
    import explorer.bench.run as run_module
    import explorer.models

    def refuse(*args, **kwargs):
        raise AssertionError("validation should have stopped the command before this")

    monkeypatch.setattr(explorer.models, "load_model", refuse)
    monkeypatch.setattr(run_module, "execute_batch", refuse)
    monkeypatch.setattr(run_module, "Distributed", types.SimpleNamespace(from_environment=refuse))


def _refused(argv, capsys, code=None):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code not in (0, None), err
    if code is not None:
        assert stop.value.code == code
    assert "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith("explorer-bench")]) == 1, err
    return err


BAD_RUN_ARGUMENTS = [
    (["--limit", "-1"], "--limit: must be a whole number >= 1"),
    (["--limit", "0"], "--limit: must be a whole number >= 1"),
    (["--limit", "two"], "--limit: must be a whole number >= 1"),
    (["--device", "gpu"], "'gpu' is not a device"),
    (["--device", "cuda:x"], "is not a device"),
    (["--device", "meta"], "runs on cpu, cuda or cuda:N only"),
    (["--device", ""], "--device"),
    (["--threads", "0"], "--threads: must be a whole number >= 1"),
    (["--threads", "-3"], "--threads: must be a whole number >= 1"),
    (["--eps", "nan"], "--eps: must be a finite budget"),
    (["--eps", "inf"], "--eps: must be a finite budget"),
    (["--eps", "-1"], "--eps: must be a finite budget"),
    (["--eps", "0"], "--eps: must be a finite budget"),
    (["--eps", "0.5", "300"], "--eps: must be a finite budget"),
    (["--eps", "1", "1"], "--eps repeats 1"),
    (["--eps", "0.5", "0.5000001"], "--eps repeats 0.5"),  # one key for both
    (["--attacks", "fixed", "--eps"], "give at least one --eps"),
    (["--batch-size", "0"], "--batch-size: must be a whole number >= 1"),
    (["--budget-fraction", "0"], "--budget-fraction: must be a number in (0, 1]"),
    (["--budget-fraction", "nan"], "--budget-fraction: must be a number in (0, 1]"),
    (["--budget-fraction", "-0.5"], "--budget-fraction: must be a number in (0, 1]"),
    (["--budget-fraction", "2"], "--budget-fraction: must be a number in (0, 1]"),
    (["--seed", str(2 ** 70)], "--seed: must be a whole number between"),
    (["--models", "nope"], "unknown model 'nope'"),
    (["--models", "street-fpn-mobilenet", "street-fpn-mobilenet"], "--models repeats street-fpn-mobilenet"),
    (["--modes", "untargeted", "untargeted"], "--modes repeats untargeted"),
    (["--attacks", "nope"], "unknown attack 'nope'"),
    (["--attacks", "dag:num_steps=0"], "num_steps"),
    (["--attacks", "dag:num_steps=nan"], "num_steps"),
    (["--attacks", "dag:targeted=true"], "targeted is set by the benchmark"),
    (["--attacks", "pgd:eps=0.1"], "give the budgets of fixed-budget attacks with --eps"),
    (["--attacks", "dag:oops"], "is not key=value"),
    (["--images", "seeds:9-3"], "bad seed range"),
    (["--images", "no/such/folder"], "unknown image source"),
    (["--images", "seeds:0-99999999"], "split it into several runs"),
    (["--images", "seeds:" + "9" * 5000 + "-1"], "bad seed range"),
]


@pytest.mark.parametrize("extra, message", BAD_RUN_ARGUMENTS, ids=[" ".join(a) for a, _ in BAD_RUN_ARGUMENTS])
def test_run_refuses_bad_arguments_before_computing_or_writing(extra, message, tmp_path, capsys, no_compute):
    out = tmp_path / "sub" / "r.jsonl"
    err = _refused(["run", "--attacks", "dag", "--out", str(out), "--report", str(tmp_path / "rep"), *extra],
                   capsys)
    assert message in err
    assert list(tmp_path.iterdir()) == [], "nothing may be created"


def test_devices_this_machine_lacks_are_refused(tmp_path, capsys, no_compute, monkeypatch):
    if not torch.cuda.is_available():
        err = _refused(["run", "--device", "cuda", "--out", str(tmp_path / "r.jsonl")], capsys, code=2)
        assert "CUDA is not available" in err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    err = _refused(["run", "--device", "cuda:99", "--out", str(tmp_path / "r.jsonl")], capsys, code=2)
    assert "this machine has 2 CUDA device(s), cuda:0 to cuda:1" in err
    assert list(tmp_path.iterdir()) == []


def test_outputs_that_cannot_be_written_are_refused_up_front(tmp_path, capsys, no_compute):
    folder = tmp_path / "folder"
    folder.mkdir()
    a_file = tmp_path / "file"
    a_file.write_text("x")
    err = _refused(["run", "--attacks", "dag", "--out", str(folder)], capsys, code=1)
    assert f"--out {folder} is a folder" in err
    err = _refused(["run", "--attacks", "dag", "--out", str(a_file / "r.jsonl")], capsys, code=1)
    assert f"{a_file} is a file, not a folder" in err
    err = _refused(["run", "--attacks", "dag", "--out", str(a_file / "deeper" / "r.jsonl")], capsys, code=1)
    assert f"{a_file} is a file, not a folder" in err
    err = _refused(["run", "--attacks", "dag", "--out", str(tmp_path / "r.jsonl"), "--report", str(a_file)],
                   capsys, code=1)
    assert f"--report {a_file} is a file" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder"]
    assert a_file.read_text() == "x"


def test_an_unwritable_folder_is_refused_up_front(tmp_path, capsys, no_compute, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == locked else real_access(p, mode))
    err = _refused(["run", "--attacks", "dag", "--out", str(locked / "r.jsonl")], capsys, code=1)
    assert f"the folder {locked} is not writable" in err
    err = _refused(["prox", "--count", "1", "--dim", "3", "--out", str(locked / "sub" / "p")], capsys, code=1)
    assert "not writable" in err
    assert list(locked.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only files")
def test_a_read_only_results_file_is_refused_up_front(tmp_path, capsys, no_compute):
    out = tmp_path / "r.jsonl"
    append_records(out, [record()])
    out.chmod(0o444)
    try:
        err = _refused(["run", "--attacks", "dag", "--out", str(out)], capsys, code=1)
    finally:
        out.chmod(0o644)
    assert "cannot be read and written" in err


def test_report_refuses_missing_and_unusable_paths(tmp_path, capsys):
    err = _refused(["report", str(tmp_path / "missing.jsonl")], capsys, code=1)
    assert "missing.jsonl does not exist" in err
    err = _refused(["report", str(tmp_path)], capsys, code=1)
    assert "is a folder, not a file" in err
    results = tmp_path / "r.jsonl"
    append_records(results, [record()])
    err = _refused(["report", str(results), "--out-dir", str(results)], capsys, code=1)
    assert f"--out-dir {results} is a file" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.jsonl"]


BAD_OTHER_ARGUMENTS = [
    (["prox", "--count", "0"], "--count: must be a whole number >= 1"),
    (["prox", "--dim", "-3"], "--dim: must be a whole number >= 1"),
    (["prox", "--iterations", "5", "0"], "--iterations: must be a whole number >= 1"),
    (["prox", "--threads", "0"], "--threads: must be a whole number >= 1"),
    (["prox", "--device", "gpu"], "'gpu' is not a device"),
    (["penalty", "--steps", "0"], "--steps: must be a whole number >= 1"),
    (["penalty", "--steps", "1000000"], "num_steps must be in"),
    (["penalty", "--model", "nope"], "unknown model 'nope'"),
    (["penalty", "--limit", "-1"], "--limit: must be a whole number >= 1"),
    (["penalty", "--device", "cuda:x"], "is not a device"),
    (["penalty", "--threads", "-3"], "--threads: must be a whole number >= 1"),
    (["penalty", "--images", "seeds:5-1"], "bad seed range"),
    (["penalty", "--modes", "targeted", "targeted"], "--modes repeats targeted"),
    (["reference", "--steps", "-2"], "--steps: must be a whole number >= 1"),
    (["reference", "--model", "nope"], "unknown model 'nope'"),
    (["reference", "--attacks", "dag", "dag"], "--attacks repeats dag"),
    (["speed", "--device", "gpu"], "'gpu' is not a device"),
    (["speed", "--threads", "0"], "--threads: must be a whole number >= 1"),
    (["speed", "--seed", "x"], "--seed: must be a whole number"),
    (["speed", "--height", "100000", "--width", "100000"], "the speed check allows at most"),
]


@pytest.mark.parametrize("argv, message", BAD_OTHER_ARGUMENTS, ids=[" ".join(a) for a, _ in BAD_OTHER_ARGUMENTS])
def test_other_subcommands_refuse_bad_arguments(argv, message, tmp_path, capsys, no_compute):
    out = [] if argv[0] == "speed" else ["--out", str(tmp_path / "o")]
    err = _refused([*argv, *out], capsys)
    assert message in err
    assert list(tmp_path.iterdir()) == []


def test_bad_input_exits_with_status_1_and_one_line(tmp_path, capsys, no_compute):
    """A bad combination exits 1 with its message on stderr (and in the SystemExit, for callers)."""
    with pytest.raises(SystemExit, match="unknown attack 'nope'") as stop:
        main(["run", "--attacks", "nope", "--out", str(tmp_path / "r.jsonl")])
    assert stop.value.code == 1
    assert capsys.readouterr().err.strip().startswith("explorer-bench: unknown attack 'nope'")


def test_internal_errors_are_not_hidden(tmp_path, monkeypatch):
    """Only bad input becomes a one-line message; a bug keeps its exception (never a success)."""
    import explorer.bench.report as report_module

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(report_module, "write_report", broken)
    results = tmp_path / "r.jsonl"
    append_records(results, [record()])
    with pytest.raises(ZeroDivisionError):
        main(["report", str(results)])


def test_run_and_report_over_a_damaged_results_file(tmp_path, capsys):
    """A real (tiny) run resumes a file with junk and a torn last line, and its report works."""
    out = tmp_path / "r.jsonl"
    argv = ["run", "--attacks", "dag:num_steps=2", "--modes", "untargeted", "--images", "seeds:10000-10001",
            "--threads", "1", "--no-progress", "--out", str(out), "--report", str(tmp_path / "rep")]
    out.write_bytes(b"42\n\xff\xfe\x00junk\n{\"key\": \"street-fpn-mobilenet|clean|untarg")
    main(argv)
    captured = capsys.readouterr()
    assert "4 batches run, 0 already done" in captured.out
    (warning,) = _warnings(captured.err)
    assert str(out) in warning and "skipped 3 unreadable lines" in warning and "cut off" in warning
    records = read_records(out)
    assert {r["row"] for r in records} == {"clean", "dag:num_steps=2"} and len(records) == 4
    assert "4 per-image results" in (tmp_path / "rep" / "report.md").read_text()
    capsys.readouterr()
    main(argv)  # resumed: nothing left to do, the junk still skipped and said once by this command too
    captured = capsys.readouterr()
    assert "0 batches run, 4 already done" in captured.out
    assert len(_warnings(captured.err)) == 1
    main(["report", str(out), "--out-dir", str(tmp_path / "again")])
    assert len(_warnings(capsys.readouterr().err)) == 1
    assert "4 per-image results" in (tmp_path / "again" / "report.md").read_text()


# --------------------------------------------------------------------------- folder sources


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
    err = _refused(["run", "--attacks", "dag:num_steps=2", "--modes", "untargeted", "--images", str(root),
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


def test_run_benchmark_checks_its_arguments_itself(tmp_path, no_compute):
    """The library entry point refuses what the command line refuses, before any work."""
    from explorer.bench.run import parse_rows, run_benchmark

    rows = parse_rows(["pgd:num_steps=2"])
    out = tmp_path / "r.jsonl"
    for kwargs, message in [({"eps_255": [float("nan")]}, "--eps"), ({"eps_255": [1], "limit": -1}, "limit"),
                            ({"eps_255": [1], "batch_size": 0}, "--batch-size"),
                            ({"eps_255": [1], "device": "gpu"}, "not a device"),
                            ({"eps_255": []}, "give at least one --eps")]:
        with pytest.raises(InputError, match=message):
            run_benchmark(["street-fpn-mobilenet"], rows, out, **kwargs)
    assert not out.exists()


def test_comparisons_refuse_a_folder_of_several_sizes_before_attacking(tmp_path, capsys, monkeypatch):
    import explorer.bench.compare as compare

    root = _folder(tmp_path / "data")
    for name, (h, w) in {"a": (32, 48), "b": (40, 40)}.items():
        _save(root / "images" / f"{name}.png", np.zeros((h, w, 3), np.uint8))
        _save(root / "labels" / f"{name}.png", np.zeros((h, w), np.uint8))
    monkeypatch.setattr(compare, "compare_penalty_gradients", lambda *a, **k: pytest.fail("attacked"))
    err = _refused(["penalty", "--images", str(root), "--steps", "2", "--modes", "untargeted", "--threads", "1",
                    "--out", str(tmp_path / "o")], capsys, code=1)
    assert "must share one size" in err and "48x32" in err and "40x40" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
