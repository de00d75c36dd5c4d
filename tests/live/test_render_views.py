"""Views of a run (explorer.live.render, explorer.live.exports): the class legend, the curves
(log view of 1 - APSR, titles, markers, thinning, cursor, placeholder), the replay movie and
pictures brought to one size for a before/after slider — on hand-made data, with exact values."""
import io
import math
import re

import numpy as np
import pytest
import torch
from app_events import STREET
from PIL import Image, features

from explorer.attacks.core import PixelState
from explorer.data.datasets import IGNORE_COLOUR, DatasetInfo, get_dataset
from explorer.live import LiveAttack, prepare_scene, render
from explorer.live.exports import write_replay_animation
from explorer.live.run import Frame, Replay

VOC = get_dataset("voc")
CITYSCAPES = get_dataset("cityscapes")

# ----------------------------------------------------------------------------- class legend


def legend_items(text):
    """(name, share) of each entry of a legend, in order."""
    return re.findall(r'title="\d+ pixels"[^>]*>(?:<span[^>]*></span>)?([^<]*?)(?: <span[^>]*>([^<]*)</span>)?</span>',
                      text)


def test_class_legend_orders_the_present_classes_by_pixel_share():
    first = np.array([[0, 0, 15], [15, 15, 255]])   # background 2, person 3, ignored 1
    second = torch.tensor([[15, 7]])                 # person 1, car 1
    shares = render.class_shares(VOC, first, second)
    # 8 pixels in all; a tie (car, ignored: 1 each) goes to the lower index, ignored counting as num_classes
    assert shares == [(15, "person", (192, 128, 128), 4), (0, "background", (0, 0, 0), 2),
                      (7, "car", (128, 128, 128), 1), (255, "ignored", IGNORE_COLOUR, 1)]
    legend = render.class_legend_html(VOC, first, second)
    assert legend_items(legend) == [("person", "50.0 %"), ("background", "25.0 %"), ("car", "12.5 %"),
                                    ("ignored", "12.5 %")]
    assert "rgb(192, 128, 128)" in legend and f"rgb{IGNORE_COLOUR}" in legend
    assert legend == render.class_legend_html(VOC, first, second.numpy())  # tensors or arrays, same text
    # out-of-range values are drawn in the ignore colour by colorize: they are "ignored" here too
    assert render.class_shares(VOC, np.array([[21, 200]])) == [(255, "ignored", IGNORE_COLOUR, 2)]


def test_class_legend_limit_tiny_shares_and_no_maps():
    labels = np.zeros((50, 50), np.int64)
    labels[0, 0], labels[0, 1:6] = 1, 2   # aeroplane 1 pixel (0.04 %), bicycle 5 pixels (0.2 %)
    assert legend_items(render.class_legend_html(VOC, labels)) == [
        ("background", "99.8 %"), ("bicycle", "0.2 %"), ("aeroplane", "&lt;0.1 %")]
    short = render.class_legend_html(VOC, labels, limit=1)
    assert legend_items(short) == [("background", "99.8 %"), ("+2 more (0.2 %)", "")]
    every = render.class_legend_html(VOC)
    assert [name for name, _ in legend_items(every)] == list(VOC.class_names)
    assert "%" not in every and "ignored" not in every


def test_class_legend_escapes_names():
    odd = DatasetInfo("odd", ("<b>road</b>", "a & b"), ((1, 2, 3), (4, 5, 6)))
    legend = render.class_legend_html(odd, np.array([[0, 1, 1]]))
    assert "<b>" not in legend and legend_items(legend) == [("a &amp; b", "66.7 %"), ("&lt;b&gt;road&lt;/b&gt;",
                                                                                         "33.3 %")]


# ----------------------------------------------------------------------------- curves


