"""Pictures (explorer.live.render) and run files / downloads (explorer.live.exports), on hand-made data."""
import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from explorer.attacks.core import AttackResult, IterationRecord, PixelState
from explorer.data.datasets import IGNORE_COLOUR, get_dataset
from explorer.errors import InputError
from explorer.live import render
from explorer.live.exports import MAX_RUN_FILE_BYTES, RunSpec, write_downloads


def test_colorize_uses_the_palette_and_the_ignore_colour():
    voc = get_dataset("voc")
    labels = np.array([[0, 15], [255, 21]])  # background, person, ignored, out of range
    picture = render.colorize(labels, voc)
    assert picture.shape == (2, 2, 3) and picture.dtype == np.uint8
    assert tuple(picture[0, 0]) == voc.palette[0]
    assert tuple(picture[0, 1]) == voc.palette[15] == (192, 128, 128)
    assert tuple(picture[1, 0]) == IGNORE_COLOUR and tuple(picture[1, 1]) == IGNORE_COLOUR


def test_mask_colours_and_counts():
    states = torch.tensor([[PixelState.SATISFIED, PixelState.VIOLATED],
                           [PixelState.DROPPED, PixelState.IGNORED]], dtype=torch.uint8)
    picture = render.render_mask(states)
    for (i, j), state in {(0, 0): PixelState.SATISFIED, (0, 1): PixelState.VIOLATED,
                          (1, 0): PixelState.DROPPED, (1, 1): PixelState.IGNORED}.items():
        assert tuple(picture[i, j]) == render.MASK_STYLE[state][0]
    assert render.mask_counts(states) == {"satisfied": 1, "violated": 1, "dropped": 1, "ignored": 1}
    legend = render.mask_legend_html()
    assert all(text.split(" ")[0] in legend for _, text in render.MASK_STYLE.values())


def test_amplified_perturbation_maps_the_peak_to_black_and_white():
    delta = np.zeros((3, 2, 2), np.float32)
    delta[0, 0, 0], delta[1, 1, 1] = 2 / 255, -1 / 255
    picture, gain = render.amplify_perturbation(delta)
    assert gain == pytest.approx(0.5 / (2 / 255))
    assert picture[0, 0, 0] == 255 and picture[1, 1, 1] == round(255 * 0.25)
    assert picture[0, 1, 0] == 128  # zero stays mid-grey
    grey, zero_gain = render.amplify_perturbation(np.zeros((3, 2, 2)))
    assert zero_gain == 0 and (grey == 128).all()


def test_upscale_nearest_repeats_pixels():
    picture = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    big = render.upscale_nearest(picture, min_width=7)  # factor 3
    assert big.shape == (6, 9, 3) and (big[::3, ::3] == picture).all() and (big[2, 8] == picture[0, 2]).all()


def test_figures_draw_threshold_and_best_series():
    series = {"alma_prox": {"iteration": [0, 1, 2], "apsr": [0.1, 0.5, 1.0], "best_apsr": [0.1, 0.5, 1.0],
                            "linf": [0.0, 0.01, 0.02], "best_linf": [float("inf"), float("inf"), 0.02]}}
    apsr = render.apsr_figure(series, 0.99)
    # top row (linear APSR), then the bottom row (1 - APSR, log) in the same order
    assert [t.name for t in apsr.data] == ["current", "best iterate"] * 2
    assert [t.yaxis for t in apsr.data] == ["y", "y", "y2", "y2"]
    assert apsr.layout.uirevision == "keep" and apsr.layout.shapes[0].y0 == 0.99
    linf = render.linf_figure(series)
    assert list(linf.data[0].y) == pytest.approx([0, 2.55, 5.1])
    assert list(linf.data[1].y)[:2] == [None, None] and linf.data[1].y[2] == pytest.approx(5.1)
    both = render.linf_figure({**series, "dag": series["alma_prox"]})
    assert [t.name for t in both.data] == ["alma_prox", "dag"]


# ----------------------------------------------------------------------------- run files

def test_run_spec_round_trip_validates_parameters():
    spec = RunSpec(model="street-fpn-mobilenet", image="street-003", attack="alma_prox", target="majority",
                   params={"num_steps": 40, "alpha": 0.7}, seed=3, adv_threshold=0.95)
    again = RunSpec.from_json(spec.to_json())
    assert again == spec
    assert RunSpec.from_json(spec.to_json().encode()) == spec


def run_file(**fields) -> str:
    """A run file of this explorer with ``fields`` changed (``None`` removes a field)."""
    data = {"format": "seg-attack-explorer/run", "version": 1, "model": "street-fpn-mobilenet",
            "image": "street-000", "attack": "dag", "target": "untargeted", "params": {}, "seed": 0,
            "adv_threshold": 0.99}
    data.update(fields)
    return json.dumps({k: v for k, v in data.items() if v is not None})


