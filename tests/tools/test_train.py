"""Training is resumable: a stage split across invocations is the stage run in one go, bit for bit."""
import json
import platform

import pytest
import torch
from safetensors.torch import load_file

import explorer.tools.train as train_module
from explorer.tools.train import class_weights, earlier_stages, train

TINY = dict(world="street", arch="fpn-mobilenet", steps=4, batch_size=2, lr=1e-3, pool_size=4,
            shuffle_fraction=0.5, seed=0, size=(64, 128), save_every=1)


@pytest.fixture
def no_validation(monkeypatch):
    """Validation renders 200 scenes; these tests are about the training loop only."""
    monkeypatch.setattr(train_module, "evaluate", lambda *a, **k: {
        "pixel_accuracy": 0.0, "miou": 0.0, "per_class_iou": [], "num_images": 0})


def _weights(folder):
    return load_file(str(folder / "model.safetensors"))


def test_a_stage_split_across_sessions_equals_one_run(tmp_path, no_validation):
    whole = train(out_dir=tmp_path / "whole", checkpoint=tmp_path / "whole.pt", command="whole", **TINY)
    assert train(out_dir=tmp_path / "split", checkpoint=tmp_path / "split.pt", command="split",
                 session_steps=2, **TINY) is None
    assert not (tmp_path / "split").exists(), "an unfinished stage writes no model"
    assert torch.load(tmp_path / "split.pt", weights_only=True)["step"] == 2
    split = train(out_dir=tmp_path / "split", checkpoint=tmp_path / "split.pt", command="split", **TINY)
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "split")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert whole["stages"][0]["sessions"] == 1 and split["stages"][0]["sessions"] == 2


def test_a_checkpoint_of_other_settings_is_refused(tmp_path, no_validation):
    train(out_dir=tmp_path / "a", checkpoint=tmp_path / "a.pt", command="a", session_steps=1, **TINY)
    with pytest.raises(SystemExit, match="other settings"):
        train(out_dir=tmp_path / "a", checkpoint=tmp_path / "a.pt", command="a", **{**TINY, "lr": 2e-3})


def test_a_new_stage_starts_from_the_weights_and_keeps_the_history(tmp_path, no_validation):
    first = train(out_dir=tmp_path / "first", checkpoint=None, command="first", **TINY)
    # with a zero learning rate the second stage must hand back exactly the first stage's weights
    # (batch-norm statistics still move in training mode: only the learnt parameters are compared)
    second = train(out_dir=tmp_path / "second", checkpoint=None, command="second", init_from=tmp_path / "first",
                   **{**TINY, "lr": 0.0})
    a, b = _weights(tmp_path / "first"), _weights(tmp_path / "second")
    learnt = [k for k in a if "running_" not in k and "num_batches" not in k]
    assert len(learnt) > 100 and all(torch.equal(a[k], b[k]) for k in learnt)
    assert [stage["command"] for stage in second["stages"]] == ["first", "second"]
    assert second["training_time_s"] == pytest.approx(sum(s["time_s"] for s in second["stages"]), abs=0.11)
    assert second["recipe"]["initialised_from"] == first["name"]
    assert "| 2 | 4 |" in (tmp_path / "second" / "README.md").read_text()
    assert json.loads((tmp_path / "second" / "card.json").read_text())["stages"] == second["stages"]


def test_cards_from_before_stages_count_as_one_stage():
    card = {"command": "old", "recipe": {"steps": 3000}, "training_time_s": 3125.4}
    assert earlier_stages(card) == [{"command": "old", "steps": 3000, "time_s": 3125.4, "sessions": 1}]
    assert earlier_stages({}) == []


