"""The live engine (explorer.live) and the app's event functions (explorer.ui), without a browser."""
import json
import threading
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from explorer import ui
from explorer.attacks import ATTACKS
from explorer.attacks.core import PixelState
from explorer.errors import InputError
from explorer.images import MAX_IMAGE_SIDE, image_from_array, label_map_from_array
from explorer.live import LiveAttack, prepare_scene, run_metrics, target_choices
from explorer.datasets import get_dataset
from explorer.metrics import pixel_accuracy
from explorer.samples import load_sample

STREET, OBJECTS = "street-fpn-mobilenet", "objects-fpn-mobilenet"


# ----------------------------------------------------------------------------- inputs

def test_uploaded_pictures_of_every_layout_become_rgb_in_unit_range():
    grey = np.full((20, 30), 51, np.uint8)
    x, notice = image_from_array(grey)
    assert x.shape == (3, 20, 30) and torch.allclose(x, torch.full_like(x, 0.2)) and notice == ""
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 7
    x, _ = image_from_array(rgba)
    assert x.shape == (3, 20, 30) and (x[0] == 1).all() and (x[1:] == 0).all()
    x, _ = image_from_array(np.full((20, 30, 3), 65535, np.uint16))
    assert (x == 1).all()
    x, _ = image_from_array(np.full((20, 30, 3), 127.5, np.float64))  # 0-255 floats
    assert torch.allclose(x, torch.full_like(x, 0.5))


def test_huge_images_are_downscaled_with_a_notice_and_tiny_ones_refused():
    x, notice = image_from_array(np.zeros((MAX_IMAGE_SIDE * 2, 100, 3), np.uint8))
    assert max(x.shape[1:]) == MAX_IMAGE_SIDE and "downscaled" in notice
    with pytest.raises(InputError, match="at least"):
        image_from_array(np.zeros((8, 100, 3), np.uint8))
    with pytest.raises(InputError, match="NaN"):
        image_from_array(np.full((20, 20, 3), np.nan))
    with pytest.raises(InputError, match="channels"):
        image_from_array(np.zeros((20, 20, 2), np.uint8))


def test_label_maps_read_as_ids_or_through_the_palette():
    voc = get_dataset("voc")
    ids = label_map_from_array(np.array([[0, 15], [255, 3]], np.uint8), voc)
    assert ids.tolist() == [[0, 15], [255, 3]]
    rgb = np.array([[voc.palette[15], voc.palette[0]], [(1, 2, 3), voc.palette[20]]], np.uint8)
    assert label_map_from_array(rgb, voc).tolist() == [[15, 0], [255, 20]]


def test_targets_follow_the_dataset():
    assert target_choices(get_dataset("cityscapes")) == ["untargeted", "majority", "custom"]
    assert target_choices(get_dataset("voc")) == ["untargeted", "background", "custom"]
    with pytest.raises(InputError, match="not available"):
        prepare_scene(STREET, "street-000", target="background")


def test_scenes_of_samples_uploads_and_every_target():
    image, labels, _ = load_sample("objects-002")
    scene = prepare_scene(OBJECTS, "objects-002")
    assert not scene.targeted and scene.reference_name == "ground truth"
    assert torch.equal(scene.attack_labels[0], labels)
    background = prepare_scene(OBJECTS, "objects-002", target="background")
    labelled = labels < 21
    assert (background.attack_labels[0][labelled] == 0).all() and (background.attack_labels[0][~labelled] == 255).all()
    upload = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    scene = prepare_scene(OBJECTS, upload=upload)
    assert scene.reference_name == "clean prediction" and torch.equal(scene.attack_labels, scene.clean_prediction)
    majority = prepare_scene(STREET, "street-001", target="majority")
    assert majority.targeted and majority.attack_labels.shape == (1, 128, 256)
    custom_map = np.full((64, 128), 13, np.uint8)  # "car" everywhere, at half size: resized
    custom = prepare_scene(STREET, "street-001", target="custom", target_map=custom_map)
    assert (custom.attack_labels == 13).all()
    with pytest.raises(InputError, match="no labelled pixel"):
        prepare_scene(STREET, "street-001", target="custom", target_map=np.full((64, 128), 200, np.uint8))
    with pytest.raises(InputError, match="unknown sample"):
        prepare_scene(STREET, "street-999")


# ----------------------------------------------------------------------------- live runs

def test_live_run_streams_records_and_frames_within_budget():
    scene = prepare_scene(STREET, "street-002")
    run = LiveAttack(scene, "alma_prox", {"num_steps": 30}, max_frames=10)
    snapshots = list(run.snapshots(interval=0.0))
    assert snapshots[-1].done and snapshots[-1].iteration == 30
    assert run.stride == 3 and [f.iteration for f in run.frames] == list(range(0, 30, 3)) + [29]
    history = run.history
    assert history["iteration"] == list(range(30)) and len(history["apsr"]) == 30
    # the frame's picture is the record's iterate: its norm is the recorded norm
    last = run.frames[-1]
    assert float(np.abs(last.perturbation.astype(np.float32)).max()) == pytest.approx(last.linf, rel=2e-3, abs=1e-6)
    assert set(np.unique(last.mask)) <= {int(s) for s in PixelState}
    result = run.result
    assert result.iterations == 30 and not result.stopped


def test_stop_ends_the_run_within_an_iteration_and_keeps_a_valid_result():
    scene = prepare_scene(STREET, "street-003")
    run = LiveAttack(scene, "alma_prox", {"num_steps": 2000})
    for snap in run.snapshots(interval=0.0):
        if snap.iteration >= 3 and not run.stopping:
            run.stop()
            stopped_at = snap.iteration
    result = run.result
    assert result.stopped and result.iterations <= stopped_at + 2
    adv = result.adv_images
    assert ((adv >= 0) & (adv <= 1)).all()
    assert torch.allclose(result.linf, (adv - scene.image).flatten(1).abs().amax(1))


