"""Fixtures of the model tests: no network at all, and an empty shipped-weights folder."""
import socket

import pytest

from explorer.models import refresh_shipped


@pytest.fixture(autouse=True)
def no_network(monkeypatch, tmp_path_factory):
    """Offline mode, empty download caches, and a record of every attempted connection."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network disabled in tests")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("EXPLORER_OFFLINE", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch_home")))
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path_factory.mktemp("hf_cache")))
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    yield attempts
    assert not attempts, f"the code tried to reach the network: {attempts}"


@pytest.fixture
def weights(tmp_path, monkeypatch):
    """An empty shipped-weights folder the registry scans (restored to the default afterwards)."""
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setenv("EXPLORER_WEIGHTS_DIR", str(folder))
    refresh_shipped()
    yield folder
    monkeypatch.delenv("EXPLORER_WEIGHTS_DIR")
    refresh_shipped()
