"""The benchmark's results store against hostile input: kills at any byte, junk lines in the
results file and its part files, and reports over damaged or mistyped records."""
from __future__ import annotations

import json

import pytest
from bench_helpers import record, warning_lines

from explorer.bench import report, store
from explorer.bench.cli import main
from explorer.bench.store import append_records, merge_parts, part_path, read_records


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
            (warning,) = warning_lines(err)
            assert str(out) in warning and "skipped 1 unreadable line" in warning and "line 3" in warning
        else:
            assert not warning_lines(err)


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
    (warning,) = warning_lines(capsys.readouterr().err)
    assert str(out) in warning and "line 2" in warning and "skipped 1 unreadable line" in warning
    append_records(out, [record(image="c")])
    assert [r["image"] for r in read_records(out)] == ["a", "b", "c"]
    assert len(warning_lines(capsys.readouterr().err)) == 1, "every read says it"
    with store.one_warning_per_file():  # what a command does: however often it reads the file
        for _ in range(3):
            assert len(read_records(out)) == 3
    assert len(warning_lines(capsys.readouterr().err)) == 1


def test_many_junk_lines_give_one_warning_with_their_count(tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    lines = [json.dumps(record(image="a")).encode()] + list(JUNK.values()) + [json.dumps(record(image="b")).encode()]
    out.write_bytes(b"\n".join(lines))  # the last line has no newline but is whole
    assert [r["image"] for r in read_records(out)] == ["a", "b"]
    (warning,) = warning_lines(capsys.readouterr().err)
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
    warnings = warning_lines(captured.err)
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
