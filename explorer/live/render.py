"""Pictures and plots of an attack, shared by the app and the notebooks.

Everything here turns tensors into things people look at: label maps into palette
colours (with a legend of the classes present, :func:`class_legend_html`), constraint-mask
states into a four-colour map with its legend, a perturbation into a visible picture
(amplified, with the factor stated), pictures of different sizes into one size for a
before/after slider (:func:`same_size`), per-iteration records into plotly curves, and a
finished run's :class:`~explorer.live.run.Replay` into an animated GIF
(:func:`replay_animation`).  Nothing here runs a model.

Images are returned as ``uint8`` numpy arrays of shape (H, W, 3), the format Gradio,
matplotlib and PIL take directly.
"""
from __future__ import annotations

import html
import io
import math
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from explorer.attacks.core import PixelState
from explorer.data.datasets import IGNORE_COLOUR, DatasetInfo
from explorer.live.run import Replay

#: colour and meaning of each constraint-mask state ([Rony2023] §4.1: the set M, eq. 6 masking)
MASK_STYLE: Dict[PixelState, Tuple[Tuple[int, int, int], str]] = {
    PixelState.SATISFIED: ((46, 160, 67), "satisfied — pixel already adversarial"),
    PixelState.VIOLATED: ((214, 39, 40), "violated — pixel not adversarial yet"),
    PixelState.DROPPED: ((255, 187, 40), "dropped: too costly, no longer pushed (adaptive masking)"),
    PixelState.IGNORED: ((150, 150, 150), "ignored — unlabelled, not a constraint"),
}


def _numpy(x) -> np.ndarray:
    if torch.is_tensor(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def image_to_uint8(image) -> np.ndarray:
    """A (3, H, W) or (1, 3, H, W) image in [0, 1] (tensor or array) as (H, W, 3) uint8."""
    x = _numpy(image).astype(np.float32)
    if x.ndim == 4:
        x = x[0]
    if x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"expected an image of shape (3, H, W); got {x.shape}")
    return (np.clip(x, 0, 1).transpose(1, 2, 0) * 255).round().astype(np.uint8)


def colorize(labels, dataset: DatasetInfo) -> np.ndarray:
    """A label map (H, W) in the dataset's palette; ignored/out-of-range values in the ignore colour."""
    y = _numpy(labels).astype(np.int64)
    if y.ndim == 3:
        y = y[0]
    table = np.zeros((257, 3), np.uint8)
    table[: dataset.num_classes] = np.asarray(dataset.palette, np.uint8)
    table[dataset.num_classes:] = IGNORE_COLOUR
    return table[np.clip(y, 0, 256)]


def class_shares(dataset: DatasetInfo, *label_maps) -> List[Tuple[int, str, Tuple[int, int, int], int]]:
    """The classes the label maps show, as ``(class, name, colour, pixels)``, most pixels first
    (ties: lower class first); with no maps, every class with 0 pixels, in class order.

    Pixels are counted over all the maps together (two 10×10 maps: shares of 200 pixels).  Values
    are read as :func:`colorize` draws them, so the legend names what the picture shows:
    anything at or above ``num_classes`` (``ignore_index`` and out-of-range values alike) is
    one entry, ``(ignore_index, "ignored", IGNORE_COLOUR, pixels)``.
    """
    k = dataset.num_classes
    if not label_maps:
        return [(c, dataset.class_names[c], tuple(dataset.palette[c]), 0) for c in range(k)]
    counts = np.zeros(k + 1, np.int64)  # the last bin: ignored
    for labels in label_maps:
        y = np.clip(_numpy(labels).astype(np.int64).ravel(), 0, k)  # as colorize: < 0 draws class 0
        counts += np.bincount(y, minlength=k + 1)
    present = sorted((c for c in range(k + 1) if counts[c]), key=lambda c: (-counts[c], c))
    return [(dataset.ignore_index, "ignored", tuple(IGNORE_COLOUR), int(counts[c])) if c == k
            else (c, dataset.class_names[c], tuple(dataset.palette[c]), int(counts[c])) for c in present]


