"""The benchmark's results file: one JSON object per line, one line per finished image.

Lines are appended as soon as a batch of images finishes — each batch as one ``write`` of
complete lines, flushed and fsynced — so an interrupted run keeps everything it finished.
A record's ``key`` names what was computed (model, attack row, mode, ε, image); a rerun
skips every key already present.

The file survives any kill point and any junk line:

* a run killed in the middle of a line leaves a torn fragment without its newline; the
  next append first ends that line (it writes ``"\\n"`` when the file does not end with
  one), so the fragment stays one unreadable line and the new records are whole lines;
* readers decode line by line from bytes and skip every line that is not a JSON object
  with a string ``"key"`` (torn fragments, ``42``, ``null``, lists, invalid UTF-8, binary
  junk), and say so: one warning line per file on stderr with the count and line numbers.

Under ``torchrun`` each rank appends to its own part file ``<out>.part<rank>`` and rank 0
merges the parts into ``<out>`` at the end (:func:`merge_parts`); a part left by a killed
run counts as finished work on the next start and is merged then.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Set, Tuple

from explorer.bench.checks import warn

#: line numbers listed in a warning (the count covers them all)
LISTED_LINES = 5
#: inside :func:`one_warning_per_file`: (file, bad line numbers) already reported
_reported: Optional[Set[Tuple[str, Tuple[int, ...]]]] = None


@contextmanager
def one_warning_per_file() -> Iterator[None]:
    """Within this block, the same bad lines of a file are reported once, however often it is
    read (a run reads its results file to resume, to merge and to report).  Outside any such
    block every read reports them."""
    global _reported
    outer = _reported
    _reported = set() if outer is None else outer
    try:
        yield
    finally:
        _reported = outer


def record_key(model: str, row: str, mode: str, eps_255: Optional[float], image: str) -> str:
    """The identity of one result: what was attacked, how, and at which budget."""
    eps = "-" if eps_255 is None else f"{eps_255:g}"
    return f"{model}|{row}|{mode}|{eps}|{image}"


def part_path(out: Path, rank: int) -> Path:
    return out.with_name(f"{out.name}.part{rank}")


def part_files(out: Path) -> List[Path]:
    """The part files ``<out>.part<rank>`` present next to ``out``, by rank.

    Listed by name, not by a glob pattern, so an ``out`` whose name holds ``[`` or ``*``
    still finds its own parts and no one else's."""
    out = Path(out)
    prefix = f"{out.name}.part"
    try:
        entries = list(out.parent.iterdir()) if out.parent.is_dir() else []
    except OSError:
        return []
    parts = [p for p in entries
             if p.name.startswith(prefix) and p.name[len(prefix):].isdigit() and p.is_file()]
    return sorted(parts, key=lambda p: int(p.name[len(prefix):]))


def _parse_line(raw: bytes) -> Tuple[Optional[Dict], str]:
    """The record on one line, or None with the reason it is not one."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None, "not JSON"
    if not isinstance(value, dict):
        return None, f"a JSON {type(value).__name__ if value is not None else 'null'}, not a record"
    if not isinstance(value.get("key"), str):
        return None, "a record without a string \"key\""
    return value, ""


def _read_lines(path: Path) -> Iterator[Dict]:
    """Records of one file, skipping (and reporting once) every line that is not a record."""
    path = Path(path)
    if not path.is_file():
        return
    bad: List[Tuple[int, str]] = []
    torn_end = False
    with path.open("rb") as f:
        number = 0
        for raw in f:
            number += 1
            line = raw.strip()
            if not line:
                continue
            record, reason = _parse_line(line)
            if record is None:
                bad.append((number, reason))
                torn_end = not raw.endswith(b"\n")
                continue
            yield record
    if bad:
        _report_bad_lines(path, bad, torn_end)


def _report_bad_lines(path: Path, bad: List[Tuple[int, str]], torn_end: bool) -> None:
    key = (str(path.resolve()), tuple(n for n, _ in bad))
    if _reported is not None:
        if key in _reported:
            return
        _reported.add(key)
    listed = "; ".join(f"line {n}: {reason}" for n, reason in bad[:LISTED_LINES])
    more = f"; and {len(bad) - LISTED_LINES} more" if len(bad) > LISTED_LINES else ""
    torn = " (the last one is cut off, as a killed run leaves it)" if torn_end else ""
    lines = "line" if len(bad) == 1 else "lines"
    warn(f"{path}: skipped {len(bad)} unreadable {lines}{torn} — {listed}{more}")


def read_records(out: Path, include_parts: bool = True) -> List[Dict]:
    """Every record in ``out`` (and its part files), first occurrence of each key kept."""
    out = Path(out)
    paths = [out] + (part_files(out) if include_parts else [])
    seen, records = set(), []
    for path in paths:
        for record in _read_lines(path):
            if record["key"] not in seen:
                seen.add(record["key"])
                records.append(record)
    return records


def finished_keys(out: Path) -> set:
    return {r["key"] for r in read_records(out)}


def _ends_with_newline(path: Path) -> bool:
    """Whether ``path`` is empty, absent, or ends with a complete line."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() == 0:
                return True
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"
    except FileNotFoundError:
        return True


def append_records(path: Path, records: Iterable[Mapping]) -> None:
    """Append records as JSON lines in one write, on a fresh line, and flush them to disk.

    A file left without its final newline (a run killed mid-line) first gets one, so the
    torn fragment stays a line of its own and the first new record is not glued to it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(dict(record), sort_keys=True) + "\n" for record in records).encode("utf-8")
    if data and not _ends_with_newline(path):
        data = b"\n" + data
    with path.open("ab") as f:
        if data:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def merge_parts(out: Path) -> int:
    """Move the records of ``out``'s part files into ``out`` (keys not yet there); return how many.

    Unreadable lines of the parts are skipped (and reported); a part is removed only once
    its records are safely in ``out``."""
    out = Path(out)
    present = {r["key"] for r in _read_lines(out)}
    parts = part_files(out)
    new = []
    for part in parts:
        for record in _read_lines(part):
            if record["key"] not in present:
                present.add(record["key"])
                new.append(record)
    new.sort(key=lambda r: r["key"])
    append_records(out, new)
    for part in parts:
        part.unlink()
    return len(new)
