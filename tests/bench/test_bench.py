"""The benchmark: report maths on hand-made results, resumption after a kill, two processes,
and the side-by-side comparisons (the prox solvers are in test_prox_solvers.py)."""
from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from bench_helpers import record as bench_record
from linear_segmenter import make_problem, optimal_linf, untargeted_pixel_budgets

from explorer.bench import report
from explorer.bench.run import parse_rows, per_class_counts, plan_batches
from explorer.bench.store import append_records, merge_parts, part_path, read_records
from explorer.data.sources import open_source
from explorer.errors import InputError

ROOT = Path(__file__).resolve().parents[2]


def record(row, linf_255=0.0, success=True, **fields):
    """A results-file record (:func:`bench_helpers.record`) with this file's defaults: image
    "i", nothing labelled, one model call each way."""
    fields = {"intersection": (0, 0), "union": (0, 0), "labelled": 0, "forwards": 1, "backwards": 1, **fields}
    return bench_record(row, linf_255=linf_255, success=success, **fields)


# --------------------------------------------------------------------------- report maths


def test_table1_counts_failures_as_255():
    records = [record("A", 1.0, image="a"), record("A", 2.0, image="b"), record("A", 3.0, image="c"),
               record("A", 0.5, success=False, image="d")]
    (row,) = report.minimal_norm_table(records)
    assert row["median_255"] == pytest.approx(2.5)           # sorted 1, 2, 3, 255
    assert row["mean_255"] == pytest.approx((1 + 2 + 3 + 255) / 4)
    assert row["success_rate"] == 0.75
    assert row["images"] == 4


def test_failure_curve_on_hand_made_norms():
    records = [record("A", 1.0, image="a"), record("A", 2.0, image="b"), record("A", 3.0, image="c"),
               record("A", 0.5, success=False, image="d")]
    curves = report.failure_curves(records, thresholds_255=[0.0, 0.99, 1.0, 2.5, 3.0, 300.0])
    eps, failure = curves[("m", "untargeted")]["A"]
    np.testing.assert_allclose(eps, [0.0, 0.99, 1.0, 2.5, 3.0, 300.0])
    # fooled at ε iff success and norm <= ε; the failed image never counts
    np.testing.assert_allclose(failure, [1.0, 1.0, 0.75, 0.5, 0.25, 0.25])


def test_table1_and_curves_carry_the_8bit_finish_when_every_record_has_one():
    records = [record("A", 0.4, image="a", linf_8bit_255=1.0, success_8bit=True),
               record("A", 0.6, image="b", linf_8bit_255=2.0, success_8bit=True),
               record("A", 0.5, image="c", linf_8bit_255=3.0, success_8bit=False)]
    (row,) = report.minimal_norm_table(records)
    assert row["median_8bit"] == 2.0 and row["success_8bit"] == pytest.approx(2 / 3)  # sorted 1, 2, 255
    assert row["mean_8bit"] == pytest.approx((1 + 2 + 255) / 3)
    curves = report.failure_curves(records, thresholds_255=[0.0, 1.0, 2.0, 10.0])
    np.testing.assert_allclose(curves[("m", "untargeted")]["A (8-bit)"][1], [1.0, 2 / 3, 1 / 3, 1 / 3])
    # a file written before the finish existed (or one record without it): no 8-bit column, no curve
    older = records[:2] + [record("A", 0.5, image="c")]
    (row,) = report.minimal_norm_table(older)
    assert row["median_8bit"] is None and row["mean_8bit"] is None and row["success_8bit"] is None
    assert "A (8-bit)" not in report.failure_curves(older)[("m", "untargeted")]
    assert "| – | – |" in report.markdown_table([row], report.MINIMAL_COLUMNS)