def _percent(part: int, total: int) -> str:
    share = 100.0 * part / total
    return "<0.1 %" if 0 < share < 0.1 else f"{share:.1f} %"


def _swatch(colour: Sequence[int]) -> str:
    r, g, b = (int(v) for v in colour)
    return (f'<span style="width:14px;height:14px;background:rgb({r}, {g}, {b});display:inline-block;'
            f'margin-right:5px;border:1px solid #444"></span>')


def class_legend_html(dataset: DatasetInfo, *label_maps, limit: Optional[int] = None) -> str:
    """An HTML legend of the classes present in ``label_maps`` (colour swatch, name, share of
    the pixels of all maps together in %, largest first; see :func:`class_shares`); with no
    maps, every class of the dataset without shares.

    ``limit`` keeps the first ``limit`` entries and sums the rest into one "+n more" entry.
    Names are HTML-escaped; the output depends only on the inputs (stable order, fixed
    formatting: one decimal, "<0.1 %" for a share below 0.1 %).
    """
    shares = class_shares(dataset, *label_maps)
    total = sum(count for *_, count in shares)
    shown = shares if limit is None else shares[:max(0, int(limit))]
    items = []
    for _, name, colour, count in shown:
        share = f' <span style="opacity:0.7">{html.escape(_percent(count, total))}</span>' if label_maps else ""
        items.append(f'<span class="legend-item" title="{count} pixels" style="display:inline-flex;'
                     f'align-items:center;margin-right:14px">{_swatch(colour)}{html.escape(name)}{share}</span>')
    rest = shares[len(shown):]
    if rest:
        count = sum(c for *_, c in rest)
        share = f" ({html.escape(_percent(count, total))})" if label_maps else ""
        items.append(f'<span class="legend-item legend-more" title="{count} pixels">'
                     f'+{len(rest)} more{share}</span>')
    return f'<div class="class-legend" style="font-size:0.85em">{"".join(items)}</div>'


def render_mask(states) -> np.ndarray:
    """A constraint-mask map of :class:`PixelState` codes (H, W) in the colours of :data:`MASK_STYLE`."""
    s = _numpy(states).astype(np.int64)
    if s.ndim == 3:
        s = s[0]
    table = np.zeros((256, 3), np.uint8)
    for state, (colour, _) in MASK_STYLE.items():
        table[int(state)] = colour
    return table[np.clip(s, 0, 255)]


def mask_counts(states) -> Dict[str, int]:
    """How many pixels are in each state (for captions and tests)."""
    s = _numpy(states)
    return {state.name.lower(): int((s == int(state)).sum()) for state in MASK_STYLE}


def mask_legend_html() -> str:
    """An HTML legend of the constraint-mask colours."""
    items = "".join(
        f'<span style="display:inline-flex;align-items:center;margin-right:14px">'
        f'<span style="width:14px;height:14px;background:rgb{colour};display:inline-block;'
        f'margin-right:5px;border:1px solid #444"></span>{text}</span>'
        for colour, text in MASK_STYLE.values())
    return f'<div class="mask-legend" style="font-size:0.85em">{items}</div>'


def perturbation_gain(*deltas) -> float:
    """``0.5 / max|delta|`` over all the given perturbations (0 when they are all zero): the
    gain that maps the largest of them onto the full black-to-white range."""
    arrays = [_numpy(d).astype(np.float32) for d in deltas]
    peak = max((float(np.abs(a).max()) for a in arrays if a.size), default=0.0)
    return 0.5 / peak if peak > 0 else 0.0


def amplify_perturbation(delta, gain: Optional[float] = None) -> Tuple[np.ndarray, float]:
    """Make a perturbation (3, H, W) visible: ``0.5 + gain * delta`` with ``gain = 0.5 / max|delta|``.

    Returns the (H, W, 3) uint8 picture and the gain, so a caption can say how much it was
    amplified (mid-grey means no change).  An all-zero perturbation is plain grey (gain 0).
    Pass ``gain`` (e.g. :func:`perturbation_gain` of several frames) to draw several
    perturbations with one brightness scale; values beyond it are clipped.
    """
    d = _numpy(delta).astype(np.float32)
    if d.ndim == 4:
        d = d[0]
    if gain is None:
        gain = perturbation_gain(d)
    return image_to_uint8(0.5 + gain * d), float(gain)