def test_downsample_keeps_the_ends_and_the_extremes():
    rng = np.random.default_rng(0)
    values = list(rng.normal(size=20_000))
    values[12_345], values[777] = 50.0, -60.0   # spikes
    iterations = list(range(20_000))
    x, y = render.downsample(iterations, values, 500)
    assert len(x) == len(y) <= 500 and x == sorted(x)
    assert x[0] == 0 and x[-1] == 19_999 and y[0] == values[0] and y[-1] == values[-1]
    assert max(y) == 50.0 and min(y) == -60.0 and 12_345 in x and 777 in x
    assert all(values[i] == v for i, v in zip(x, y))   # points, not averages
    assert render.downsample([0, 1, 2], [3.0, 1.0, 2.0]) == ([0, 1, 2], [3.0, 1.0, 2.0])


def test_downsample_keeps_gaps_before_success():
    best = [math.inf] * 5_000 + list(np.linspace(0.03, 0.01, 15_000))
    x, y = render.downsample(range(20_000), best, 500)
    assert len(x) <= 500 and y[0] == math.inf and min(y) == pytest.approx(0.01) and max(y) == math.inf
    first_success = next(i for i, v in zip(x, y) if v != math.inf)
    assert 5_000 - 5_000 // 160 <= first_success <= 5_000 + 5_000 // 160  # the gap ends where it ends (± a bucket)


