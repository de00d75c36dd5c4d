"""Many users (issue 8): memory and download folders stay flat over 50 runs, and the served
app gives each of eight queued sessions its own result, refuses a ninth, and keeps serving
after bad files and out-of-memory errors.  The served tests launch the app on a localhost
port with gradio_client sessions; the browser test drives Debian's chromium."""
from __future__ import annotations

import gc
import hashlib
import json
import threading
import time
import weakref
from pathlib import Path

import pytest
import torch
from app_events import request, run_event, run_out_of_memory_in_the_app
from pictures import png

from explorer import ui

torch.set_num_threads(1)
pytestmark = pytest.mark.usefixtures("session_files")


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
    per_session = 1 + kept * (1 + 5)  # the session folder, its run folders, five downloads in each
    assert len(files_after[30]) == len(files_after[50]) == 5 * per_session
    assert len(files_after[10]) == 5 * (1 + 2 * (1 + 5))
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
    real = ui.build_scene

    def held(*args, **kwargs):  # holds the running requests until the queue has been filled
        entered.append(1)
        assert gate.wait(60), "the test never opened the gate"
        return real(*args, **kwargs)

    monkeypatch.setattr(ui, "build_scene", held)
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
    monkeypatch.setattr(ui, "build_scene", real)
    final = client.predict("street-fpn-mobilenet", None, handle_file(str(good)), "alma_prox", "untargeted",
                           None, 3, 0, 0.99, api_name="/run")
    assert "finished after 3 iterations" in final[0]


def test_the_browser_shows_a_warning_for_a_damaged_upload_and_then_takes_a_good_one(small_app, tmp_path):
    from app_server import app_page

    damaged, good = tmp_path / "damaged.png", tmp_path / "good.png"
    damaged.write_bytes(png(40, 60)[:120])
    good.write_bytes(png(40, 60))
    status = "document.querySelector('#status').innerText"
    with app_page(small_app) as page:  # generous timeouts: each wait returns as soon as it holds (CI may be loaded)
        page.set_input_files("#upload input[type=file]", str(damaged))
        page.wait_for_function(f"{status}.includes('damaged')", timeout=90000)
        page.click("#upload button[aria-label='Clear']", timeout=90000)
        # the clear's own preview replaces the warning before the good picture goes in
        page.wait_for_function(f"!{status}.includes('damaged')", timeout=90000)
        page.set_input_files("#upload input[type=file]", str(good), timeout=90000)
        page.wait_for_function(f"{status}.includes('upload (60×40)')", timeout=90000)
