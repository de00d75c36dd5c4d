"""The live engine against bad input and faults (issue 8): parameters outside an attack's
schema, Stop at any moment of every attack, and running out of memory mid-attack."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from app_events import STREET, RunsOutOfMemory
from pictures import noise

from explorer.attacks import ATTACKS
from explorer.errors import InputError
from explorer.live.run import LiveAttack
from explorer.live.scene import prepare_scene

torch.set_num_threads(1)
pytestmark = pytest.mark.usefixtures("session_files")


@pytest.mark.parametrize("params, message", [
    ({"num_steps": 0}, "num_steps"),
    ({"num_steps": 10 ** 9}, "num_steps"),
    ({"alpha": float("nan")}, "alpha"),
    ({"alpha": "fast"}, "alpha"),
    ({"no_such_parameter": 1}, "no_such_parameter"),
])
def test_parameters_outside_the_schema_are_refused_before_a_run_starts(params, message):
    scene = prepare_scene(STREET, upload=noise(32, 32))
    with pytest.raises(InputError, match=message):
        LiveAttack(scene, "alma_prox", params)


# ============================================================================= faults: stop, memory

@pytest.fixture(scope="module")
def small_scene():
    return prepare_scene(STREET, upload=noise(32, 32, 3))


def _check_partial(scene, result, at_most):
    assert result.stopped and 1 <= result.iterations <= at_most
    adv = result.adv_images
    assert adv.shape == scene.image.shape and bool(torch.isfinite(adv).all())
    assert ((adv >= 0) & (adv <= 1)).all()
    linf = (adv - scene.image).flatten(1).abs().amax(1)
    assert torch.allclose(result.linf, linf, atol=1e-6) or not bool(result.success[0])
    assert 0 <= float(result.apsr[0]) <= 1


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_stop_always_returns_a_valid_partial_result(small_scene, attack):
    # a bisection attack's iteration is a whole inner attack: keep those short here
    params = {"num_steps": 3} if "search_steps" in ATTACKS[attack].defaults() else {}
    # stop before the first iteration: the attack ends after it
    run = LiveAttack(small_scene, attack, params)
    run.stop()
    _check_partial(small_scene, run.run(), at_most=2)
    # stop as soon as the viewer sees progress
    run = LiveAttack(small_scene, attack, params)
    for snap in run.snapshots(interval=0.0):
        if snap.iteration >= 2 and not run.stopping:
            run.stop()
    _check_partial(small_scene, run.result, at_most=snap.num_steps)


@pytest.mark.parametrize("error", [
    torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: "
                 "you tried to allocate 123456789 bytes"),
    MemoryError(),
])
def test_out_of_memory_during_an_attack_is_reported_with_a_suggestion(small_scene, error):
    scene = dataclasses.replace(small_scene, model=RunsOutOfMemory(small_scene.model, error, after=4))
    run = LiveAttack(scene, "alma_prox", {"num_steps": 50})
    with pytest.raises(InputError) as info:
        run.run()
    message = str(info.value)
    assert "out of memory" in message and "smaller image" in message and "fewer" in message
    assert len(run.history["iteration"]) >= 1  # the curves computed so far are kept
    assert LiveAttack(small_scene, "alma_prox", {"num_steps": 2}).run().iterations == 2