def long_series(n=20_000):
    it = list(range(n))
    apsr = [min(1.0, i / n * 1.2) for i in it]
    linf = [0.01 + 0.001 * math.sin(i) for i in it]
    best = [math.inf] * (n // 4) + [0.02] * (n - n // 4)
    return {"iteration": it, "apsr": apsr, "best_apsr": apsr, "linf": linf, "best_linf": best}


def test_apsr_figure_shows_what_is_left_to_fool_on_a_log_axis():
    series = {"alma_prox": {"iteration": [0, 1, 2, 3], "apsr": [0.0, 0.9, 0.995, 1.0],
                            "best_apsr": [0.0, 0.9, 0.995, 1.0]}}
    fig = render.apsr_figure(series, 0.99)
    linear, _, log, _ = fig.data
    assert list(linear.y) == [0.0, 0.9, 0.995, 1.0]
    # 1 - APSR, the exact 0 drawn at the floor; the hover shows the APSR itself
    assert list(log.y) == pytest.approx([1.0, 0.1, 0.005, render.APSR_LOG_FLOOR])
    assert list(log.customdata) == [0.0, 0.9, 0.995, 1.0] and "customdata" in log.hovertemplate
    assert fig.layout.yaxis2.type == "log" and "1e-4" in fig.layout.yaxis2.title.text.replace("0.0001", "1e-4")
    assert fig.layout.yaxis2.range == pytest.approx((-4.2, 0.05))
    thresholds = [s for s in fig.layout.shapes if s.name == "threshold"]
    assert [(s.yref, s.y0) for s in thresholds] == [("y", 0.99), ("y2", pytest.approx(0.01))]
    note = [a for a in fig.layout.annotations if a.yref == "y2"][0]
    assert note.text == "1 − ν = 0.01" and note.y == pytest.approx(-2)  # annotations on log axes take log10
    assert fig.layout.uirevision == "keep" and fig.layout.height == render.APSR_PLOT_HEIGHT
    # ν = 1: nothing left to fool; 1 - ν is drawn at the floor
    sure = render.apsr_figure(series, 1.0)
    assert [s.y0 for s in sure.layout.shapes if s.name == "threshold"][1] == render.APSR_LOG_FLOOR


def test_figures_use_display_titles_and_a_cursor():
    two = {"alma_prox": long_series(40), "dag": long_series(40)}
    titles = {"alma_prox": "ALMA prox", "dag": "DAG"}
    apsr = render.apsr_figure(two, 0.99, titles=titles, cursor=17)
    assert [t.name for t in apsr.data] == ["ALMA prox", "DAG"] * 2
    assert [t.showlegend for t in apsr.data] == [None, None, False, False]
    assert [t.legendgroup for t in apsr.data] == ["ALMA prox", "DAG"] * 2
    assert apsr.data[0].line.color == apsr.data[2].line.color != apsr.data[1].line.color
    cursors = [s for s in apsr.layout.shapes if s.name == "cursor"]
    assert [(s.x0, s.x1, s.xref) for s in cursors] == [(17, 17, "x"), (17, 17, "x2")]
    linf = render.linf_figure(two, titles={"dag": "DAG"}, cursor=17)
    assert [t.name for t in linf.data] == ["alma_prox", "DAG"]   # a name without a title is shown as is
    assert [(s.x0, s.xref) for s in linf.layout.shapes if s.name == "cursor"] == [(17, "x")]
    assert not [s for s in render.linf_figure(two).layout.shapes if s.name == "cursor"]


def test_curves_have_at_most_max_points_and_markers_where_points_are_few():
    one = {"run": long_series()}
    apsr, linf = render.apsr_figure(one, 0.99), render.linf_figure(one)
    assert len(apsr.data) == 4 and len(linf.data) == 2
    assert all(len(t.x) == len(t.y) <= render.MAX_POINTS for t in (*apsr.data, *linf.data))
    assert linf.data[0].mode == "lines" and apsr.data[0].mode == "lines"
    best = linf.data[1]  # the best successful curve: always markers (size 4), gaps before success
    assert best.mode == "lines+markers" and best.marker.size == 4 and best.y[0] is None
    assert best.y[-1] == pytest.approx(0.02 * 255)
    # a short run, and a lone successful point in a longer one
    short = render.linf_figure({"run": long_series(30)})
    assert short.data[0].mode == "lines+markers"
    lone = long_series(100)
    lone["linf"] = [math.inf] * 99 + [0.01]
    assert render.linf_figure({"run": lone}).data[0].mode == "lines+markers"
    several = render.linf_figure({"a": long_series(), "b": long_series()})
    assert all(t.mode == "lines+markers" and len(t.x) <= render.MAX_POINTS for t in several.data)


def test_empty_figure_is_a_placeholder_with_a_message():
    fig = render.empty_figure("APSR", "APSR")
    assert not fig.data and fig.layout.xaxis.visible is False and fig.layout.yaxis.visible is False
    (note,) = fig.layout.annotations
    assert note.text == "Press Run to see the curves" and (note.x, note.y, note.xref) == (0.5, 0.5, "paper")
    tall = render.empty_figure("APSR", "APSR", "Nothing yet", height=render.APSR_PLOT_HEIGHT)
    assert tall.layout.annotations[0].text == "Nothing yet" and tall.layout.height == 420


# ----------------------------------------------------------------------------- the movie

H, W = 6, 10


def hand_made_replay(n=4, dataset=CITYSCAPES) -> Replay:
    """``n`` frames of a 6×10 run: a growing perturbation with few distinct values."""
    frames = []
    for i in range(n):
        prediction = np.full((H, W), i % dataset.num_classes, np.int16)
        prediction[:, :3] = 13          # car
        prediction[0, 0] = 255          # ignored
        mask = np.full((H, W), int(PixelState.VIOLATED), np.uint8)
        mask[:, W - 1 - i:] = int(PixelState.SATISFIED)
        mask[H - 1] = int(PixelState.IGNORED)
        mask[0, 5] = int(PixelState.DROPPED)
        delta = np.zeros((3, H, W), np.float32)
        delta[0, 1:3, 2:8] = (i + 1) / 255
        delta[2, 4, :] = -(i + 1) / 510
        frames.append(Frame(iteration=3 * i, apsr=i / n, linf=float(np.abs(delta).max()), prediction=prediction,
                            mask=mask, perturbation=delta.astype(np.float16)))
    return Replay(attack="ALMA prox", frames=tuple(frames), returned=None, num_steps=3 * n, stride=3, history={},
                  clean_image=np.full((3, H, W), 0.5, np.float32), dataset=dataset)


def panels(picture, ph, pw):
    """The three panels of an animation frame (H, W, 3)."""
    rows = slice(render.ANIMATION_STRIP, render.ANIMATION_STRIP + ph)
    step = pw + render.ANIMATION_GAP
    return [picture[rows, k * step:k * step + pw] for k in range(3)]


def frames_of(data: bytes):
    movie = Image.open(io.BytesIO(data))
    out = []
    for k in range(movie.n_frames):
        movie.seek(k)
        out.append((np.asarray(movie.convert("RGB")), movie.info.get("duration")))
    return movie, out


def test_replay_animation_is_one_looping_frame_per_recorded_frame_with_exact_colours():
    replay = hand_made_replay()
    data = render.replay_animation(replay, max_width=200)   # room 192: panels enlarged 6× (36×60)
    assert render.animation_panel_size(H, W, 200) == (36, 60)
    movie, decoded = frames_of(data)
    assert movie.format == "GIF" and movie.n_frames == len(replay.frames) == 4
    assert movie.size == (3 * 60 + 2 * render.ANIMATION_GAP, 36 + 2 * render.ANIMATION_STRIP) == (188, 68)
    assert movie.info["loop"] == 0   # forever
    assert [d for _, d in decoded] == [120, 120, 120, 1500] == [render.ANIMATION_FRAME_MS] * 3 + [
        render.ANIMATION_HOLD_MS]
    gain = render.perturbation_gain(*(f.perturbation for f in replay.frames))
    assert gain == pytest.approx(0.5 / (4 / 255), rel=1e-3)   # that of the largest perturbation
    for (picture, _), frame in zip(decoded, replay.frames):
        prediction, mask, perturbation = panels(picture, 36, 60)
        assert np.array_equal(prediction, render.resize_nearest(render.colorize(frame.prediction, CITYSCAPES), 36, 60))
        assert np.array_equal(mask, render.resize_nearest(render.render_mask(frame.mask), 36, 60))
        # one gain for the whole movie (few distinct values: the palette holds them exactly)
        shared, _ = render.amplify_perturbation(frame.perturbation.astype(np.float32), gain)
        assert np.array_equal(perturbation, render.resize_nearest(shared, 36, 60))
    first = panels(decoded[0][0], 36, 60)[2]
    assert first.max() < 255 // 2 + 40   # the first, small perturbation is dim, not stretched to white
    strips = decoded[0][0][:render.ANIMATION_STRIP], decoded[0][0][-render.ANIMATION_STRIP:]
    for strip in strips:   # titles and caption: ink on paper, not anti-aliased
        assert {tuple(c) for c in strip.reshape(-1, 3)} == {render.ANIMATION_PAPER, render.ANIMATION_INK}
    # the captions differ from frame to frame (the iteration): no frame is merged away
    assert not np.array_equal(decoded[1][0][-render.ANIMATION_STRIP:], decoded[2][0][-render.ANIMATION_STRIP:])


@pytest.mark.skipif(not features.check("webp"), reason="Pillow without WebP")
def test_replay_animation_as_lossless_webp():
    replay = hand_made_replay(3, VOC)
    movie, decoded = frames_of(render.replay_animation(replay, fmt="webp", max_width=200))
    assert movie.format == "WEBP" and movie.n_frames == 3 and movie.size == (188, 68)
    prediction, mask, _ = panels(decoded[-1][0], 36, 60)
    assert np.array_equal(prediction, render.resize_nearest(render.colorize(replay.frames[-1].prediction, VOC), 36, 60))


def test_replay_animation_sizes_and_refusals():
    assert render.animation_panel_size(128, 256) == (128, 256)          # 776 px wide: fits 1024 at 1×
    assert render.animation_panel_size(64, 128) == (128, 256)           # enlarged 2×
    assert render.animation_panel_size(512, 2048) == (84, 338)          # too wide: shrunk to fit
    with pytest.raises(ValueError, match="format"):
        render.replay_animation(hand_made_replay(), fmt="mp4")
    empty = hand_made_replay()
    with pytest.raises(ValueError, match="no recorded frames"):
        render.replay_animation(Replay(**{**empty.__dict__, "frames": ()}))


def test_a_long_noisy_run_stays_a_reasonable_file():
    """120 frames of 128×256 maps with a sign-noise perturbation (PGD-like, the least
    compressible kind a real attack makes): a few MB, not tens."""
    rng = np.random.default_rng(0)
    h, w, n = 128, 256, 120
    blocks = rng.integers(0, 19, (n, h // 16, w // 16))
    frames = tuple(Frame(iteration=i, apsr=i / n, linf=8 / 255,
                         prediction=blocks[i].repeat(16, 0).repeat(16, 1).astype(np.int16),
                         mask=np.where(np.arange(w) < 2 * i, int(PixelState.SATISFIED),
                                       int(PixelState.VIOLATED)).astype(np.uint8)[None].repeat(h, 0),
                         perturbation=(np.sign(rng.normal(size=(3, h, w))) * 8 / 255).astype(np.float16))
                   for i in range(n))
    replay = Replay(attack="PGD", frames=frames, returned=None, num_steps=n, stride=1, history={},
                    clean_image=np.zeros((3, h, w), np.float32), dataset=CITYSCAPES)
    data = render.replay_animation(replay)
    assert len(data) < 5 * 2 ** 20
    assert Image.open(io.BytesIO(data)).n_frames == n


def test_a_real_run_as_a_movie_file(tmp_path):
    scene = prepare_scene(STREET, "street-002")
    run = LiveAttack(scene, "alma_prox", {"num_steps": 8}, max_frames=4)
    run.run()
    replay = run.replay()
    path = write_replay_animation(replay, tmp_path / "downloads")
    assert path == tmp_path / "downloads" / "ALMA_prox_replay.gif"
    movie, decoded = frames_of(path.read_bytes())
    assert movie.n_frames == len(replay.frames) == 5 and movie.size == (776, 160)   # frames 0, 2, 4, 6 and 7
    prediction, mask, _ = panels(decoded[0][0], 128, 256)
    assert np.array_equal(prediction, render.colorize(replay.frames[0].prediction, scene.dataset))
    assert np.array_equal(mask, render.render_mask(replay.frames[0].mask))
    assert write_replay_animation(replay, tmp_path, "mine").name == "mine_replay.gif"


# ----------------------------------------------------------------------------- slider views


def test_same_size_brings_photos_and_maps_to_one_size():
    photo = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    big_map = np.arange(8 * 12 * 3, dtype=np.uint8).reshape(8, 12, 3)   # already upscaled 2×
    mask = np.arange(4 * 6, dtype=np.uint8).reshape(4, 6)
    out = render.same_size(photo, big_map, mask, min_width=20)           # widest 12 -> 2× = 24
    assert [a.shape for a in out] == [(16, 24, 3), (16, 24, 3), (16, 24)]
    assert all(a.dtype == np.uint8 for a in out)
    assert np.array_equal(out[0], photo.repeat(4, 0).repeat(4, 1))      # the photo repeated, never blurred
    assert np.array_equal(out[1], big_map.repeat(2, 0).repeat(2, 1))
    assert np.array_equal(out[2], mask.repeat(4, 0).repeat(4, 1))
    same = render.same_size(photo, photo, min_width=512)                # 6 -> 86× (516 ≥ 512)
    assert same[0].shape == (344, 516, 3) and np.array_equal(same[0], same[1])
    assert render.same_size() == []


def test_resize_nearest_repeats_or_keeps_every_kth_pixel():
    picture = np.arange(16).reshape(4, 4)
    assert np.array_equal(render.resize_nearest(picture, 2, 2), picture[::2, ::2])
    assert np.array_equal(render.resize_nearest(picture, 8, 12), picture.repeat(2, 0).repeat(3, 1))
    assert render.resize_nearest(picture, 4, 4) is picture
