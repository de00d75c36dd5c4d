"""Helpers of the benchmark tests: hand-made result records, the warning lines a command
printed, and a command that must be refused with one line."""
from __future__ import annotations

import pytest

from explorer.bench.cli import main
from explorer.bench.store import record_key


def record(row="A", image="i", *, model="m", mode="untargeted", eps=None, linf_255=1.0, success=True,
           intersection=(1, 0), union=(2, 1), labelled=2, seconds=1.0, forwards=3, backwards=3, **extra):
    """A per-image record of a results file, as ``explorer-bench run`` writes it (``extra``:
    more fields, such as the 8-bit finish's)."""
    return {"key": record_key(model, row, mode, eps, image), "model": model, "row": row, "mode": mode,
            "eps_255": eps, "image": image, "linf_255": linf_255, "success": success,
            "intersection": list(intersection), "union": list(union), "labelled": labelled,
            "seconds": seconds, "forwards": forwards, "backwards": backwards, **extra}


def warning_lines(err: str):
    """The lines of ``err`` that are warnings."""
    return [line for line in err.splitlines() if "warning" in line]


def refused(argv, capsys, code=None):
    """Run the command ``argv``: it must exit non-zero (with ``code`` if given), without a
    traceback, with exactly one ``explorer-bench`` line on stderr; returns stderr."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code not in (0, None), err
    if code is not None:
        assert stop.value.code == code
    assert "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith("explorer-bench")]) == 1, err
    return err
