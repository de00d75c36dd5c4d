"""Pictures and plots of an attack, shared by the app and the notebooks.

Everything here turns tensors into things people look at: label maps into palette
colours, constraint-mask states into a four-colour map with its legend, a perturbation
into a visible picture (amplified, with the factor stated), and per-iteration records
into plotly curves.  Nothing here runs a model.

Images are returned as ``uint8`` numpy arrays of shape (H, W, 3), the format Gradio,
matplotlib and PIL take directly.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from explorer.attacks.core import PixelState
from explorer.data.datasets import IGNORE_COLOUR, DatasetInfo

#: colour and meaning of each constraint-mask state ([Rony2023] §4.1: the set M, eq. 6 masking)
MASK_STYLE: Dict[PixelState, Tuple[Tuple[int, int, int], str]] = {
    PixelState.SATISFIED: ((46, 160, 67), "satisfied — pixel already adversarial"),
    PixelState.VIOLATED: ((214, 39, 40), "violated — pixel not adversarial yet"),
    PixelState.DROPPED: ((255, 187, 40), "dropped by the adaptive mask (eq. 6)"),
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


def amplify_perturbation(delta) -> Tuple[np.ndarray, float]:
    """Make a perturbation (3, H, W) visible: ``0.5 + gain * delta`` with ``gain = 0.5 / max|delta|``.

    Returns the (H, W, 3) uint8 picture and the gain, so a caption can say how much it was
    amplified (mid-grey means no change).  An all-zero perturbation is plain grey (gain 0).
    """
    d = _numpy(delta).astype(np.float32)
    if d.ndim == 4:
        d = d[0]
    peak = float(np.abs(d).max()) if d.size else 0.0
    gain = 0.5 / peak if peak > 0 else 0.0
    return image_to_uint8(0.5 + gain * d), gain


def upscale_nearest(picture: np.ndarray, min_width: int = 512) -> np.ndarray:
    """Repeat pixels by the smallest integer factor that makes the width at least ``min_width``
    (label maps and masks stay crisp instead of being blurred by the browser)."""
    factor = max(1, -(-min_width // picture.shape[1]))
    if factor == 1:
        return picture
    return picture.repeat(factor, axis=0).repeat(factor, axis=1)


# ------------------------------------------------------------------------------- plots

def _figure():
    import plotly.graph_objects as go

    return go.Figure()


def _layout(fig, title: str, y_title: str, y_range: Optional[Sequence[float]] = None, height: int = 280):
    # uirevision: the browser keeps the user's zoom and hidden traces across updates
    fig.update_layout(title=dict(text=title, font=dict(size=14)), height=height,
                      margin=dict(l=50, r=10, t=40, b=40), uirevision="keep",
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, x=1, xanchor="right"),
                      xaxis_title="iteration", yaxis_title=y_title, template="plotly_white")
    if y_range is not None:
        fig.update_yaxes(range=list(y_range))
    return fig


def apsr_figure(series: Mapping[str, Mapping[str, Sequence[float]]], threshold: float,
                title: str = "APSR (attack pixel success rate, eq. 19)"):
    """APSR against iteration for one or more runs, with the success threshold ν drawn.

    ``series`` maps a run name to ``{"iteration": [...], "apsr": [...], "best_apsr": [...]}``
    (``best_apsr`` optional).  One run draws current and best; several runs draw current only.
    """
    import plotly.graph_objects as go

    fig = _figure()
    several = len(series) > 1
    for name, s in series.items():
        label = f"{name}" if several else "current"
        fig.add_trace(go.Scatter(x=list(s["iteration"]), y=list(s["apsr"]), mode="lines", name=label))
        if not several and "best_apsr" in s:
            fig.add_trace(go.Scatter(x=list(s["iteration"]), y=list(s["best_apsr"]), mode="lines",
                                     name="best iterate", line=dict(dash="dot")))
    fig.add_hline(y=threshold, line=dict(color="black", dash="dash", width=1),
                  annotation_text=f"ν = {threshold:g}", annotation_position="bottom right")
    return _layout(fig, title, "APSR", y_range=(0, 1.02))


def linf_figure(series: Mapping[str, Mapping[str, Sequence[float]]],
                title: str = "ℓ∞ norm of the perturbation (×255)"):
    """ℓ∞ ×255 against iteration: current iterate and best successful so far (gaps before success).

    ``series`` maps a run name to ``{"iteration", "linf", "best_linf"}`` in [0, 1] units;
    ``inf`` best values (no success yet) are left out of the plot.
    """
    import plotly.graph_objects as go

    fig = _figure()
    several = len(series) > 1
    for name, s in series.items():
        it = list(s["iteration"])
        best = [None if not np.isfinite(v) else 255 * v for v in s.get("best_linf", [])]
        if not several:
            fig.add_trace(go.Scatter(x=it, y=[255 * v for v in s["linf"]], mode="lines", name="current"))
            if best:
                fig.add_trace(go.Scatter(x=it, y=best, mode="lines", name="best successful",
                                         line=dict(dash="dot")))
        else:
            fig.add_trace(go.Scatter(x=it, y=best, mode="lines", name=name))
    if several:
        title = "best successful ℓ∞ (×255) so far"
    return _layout(fig, title, "ℓ∞ × 255")


def empty_figure(title: str, y_title: str):
    """An empty plot with axes, shown before the first run."""
    return _layout(_figure(), title, y_title)

