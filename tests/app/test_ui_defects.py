"""What a new user hit (issue 16), each at its root: run files of another model, one-iteration
runs, scenes changed during a run, replay numbering, Compare after Stop, budgets, ν and seed,
target maps of another world."""
import gradio as gr
import numpy as np
import pytest
from app_events import OBJECTS, STREET, request, run_event, widget_defaults
from pictures import png

from explorer import ui
from explorer.attacks import ATTACKS
from explorer.live.exports import RunSpec

pytestmark = pytest.mark.usefixtures("session_files")


def run_file(tmp_path, **fields):
    path = tmp_path / "run.json"
    path.write_text(RunSpec(**fields).to_json())
    return str(path)


def test_a_run_file_of_another_model_sets_the_model_and_what_depends_on_it(tmp_path):
    # a fresh page shows the street model; the file is an objects run with the background target
    updates = ui.load_run_file(run_file(tmp_path, model=OBJECTS, image="objects-003", attack="dag",
                                        target="background", params={"num_steps": 7}))
    model, sample, attack, target, steps, *_, status = updates
    assert model["value"] == OBJECTS
    assert sample["value"] == "objects-003" and set(sample["choices"]) == set(ui.samples_for(OBJECTS))
    assert target["value"] == "background" and "background" in [v for _, v in target["choices"]]
    assert steps["value"] == 7 and "loaded" in status
    # the page's own follow-up (model.change) keeps the file's choices
    sample_update, target_update, map_update, dataset = ui.on_model_change(OBJECTS, "objects-003", "background",
                                                                          None, "cityscapes")
    assert sample_update["value"] == "objects-003" and target_update["value"] == "background"
    # and the run it repeats runs
    final = run_event(model=OBJECTS, sample="objects-003", attack="dag", target="background", steps=3)[-1]
    assert "finished after 3 iterations" in final["status"]


def test_a_run_file_with_an_uploaded_target_map_says_to_upload_it_again(tmp_path):
    *_, status = ui.load_run_file(run_file(tmp_path, model=STREET, image="street-001", attack="alma_prox",
                                           target="custom"))
    assert "upload the same map" in status


def test_a_one_iteration_run_finishes_with_metrics_downloads_and_no_broken_slider():
    final = run_event(sample="street-002", steps=1)[-1]
    assert "finished after 1 iterations" in final["status"], final["status"]
    assert final["replay"]["visible"] is False and "minimum" not in final["replay"]
    assert len(final["downloads"]) == 5 and dict(zip(final["metrics"]["metric"], final["metrics"]["value"]))
    *_, text = ui.replay(0, final["state"])
    assert "replaying iteration 0 of 0–0" in text


@pytest.mark.parametrize("steps", [0, -5, 2.5])
def test_a_budget_of_no_iterations_is_refused_with_its_range(steps):
    updates = run_event(sample="street-002", steps=steps)
    assert len(updates) == 1 and updates[0]["status"].startswith("⚠️") and "num_steps" in updates[0]["status"]


def test_the_scene_waits_while_a_run_streams():
    locked = ui.scene_widgets_locked(True)()
    unlocked = ui.scene_widgets_locked(False)()
    assert [u["interactive"] for u in locked] == [False] * 7 and [u["interactive"] for u in unlocked] == [True] * 7
    # what a new scene clears: the last run's views, metrics, downloads and replay
    cleared = ui.clear_results()
    assert cleared[:4] == (None, None, None, None) and cleared[7]["visible"] is False and cleared[10] is None


def test_replay_counts_from_zero_like_the_trace_and_snaps_typed_iterations():
    final = run_event(sample="street-004", steps=40)[-1]
    replay = final["state"]
    recorded = [frame.iteration for frame in replay.frames]
    assert recorded == list(range(40)), "a 40-iteration run keeps every frame"
    prediction, *_, apsr_plot, linf_plot, text = ui.replay("17", replay)
    assert "replaying iteration 17 of 0–39" in text
    assert np.array_equal(prediction, ui.views_of_frame(replay.clean_image, replay.dataset,
                                                         replay.frames[17])["prediction"])
    # the curves carry a cursor at the replayed iteration
    shapes = apsr_plot.layout.shapes
    assert any(shape.x0 == 17 for shape in shapes), shapes
    *_, text = ui.replay(10_000, replay)
    assert "iteration 39 of 0–39" in text and "nearest recorded to 10000" in text
    slider = final["replay"]
    assert slider["minimum"] == 0 and slider["maximum"] == 39 and slider["visible"]