def upscale_nearest(picture: np.ndarray, min_width: int = 512) -> np.ndarray:
    """Repeat pixels by the smallest integer factor that makes the width at least ``min_width``
    (label maps and masks stay crisp instead of being blurred by the browser)."""
    factor = max(1, -(-min_width // picture.shape[1]))
    if factor == 1:
        return picture
    return picture.repeat(factor, axis=0).repeat(factor, axis=1)


def resize_nearest(picture: np.ndarray, height: int, width: int) -> np.ndarray:
    """``picture`` (H, W) or (H, W, C) at ``height`` × ``width`` by nearest neighbour: output
    pixel (i, j) is input pixel (i·H // height, j·W // width).  At a whole multiple of the
    size this repeats every pixel exactly (as :func:`upscale_nearest`); below it, it keeps
    every k-th pixel.  No new value is ever made, so label colours stay exact."""
    picture = _numpy(picture)
    h, w = picture.shape[:2]
    if (h, w) == (height, width):
        return picture
    rows = np.arange(height) * h // height
    cols = np.arange(width) * w // width
    return picture[rows[:, None], cols[None, :]]


def same_size(*pictures, min_width: int = 512) -> List[np.ndarray]:
    """Bring pictures of one scene — a photo (H, W, 3) and label maps or masks, possibly
    already upscaled — to one displayed size, so that a before/after slider
    (``gr.ImageSlider((clean, adversarial))``) compares like with like.

    The size is that of the widest picture, enlarged by the whole factor
    :func:`upscale_nearest` would use for ``min_width``; every picture (photos too) is brought
    to it by :func:`resize_nearest`, so a map at a whole fraction of that size is repeated
    pixel for pixel and a photo is never blurred.  Channels-last numpy arrays (or tensors);
    the dtype is kept.  Returns a list in the order given (empty for no pictures).
    """
    arrays = [_numpy(p) for p in pictures]
    if not arrays:
        return []
    widest = max(arrays, key=lambda a: (a.shape[1], a.shape[0]))
    factor = max(1, -(-min_width // widest.shape[1]))
    height, width = widest.shape[0] * factor, widest.shape[1] * factor
    return [resize_nearest(a, height, width) for a in arrays]



# ------------------------------------------------------------------------------- plots

#: at most this many points per curve however long the run (:func:`downsample`); a browser
#: redrawing 20 000-point curves ten times a second is what made long runs sluggish
MAX_POINTS = 500
#: curves of at most this many points are drawn with markers, so a lone point is visible
FEW_POINTS = 30
#: 1 − APSR below this is drawn at this value on the log axis (1 − APSR = 0 has no logarithm;
#: 1e-4 is a handful of pixels of a 256×128 map)
APSR_LOG_FLOOR = 1e-4
#: figure heights (px), so a placeholder (:func:`empty_figure`) has the size of what replaces it
PLOT_HEIGHT = 280
APSR_PLOT_HEIGHT = 420


def _float_array(values) -> np.ndarray:
    return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)


def _keep_indices(values: Sequence, max_points: int) -> np.ndarray:
    """Indices of the points :func:`downsample` keeps (sorted)."""
    n = len(values)
    if n <= max_points:
        return np.arange(n)
    y = _float_array(values)
    finite = np.isfinite(y)
    gaps = not finite.all()
    per_bucket = 3 if gaps else 2
    buckets = (max_points - 2) // per_bucket
    if buckets < 1:
        raise ValueError(f"max_points must be at least {2 + per_bucket} to downsample; got {max_points}")
    inner = np.arange(1, n - 1)
    bucket = (inner - 1) * buckets // (n - 2)  # equal runs (sizes differ by at most one)
    starts = np.r_[0, np.flatnonzero(np.diff(bucket)) + 1]
    ok = finite[inner]
    low = np.where(ok, y[inner], np.inf)
    high = np.where(ok, -y[inner], np.inf)
    # a stable sort by (run, value): each run's first entry is its minimum (maximum) — the
    # earliest one on ties; a run of missing values only has no minimum or maximum
    chosen = [np.lexsort((low, bucket))[starts], np.lexsort((high, bucket))[starts]]
    chosen = [c[ok[c]] for c in chosen]
    if gaps:  # a gap (no value yet) stays a gap: each run's first missing point
        first = np.lexsort((ok, bucket))[starts]
        chosen.append(first[~ok[first]])
    return np.unique(np.concatenate([[0, n - 1], *(inner[c] for c in chosen)]))


def downsample(iterations: Sequence, values: Sequence, max_points: int = MAX_POINTS) -> Tuple[list, list]:
    """At most ``max_points`` points of a curve, for drawing: the first and the last point,
    and from each of ``(max_points - 2) // 2`` equal runs of the points between, the
    smallest and the largest value — so spikes survive and the global minimum and maximum
    are kept exactly.  Where some values are missing (``None``, ``inf`` or NaN: no success
    yet), each run also keeps its first missing point (so gaps stay gaps) and there are
    ``(max_points - 2) // 3`` runs.  Curves of at most ``max_points`` points are returned
    whole.  Returns ``(iterations, values)`` as lists of the elements given."""
    its, vals = list(iterations), list(values)
    if len(its) != len(vals):
        raise ValueError(f"{len(its)} iterations but {len(vals)} values")
    keep = _keep_indices(vals, max_points)
    return [its[i] for i in keep], [vals[i] for i in keep]


def _style(values: Sequence, markers: bool = False) -> dict:
    """Line mode of a curve: markers (size 4) too when asked, when the curve has at most
    :data:`FEW_POINTS` points, or when a point stands alone between gaps — else a lone
    success (a best-ℓ∞ curve's first point) would be drawn as nothing."""
    finite = np.isfinite(_float_array(values))
    alone = finite & ~np.r_[False, finite[:-1]] & ~np.r_[finite[1:], False]
    if markers or len(values) <= FEW_POINTS or alone.any():
        return dict(mode="lines+markers", marker=dict(size=4))
    return dict(mode="lines")


def _colour(i: int) -> str:
    from plotly.colors import qualitative

    return qualitative.Plotly[i % len(qualitative.Plotly)]


def _titled(name: str, titles: Optional[Mapping[str, str]]) -> str:
    return str(titles.get(name, name)) if titles else name


def _figure():
    import plotly.graph_objects as go

    return go.Figure()


def _layout(fig, title: str, y_title: Optional[str], y_range: Optional[Sequence[float]] = None,
            height: int = PLOT_HEIGHT, x_title: Optional[str] = "iteration"):
    # uirevision: the browser keeps the user's zoom and hidden traces across updates
    fig.update_layout(title=dict(text=title, font=dict(size=14)), height=height,
                      margin=dict(l=50, r=10, t=40, b=40), uirevision="keep",
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, x=1, xanchor="right"),
                      template="plotly_white")
    if x_title is not None:
        fig.update_layout(xaxis_title=x_title)
    if y_title is not None:
        fig.update_layout(yaxis_title=y_title)
    if y_range is not None:
        fig.update_yaxes(range=list(y_range))
    return fig


def _cursor(fig, cursor: Optional[float], rows: int = 1) -> None:
    """A vertical line at iteration ``cursor`` (the replayed frame) across every row."""
    if cursor is None:
        return
    line = dict(color="#555", width=1)
    if rows == 1:
        fig.add_vline(x=float(cursor), line=line, name="cursor")
        return
    for row in range(1, rows + 1):
        fig.add_vline(x=float(cursor), line=line, name="cursor", row=row, col=1)


def apsr_figure(series: Mapping[str, Mapping[str, Sequence[float]]], threshold: float,
                title: str = "APSR: share of the labelled pixels fooled",
                titles: Optional[Mapping[str, str]] = None, cursor: Optional[float] = None):
    """APSR ([Rony2023] eq. 19) against iteration for one or more runs, with the success
    threshold ν drawn, in two rows sharing the iteration axis:

    * top: APSR on a linear axis (0–1) — the whole run at a glance;
    * bottom: 1 − APSR, the share of pixels still to fool, on a log axis (values below
      :data:`APSR_LOG_FLOOR` drawn at it), with ν drawn as 1 − ν — the range 0.9–1 where
      attacks spend most iterations and where ν sits gets three of the four decades.
      Hovering shows the APSR itself.

    ``series`` maps a run name to ``{"iteration": [...], "apsr": [...], "best_apsr": [...]}``
    (``best_apsr`` optional).  One run draws current and best; several runs draw current
    only, named by ``titles`` (run name → display title; a missing name is shown as is).
    ``cursor``: an iteration (a :class:`~explorer.live.run.Frame`'s ``iteration``) marked by a
    vertical line on both rows.  Curves are thinned to :data:`MAX_POINTS` (:func:`downsample`).

    Traces: first the top row's (one per curve, in the legend), then the bottom row's in the
    same order and colours (legend groups: hiding a curve hides both).  Shapes: ν on the top
    row, 1 − ν on the bottom row (``name="threshold"``), then the cursor lines.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.4, 0.6], vertical_spacing=0.06)
    several = len(series) > 1
    curves = []  # (label, x, APSR values, dash)
    for name, s in series.items():
        keys = [("apsr", _titled(name, titles) if several else "current", None)]
        if not several and "best_apsr" in s:
            keys.append(("best_apsr", "best iterate", "dot"))
        for key, label, dash in keys:
            x, values = downsample(s["iteration"], s[key])
            curves.append((label, x, [float(v) for v in values], dash))
    hover = "iteration %{x}<br>APSR %{customdata:.5f}<extra>%{fullData.name}</extra>"
    for i, (label, x, values, dash) in enumerate(curves):
        fig.add_trace(go.Scatter(x=x, y=values, customdata=values, name=label, legendgroup=label,
                                 line=dict(color=_colour(i), dash=dash), hovertemplate=hover, **_style(values)),
                      row=1, col=1)
    for i, (label, x, values, dash) in enumerate(curves):
        left = [max(1.0 - v, APSR_LOG_FLOOR) for v in values]
        fig.add_trace(go.Scatter(x=x, y=left, customdata=values, name=label, legendgroup=label, showlegend=False,
                                 line=dict(color=_colour(i), dash=dash), hovertemplate=hover, **_style(values)),
                      row=2, col=1)
    line = dict(color="black", dash="dash", width=1)
    fig.add_hline(y=threshold, line=line, name="threshold", row=1, col=1,
                  annotation_text=f"ν = {threshold:g}", annotation_position="bottom right")
    gap = max(1.0 - threshold, APSR_LOG_FLOOR)
    fig.add_hline(y=gap, line=line, name="threshold", row=2, col=1)
    # annotations on a log axis take log10 of the value (shapes take the value itself)
    fig.add_annotation(text=f"1 − ν = {1.0 - threshold:.3g}", x=1, xref="x2 domain", y=math.log10(gap), yref="y2",
                       xanchor="right", yanchor="top", showarrow=False, font=dict(size=11))
    _cursor(fig, cursor, rows=2)
    _layout(fig, title, None, height=APSR_PLOT_HEIGHT, x_title=None)
    floor = math.log10(APSR_LOG_FLOOR)
    decades = [10.0 ** -d for d in range(0, int(round(-floor)) + 1)]
    fig.update_yaxes(title_text="APSR", range=[0, 1.02], row=1, col=1)
    fig.update_yaxes(title_text=f"1 − APSR (log)<br>below {APSR_LOG_FLOOR:g} drawn at it", type="log",
                     range=[floor - 0.2, 0.05], tickvals=decades,
                     ticktext=[f"{v:g}" for v in decades[:-1]] + [f"≤{APSR_LOG_FLOOR:g}"], row=2, col=1)
    fig.update_xaxes(title_text="iteration", row=2, col=1)
    return fig


def linf_figure(series: Mapping[str, Mapping[str, Sequence[float]]],
                title: str = "ℓ∞ norm of the perturbation (×255)",
                titles: Optional[Mapping[str, str]] = None, cursor: Optional[float] = None):
    """ℓ∞ ×255 against iteration: current iterate and best successful so far (gaps before success).

    ``series`` maps a run name to ``{"iteration", "linf", "best_linf"}`` in [0, 1] units;
    ``inf`` best values (no success yet) are left out of the plot (``None``).  One run draws
    current and best successful; several runs draw each one's best successful, named by
    ``titles`` (run name → display title).  Best-successful curves always have markers, so
    a run that succeeded once shows its one point.  ``cursor`` as in :func:`apsr_figure`;
    curves are thinned to :data:`MAX_POINTS`.
    """
    import plotly.graph_objects as go

    fig = _figure()
    several = len(series) > 1

    def scaled(values):
        return [None if v is None or not np.isfinite(v) else 255 * float(v) for v in values]

    for i, (name, s) in enumerate(series.items()):
        best = list(s.get("best_linf", []))
        if not several:
            x, values = downsample(s["iteration"], s["linf"])
            y = scaled(values)
            fig.add_trace(go.Scatter(x=x, y=y, name="current", line=dict(color=_colour(0)), **_style(y)))
            if best:
                x, values = downsample(s["iteration"], best)
                fig.add_trace(go.Scatter(x=x, y=scaled(values), name="best successful",
                                         line=dict(color=_colour(1), dash="dot"), **_style(values, markers=True)))
        else:
            x, values = downsample(s["iteration"], best)
            fig.add_trace(go.Scatter(x=x, y=scaled(values), name=_titled(name, titles),
                                     line=dict(color=_colour(i)), **_style(values, markers=True)))
    if several:
        title = "best successful ℓ∞ (×255) so far"
    _cursor(fig, cursor)
    return _layout(fig, title, "ℓ∞ × 255")


def empty_figure(title: str, y_title: str, message: str = "Press Run to see the curves",
                 height: int = PLOT_HEIGHT):
    """A placeholder shown before the first run: the title and ``message`` centred, no axes
    (empty 0–4 axes looked like a broken plot).  ``height``: that of the figure it stands
    for (:data:`PLOT_HEIGHT`, or :data:`APSR_PLOT_HEIGHT` for :func:`apsr_figure`)."""
    fig = _layout(_figure(), title, y_title, height=height)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.add_annotation(text=message, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                       font=dict(size=14, color="#888"))
    return fig


# ------------------------------------------------------------------------------- the run as a movie

#: how long each frame of a replay animation stays on screen (ms; about 8 frames per second —
#: GIF counts in 10 ms steps), and the last one
ANIMATION_FRAME_MS = 120
ANIMATION_HOLD_MS = 1500
#: default width limit of a replay animation (px)
ANIMATION_MAX_WIDTH = 1024
#: pixels between the three panels; height of the title strip (top) and the caption strip (bottom)
ANIMATION_GAP = 4
ANIMATION_STRIP = 16
#: colours of the strips and gaps (paper) and of their text (ink)
ANIMATION_PAPER = (255, 255, 255)
ANIMATION_INK = (0, 0, 0)
#: at most this many colours for the perturbation panel of a GIF frame
ANIMATION_PERTURBATION_COLOURS = 128
#: the formats :func:`replay_animation` writes
ANIMATION_FORMATS = ("gif", "webp")


def animation_panel_size(height: int, width: int, max_width: int = ANIMATION_MAX_WIDTH) -> Tuple[int, int]:
    """(height, width) of each of the three panels of :func:`replay_animation` for (H, W) maps:
    the largest whole enlargement whose three panels and two gaps fit in ``max_width``, or,
    for maps too wide for that, the width that fits (height in proportion), kept by
    :func:`resize_nearest`.  A frame is ``3 * width + 2 * ANIMATION_GAP`` wide and
    ``height + 2 * ANIMATION_STRIP`` high."""
    room = int(max_width) - 2 * ANIMATION_GAP
    if room < 3:
        raise ValueError(f"max_width must leave room for three panels; got {max_width}")
    factor = room // (3 * width)
    if factor >= 1:
        return height * factor, width * factor
    panel_width = room // 3
    return max(1, round(height * panel_width / width)), panel_width


def _text_strip(width: int, texts: Sequence[Tuple[int, int, str]]) -> np.ndarray:
    """A (ANIMATION_STRIP, width) bool picture, True where ink: each ``(x, room, text)`` written
    from ``x`` and cut to ``room`` pixels.  Drawn in mode "1" (Pillow's default font, not
    anti-aliased), so text adds exactly two colours to a frame."""
    from PIL import Image, ImageDraw, ImageFont

    strip = Image.new("1", (width, ANIMATION_STRIP), 0)
    draw = ImageDraw.Draw(strip)
    font = ImageFont.load_default()
    for x, room, text in texts:
        while text and draw.textlength(text, font=font) > room - 4:  # 2 px margin each side
            text = text[:-1]
        draw.text((x + 2, 2), text, fill=1, font=font)
    return np.asarray(strip, dtype=bool)


def _perturbation_palette(pictures: Sequence[np.ndarray], colours: int):
    """One palette for the perturbation panels of a whole movie: median cut over (up to about
    2^18 of) the pixels of all of them.  One palette — like one gain — keeps a colour
    meaning the same change in every frame (no flicker), and lets the GIF encoder leave
    unchanged pixels out of a frame."""
    from PIL import Image

    pixels = np.concatenate([p.reshape(-1, 3) for p in pictures])
    step = max(1, len(pixels) // 2 ** 18)
    sample = np.ascontiguousarray(pixels[::step])[None]  # (1, n, 3): an image one pixel high
    return Image.fromarray(sample).quantize(colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)


def _animation_frames(replay: Replay, max_width: int) -> Tuple[List[np.ndarray], List[int]]:
    """The frames of :func:`replay_animation` as (H, W) palette indices, and their one palette
    (768 values): paper, ink, the dataset's colours, the ignore colour, the mask colours — so
    label maps and masks keep their exact colours — then up to
    :data:`ANIMATION_PERTURBATION_COLOURS` colours for the perturbation
    (:func:`_perturbation_palette`; each pixel gets the nearest, no dithering)."""
    from PIL import Image

    dataset = replay.dataset
    k = dataset.num_classes
    fixed = ([ANIMATION_PAPER, ANIMATION_INK] + [tuple(c) for c in dataset.palette] + [IGNORE_COLOUR]
             + [colour for colour, _ in MASK_STYLE.values()])
    free = min(ANIMATION_PERTURBATION_COLOURS, 255 - len(fixed))  # one index left for the encoder's "unchanged"
    if free < 16:
        raise ValueError(f"{k} classes leave too few GIF colours for the perturbation")
    class_index = np.arange(k + 1) + 2  # colorize: anything at or above num_classes is "ignored"
    mask_index = np.ones(256, np.uint8)  # render_mask draws unknown states black: the ink
    for j, state in enumerate(MASK_STYLE):
        mask_index[int(state)] = 3 + k + j

    frames = replay.frames
    h, w = frames[0].prediction.shape[-2:]
    ph, pw = animation_panel_size(h, w, max_width)
    width, height = 3 * pw + 2 * ANIMATION_GAP, ph + 2 * ANIMATION_STRIP
    gain = perturbation_gain(*(f.perturbation for f in frames))
    # at the panel's size when that is smaller: quantise what is shown, not the larger original
    pictures = [resize_nearest(amplify_perturbation(f.perturbation.astype(np.float32), gain)[0], min(ph, h),
                               min(pw, w)) for f in frames]
    palette_picture = _perturbation_palette(pictures, free)
    colours = (palette_picture.getpalette() or [])[: 3 * free]
    palette = [v for colour in fixed for v in colour] + colours
    amplified = f"x{gain:.1f}" if gain > 0 else "(none)"
    titles = _text_strip(width, [(0, pw, "adversarial prediction"),
                                 (pw + ANIMATION_GAP, pw, "constraint mask"),
                                 (2 * (pw + ANIMATION_GAP), pw, f"perturbation {amplified}")])
    rows = slice(ANIMATION_STRIP, ANIMATION_STRIP + ph)
    out = []
    for frame, picture in zip(frames, pictures):
        canvas = np.zeros((height, width), np.uint8)  # paper
        canvas[:ANIMATION_STRIP][titles] = 1
        labels = class_index[np.clip(frame.prediction.astype(np.int64), 0, k)]
        states = mask_index[np.clip(frame.mask.astype(np.int64), 0, 255)]
        nearest = Image.fromarray(picture).quantize(palette=palette_picture, dither=Image.Dither.NONE)
        delta = np.asarray(nearest, np.uint8) + len(fixed)
        for panel, index in enumerate((labels, states, delta)):
            x = panel * (pw + ANIMATION_GAP)
            canvas[rows, x:x + pw] = resize_nearest(index.astype(np.uint8), ph, pw)
        caption = (f"iteration {frame.iteration} of 0-{replay.num_steps - 1} | APSR {frame.apsr:.4f} | "
                   f"Linf {frame.linf * 255:.2f}/255")
        canvas[ANIMATION_STRIP + ph:][_text_strip(width, [(0, width - 4, caption)])] = 1
        out.append(canvas)
    return out, palette + [0] * (768 - len(palette))


def replay_animation(replay: Replay, fmt: str = "gif", max_width: int = ANIMATION_MAX_WIDTH) -> bytes:
    """A finished run (:class:`~explorer.live.run.Replay`) as an animation that loops forever:
    one animation frame per recorded frame, each shown :data:`ANIMATION_FRAME_MS` ms (about 8 per
    second), the last one :data:`ANIMATION_HOLD_MS` ms.

    Each frame shows side by side the adversarial prediction (:func:`colorize`), the
    constraint mask (:func:`render_mask`, [Rony2023] §4.1) and the perturbation amplified with
    ONE gain for the whole movie (:func:`perturbation_gain` of all frames, stated in the
    title strip), so brightness compares across frames; below, the caption
    "iteration i of 0-(N-1) | APSR a | Linf x/255" — iterations counted from 0, as in the
    trace CSV and the app's replay (ASCII: Pillow's default font has no ℓ∞).  Panels
    are enlarged by whole factors (:func:`animation_panel_size`), pixel for pixel.

    ``fmt``: ``"gif"`` — each frame's palette holds the dataset's and the mask's colours
    exactly (see :func:`_animation_frames`), the perturbation gets the remaining colours;
    ``"webp"`` — lossless, every colour exact (needs Pillow built with WebP).
    """
    from PIL import Image

    if fmt not in ANIMATION_FORMATS:
        raise ValueError(f"animation format must be one of {ANIMATION_FORMATS}; got {fmt!r}")
    if not replay.frames:
        raise ValueError("this replay has no recorded frames to animate")
    pictures = []
    canvases, palette = _animation_frames(replay, max_width)
    for canvas in canvases:
        picture = Image.frombytes("P", (canvas.shape[1], canvas.shape[0]), canvas.tobytes())
        picture.putpalette(palette)
        pictures.append(picture if fmt == "gif" else picture.convert("RGB"))
    durations = [ANIMATION_FRAME_MS] * (len(pictures) - 1) + [ANIMATION_HOLD_MS]
    buffer = io.BytesIO()
    options = dict(disposal=1) if fmt == "gif" else dict(lossless=True, method=4)
    pictures[0].save(buffer, format=fmt.upper(), save_all=True, append_images=pictures[1:],
                     duration=durations, loop=0, **options)
    return buffer.getvalue()