def test_best_of_attacks_and_the_models_side_by_side_plot(tmp_path):
    records = [bench_record("A", "i", linf_255=2.0, attack="alma_prox"), bench_record("B", "i", linf_255=1.0),
               bench_record("A", "j", linf_255=5.0, success=False, attack="alma_prox"),
               bench_record("B", "j", linf_255=3.0),
               bench_record("A", "k", success=False, attack="alma_prox"), bench_record("B", "k", success=False),
               bench_record("A", "l", linf_255=0.5, attack="alma_prox"),         # B never ran on l: left out
               bench_record("A", "i", model="robust", linf_255=9.0, attack="alma_prox"),
               bench_record("B", "i", model="robust", linf_255=7.0)]
    envelopes = report.best_of_attacks(records)
    count, linf, success = envelopes[("m", "untargeted")]
    assert count == 2 and list(success) == [True, True, False]
    np.testing.assert_allclose(linf[:2] * 255, [1.0, 3.0])
    curves = report.model_comparison_curves(records)["untargeted"]
    assert set(curves) == {"m: A", "m: best of 2 attacks", "robust: A", "robust: best of 2 attacks"}
    eps, failure = curves["m: best of 2 attacks"]
    assert failure[eps <= 1.5][-1] == pytest.approx(2 / 3)    # i fooled at 1, j at 3, k never
    eps, failure = curves["robust: best of 2 attacks"]
    assert failure[eps < 7][-1] == 1.0 and failure[-1] == 0.0
    # one model alone: no side-by-side plot; two: written by the report
    assert report.model_comparison_curves(records[:7]) == {}
    report.write_report(records, tmp_path)
    assert (tmp_path / "failure_rate_models_untargeted.png").exists()
    assert "failure_rate_models_untargeted.png" in (tmp_path / "report.md").read_text()


def test_fixed_budget_accuracy_and_miou_from_sums():
    clean = [record("clean", image="a", intersection=(6, 2, 0), union=(8, 4, 0), labelled=10),
             record("clean", image="b", intersection=(1, 3, 0), union=(3, 5, 0), labelled=6)]
    attacked = [record("pgd", eps=0.5, image="a", intersection=(2, 0, 0), union=(10, 8, 2), labelled=10),
                record("pgd", eps=0.5, image="b", intersection=(0, 1, 0), union=(6, 6, 1), labelled=6)]
    rows = report.fixed_budget_table(clean + attacked)
    assert [r["row"] for r in rows] == ["clean", "pgd"]
    assert rows[0]["accuracy"] == pytest.approx(12 / 16)
    # class 2 is never labelled nor predicted on the clean images: left out of the mean
    assert rows[0]["miou"] == pytest.approx((7 / 11 + 5 / 9) / 2)
    assert rows[1]["accuracy"] == pytest.approx(3 / 16)
    assert rows[1]["miou"] == pytest.approx((2 / 16 + 1 / 14 + 0 / 3) / 3)
    # SEA's number: the mean of per-image accuracies (the pooled one weighs image a's 10 pixels more)
    assert rows[0]["image_accuracy"] == pytest.approx((8 / 10 + 4 / 6) / 2)
    assert rows[1]["image_accuracy"] == pytest.approx((2 / 10 + 1 / 6) / 2)
    unlabelled = record("pgd", eps=0.5, image="c", intersection=(0, 0, 0), union=(0, 0, 0), labelled=0)
    assert report.fixed_budget_table(clean + attacked + [unlabelled])[1]["image_accuracy"] == pytest.approx(
        (2 / 10 + 1 / 6) / 2), "an image without labelled pixels has no accuracy"


def test_timing_table_means():
    records = [record("A", image="a", seconds=2.0, forwards=10, backwards=8),
               record("A", image="b", seconds=4.0, forwards=20, backwards=10)]
    (row,) = report.timing_table(records)
    assert row["seconds_per_image"] == 3.0 and row["total_seconds"] == 6.0
    assert row["forwards"] == 15 and row["backwards"] == 9


def test_per_class_counts_match_brute_force():
    g = torch.Generator().manual_seed(3)
    labels = torch.randint(0, 4, (2, 9, 7), generator=g)
    labels[labels == 3] = 255  # ignored
    prediction = torch.randint(0, 3, (2, 9, 7), generator=g)
    intersection, union, labelled = per_class_counts(prediction, labels, 3)
    for n in range(2):
        keep = labels[n] != 255
        for k in range(3):
            p, y = prediction[n][keep] == k, labels[n][keep] == k
            assert intersection[n, k] == (p & y).sum()
            assert union[n, k] == (p | y).sum()
        assert labelled[n] == keep.sum()


