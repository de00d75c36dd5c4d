"""Every argument a client can send to the app's handlers is checked before any work, with a
message a person can act on — never "something went wrong" (issue 13) — and what the app
hands out (the trace CSV) is what the run computed."""
import csv

import gradio as gr
import pytest
from app_events import STREET, request, widget_defaults

from explorer import ui

pytestmark = pytest.mark.usefixtures("session_files")


@pytest.mark.parametrize("steps, seed, nu, words", [
    (True, 0, 0.99, "num_steps"),
    (10 ** 400, 0, 0.99, "num_steps"),
    (10, True, 0.99, "seed"),
    (10, 10 ** 400, 0.99, "seed"),
    (10, "1e400", 0.99, "seed"),
    (10, 0, True, "adv_threshold"),
    (10, 0, float("nan"), "adv_threshold"),
    (10, 0, 1.5, "adv_threshold"),
    (0, 0, 0.99, "num_steps"),
])
def test_run_refuses_bad_numbers_with_a_message(steps, seed, nu, words):
    updates = list(ui.run_attack(STREET, "street-000", None, "dag", "untargeted", None, steps, seed, nu,
                                 *widget_defaults(), request=request("args")))
    assert len(updates) == 1, "nothing may start"
    status = updates[0]["status"]
    assert status.startswith("⚠️") and words in status and "something went wrong" not in status


@pytest.mark.parametrize("model, sample, target, attack, words", [
    ("../../etc", "street-000", "untargeted", "dag", "model"),
    (STREET, "../../etc/passwd", "untargeted", "dag", "sample"),
    (STREET, "street-000", "everything", "dag", "target"),
    (STREET, "street-000", "untargeted", "__import__('os')", "attack"),
    (["list"], "street-000", "untargeted", "dag", "model"),
    (STREET, ["list"], "untargeted", "dag", "sample"),
    (STREET, "street-000", ["list"], "dag", "target"),
    (STREET, "street-000", "untargeted", ["list"], "attack"),
    ("x" * 100_000, "street-000", "untargeted", "dag", "model"),
])
def test_run_refuses_bad_names_with_a_message(model, sample, target, attack, words):
    updates = list(ui.run_attack(model, sample, None, attack, target, None, 5, 0, 0.99, *widget_defaults(),
                                 request=request("args")))
    status = updates[-1]["status"]
    assert len(updates) == 1 and status.startswith("⚠️") and words in status
    assert "something went wrong" not in status and len(status) < 600  # junk is not echoed whole


def test_compare_takes_each_attack_once_and_refuses_junk():
    outputs = list(ui.compare_attacks(STREET, "street-001", None, "untargeted", None, ["dag"] * 50, 3, 0, 0.99,
                                      request=request("args")))
    assert len(outputs[-1][2]) == 1  # one row, not fifty runs
    for junk in ([["dag"]], "dag", [None], ["nope"]):
        status = list(ui.compare_attacks(STREET, "street-001", None, "untargeted", None, junk, 3, 0, 0.99,
                                         request=request("args")))[-1][-1]
        assert status.startswith("⚠️") and "something went wrong" not in status, (junk, status)


def test_side_handlers_answer_bad_names_with_their_message():
    with pytest.raises(gr.Error, match="unknown model"):
        ui.on_model_change("no-such-model")
    with pytest.raises(gr.Error, match="unknown attack"):
        ui.default_steps("no-such-attack")
    with pytest.raises(gr.Error, match="preset"):
        ui.apply_preset("alma_prox", "no-such-preset")


def test_the_trace_csv_is_the_run_s_own_curve_and_replay_takes_typed_frames():
    final = list(ui.run_attack(STREET, "street-004", None, "alma_prox", "untargeted", None, 30, 0, 0.99,
                               *widget_defaults(), request=request("trace")))[-1]
    run = final["state"]
    trace = [p for p in final["downloads"] if p.endswith("_trace.csv")][0]
    with open(trace) as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["iteration"]) for r in rows] == run.history["iteration"]
    assert [float(r["apsr"]) for r in rows] == pytest.approx(run.history["apsr"], abs=1e-6)
    assert [float(r["best_linf"]) for r in rows] == pytest.approx(run.history["best_linf"], abs=1e-7)
    assert len({r["apsr"] for r in rows}) > 3, "the APSR rises during the run; one value on every row is wrong"
    successes = [r["success"] == "True" for r in rows]
    assert successes == sorted(successes) and not successes[0], "success flips once, from False to True"
    *_, text = ui.replay("x", run)
    assert text.startswith("⚠️") and "replay iteration" in text
    *_, text = ui.replay("2", run)
    assert text.startswith("replaying")
    ui.cleanup_session(request("trace"))
