"""The live engine (explorer.live): uploads decoded once per page, scenes of samples, uploads
and every target, live runs streamed frame by frame, Stop, and the run's metrics."""
import numpy as np
import pytest
import torch
from app_events import OBJECTS, STREET
from pictures import encode
from PIL import Image

from explorer.attacks.core import PixelState
from explorer.data.datasets import get_dataset
from explorer.data.samples import load_sample
from explorer.errors import InputError
from explorer.live import LiveAttack, inputs, prepare_scene, run_metrics
from explorer.metrics import pixel_accuracy
from explorer.targets import target_choices

# ----------------------------------------------------------------------------- inputs and scenes

def test_previews_decode_an_upload_once_and_hand_out_copies(monkeypatch):
    calls = []
    real = inputs.decode_image_file

    def counting(data, *args, **kwargs):
        calls.append(len(data))
        return real(data, *args, **kwargs)

    monkeypatch.setattr(inputs, "decode_image_file", counting)
    inputs._DECODED.clear()
    data = encode(Image.fromarray(np.full((40, 60, 3), 90, np.uint8)))
    first, _ = inputs.decode_upload(data)
    first.fill_(0)  # the caller owns its copy: the cache must not change
    second, _ = inputs.decode_upload(bytearray(data))
    assert len(calls) == 1 and float(second.mean()) == pytest.approx(90 / 255)
    for _ in range(3):
        prepare_scene("street-fpn-mobilenet", None, data)
    assert len(calls) == 1
    other = encode(Image.fromarray(np.full((40, 60, 3), 10, np.uint8)))
    inputs.decode_upload(other)
    assert len(calls) == 2


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

def test_a_run_stopped_early_keeps_every_frame_it_can():
    scene = prepare_scene(STREET, "street-002")
    run = LiveAttack(scene, "alma_prox", {"num_steps": 2000}, max_frames=120)
    for snap in run.snapshots(interval=0.0):
        if snap.iteration >= 57:
            run.stop()
    done = run.result.iterations
    assert done >= 57 and len(run.frames) == min(done, 120) and run.stride == (1 if done <= 120 else 2)
    assert [f.iteration for f in run.frames][:57] == list(range(57))


def test_the_first_iteration_is_shown_without_waiting_for_the_refresh_interval():
    """A visitor waits for the first curve point: it is yielded as soon as iteration 0 is
    recorded, even when later snapshots are gathered for an hour (interval=3600)."""
    import dataclasses
    import threading

    scene = prepare_scene(STREET, "street-002")
    release = threading.Event()
    calls = []

    class HeldAfterTheFirstCall(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            calls.append(1)
            if len(calls) > 1:
                release.wait(60)  # iteration 1 waits until the test has seen iteration 0
            return self.inner(x)

    held = dataclasses.replace(scene, model=HeldAfterTheFirstCall(scene.model))
    run = LiveAttack(held, "alma_prox", {"num_steps": 4})
    snapshots = run.snapshots(interval=3600)
    try:
        first = next(snapshots)
        assert first.iteration == 1 and not first.done
    finally:
        release.set()
    rest = list(snapshots)
    assert rest[-1].done and rest[-1].iteration == 4


def test_live_run_streams_records_and_frames_within_budget():
    scene = prepare_scene(STREET, "street-002")
    run = LiveAttack(scene, "alma_prox", {"num_steps": 30}, max_frames=10)
    snapshots = list(run.snapshots(interval=0.0))
    assert snapshots[-1].done and snapshots[-1].iteration == 30
    # the stride doubles whenever 10 frames would be exceeded: 1 -> 2 (at 10) -> 4 (at 20)
    assert run.stride == 4 and [f.iteration for f in run.frames] == list(range(0, 30, 4)) + [29]
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


def test_the_app_runs_cnn_models_channels_last_on_the_cpu_with_the_same_predictions():
    from explorer.live.scene import cached_model
    from explorer.models import load_model

    for name, sample in ((STREET, "street-001"), (OBJECTS, "objects-002")):
        image = load_sample(sample)[0][None]
        shared, plain = cached_model(name), load_model(name, device="cpu")
        with torch.no_grad():
            fast, reference = shared(image), plain(image)
        assert fast.is_contiguous(memory_format=torch.channels_last)
        assert not reference.is_contiguous(memory_format=torch.channels_last)
        # the same network: logits equal up to float rounding of another convolution order
        assert torch.allclose(fast, reference, atol=1e-3, rtol=1e-4)
        assert float((fast.argmax(1) == reference.argmax(1)).float().mean()) > 0.999