def test_report_writes_tables_and_figures(tmp_path):
    records = [record("A", v, image=str(i)) for i, v in enumerate([0.3, 0.6, 5.0])]
    records += [record("clean", image="0", intersection=(1, 1), union=(2, 2), labelled=2)]
    path = report.write_report(records, tmp_path)
    text = path.read_text()
    assert "| m | untargeted | A | 3 | 0.60 | 1.97 | 100% |" in text
    assert (tmp_path / "failure_rate_m_untargeted.png").stat().st_size > 1000
    assert "plotly" in (tmp_path / "failure_rate_m_untargeted.html").read_text()[:200000].lower()


# --------------------------------------------------------------------------- rows, sources, store


def test_parse_rows():
    rows = parse_rows(["table1"])
    assert rows[-1].label == "ALMA prox" and rows[-1].attack == "alma_prox"
    (row,) = parse_rows(['pgd_bisection:loss="dlr",num_steps=10'])
    assert row.kwargs == {"loss": "dlr", "num_steps": 10}
    # a Table 1 title picks that row with the same label and parameters as in the full table
    dag_row, alma_row = parse_rows(["DAG η = 0.001", "ALMA prox"])
    full = {r.label: r for r in rows}
    assert dag_row == full["DAG η = 0.001"] and dag_row.kwargs["step_size"] == 0.001
    assert alma_row == full["ALMA prox"]
    (quick,) = parse_rows(["alma_prox"], budget_fraction=0.1)
    assert quick.kwargs["num_steps"] == 50 and "×0.1" in quick.label
    with pytest.raises(InputError, match="no parameter"):
        parse_rows(["alma_prox:bogus=1"])
    with pytest.raises(InputError, match="unknown attack"):
        parse_rows(["nope"])
    with pytest.raises(InputError):
        parse_rows(["alma_prox:num_steps=-5"])


def _write_png(path, array, mode=None):
    from PIL import Image

    Image.fromarray(array, mode=mode).save(path)


