"""The prepared GPU training command (scripts/device_train.py), dry-run on the CPU with tiny settings."""
import importlib.util
import json
import sys
import tarfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("device_train", ROOT / "scripts" / "device_train.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_step_counts_are_each_jobs_share_of_the_budget_over_its_cost():
    script = _script()
    clean = script.JOBS["street-unet"]
    robust = script.JOBS["street-unet-robust"]
    assert script.planned_steps(clean, budget_s=100.0, clean_step_s=0.05, batch_size=32) == int(0.35 * 100 / 0.05)
    # SegPGD-AT attacks 16 of 32 images with 5 iterations: 1 + 5 x 0.5 = 3.5 clean steps each
    assert script.planned_steps(robust, budget_s=100.0, clean_step_s=0.05, batch_size=32) == int(0.30 * 100 / 0.175)
    assert script.planned_steps(clean, budget_s=0.001, clean_step_s=1.0, batch_size=32) == 1
    assert sum(job.share for job in script.JOBS.values()) == pytest.approx(1.0)


def test_a_dry_run_trains_every_job_and_packs_loadable_models(tmp_path):
    script = _script()
    out = tmp_path / "out"
    script.main(["--device", "cpu", "--budget-s", "1", "--pool-size", "4", "--batch-size", "2",
                 "--validation-images", "2", "--render-workers", "1", "--out", str(out),
                 "--work", str(tmp_path / "work")])
    report = json.loads((out / "device_train.json").read_text())
    assert [job["job"] for job in report["jobs"]] == list(script.JOBS)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["device_train.json"] + [job["archive"] for job in report["jobs"]])
    unpacked = tmp_path / "unpacked"
    for job in report["jobs"]:
        with tarfile.open(out / job["archive"]) as tar:
            tar.extractall(unpacked, filter="data")
        card = json.loads((unpacked / job["model"] / "card.json").read_text())
        assert card["validation"]["num_images"] == 2 and card["stages"][-1]["steps"] == job["steps"] >= 1
        assert "--device" not in card["command"], "a CPU stage's command names no device"
    robust = json.loads((unpacked / "street-unet-mobilenet-robust" / "card.json").read_text())
    unet = json.loads((unpacked / "street-unet-mobilenet" / "card.json").read_text())
    # the robust stage starts from this run's U-Net, whose stages start from the shipped U-Net's
    assert robust["stages"][:-1] == unet["stages"] and robust["adversarial_training"]["eps_255"] == 8.0
    assert len(unet["stages"]) >= 2 and robust["recipe"]["initialised_from"] == "street-unet-mobilenet"
    from explorer.models.registry import scan_weights

    entries = scan_weights(unpacked)  # what the explorer finds with EXPLORER_WEIGHTS_DIR=unpacked
    assert sorted(entries) == sorted(job["model"] for job in report["jobs"])
    model = entries["street-segformer-b0"].load()
    assert model(torch.rand(1, 3, 64, 128)).shape == (1, 19, 64, 128)


@pytest.mark.parametrize("argv, says", [
    (["--jobs", "street-unet,nope"], "--jobs must name some of"),
    (["--jobs", ""], "--jobs must name some of"),
    (["--budget-s", "0"], "--budget-s must be positive"),
    (["--batch-size", "8", "--pool-size", "4"], "must hold at least one batch"),
    (["--render-workers", "0"], "--render-workers must be positive"),
])
def test_bad_arguments_are_refused_before_anything_renders(argv, says, tmp_path, monkeypatch, capsys):
    script = _script()
    monkeypatch.setattr(script, "render_pool", lambda *a, **k: pytest.fail("rendered before validating"))
    with pytest.raises(SystemExit):
        script.main(argv + ["--device", "cpu", "--out", str(tmp_path)])
    assert says in capsys.readouterr().err