def test_compare_after_stop_says_what_was_compared_and_uses_titles():
    compare = ui.compare_attacks(STREET, "street-001", None, "untargeted", None, ["alma_prox", "ifgsm_bisection"],
                                 2000, 0, 0.99, request=request("cmp-stop"))
    next(compare)
    ui.stop_run(request("cmp-stop"))
    apsr_figure, linf_figure, table, status = list(compare)[-1]
    assert status.startswith("stopped during ALMA prox") and "1 of 2 attacks" in status, status
    finished = list(ui.compare_attacks(STREET, "street-001", None, "untargeted", None,
                                       ["dag", "ifgsm_bisection"], 3, 0, 0.99, request=request("cmp")))
    apsr_figure, linf_figure, table, status = finished[-1]
    assert list(table["attack"]) == ["DAG", "I-FGSM 13×3"]  # the budget the slider set, not 13×20
    assert {trace.name for trace in apsr_figure.data if trace.showlegend is not False} >= {"DAG", "I-FGSM 13×3"}
    assert "compared 2 attacks" in status


def test_budgets_follow_the_registry_and_say_what_they_cost():
    assert ui.DEFAULT_STEPS == ATTACKS[ui.DEFAULT_ATTACK].defaults()["num_steps"]
    assert "1500 forward+backward passes" in ui.budget_text("sea", 300) and "5 attacks in turn" in ui.budget_text(
        "sea", 300)
    # SEA's ensemble is one of its hyper-parameters: the text follows the chosen members
    widgets = [value if (owner, name) != ("sea", "members") else "eccv2024"
               for (owner, name), value in zip(ui.PARAM_KEYS, widget_defaults())]
    text = ui.budget_text("sea", 300, *widgets)
    assert "900 forward+backward passes" in text and "3 attacks in turn × 300 iterations" in text
    text = ui.budget_text("ifgsm_bisection", 7)
    assert text.startswith("I-FGSM 13×7") and "91 forward+backward passes" in text
    assert ui.budget_text("alma_prox", 0).startswith("⚠️")


@pytest.mark.parametrize("seed, nu, field", [(-1, 0.99, "seed"), (0, 1.5, "adv_threshold"), (0, 0, "adv_threshold")])
def test_seed_and_nu_out_of_range_name_the_field(seed, nu, field):
    updates = ui.run_attack(STREET, "street-000", None, "dag", "untargeted", None, 3, seed, nu, *widget_defaults(),
                            request=request("range"))
    status = list(updates)[-1]["status"]
    assert status.startswith("⚠️") and field in status
    # no Gradio-side bounds that would answer with a bare "Error"
    demo = ui.build_demo()
    numbers = {c.elem_id: c for c in demo.blocks.values() if isinstance(c, gr.Number)}
    assert numbers["seed"].minimum is None and numbers["nu"].minimum is None and numbers["nu"].maximum is None


def test_a_target_map_made_for_other_classes_is_cleared_when_the_model_changes():
    sample, target, target_map, dataset = ui.on_model_change(OBJECTS, "street-001", "custom", png(), "cityscapes")
    assert target_map["value"] is None and target["value"] == "untargeted" and dataset == "voc"
    # same classes: the map stays
    sample, target, target_map, dataset = ui.on_model_change("street-unet-mobilenet", "street-001", "custom", png(),
                                                             "cityscapes")
    assert target_map == gr.update() and target["value"] == "custom"


def test_the_page_opens_on_samples_the_model_segments_well():
    from explorer.live.scene import clean_scores_per_sample

    for model in (STREET, OBJECTS):
        scores = clean_scores_per_sample(model, "cpu")
        best = ui.default_sample(model)
        assert scores[best]["miou"] == max(score["miou"] for score in scores.values())
    assert ui.default_sample(OBJECTS) != "objects-000"  # the one the clean model mostly misses