def test_folder_source_and_batches(tmp_path, street_model):
    model = street_model
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in {"a": (32, 48), "b": (32, 48), "c": (40, 40)}.items():
        _write_png(tmp_path / "images" / f"{name}.png", rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        _write_png(tmp_path / "labels" / f"{name}.png", rng.integers(0, 19, (h, w), dtype=np.uint8))
    source = open_source(str(tmp_path), model)
    assert source.ids == ("folder/a", "folder/b", "folder/c")
    x, y = source.load(["folder/a", "folder/b"])
    assert x.shape == (2, 3, 32, 48) and y.shape == (2, 32, 48) and y.max() < 19
    # batches never mix sizes
    batches = plan_batches("m", source, parse_rows(["dag"]), ["untargeted"], [], batch_size=4)
    assert [b.image_ids for b in batches] == [("folder/a", "folder/b"), ("folder/c",)] * 2
    _write_png(tmp_path / "labels" / "c.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(InputError, match="label map is 8x8"):
        open_source(str(tmp_path), model)
    with pytest.raises(InputError, match="seed range"):
        open_source("seeds:9-3", model)
    with pytest.raises(InputError, match="unknown image source"):
        open_source("no/such/folder", model)
    seeds = open_source("seeds:10000-10002", model)
    assert seeds.ids == ("seeds/10000", "seeds/10001", "seeds/10002")
    assert seeds.load(seeds.ids[:1])[0].shape == (1, 3, 128, 256)


def test_store_skips_torn_lines_and_merges_parts(tmp_path):
    out = tmp_path / "r.jsonl"
    append_records(out, [{"key": "a", "v": 1}])
    with out.open("a") as f:
        f.write('{"key": "b", "v"')  # killed mid-write
    append_records(part_path(out, 1), [{"key": "c", "v": 3}, {"key": "a", "v": 9}])
    assert [r["key"] for r in read_records(out)] == ["a", "c"]
    assert read_records(out)[0]["v"] == 1
    assert merge_parts(out) == 1  # appended on a fresh line: not glued to the torn fragment
    assert not part_path(out, 1).exists()
    assert [r["key"] for r in read_records(out)] == ["a", "c"]
    assert out.read_text().splitlines()[1:] == ['{"key": "b", "v"', '{"key": "c", "v": 3}']


# --------------------------------------------------------------------------- whole runs (subprocesses)

BENCH_ARGS = ["--attacks", "alma_prox:num_steps=40", "dag:num_steps=40", "pgd:num_steps=10", "--eps", "1",
              "--limit", "3", "--modes", "untargeted", "--threads", "1", "--no-progress"]


def _bench(out, *extra, launcher=None, **popen):
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    command = (launcher or [sys.executable, "-m", "explorer.bench"]) + ["run", "--out", str(out), *BENCH_ARGS,
                                                                       *extra]
    return subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, **popen)


def _without_times(records):
    return {r["key"]: {k: v for k, v in r.items() if not k.startswith("seconds")} for r in records}


@pytest.fixture(scope="module")
def single_process_records(tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "r.jsonl"
    proc = _bench(out)
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output
    return read_records(out)


def test_single_run_records(single_process_records):
    records = single_process_records
    rows = {r["row"] for r in records}
    assert rows == {"clean", "alma_prox:num_steps=40", "dag:num_steps=40", "pgd:num_steps=10"}
    assert len(records) == 3 * 4
    for r in records:
        assert len(r["intersection"]) == len(r["union"]) == 19
        assert 0 <= r["accuracy"] <= 1
        if r["row"] == "pgd:num_steps=10":
            assert r["eps_255"] == 1 and r["linf_255"] <= 1 + 1e-3
        if r["row"] == "alma_prox:num_steps=40":
            assert r["forwards"] == 40 and r["backwards"] == 40
            assert r["success"] == (r["apsr"] >= 0.99)
        minimal = r["row"] in ("alma_prox:num_steps=40", "dag:num_steps=40")
        assert ("linf_8bit_255" in r) == minimal, "minimal-norm rows, and only they, carry their 8-bit finish"
        if minimal:
            assert r["linf_8bit_255"] == round(r["linf_8bit_255"]) >= 1, "whole levels (the samples are 8-bit)"
            assert r["success_8bit"] == (r["apsr_8bit"] >= 0.99) and r["forwards_8bit"] >= 1


def test_killed_run_restarts_without_losing_finished_images(tmp_path, single_process_records):
    out = tmp_path / "r.jsonl"
    proc = _bench(out, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 5):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = out.read_text().splitlines()
    finished = [json.loads(line) for line in before if line.endswith("}")]
    assert 5 <= len(finished) < 12, "the kill should land mid-run"
    proc = _bench(out)
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output
    assert "already done" in output
    after = read_records(out)
    kept = {r["key"]: r for r in after}
    for r in finished:  # nothing finished was lost or recomputed
        assert kept[r["key"]] == r
    assert _without_times(after) == _without_times(single_process_records)


def test_ranks_coordinate_through_the_store_alone():
    """Three ranks (threads on one in-memory store) arriving at different times sum exactly,
    nobody passes a barrier early, and the store's host leaves last."""
    import threading

    import torch.distributed as torch_dist

    from explorer.bench.run import Distributed

    store = torch_dist.HashStore()
    events, results = [], {}

    def rank_main(rank):
        d = Distributed(rank, 3, rank, store, hosts_store=rank == 0)
        d.POLL_SECONDS = 0.01
        time.sleep(0.05 * (2 - rank))  # rank 2 arrives first, rank 0 last
        events.append(("arrive", rank))
        d.barrier()
        events.append(("pass", rank))
        results[rank] = (d.sum([rank, 10 * rank + 1]), d.sum([1]))
        if rank != 0:
            time.sleep(0.1)  # the host must wait for the others to leave
        d.close()
        events.append(("left", rank))

    threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results == {r: ([3, 33], [3]) for r in range(3)}
    first_pass = min(i for i, e in enumerate(events) if e[0] == "pass")
    assert sum(e[0] == "arrive" for e in events[:first_pass]) == 3
    assert events[-1] == ("left", 0)
    assert Distributed().sum([4, 5]) == [4, 5]  # a single process needs no store


def test_torchrun_two_processes_gives_the_single_process_records(tmp_path, single_process_records):
    out = tmp_path / "r.jsonl"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                "-m", "explorer.bench"]
    proc = _bench(out, launcher=launcher)
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output
    assert not list(tmp_path.glob("r.jsonl.part*")), "rank 0 merges and removes the part files"
    records = read_records(out)
    assert {r["device"] for r in records} == {"cpu"}
    assert _without_times(records) == _without_times(single_process_records)


# --------------------------------------------------------------------------- side-by-side comparisons


def test_penalty_gradient_comparison_on_the_linear_model():
    from explorer.bench.compare import compare_penalty_gradients

    model, images, labels = make_problem(seed=2, batch=2, size=8)
    runs, (ratio,) = compare_penalty_gradients(model, images, labels, targeted=False, num_steps=60)
    assert [r["run"] for r in runs] == ["alma_prox penalty_grad=true", "alma_prox penalty_grad=reference"]
    for r in runs:
        assert len(r["norms_255"]) == 2
        assert r["median_255"] == pytest.approx(float(np.median(
            [n if s else 255.0 for n, s in zip(r["norms_255"], r["success"])])))
    assert ratio["median_ratio"] == pytest.approx(runs[0]["median_255"] / runs[1]["median_255"])


def test_adv_lib_comparison_imports_without_visdom():
    pytest.importorskip("adv_lib", reason="adv-lib is optional: pip install --no-deps adv-lib==0.2.8")
    from explorer.bench.compare import compare_with_reference, import_adv_lib

    had_visdom = "visdom" in sys.modules
    attacks = import_adv_lib()
    assert set(attacks) == {"alma_prox", "dag", "pdpgd"}
    assert ("visdom" in sys.modules) == had_visdom, "the stand-in must not outlive the import"
    model, images, labels = make_problem(seed=1, batch=2, size=8)
    optimum = optimal_linf(untargeted_pixel_budgets(model, images, labels), labels, model.conv.out_channels) * 255
    runs, ratios = compare_with_reference(model, images, labels, targeted=False, num_steps=300,
                                          attacks=("alma_prox", "dag"))
    by = {r["run"]: r for r in runs}
    assert set(by) == {"alma_prox (ours)", "alma_prox (adv-lib)", "dag (ours)", "dag (adv-lib)"}
    # DAG has no free choice left: ours and the reference find the same perturbations
    np.testing.assert_allclose(by["dag (ours)"]["norms_255"], by["dag (adv-lib)"]["norms_255"], rtol=1e-4)
    assert by["dag (ours)"]["success"] == by["dag (adv-lib)"]["success"] == [True, True]
    # ALMA prox (ours) lands within 1 % of the exact optimum; the reference is scored by the same metric
    assert by["alma_prox (ours)"]["success"] == [True, True]
    np.testing.assert_allclose(by["alma_prox (ours)"]["norms_255"], optimum.tolist(), rtol=0.01)
    reference = by["alma_prox (adv-lib)"]
    counted = [n if ok else 255.0 for n, ok in zip(reference["norms_255"], reference["success"])]
    assert reference["median_255"] == pytest.approx(float(np.median(counted)))
    assert ratios[0]["median_ratio"] == pytest.approx(by["alma_prox (ours)"]["median_255"] / reference["median_255"])
    assert math.isfinite(ratios[0]["time_ratio"]) and ratios[0]["time_ratio"] > 0


def test_pdpgd_is_on_par_with_the_reference_on_a_shipped_model(street_model):
    """A regression guard: PDPGD once returned norms ~14x the reference's on street-fpn."""
    pytest.importorskip("adv_lib", reason="adv-lib is optional: pip install --no-deps adv-lib==0.2.8")
    from explorer.bench.compare import compare_with_reference
    from explorer.data.samples import list_samples, load_sample

    model = street_model
    for p in model.parameters():
        p.requires_grad_(False)
    names = list_samples("street")[:2]
    images = torch.stack([load_sample(n)[0] for n in names])[..., 32:96, 64:192]
    labels = torch.stack([load_sample(n)[1] for n in names])[..., 32:96, 64:192]
    runs, (ratio,) = compare_with_reference(model, images, labels, targeted=False, num_steps=150,
                                            attacks=("pdpgd",))
    assert ratio["ours_success"] == 1.0
    assert ratio["median_ratio"] < 1.3, runs


def test_bad_command_line_input_exits_with_its_message(tmp_path):
    from explorer.bench.cli import main

    with pytest.raises(SystemExit, match="unknown attack 'nope'"):
        main(["run", "--attacks", "nope", "--out", str(tmp_path / "r.jsonl")])
    with pytest.raises(SystemExit, match="seed range"):
        main(["run", "--images", "seeds:5-1", "--attacks", "dag", "--out", str(tmp_path / "r.jsonl")])
    assert not (tmp_path / "r.jsonl").exists()


def test_speed_command_prints_each_attack_against_its_counted_model_calls(capsys):
    from explorer.bench.cli import main

    main(["speed", "--height", "32", "--width", "64", "--steps", "2", "--threads", "1", "--rounds", "2",
          "--attacks", "alma_prox,dag,pgd"])
    text = capsys.readouterr().out
    rows = {line.split(" | ")[0].lstrip("| "): line.strip(" |").split(" | ")
            for line in text.splitlines() if line.startswith("| ") and "---" not in line and "attack |" not in line}
    assert set(rows) == {"ALMA prox (ternary prox)", "ALMA prox (histogram prox)", "DAG", "PGD"}
    fb_ms, forward_ms = map(float, re.search(r"forward\+backward ([\d.]+) ms, forward ([\d.]+) ms", text).groups())
    fb_cpu_ms, forward_cpu_ms = map(float, re.search(
        r"processor time forward\+backward ([\d.]+) ms, forward ([\d.]+) ms", text).groups())
    for label, (_, forwards, backwards, seconds, floor, ratio, paired, cpu, cpu_ratio, peak,
                peak_ratio) in rows.items():
        # ALMA prox and DAG: one forward and one backward per iteration; PGD evaluates its last iterate too
        assert (int(forwards), int(backwards)) == ((3, 2) if label == "PGD" else (2, 2))
        # the floor is the counted calls at the model's own per-pass times, and the ratio is time over it
        expected_floor = (2 * fb_ms + (int(forwards) - 2) * forward_ms) / 1000
        assert float(floor) == pytest.approx(expected_floor, abs=2e-3)
        assert float(ratio) == pytest.approx(float(seconds) / float(floor), rel=0.03)  # printed to 3 decimals
        assert float(paired) > 0
        # the processor-time ratio prices the same calls at the model's processor time per pass
        cpu_floor = (2 * fb_cpu_ms + (int(forwards) - 2) * forward_cpu_ms) / 1000
        assert float(cpu_ratio) == pytest.approx(float(cpu) / cpu_floor, rel=0.05, abs=2e-3)
        assert peak == "n/a" or float(peak) >= 0
    for solver in ("histogram", "ternary"):
        assert f"prox alone ({solver}): " in text


def test_peak_memory_sees_a_large_allocation():
    from explorer.bench.speed import cpu_peak_supported, peak_memory

    if not cpu_peak_supported():
        pytest.skip("this system cannot reset the process's peak resident set")
    size = 64 * 2 ** 20

    def allocate():
        block = torch.ones(size // 4)  # 64 MiB, written so every page is resident
        return float(block[-1])

    value, peak = peak_memory(allocate, torch.device("cpu"))
    assert value == 1.0
    assert 0.9 * size <= peak <= 1.5 * size
    _, small = peak_memory(lambda: torch.ones(10).sum(), torch.device("cpu"))
    assert small < size / 4


@pytest.mark.parametrize("bad", [["--rounds", "0"], ["--steps", "-2"], ["--height", "x"]])
def test_speed_command_refuses_non_positive_sizes_with_a_message(bad, capsys):
    from explorer.bench.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["speed", *bad])
    assert exit_info.value.code == 2
    assert "must be a whole number >= 1" in capsys.readouterr().err