def test_class_weights_follow_the_square_root_rule():
    # frequencies 0.6, 0.3, 0.1 (class 3 absent, ignored pixels left out): median 0.3
    labels = torch.tensor([0] * 6 + [1] * 3 + [2] + [255] * 5)
    w = class_weights(labels, 4, power=0.5)
    assert w.tolist() == pytest.approx([(0.3 / 0.6) ** 0.5, 1.0, (0.3 / 0.1) ** 0.5, 1.0], rel=1e-6)
    assert class_weights(labels, 4, power=0.0).tolist() == [1.0] * 4


def test_an_unfinished_stage_is_exported_and_continued_by_a_new_stage(tmp_path, no_validation):
    from explorer.tools.train import export_checkpoint

    assert train(out_dir=tmp_path / "long", checkpoint=tmp_path / "long.pt", command="long", session_steps=3,
                 **TINY) is None
    card = export_checkpoint(tmp_path / "long.pt", tmp_path / "cut")
    saved = torch.load(tmp_path / "long.pt", weights_only=True)["net"]
    exported = _weights(tmp_path / "cut")
    assert all(torch.equal(exported[k], saved[k].half() if saved[k].is_floating_point() else saved[k])
               for k in saved)
    assert card["stages"][-1]["steps"] == 3 and card["stages"][-1]["of"] == 4 and card["stages"][-1]["cut"]
    assert "| 3 of 4 (cut) |" in (tmp_path / "cut" / "README.md").read_text()
    nxt = train(out_dir=tmp_path / "next", checkpoint=None, command="next", init_from=tmp_path / "cut", **TINY)
    assert [s.get("cut", False) for s in nxt["stages"]] == [True, False]


def test_the_pool_is_the_same_whatever_the_number_of_render_workers():
    from explorer.tools.train import render_pool

    one = render_pool("street", 5, (32, 64), 0.5, seed=3, chunk=2, workers=1)
    two = render_pool("street", 5, (32, 64), 0.5, seed=3, chunk=2, workers=2)
    assert one[0].dtype == torch.uint8 and one[1].dtype == torch.uint8 and one[0].shape == (5, 3, 32, 64)
    assert torch.equal(one[0], two[0]) and torch.equal(one[1], two[1])
    assert int(one[1][one[1] != 255].max()) < 19, "class ids fit in 8 bits beside the ignore value"


def test_the_training_device_is_named_or_refused_in_one_line(monkeypatch):
    from explorer.tools.train import training_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert training_device("auto") == torch.device("cpu")
    assert training_device("cpu") == torch.device("cpu")
    for bad, says in (("cuda", "no CUDA GPU"), ("cuda:1", "no CUDA GPU"), ("tpu", "auto, cpu or cuda"),
                      ("cuda:x", "auto, cpu or cuda"), ("", "auto, cpu or cuda")):
        with pytest.raises(SystemExit, match=says):
            training_device(bad)


def test_a_stage_records_its_device_and_a_gpu_stage_names_it_in_its_command(tmp_path, no_validation):
    from explorer.tools.train import command_line

    card = train(out_dir=tmp_path / "m", checkpoint=None, command="c", **TINY)
    assert card["stages"][-1]["trained_on"].startswith(f"{platform.machine()} CPU")
    assert card["trained_on"] == card["stages"][-1]["trained_on"]
    settings = {"world": "street", "arch": "unet-mobilenet", "steps": 10, "batch_size": 32, "lr": 1e-3,
                "pool_size": 100, "shuffle_fraction": 0.3, "seed": 0, "balance": 0.5, "init_from": None}
    assert "--device" not in command_line(settings)
    assert command_line({**settings, "device": "cuda"}, threads=None).endswith("--balance 0.5 --device cuda")


def test_the_command_line_refuses_a_bad_device_or_worker_count_before_rendering(monkeypatch, capsys):
    from explorer.tools import train as module

    monkeypatch.setattr(module, "render_pool", lambda *a, **k: pytest.fail("rendered before validating"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit):
        module.main(["--world", "street", "--render-workers", "0"])
    assert "--render-workers must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="no CUDA GPU"):
        module.main(["--world", "street", "--device", "cuda"])
