"""The benchmark's command line against hostile input: every argument checked before anything
is computed or written, unwritable outputs refused up front, bad input one line and status 1,
and a real run over a damaged results file.  The ``no_compute`` fixture (conftest.py of this
folder) fails a test whose command reaches model loading or an attack."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from bench_helpers import record, refused, warning_lines

from explorer.bench.cli import main
from explorer.bench.store import append_records, read_records
from explorer.errors import InputError

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
    (["--seed", str(2 ** 70)], "--seed: must be a whole number in [0,"),
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
    err = refused(["run", "--attacks", "dag", "--out", str(out), "--report", str(tmp_path / "rep"), *extra],
                   capsys)
    assert message in err
    assert list(tmp_path.iterdir()) == [], "nothing may be created"


def test_devices_this_machine_lacks_are_refused(tmp_path, capsys, no_compute, monkeypatch):
    if not torch.cuda.is_available():
        err = refused(["run", "--device", "cuda", "--out", str(tmp_path / "r.jsonl")], capsys, code=2)
        assert "CUDA is not available" in err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    err = refused(["run", "--device", "cuda:99", "--out", str(tmp_path / "r.jsonl")], capsys, code=2)
    assert "this machine has 2 CUDA device(s), cuda:0 to cuda:1" in err
    assert list(tmp_path.iterdir()) == []


def test_outputs_that_cannot_be_written_are_refused_up_front(tmp_path, capsys, no_compute):
    folder = tmp_path / "folder"
    folder.mkdir()
    a_file = tmp_path / "file"
    a_file.write_text("x")
    err = refused(["run", "--attacks", "dag", "--out", str(folder)], capsys, code=1)
    assert f"--out {folder} is a folder" in err
    err = refused(["run", "--attacks", "dag", "--out", str(a_file / "r.jsonl")], capsys, code=1)
    assert f"{a_file} is a file, not a folder" in err
    err = refused(["run", "--attacks", "dag", "--out", str(a_file / "deeper" / "r.jsonl")], capsys, code=1)
    assert f"{a_file} is a file, not a folder" in err
    err = refused(["run", "--attacks", "dag", "--out", str(tmp_path / "r.jsonl"), "--report", str(a_file)],
                   capsys, code=1)
    assert f"--report {a_file} is a file" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder"]
    assert a_file.read_text() == "x"


def test_an_unwritable_folder_is_refused_up_front(tmp_path, capsys, no_compute, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == locked else real_access(p, mode))
    err = refused(["run", "--attacks", "dag", "--out", str(locked / "r.jsonl")], capsys, code=1)
    assert f"the folder {locked} is not writable" in err
    err = refused(["prox", "--count", "1", "--dim", "3", "--out", str(locked / "sub" / "p")], capsys, code=1)
    assert "not writable" in err
    assert list(locked.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only files")
def test_a_read_only_results_file_is_refused_up_front(tmp_path, capsys, no_compute):
    out = tmp_path / "r.jsonl"
    append_records(out, [record()])
    out.chmod(0o444)
    try:
        err = refused(["run", "--attacks", "dag", "--out", str(out)], capsys, code=1)
    finally:
        out.chmod(0o644)
    assert "cannot be read and written" in err


def test_report_refuses_missing_and_unusable_paths(tmp_path, capsys):
    err = refused(["report", str(tmp_path / "missing.jsonl")], capsys, code=1)
    assert "missing.jsonl does not exist" in err
    err = refused(["report", str(tmp_path)], capsys, code=1)
    assert "is a folder, not a file" in err
    results = tmp_path / "r.jsonl"
    append_records(results, [record()])
    err = refused(["report", str(results), "--out-dir", str(results)], capsys, code=1)
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
    err = refused([*argv, *out], capsys)
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
    import explorer.bench.cli as cli_module

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(cli_module, "write_report", broken)
    results = tmp_path / "r.jsonl"
    append_records(results, [record()])
    with pytest.raises(ZeroDivisionError):
        main(["report", str(results)])


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


def test_run_and_report_over_a_damaged_results_file(tmp_path, capsys):
    """A real (tiny) run resumes a file with junk and a torn last line, and its report works."""
    out = tmp_path / "r.jsonl"
    argv = ["run", "--attacks", "dag:num_steps=2", "--modes", "untargeted", "--images", "seeds:10000-10001",
            "--threads", "1", "--no-progress", "--out", str(out), "--report", str(tmp_path / "rep")]
    out.write_bytes(b"42\n\xff\xfe\x00junk\n{\"key\": \"street-fpn-mobilenet|clean|untarg")
    main(argv)
    captured = capsys.readouterr()
    assert "4 batches run, 0 already done" in captured.out
    (warning,) = warning_lines(captured.err)
    assert str(out) in warning and "skipped 3 unreadable lines" in warning and "cut off" in warning
    records = read_records(out)
    assert {r["row"] for r in records} == {"clean", "dag:num_steps=2"} and len(records) == 4
    assert "4 per-image results" in (tmp_path / "rep" / "report.md").read_text()
    capsys.readouterr()
    main(argv)  # resumed: nothing left to do, the junk still skipped and said once by this command too
    captured = capsys.readouterr()
    assert "0 batches run, 4 already done" in captured.out
    assert len(warning_lines(captured.err)) == 1
    main(["report", str(out), "--out-dir", str(tmp_path / "again")])
    assert len(warning_lines(capsys.readouterr().err)) == 1
    assert "4 per-image results" in (tmp_path / "again" / "report.md").read_text()
