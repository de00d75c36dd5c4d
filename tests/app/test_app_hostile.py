"""The app's handlers against bad input and faults (issue 8): bad parameters, foreign run
files, damaged uploads, an unexpected error and running out of memory each give a warning,
and the app keeps working."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from app_events import STREET, run_event, run_out_of_memory_in_the_app
from pictures import png

from explorer import ui

torch.set_num_threads(1)
pytestmark = pytest.mark.usefixtures("session_files")


# ============================================================================= bad input: parameters, run files

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
        assert views[:4] == [None] * 4 and status.startswith("⚠️")
        updates = run_event(upload=bad)
        assert len(updates) == 1 and updates[0]["status"].startswith("⚠️")
    image, *_, status = ui.preview(STREET, "street-000", png(40, 60), "untargeted", None)
    scale = image.shape[1] // 60  # shown at the maps' size, each pixel a scale × scale block
    assert image.shape == (40 * scale, 60 * scale, 3) and "upload" in status and "procedural" in status
    final = run_event(upload=png(40, 60))[-1]
    assert "finished after 2 iterations" in final["status"]
    spec = json.loads(Path([p for p in final["downloads"] if p.endswith(".json")][0]).read_text())
    assert spec["image"] == "upload:" + hashlib.sha256(png(40, 60)).hexdigest()


def test_an_unexpected_error_in_a_handler_is_a_warning_not_a_crash(monkeypatch):
    def broken(*args, **kwargs):
        raise KeyError("something internal")

    monkeypatch.setattr(ui, "prepare_scene", broken)  # the preview's scene
    monkeypatch.setattr(ui, "build_scene", broken)  # the run's, in its GPU stream
    *_, status = ui.preview(STREET, "street-000", None, "untargeted", None)
    assert status.startswith("⚠️") and "still running" in status
    assert run_event(sample="street-000")[0]["status"].startswith("⚠️")


def test_out_of_memory_in_the_app_is_a_warning_and_the_next_run_works(monkeypatch):
    real = run_out_of_memory_in_the_app(monkeypatch)
    updates = run_event(upload=png(), steps=20)
    assert updates[-1]["status"].startswith("⚠️") and "smaller image" in updates[-1]["status"]
    assert any("apsr_plot" in u for u in updates[:-1])  # the curves streamed before stay shown
    monkeypatch.setattr(ui, "build_scene", real)
    assert "finished after 2" in run_event(upload=png())[-1]["status"]
