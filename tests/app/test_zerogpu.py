"""The app under a simulation of Hugging Face ZeroGPU (tests/zerogpu.py): the Run and Compare
streams execute in a forked worker process, every value they yield is pickled across, and
Stop — pressed in the server process — reaches the worker through the run's stop flag."""
import sys
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from app_events import request, widget_defaults
from zerogpu import FakeZeroGPU

from explorer import ui
from explorer.live.run import Replay

STREET = "street-fpn-mobilenet"

if sys.platform != "linux":  # pragma: no cover
    pytest.skip("ZeroGPU forks workers; the simulation needs Linux's fork", allow_module_level=True)


class LoggedModel(torch.nn.Module):
    """Wraps a model; appends, for every forward, its start time (CLOCK_MONOTONIC, shared
    by every process of the machine) and whether it builds a gradient (an attack iteration)
    to a log file — written by the worker process, read by the test."""

    def __init__(self, model, log: Path, delay: float):
        super().__init__()
        self.model, self.log, self.delay = model, log, delay

    @property
    def dataset(self):
        return self.model.dataset

    def forward(self, x):
        with open(self.log, "a") as handle:
            handle.write(f"{time.perf_counter()} {int(torch.is_grad_enabled() and x.requires_grad)}\n")
        time.sleep(self.delay)
        return self.model(x)


@pytest.fixture
def zerogpu(monkeypatch, session_files):
    """The app's streams wrapped by the fake ``spaces.GPU`` (as ``on_gpu`` wraps them on a Space)."""
    fake = FakeZeroGPU()
    monkeypatch.setitem(sys.modules, "spaces", types.SimpleNamespace(GPU=fake.GPU))
    monkeypatch.setattr(ui, "attack_on_gpu", ui.on_gpu(ui.attack_stream, ui.booked_seconds))
    monkeypatch.setattr(ui, "compare_on_gpu", ui.on_gpu(ui.compare_stream, ui.booked_seconds))
    return fake


@pytest.fixture
def logged_forwards(monkeypatch, tmp_path):
    """Runs use a model that logs its forwards (and sleeps 20 ms in each, so a run lasts)."""
    log = tmp_path / "forwards.log"
    real = ui.build_scene

    def logged_scene(*args, **kwargs):
        scene = real(*args, **kwargs)
        scene.model = LoggedModel(scene.model, log, delay=0.02)
        return scene

    monkeypatch.setattr(ui, "build_scene", logged_scene)
    return log


def read_log(log: Path):
    return [(float(t), g == "1") for t, g in (line.split() for line in log.read_text().splitlines())]


def test_without_spaces_the_streams_run_in_the_server_process(monkeypatch):
    monkeypatch.setitem(sys.modules, "spaces", None)  # import spaces -> ImportError
    assert ui.on_gpu(ui.attack_stream, ui.booked_seconds) is ui.attack_stream


def test_a_run_streams_from_the_worker_and_finishes_with_metrics_downloads_and_replay(zerogpu, session_files,
                                                                                     logged_forwards):
    updates = list(ui.run_attack(STREET, "street-004", None, "alma_prox", "untargeted", None, 12, 0, 0.99,
                                 *widget_defaults(), request=request("zero")))
    final = updates[-1]
    assert zerogpu.calls == 1 and ui.GPU_SECONDS_MIN <= zerogpu.bookings[0] <= ui.GPU_SECONDS_MAX
    assert "finished after 12 iterations" in final["status"], final["status"]
    assert sum("apsr_plot" in u for u in updates[:-1]) >= 1  # curves streamed before the end
    metrics = dict(zip(final["metrics"]["metric"], final["metrics"]["value"]))
    assert metrics["iterations"] == "12"
    # the worker wrote the downloads into the run folder the server chose, under the app's root
    paths = [Path(p) for p in final["downloads"]]
    assert len(paths) == 5 and all(p.is_file() and session_files in p.parents for p in paths)
    replay = final["state"]
    assert isinstance(replay, Replay) and replay.frames[-1].iteration == 11
    # the replay works in the server process on the copy that crossed over
    *views, status = ui.replay(0, replay)
    assert "replaying iteration 0 of 0–11" in status and isinstance(views[0], np.ndarray)
    # twelve iterations, one gradient pass each, all in the worker process
    assert sum(grad for _, grad in read_log(logged_forwards)) == 12
    assert not ui.ACTIVE_RUNS


def test_stop_from_the_server_process_ends_the_worker_run_within_one_iteration(zerogpu, session_files,
                                                                             logged_forwards):
    run = ui.run_attack(STREET, "street-005", None, "alma_prox", "untargeted", None, 2000, 0, 0.99,
                        *widget_defaults(), request=request("zero-stop"))
    updates = []
    for update in run:  # wait until the worker is well into the attack
        updates.append(update)
        if "iteration **" in update.get("status", "") and sum(g for _, g in read_log(logged_forwards)) >= 5:
            break
    asked = time.perf_counter()
    assert "stopping" in ui.stop_run(request("zero-stop"))
    final = list(run)[-1]
    assert "stopped after" in final["status"], final["status"]
    passes_after_stop = [t for t, grad in read_log(logged_forwards) if grad and t > asked]
    assert len(passes_after_stop) <= 1, f"{len(passes_after_stop)} iterations began after Stop"
    metrics = dict(zip(final["metrics"]["metric"], final["metrics"]["value"]))
    assert int(metrics["iterations"]) < 100 and metrics["stopped early"] == "yes"
    assert not ui.ACTIVE_RUNS


def test_compare_runs_in_the_worker_and_stops_from_the_server(zerogpu, session_files):
    outputs = list(ui.compare_attacks(STREET, "street-001", None, "untargeted", None, ["alma_prox", "dag"], 6, 0,
                                      0.99, request=request("zero-compare")))
    apsr_figure, linf_figure, table, status = outputs[-1]
    assert list(table["attack"]) == ["ALMA prox", "DAG"] and "2 attack" in status
    # booked for both attacks' passes
    assert zerogpu.bookings == [ui.gpu_seconds(12, np.zeros((128, 256)))]

    compare = ui.compare_attacks(STREET, "street-001", None, "untargeted", None, ["alma_prox", "dag"], 2000, 0,
                                 0.99, request=request("zero-compare"))
    next(compare)
    threading.Timer(1.0, ui.stop_run, args=(request("zero-compare"),)).start()
    *_, table, status = list(compare)[-1]
    assert list(table["attack"]) == ["ALMA prox"] and table["iterations"][0] < 2000


def test_a_value_that_cannot_cross_processes_is_a_clear_error_not_a_hang(zerogpu, session_files, monkeypatch):
    real = ui.finish_run

    def leaky_finish(*args, **kwargs):
        final = real(*args, **kwargs)
        final["state"] = threading.Lock()  # what the old app kept in its state
        return final

    monkeypatch.setattr(ui, "finish_run", leaky_finish)
    updates = list(ui.run_attack(STREET, "street-004", None, "alma_prox", "untargeted", None, 3, 0, 0.99,
                                 *widget_defaults(), request=request("zero-leak")))
    assert "ZeroGPU worker error" in updates[-1]["status"] and "pickle" in updates[-1]["status"]
