"""Fixtures shared by every test folder.

Helper functions live in plain modules next to this file (importable from every folder
through ``pythonpath = ["tests"]`` in pyproject.toml): ``pictures`` (encoded noise and label
maps), ``app_events`` (fake requests, the Run handler, out-of-memory models), ``app_server``
(the served app and its browser), ``tiny_models`` (randomly initialised shipped-format
models), ``bench_helpers`` (benchmark records and refused commands) and
``linear_segmenter`` (a model whose minimal perturbation is known exactly).
"""
import os

import pytest

# Nothing is downloaded in the tests: set before any test module imports huggingface_hub
# (an explicit HF_HUB_OFFLINE=0 in the environment is kept).
os.environ.setdefault("HF_HUB_OFFLINE", "1")

STREET = "street-fpn-mobilenet"


@pytest.fixture
def session_files(tmp_path, monkeypatch):
    """Offline, per-test download folders for the app (``explorer.ui.FILES_ROOT``), and no
    run left registered afterwards.  Yields the folder."""
    from explorer import ui

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(ui, "FILES_ROOT", tmp_path / "sessions")
    yield tmp_path / "sessions"
    assert not ui.ACTIVE_RUNS


@pytest.fixture(scope="session")
def street_model():
    """The shipped street model, loaded once (the app's shared, frozen copy)."""
    from explorer.live.scene import cached_model

    return cached_model(STREET)
