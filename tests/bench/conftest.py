"""Fixtures of the benchmark tests."""
import types

import pytest


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
