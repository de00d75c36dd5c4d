"""The app's event functions (explorer.ui) called directly, without a browser: preview, Run
(streamed updates, metrics, downloads, replay, run files), Stop per session, Compare."""
import json
import pickle

import numpy as np
import pytest
import torch
from app_events import OBJECTS, STREET, request, widget_defaults

from explorer import ui

pytestmark = pytest.mark.usefixtures("session_files")


def test_preview_shows_the_clean_scene():
    image, reference, clean, labels, legend, status = ui.preview(STREET, "street-000", None, "majority", None)
    assert image.shape == reference.shape == clean.shape and reference.shape[1] >= 512  # one displayed size
    assert "street-000" in status and "ground truth" in status
    # every class drawn in the three maps is named in the legend, and only those
    from explorer.data.samples import load_sample
    drawn = set(np.unique(load_sample("street-000")[1].numpy())) - {255}
    names = ui.get_model_entry(STREET).dataset_info.class_names
    assert all(names[c] in legend for c in drawn)
    *_, status = ui.preview(STREET, "street-000", None, "background", None)
    assert status.startswith("⚠️") and "not available" in status


def test_run_event_streams_then_finishes_with_metrics_downloads_and_replay(session_files):
    updates = list(ui.run_attack(STREET, "street-004", None, "alma_prox", "untargeted", None, 25, 0, 0.99,
                                 *widget_defaults(), request=request("s1")))
    assert len(updates) >= 2
    streamed = updates[:-1]
    assert all({"status", "apsr_plot", "linf_plot"} <= set(u) for u in streamed)
    final = updates[-1]
    table = dict(zip(final["metrics"]["metric"], final["metrics"]["value"]))
    assert table["iterations"] == "25" and table["attack"] == "alma_prox"
    folder = session_files / ui.session_key(request("s1"))
    assert len(final["downloads"]) == 5 and all(p.startswith(str(folder)) for p in final["downloads"])
    run_file = [p for p in final["downloads"] if p.endswith(".json")][0]
    spec = json.loads(open(run_file).read())
    assert spec["params"]["num_steps"] == 25 and spec["image"] == "street-004"
    # replay: any frame; the loaded run file sets the controls back
    prediction, perturbation, adversarial, mask, apsr_plot, linf_plot, text = ui.replay(0, final["state"])
    assert prediction.shape == mask.shape and "iteration 0 of 0–24" in text
    # what the session keeps is plain data: it survives a process boundary (pickling) whole
    kept = pickle.loads(pickle.dumps(final["state"]))
    assert ui.replay(0, kept)[-1] == text and not any(isinstance(v, torch.nn.Module) for v in vars(kept).values())
    loaded = ui.load_run_file(run_file)
    assert loaded[0]["value"] == STREET and loaded[1]["value"] == "street-004" and loaded[4]["value"] == 25
    assert "loaded" in loaded[-1]
    assert ui.load_run_file(str(folder / "nothing.json"))[-1].startswith("⚠️")
    ui.cleanup_session(request("s1"))
    assert not folder.exists() and session_files.exists()


def test_run_event_reports_bad_input_without_raising():
    updates = list(ui.run_attack(STREET, "street-000", None, "dag", "untargeted", None, 10, -3, 0.99,
                                 *widget_defaults(), request=request("s2")))
    assert len(updates) == 1 and updates[0]["status"].startswith("⚠️") and "seed" in updates[0]["status"]


def test_stop_is_per_session():
    first = ui.run_attack(STREET, "street-005", None, "alma_prox", "untargeted", None, 2000, 0, 0.99,
                          *widget_defaults(), request=request("a"))
    second = ui.run_attack(STREET, "street-006", None, "alma_prox", "untargeted", None, 2000, 0, 0.99,
                           *widget_defaults(), request=request("b"))
    next(first), next(second)
    assert ui.stop_run(request("nobody")) == "Nothing is running."
    assert "stopping" in ui.stop_run(request("a"))
    a, b = ui.session_key(request("a")), ui.session_key(request("b"))
    assert ui.ACTIVE_RUNS[a][0].stop.requested() and not ui.ACTIVE_RUNS[b][0].stop.requested()
    final = list(first)[-1]
    assert "stopped" in final["status"]
    second.close()  # a viewer leaving stops its run too
    assert b not in ui.ACTIVE_RUNS


def test_compare_overlays_every_chosen_attack():
    outputs = list(ui.compare_attacks(OBJECTS, "objects-003", None, "untargeted", None, ["alma_prox", "dag"],
                                      15, 0, 0.99, request=request("c")))
    apsr_figure, linf_figure, table, status = outputs[-1]
    assert list(table["attack"]) == ["ALMA prox", "DAG"] and "2 attack" in status
    assert {t.name for t in apsr_figure.data if t.name not in ("threshold", "cursor")} == {"ALMA prox", "DAG"}


def test_the_model_menu_offers_only_models_that_load_here(monkeypatch):
    import importlib.util

    offered = [name for _, name in ui.model_choices()]
    assert "hf-segformer-b0-cityscapes" in offered  # transformers is installed for the tests
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "transformers" else real(name, *a))
    offered = [name for _, name in ui.model_choices()]
    assert "hf-segformer-b0-cityscapes" not in offered and STREET in offered
    assert all(not ui.MODELS[name].missing_packages() for name in offered)