@pytest.mark.parametrize("text, message", [
    ("not json", "not valid JSON"),
    ("[1, 2]", "not a run file"),
    (json.dumps({"format": "something-else"}), "not a run file"),
    (json.dumps({"format": "seg-attack-explorer/run", "version": 99}), "version"),
    (run_file(version=True), "version"),
    (json.dumps({"format": "seg-attack-explorer/run", "version": 1, "model": "m"}), "lacks"),
    (run_file(attack="nope"), "unknown attack"),
    (run_file(model="../../etc/passwd"), "model"),
    (run_file(model="no-such-model"), "unknown model"),
    (run_file(params={"step_size": -1}), "step_size"),
    (run_file(target="everything"), "target"),
    (run_file(model="objects-fpn-mobilenet", image="objects-000", target="majority"), "target"),
    (b"\xff\xfe\x00", "UTF-8"),
    pytest.param("x" * (MAX_RUN_FILE_BYTES + 1), "too large", id="too-large"),
    # hostile run files (issue 13): nothing in one becomes a path, code or a hidden keyword
    (run_file(image="../../etc/passwd"), "image"),
    (run_file(image="/etc/passwd"), "image"),
    (run_file(image="upload:../../x"), "image"),
    (run_file(image="upload:" + "0" * 63), "image"),
    pytest.param("[" * 30000 + "]" * 30000, "nested", id="deep-list"),
    pytest.param('{"a":' * 10000 + "1" + "}" * 10000, "nested", id="deep-object"),
    (run_file(params={"callback": "print"}), "callback"),
    (run_file(params={"masks": [[1]]}), "masks"),
    (run_file(params={"record_maps": True}), "record_maps"),
    (run_file(params={"targeted": True}), "targeted"),
    (run_file(params={"num_steps": True}), "num_steps"),
    (run_file(params={"num_steps": 10 ** 400}), "num_steps"),
    (run_file(adv_threshold=True), "adv_threshold"),
    (run_file(adv_threshold="0.5; rm -rf /"), "adv_threshold"),
    (run_file(seed=True), "seed"),
    (run_file(seed=2 ** 80), "seed"),
    (run_file(seed=-1), "seed"),
    (run_file(seed=1.5), "seed"),
    (run_file(params=[1, 2]), "params"),
    (run_file(extra="anything"), "unknown field"),
    (run_file(adv_threshold=None).replace('"seed": 0', '"seed": 0, "adv_threshold": NaN'), "NaN"),
])
def test_malformed_or_foreign_run_files_are_refused_clearly(text, message):
    with pytest.raises(InputError, match=message):
        RunSpec.from_json(text)


def _result(clean: torch.Tensor, delta: torch.Tensor, steps: int = 3) -> AttackResult:
    records = [IterationRecord(attack="dag", iteration=i, num_steps=steps, apsr=torch.tensor([i / steps]),
                               linf=torch.tensor([0.01]), best_linf=torch.tensor([float("inf")]),
                               best_apsr=torch.tensor([i / steps]), success=torch.tensor([False]),
                               loss=torch.tensor([1.0]), step_size=torch.tensor([0.003]))
               for i in range(steps)]
    adv = (clean + delta).clamp(0, 1)
    return AttackResult(attack="dag", adv_images=adv, linf=(adv - clean).abs().flatten(1).amax(1),
                        apsr=torch.tensor([0.5]), success=torch.tensor([False]),
                        num_forwards=torch.tensor([steps]), num_backwards=torch.tensor([steps]),
                        iterations=steps, stopped=False, elapsed_s=0.1, targeted=False, adv_threshold=0.99,
                        trace=records)


def test_downloads_hold_the_exact_perturbation_and_the_8bit_image(tmp_path):
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(1, 3, 5, 7, generator=g)
    delta = (torch.rand(1, 3, 5, 7, generator=g) - 0.5) * 0.003
    result = _result(clean, delta)
    spec = RunSpec(model="street-fpn-mobilenet", image="street-000", attack="dag")
    paths = write_downloads(result, clean, spec, tmp_path, stem="t")
    assert set(paths) == {"png", "npy", "csv", "json"}
    saved = np.load(paths["npy"], allow_pickle=False)
    assert saved.dtype == np.float32 and saved.shape == (3, 5, 7)
    assert np.array_equal(saved, (result.adv_images[0] - clean[0]).numpy())
    png = np.asarray(Image.open(paths["png"]))
    assert png.shape == (5, 7, 3)
    assert np.array_equal(png, (result.adv_images[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    rows = list(csv.DictReader(open(paths["csv"])))
    assert [int(r["iteration"]) for r in rows] == [0, 1, 2] and float(rows[2]["apsr"]) == pytest.approx(2 / 3)
    assert RunSpec.from_json(paths["json"].read_text()) == spec
