"""Sessions of the served app against hostile clients (issue 13).

Gradio takes any string as a session hash.  These tests send hostile ones — relative and
absolute paths, NUL, megabytes — through the code paths that write and delete files (a
run finishing, the session closing) and check that a canary folder outside the app's
root, and the root itself, stay untouched; and that every run a session starts (a Run and a
Compare at once) stays stoppable.
"""
import os
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from app_events import STREET
from app_server import served_app

from explorer import ui

pytestmark = pytest.mark.usefixtures("session_files")


def hostile_ids(canary: Path):
    """Session hashes a hostile client may send (``canary`` is the folder they aim at)."""
    return ["..", "../canary", "../../..", str(canary), str(canary) + "/", "canary\x00", "\x00", "",
            ".", "/", "~", "..\\canary", "%2e%2e", "x" * 100_000, "ü/../canary", "\ud800"]


@pytest.fixture
def layout(tmp_path, session_files):
    """The app's root (``session_files``, in ``tmp_path``) next to a canary folder holding a file."""
    root = session_files
    canary = tmp_path / "canary"
    (canary / "inner").mkdir(parents=True)
    (canary / "inner" / "keep.txt").write_text("keep me")
    return root, canary


def assert_untouched(root: Path, canary: Path):
    assert (canary / "inner" / "keep.txt").read_text() == "keep me"
    assert root.parent.is_dir() and (root.parent / "canary").is_dir()


def test_session_keys_are_fixed_length_hex_whatever_the_client_sends(layout):
    root, canary = layout
    keys = set()
    for raw in hostile_ids(canary) + [None, 42, b"bytes"]:
        key = ui.session_key(SimpleNamespace(session_hash=raw))
        assert len(key) == 32 and set(key) <= set("0123456789abcdef")
        keys.add(key)
    assert len(keys) == len(hostile_ids(canary)) + 3  # distinct sessions stay distinct
    assert ui.session_key(SimpleNamespace(session_hash="a")) == ui.session_key(SimpleNamespace(session_hash="a"))


def test_run_folders_and_cleanup_stay_under_the_root(layout):
    root, canary = layout
    for raw in hostile_ids(canary):
        request = SimpleNamespace(session_hash=raw)
        folder = ui.new_run_folder(request)
        assert folder.parent.parent == root and folder.is_dir()
        (folder / "file.txt").write_text("download")
        ui.cleanup_session(request)
        assert not folder.exists()
        assert_untouched(root, canary)
    assert root.is_dir() and not any(root.iterdir())


def test_only_app_folders_are_ever_deleted(layout):
    root, canary = layout
    root.mkdir()
    stray = root / "not-a-session"
    stray.mkdir()
    (root / ("0" * 32)).symlink_to(canary, target_is_directory=True)  # a link named like a session
    for folder in (canary, canary / "inner", stray, root, root / ("0" * 32), root.parent, Path("/")):
        ui._remove(folder)
    assert stray.is_dir() and root.is_dir()
    assert_untouched(root, canary)


def test_a_session_keeps_its_last_runs_downloads(layout):
    root, _ = layout
    request = SimpleNamespace(session_hash="one")
    folders = [ui.new_run_folder(request) for _ in range(ui.KEPT_RUNS_PER_SESSION + 2)]
    kept = [f for f in folders if f.exists()]
    assert kept == folders[-ui.KEPT_RUNS_PER_SESSION:]


def reaches_heartbeat(session_hash: str) -> bool:
    """Whether a session hash can be a URL path segment that reaches Gradio (no "/", no NUL)."""
    return "/" not in session_hash and "\x00" not in session_hash


def _heartbeat_then_leave(url: str, session_hash: str) -> None:
    """Open the session's heartbeat (as a browser tab does) and close it: Gradio then runs
    the app's unload handler for that session."""
    encoded = "".join(f"%{byte:02X}" for byte in session_hash.encode())  # dots too: no path normalising
    with httpx.stream("GET", f"{url}gradio_api/heartbeat/{encoded}", timeout=10) as response:
        for _ in response.iter_bytes():
            break


