"""The app's "8-bit valid result" option: what a user downloads is exactly the image whose
success the app reports — an 8-bit PNG on the clean image's 1/255 lattice — and the run file
repeats the option."""
import json

import numpy as np
import pytest
import torch
from app_events import STREET, request, widget_defaults
from PIL import Image

from explorer import ui
from explorer.data.samples import load_sample
from explorer.live.exports import RunSpec
from explorer.live.scene import build_scene, read_scene_inputs
from explorer.metrics import apsr

pytestmark = pytest.mark.usefixtures("session_files")


def eight_bit_run(sample="street-002", target="untargeted", steps=30, eight_bit=True, session="b8"):
    return list(ui.run_attack(STREET, sample, None, "alma_prox", target, None, steps, 0, 0.99,
                              *widget_defaults(), eight_bit=eight_bit, request=request(session)))


@pytest.mark.parametrize("target", ["untargeted", "majority"])
def test_the_downloaded_png_is_the_tested_image(target):
    final = eight_bit_run(target=target)[-1]
    table = dict(zip(final["metrics"]["metric"], final["metrics"]["value"]))
    assert table["8-bit valid result"] == "yes" and "**8-bit valid result**" in final["status"]
    files = {path.rsplit("_", 1)[-1]: path for path in final["downloads"]}
    png = np.asarray(Image.open(files["adversarial.png"]).convert("RGB"))
    clean = load_sample("street-002")[0]                                    # (3, H, W) in [0, 1], 8-bit
    clean_levels = (clean * 255).round().permute(1, 2, 0).numpy().astype(np.int64)
    # the reported ℓ∞ is the PNG's, a whole number of levels
    levels = int(np.abs(png.astype(np.int64) - clean_levels).max())
    assert float(table["ℓ∞ × 255"]) == pytest.approx(levels, abs=1e-4)
    # the reported APSR is the model's on the decoded PNG, recomputed here
    scene = build_scene(read_scene_inputs(STREET, "street-002", None, target), "cpu")
    adversarial = torch.from_numpy(png).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        prediction = scene.model(adversarial).argmax(1)
    measured = float(apsr(prediction, scene.attack_labels, scene.dataset.num_classes, targeted=scene.targeted)[0])
    assert float(table["APSR"]) == pytest.approx(measured, abs=1e-4)
    assert (table["success (APSR ≥ ν)"] == "yes") == (measured >= 0.99)
    # the float perturbation download is the same image minus the clean one
    perturbation = np.load(files["perturbation.npy"])
    assert np.abs(perturbation * 255 - (png.transpose(2, 0, 1) - clean_levels.transpose(2, 0, 1))).max() < 1e-3
    # the continuous attack's numbers are kept beside the 8-bit ones
    assert float(table["continuous ℓ∞ × 255"]) > 0
    # the run file repeats the option, and loading it ticks the box
    spec = json.loads(open(files["run.json"]).read())
    assert spec["eight_bit"] is True
    loaded = ui.load_run_file(files["run.json"])
    assert loaded[-2] == {"__type__": "update", "value": True} and "loaded" in loaded[-1]


def test_without_the_option_the_run_file_says_so_and_loading_it_unticks_the_box():
    final = eight_bit_run(steps=3, eight_bit=False)[-1]
    table = dict(zip(final["metrics"]["metric"], final["metrics"]["value"]))
    assert "8-bit valid result" not in table and "8-bit valid result" not in final["status"]
    run_file = [p for p in final["downloads"] if p.endswith(".json")][0]
    assert json.loads(open(run_file).read())["eight_bit"] is False
    assert ui.load_run_file(run_file)[-2]["value"] is False


@pytest.mark.parametrize("bad", ["yes", 1, None, [True]])
def test_a_bad_option_value_is_refused_before_anything_runs(bad, session_files):
    updates = eight_bit_run(eight_bit=bad, session="bad8")
    assert len(updates) == 1 and updates[0]["status"].startswith("⚠️")
    assert "8-bit valid result must be true or false" in updates[0]["status"]
    assert not (session_files / ui.session_key(request("bad8"))).exists()  # nothing written


@pytest.mark.parametrize("bad", ["true", 1, None])
def test_a_run_file_with_a_bad_eight_bit_field_is_not_loaded(tmp_path, bad):
    text = json.loads(RunSpec(model=STREET, image="street-001", attack="alma_prox").to_json())
    text["eight_bit"] = bad
    path = tmp_path / "run.json"
    path.write_text(json.dumps(text))
    updates = ui.load_run_file(str(path))
    assert "run file not loaded" in updates[-1] and "eight_bit must be true or false" in updates[-1]
    assert all(u == {"__type__": "update"} for u in updates[:-1])


def test_an_old_run_file_without_the_field_loads_as_continuous():
    text = json.loads(RunSpec(model=STREET, image="street-001", attack="alma_prox").to_json())
    del text["eight_bit"]
    assert RunSpec.from_json(json.dumps(text)).eight_bit is False