def test_bad_parameters_fail_before_anything_starts():
    scene = prepare_scene(STREET, "street-000")
    with pytest.raises(InputError, match="alpha"):
        LiveAttack(scene, "alma_prox", {"alpha": 3.0})
    with pytest.raises(InputError, match="seed"):
        LiveAttack(scene, "dag", {}, seed=-1)
    with pytest.raises(InputError, match="adv_threshold"):
        LiveAttack(scene, "dag", {}, adv_threshold=1.5)


def test_metrics_agree_with_the_result_and_the_core_metrics():
    scene = prepare_scene(OBJECTS, "objects-001")
    run = LiveAttack(scene, "dag", {"num_steps": 20})
    result = run.run()
    metrics = run_metrics(scene, result)
    assert metrics["APSR"] == pytest.approx(float(result.apsr[0]))
    assert metrics["ℓ∞ × 255"] == pytest.approx(float(result.linf[0]) * 255)
    expected = pixel_accuracy(scene.clean_prediction, scene.ground_truth, 21)[0]
    assert metrics["clean pixel accuracy"] == pytest.approx(float(expected))
    adv_prediction = scene.model(result.adv_images).argmax(1)
    assert metrics["adversarial pixel accuracy"] == pytest.approx(
        float(pixel_accuracy(adv_prediction, scene.ground_truth, 21)[0]))
    assert metrics["forwards"] == int(result.num_forwards[0]) and 0 <= metrics["8-bit PNG APSR"] <= 1


# ----------------------------------------------------------------------------- event functions

def _request(session: str):
    return SimpleNamespace(session_hash=session)


def _widget_defaults():
    return [ATTACKS[a].param(n).default for a, n in ui.PARAM_KEYS]


def test_preview_shows_the_clean_scene():
    image, reference, clean, labels, status = ui.preview(STREET, "street-000", None, "majority", None)
    assert image.shape == (128, 256, 3) and reference.shape[1] >= 512 and clean.shape == reference.shape
    assert "street-000" in status and "ground truth" in status
    *_, status = ui.preview(STREET, "street-000", None, "background", None)
    assert status.startswith("⚠️") and "not available" in status


def test_run_event_streams_then_finishes_with_metrics_downloads_and_replay(tmp_path, monkeypatch):
    monkeypatch.setattr(ui, "FILES_ROOT", tmp_path)
    updates = list(ui.run_attack(STREET, "street-004", None, "alma_prox", "untargeted", None, 25, 0, 0.99,
                                 *_widget_defaults(), request=_request("s1")))
    assert len(updates) >= 2
    streamed = updates[:-1]
    assert all({"status", "apsr_plot", "linf_plot"} <= set(u) for u in streamed)
    final = updates[-1]
    table = dict(zip(final["metrics"]["metric"], final["metrics"]["value"]))
    assert table["iterations"] == "25" and table["attack"] == "alma_prox"
    folder = tmp_path / ui.session_key(_request("s1"))
    assert len(final["downloads"]) == 4 and all(p.startswith(str(folder)) for p in final["downloads"])
    run_file = [p for p in final["downloads"] if p.endswith(".json")][0]
    spec = json.loads(open(run_file).read())
    assert spec["params"]["num_steps"] == 25 and spec["image"] == "street-004"
    # replay: any frame; the loaded run file sets the controls back
    prediction, perturbation, adversarial, mask, text = ui.replay(0, final["state"])
    assert prediction.shape == mask.shape and "iteration 1/25" in text
    loaded = ui.load_run_file(run_file)
    assert loaded[0]["value"] == STREET and loaded[1]["value"] == "street-004" and loaded[4]["value"] == 25
    assert "loaded" in loaded[-1]
    assert ui.load_run_file(str(folder / "nothing.json"))[-1].startswith("⚠️")
    ui.cleanup_session(_request("s1"))
    assert not folder.exists() and tmp_path.exists()


def test_run_event_reports_bad_input_without_raising():
    updates = list(ui.run_attack(STREET, "street-000", None, "dag", "untargeted", None, 10, -3, 0.99,
                                 *_widget_defaults(), request=_request("s2")))
    assert len(updates) == 1 and updates[0]["status"].startswith("⚠️") and "seed" in updates[0]["status"]


def test_stop_is_per_session():
    first = ui.run_attack(STREET, "street-005", None, "alma_prox", "untargeted", None, 2000, 0, 0.99,
                          *_widget_defaults(), request=_request("a"))
    second = ui.run_attack(STREET, "street-006", None, "alma_prox", "untargeted", None, 2000, 0, 0.99,
                           *_widget_defaults(), request=_request("b"))
    next(first), next(second)
    assert ui.stop_run(_request("nobody")) == "Nothing is running."
    assert "stopping" in ui.stop_run(_request("a"))
    a, b = ui.session_key(_request("a")), ui.session_key(_request("b"))
    assert ui.ACTIVE_RUNS[a][0].stopping and not ui.ACTIVE_RUNS[b][0].stopping
    final = list(first)[-1]
    assert "stopped" in final["status"]
    second.close()  # a viewer leaving stops its run too
    assert b not in ui.ACTIVE_RUNS


def test_compare_overlays_every_chosen_attack():
    outputs = list(ui.compare_attacks(OBJECTS, "objects-003", None, "untargeted", None, ["alma_prox", "dag"],
                                      15, 0, 0.99, request=_request("c")))
    apsr_figure, linf_figure, table, status = outputs[-1]
    assert list(table["attack"]) == ["ALMA prox", "DAG"] and "2 attack" in status
    assert {t.name for t in apsr_figure.data} == {"alma_prox", "dag"}