def test_hostile_session_ids_through_the_served_api_leave_a_canary_untouched(layout):
    from gradio_client import Client

    root, canary = layout
    with served_app() as url:
        # JSON-encodable and URL-sized; Gradio itself answers an empty hash with an error before our code runs
        sent = [h for h in hostile_ids(canary) if h and h != "\ud800" and len(h) < 10_000] + ["y" * 3000]
        for hostile in sent:
            client = Client(url, verbose=False)
            client.session_hash = hostile  # before its first request
            final = client.predict(STREET, "street-001", None, "dag", "untargeted", None, 2, 0, 0.99,
                                   api_name="/run")
            assert "finished after" in final[0], (hostile, final[0])
            assert len(final[9]) == 5
            assert_untouched(root, canary)
        sessions = [p for p in root.iterdir()]
        assert len(sessions) == len(set(sent)) and all(len(p.name) == 32 for p in sessions)
        # closing each session (its heartbeat ends) deletes its folder and nothing else
        for hostile in sent:
            if not reaches_heartbeat(hostile):
                continue  # no URL path segment can carry it; cleanup_session is tested with it above
            _heartbeat_then_leave(url, hostile)
        deadline = time.time() + 30
        kept = sum(1 for h in set(sent) if not reaches_heartbeat(h))
        while time.time() < deadline and len(list(root.iterdir())) > kept:
            time.sleep(0.2)
        left = {p.name for p in root.iterdir()}
        expected = {ui.session_key(SimpleNamespace(session_hash=h)) for h in sent if not reaches_heartbeat(h)}
        stray = [h[:20] for h in sent if ui.session_key(SimpleNamespace(session_hash=h)) in left - expected]
        assert left == expected, stray
        assert_untouched(root, canary)


def test_stop_stops_a_run_and_a_compare_of_the_same_session(layout):
    from gradio_client import Client

    with served_app(concurrency=2) as url:
        client = Client(url, verbose=False)
        run = client.submit(STREET, "street-002", None, "alma_prox", "untargeted", None, 2000, 0, 0.99,
                            api_name="/run")
        compare = client.submit(STREET, "street-002", None, "untargeted", None, ["alma_prox", "dag"], 2000, 0,
                                0.99, api_name="/compare")
        deadline = time.time() + 90
        while time.time() < deadline and (len(run.outputs()) < 2 or len(compare.outputs()) < 2):
            time.sleep(0.2)
        assert len(run.outputs()) >= 2 and len(compare.outputs()) >= 2, "both should be streaming"
        answer = client.predict(api_name="/stop")
        assert "ALMA prox" in answer and answer.count("**") >= 4, answer  # both runs named
        final_run = run.result(timeout=120)
        final_compare = compare.result(timeout=120)
        assert "stopped after" in final_run[0]
        rows = final_compare[2]["data"]
        assert len(rows) == 1  # the compare stopped inside its first attack, not after both
        assert int(dict(final_run[8]["data"])["iterations"]) < 2000
    assert not ui.ACTIVE_RUNS


def test_stop_by_name_of_runs_in_one_session_unit():
    request = SimpleNamespace(session_hash="many")
    first = ui.run_attack(STREET, "street-005", None, "alma_prox", "untargeted", None, 2000, 0, 0.99,
                          *[ui.ATTACKS[a].param(n).default for a, n in ui.PARAM_KEYS], request=request)
    second = ui.compare_attacks(STREET, "street-005", None, "untargeted", None, ["dag"], 2000, 0, 0.99,
                                request=request)
    next(first), next(second)
    assert len(ui.ACTIVE_RUNS[ui.session_key(request)]) == 2
    assert "stopping" in ui.stop_run(request)
    assert "stopped" in list(first)[-1]["status"]
    list(second)
    assert ui.session_key(request) not in ui.ACTIVE_RUNS


if os.name != "posix":  # pragma: no cover
    pytest.skip("file-system tests assume POSIX paths", allow_module_level=True)
