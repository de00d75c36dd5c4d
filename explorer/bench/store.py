"""The benchmark's results file: one JSON object per line, one line per finished image.

Lines are appended (and flushed) as soon as a batch of images finishes, so an interrupted
run keeps everything it finished.  A record's ``key`` names what was computed
(model, attack row, mode, ε, image); a rerun skips every key already present.

Under ``torchrun`` each rank appends to its own part file ``<out>.part<rank>`` and rank 0
merges the parts into ``<out>`` at the end (:func:`merge_parts`); a part left by a killed
run counts as finished work on the next start and is merged then.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Mapping, Optional


def record_key(model: str, row: str, mode: str, eps_255: Optional[float], image: str) -> str:
    """The identity of one result: what was attacked, how, and at which budget."""
    eps = "-" if eps_255 is None else f"{eps_255:g}"
    return f"{model}|{row}|{mode}|{eps}|{image}"


def part_path(out: Path, rank: int) -> Path:
    return out.with_name(f"{out.name}.part{rank}")


def _read_lines(path: Path) -> Iterator[Dict]:
    """Records of one file; a torn last line (the process was killed mid-write) is skipped."""
    if not path.is_file():
        return
    with path.open() as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


def read_records(out: Path, include_parts: bool = True) -> List[Dict]:
    """Every record in ``out`` (and its part files), first occurrence of each key kept."""
    out = Path(out)
    paths = [out] + (sorted(out.parent.glob(f"{out.name}.part*")) if include_parts else [])
    seen, records = set(), []
    for path in paths:
        for record in _read_lines(path):
            if record.get("key") not in seen:
                seen.add(record.get("key"))
                records.append(record)
    return records


def finished_keys(out: Path) -> set:
    return {r["key"] for r in read_records(out)}


def append_records(path: Path, records: Iterable[Mapping]) -> None:
    """Append records as JSON lines and flush them to disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        for record in records:
            f.write(json.dumps(record, sort_keys=True) + "\n")
        f.flush()


def merge_parts(out: Path) -> int:
    """Move the records of ``out``'s part files into ``out`` (keys not yet there); return how many."""
    out = Path(out)
    present = {r["key"] for r in _read_lines(out)}
    parts = sorted(out.parent.glob(f"{out.name}.part*"))
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
