"""Drawing machinery shared by the procedural worlds: canvas, shapes, textures, light, noise.

A scene is painted on a :class:`Canvas` as a stack of *regions*, back to front.  Each
region is one semantic thing (a building block, a car, a person, a patch of sky) with a
class label, a texture signature and a texture amplitude; the canvas records, per pixel,
the base colour and the id of the region that owns it.  Parts of a thing (a car's wheels
and windows, a person's head) are painted with their own colours into the same region, so
they share its label and texture.  Because labels and textures are looked up from the
region table only at the end (:func:`finish`), re-assigning classes ("shuffled" scenes)
changes labels and textures while the geometry and the base colours stay exactly the same.

Why faint textures
------------------
A segmentation network trained on flat-coloured synthetic scenes learns robust cues
(colour, layout, wide margins) and then resists adversarial perturbations far larger than
real models do.  Real photographs carry much of their class evidence in fine, low-contrast
texture, which is what makes real models fragile (fooled at ℓ∞ ≈ 0.3–2/255).  So here the
*base colours* are drawn from distributions shared by all classes (at most a mild,
occasional class bias, see :class:`ColourBias`), and every class gets a **texture
signature** (:class:`TextureSignature`, one table per world): a faint grating with a
class-specific period (2.5, 3.4, 4.6 or 6.2 px), orientation (vertical or horizontal
stripes) and colour axis (luminance, red-green or blue-yellow), of peak amplitude 4.5/255
times a per-region gain of 0.75–1.35 (3.4–6.1/255).  Each region draws its own phase and a small
jitter of period (±6 %) and orientation (±6°), so no two regions carry the same template.

Why gratings rather than band-pass noise: at the same peak amplitude a grating carries
several times the energy of Gaussian narrow-band noise (peak/std = √2 against about 3.5)
and is coherent, so a small CNN picks it up in a few hundred steps; band-pass noise of
1.8/255 std was not learned at all within a CPU budget (measured: 16x16-patch texture
classification reached 90 % accuracy in 1600 steps with gratings, chance with noise).

Why only 0° and 90°: both are mirror-symmetric, so horizontal or vertical flips (a common
training augmentation) keep every texture its class's; a 45° grating would become a 135°
one.  (With 0°/90° the patch probe also learned faster than with four orientations.)

Textures are defined in *pixels*, not in scene units: they are sensor-scale detail that a
CNN resolves at whatever resolution the scene is rendered.  Render at the training
resolution and do not resample or rotate the images (that changes periods and
orientations), nor shift their hue (that mixes the colour axes).

On top come smooth lighting (gradients, soft blobs, cast shadows), a mild optical blur of
the base colours (not of the textures), per-pixel sensor noise (1–2/255) and 8-bit
quantisation, as in a photograph.

Everything here is vectorised numpy over coordinate grids: each shape is rasterised only
inside its bounding window, so a scene of a few hundred shapes renders in tens of ms.
"""
from __future__ import annotations

import colorsys
import math
import zlib
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

from explorer.data.datasets import IGNORE_INDEX

# --------------------------------------------------------------------------- random streams

#: random stream of everything that does not depend on the image size (geometry, colours)
LAYOUT = 1
#: random stream of the class re-assignment of shuffled scenes
SHUFFLE = 2
#: random stream of pixel-level draws (texture jitter and phases, sensor noise): size-dependent
PIXELS = 3
#: random stream of render_batch's per-scene shuffle draw
SHUFFLE_DRAW = 4


def world_key(name: str) -> int:
    """A stable integer for a world name (part of every seed)."""
    return zlib.crc32(name.encode("utf-8"))


def stream(world: str, seed: int, kind: int, *extra: int) -> np.random.Generator:
    """An independent generator for (world, seed, stream kind, extra ints): no global RNG."""
    return np.random.default_rng([world_key(world), int(seed), int(kind), *map(int, extra)])


# --------------------------------------------------------------------------- colours


def hsv(h: float, s: float, v: float) -> np.ndarray:
    """RGB float32 (3,) of a hue/saturation/value triple (hue wraps around)."""
    return np.asarray(colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0)), np.float32)


@dataclass(frozen=True)
class ColourBias:
    """A class's *occasional* typical colour: hue, saturation and value ranges.

    :func:`random_colour` uses it with probability ``p`` only, and draws from the broad
    range shared by all classes otherwise, so the colour distributions of all classes
    overlap heavily and a per-pixel colour classifier does badly.
    """

    h: tuple[float, float] = (0.0, 1.0)
    s: tuple[float, float] = (0.0, 0.6)
    v: tuple[float, float] = (0.15, 0.85)
    p: float = 0.35


def random_colour(rng: np.random.Generator, bias: Optional[ColourBias] = None) -> np.ndarray:
    """A base colour: the broad shared distribution, or (occasionally) the class's typical one.

    Always draws the same number of random numbers, whichever branch is taken.
    """
    u = rng.random(5)
    if bias is not None and u[0] < bias.p:
        h = bias.h[0] + u[1] * (bias.h[1] - bias.h[0])
        s = bias.s[0] + u[2] * (bias.s[1] - bias.s[0])
        v = bias.v[0] + u[3] * (bias.v[1] - bias.v[0])
    else:
        h, s, v = u[1], 0.6 * u[2] ** 1.5, 0.15 + 0.7 * u[3]
    return hsv(h, s, v)


def dark_colour(rng: np.random.Generator) -> np.ndarray:
    """Tyres, gaps, shadows: dark, nearly grey."""
    u = rng.random(3)
    return hsv(u[0], 0.25 * u[1], 0.06 + 0.14 * u[2])


def glass_colour(rng: np.random.Generator) -> np.ndarray:
    """Windows and screens: dark to mid, bluish or grey, sometimes a bright reflection."""
    u = rng.random(4)
    v = 0.12 + 0.3 * u[2] if u[3] < 0.8 else 0.55 + 0.3 * u[2]
    return hsv(0.5 + 0.15 * u[0], 0.35 * u[1], v)


def skin_colour(rng: np.random.Generator) -> np.ndarray:
    """Faces and hands (a broad range of skin tones)."""
    u = rng.random(3)
    return hsv(0.04 + 0.05 * u[0], 0.25 + 0.35 * u[1], 0.25 + 0.65 * u[2])


def jitter(rng: np.random.Generator, colour: np.ndarray, amount: float = 0.12) -> np.ndarray:
    """``colour`` times a random brightness factor (for shaded parts of one object)."""
    return np.clip(colour * (1.0 + amount * (2.0 * rng.random() - 1.0)), 0.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------- shapes


@dataclass
class Shape:
    """A boolean mask over the window ``[y0:y1, x0:x1]`` of a canvas (pixel centres i + 0.5)."""

    y0: int
    x0: int
    mask: np.ndarray

    @property
    def slices(self) -> tuple[slice, slice]:
        h, w = self.mask.shape
        return slice(self.y0, self.y0 + h), slice(self.x0, self.x0 + w)

    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre coordinates of the window, as broadcastable (h, 1) and (1, w)."""
        h, w = self.mask.shape
        return (np.arange(self.y0, self.y0 + h, dtype=np.float32)[:, None] + 0.5,
                np.arange(self.x0, self.x0 + w, dtype=np.float32)[None, :] + 0.5)

    def where(self, cond: np.ndarray) -> "Shape":
        """This shape restricted to ``cond`` (broadcastable to the window)."""
        return Shape(self.y0, self.x0, self.mask & cond)


def _window(size: tuple[int, int], x0: float, y0: float, x1: float, y1: float):
    """Pixel window whose centres fall in [x0, x1] x [y0, y1], clipped; None when empty."""
    h, w = size
    if not (math.isfinite(x0) and math.isfinite(x1) and math.isfinite(y0) and math.isfinite(y1)):
        return None
    i0 = max(0, math.ceil(y0 - 0.5))
    i1 = min(h, math.floor(y1 - 0.5) + 1)
    j0 = max(0, math.ceil(x0 - 0.5))
    j1 = min(w, math.floor(x1 - 0.5) + 1)
    if i1 <= i0 or j1 <= j0:
        return None
    yy = np.arange(i0, i1, dtype=np.float32)[:, None] + 0.5
    xx = np.arange(j0, j1, dtype=np.float32)[None, :] + 0.5
    return i0, j0, yy, xx


def rect(size, x0: float, y0: float, x1: float, y1: float) -> Optional[Shape]:
    """Axis-aligned rectangle (pixel coordinates)."""
    win = _window(size, min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
    if win is None:
        return None
    i0, j0, yy, xx = win
    return Shape(i0, j0, np.ones((yy.shape[0], xx.shape[1]), bool))


def polygon(size, points: Sequence[Sequence[float]]) -> Optional[Shape]:
    """Polygon (even-odd rule, any simple or self-intersecting outline), pixel coordinates."""
    p = np.asarray(points, np.float64)
    win = _window(size, p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max())
    if win is None:
        return None
    i0, j0, yy, xx = win
    xa, ya = p[:, 0], p[:, 1]
    xb, yb = np.roll(xa, -1), np.roll(ya, -1)
    rows = yy.astype(np.float64)  # (h, 1)
    crosses = (ya > rows) != (yb > rows)  # (h, E)
    dy = np.where(yb == ya, 1.0, yb - ya)
    xint = np.where(crosses, xa + (rows - ya) * (xb - xa) / dy, -np.inf).astype(np.float32)
    mask = np.zeros((yy.shape[0], xx.shape[1]), bool)
    for e in range(p.shape[0]):
        mask ^= xx < xint[:, e : e + 1]
    return Shape(i0, j0, mask)


def ellipse(size, cx: float, cy: float, rx: float, ry: float, angle: float = 0.0) -> Optional[Shape]:
    """Filled ellipse, semi-axes rx, ry (pixels), rotated by ``angle`` radians."""
    rx, ry = max(abs(rx), 1e-3), max(abs(ry), 1e-3)
    c, s = math.cos(angle), math.sin(angle)
    ex = math.hypot(rx * c, ry * s)
    ey = math.hypot(rx * s, ry * c)
    win = _window(size, cx - ex, cy - ey, cx + ex, cy + ey)
    if win is None:
        return None
    i0, j0, yy, xx = win
    dx, dy = xx - cx, yy - cy
    u = (dx * c + dy * s) / rx
    v = (dy * c - dx * s) / ry
    return Shape(i0, j0, u * u + v * v <= 1.0)


def ring(size, cx: float, cy: float, rx: float, ry: float, thickness: float) -> Optional[Shape]:
    """Elliptic annulus (a wheel seen from the side), ``thickness`` in pixels."""
    outer = ellipse(size, cx, cy, rx, ry)
    if outer is None:
        return None
    t = max(thickness, 0.0)
    if rx - t <= 0.3 or ry - t <= 0.3:
        return outer
    yy, xx = outer.grid()
    u = (xx - cx) / (rx - t)
    v = (yy - cy) / (ry - t)
    return outer.where(u * u + v * v > 1.0)


def capsule(size, x0: float, y0: float, x1: float, y1: float, r0: float, r1: Optional[float] = None) -> Optional[Shape]:
    """Thick segment with round ends; the radius goes linearly from r0 to r1 (pixels)."""
    r1 = r0 if r1 is None else r1
    rmax = max(r0, r1, 0.5)
    win = _window(size, min(x0, x1) - rmax, min(y0, y1) - rmax, max(x0, x1) + rmax, max(y0, y1) + rmax)
    if win is None:
        return None
    i0, j0, yy, xx = win
    vx, vy = x1 - x0, y1 - y0
    ll = vx * vx + vy * vy
    if ll < 1e-9:
        t = np.zeros((1, 1), np.float32)
    else:
        t = np.clip(((xx - x0) * vx + (yy - y0) * vy) / ll, 0.0, 1.0)
    dx = xx - (x0 + t * vx)
    dy = yy - (y0 + t * vy)
    r = np.maximum(r0 + (r1 - r0) * t, 0.5)
    return Shape(i0, j0, dx * dx + dy * dy <= r * r)


# --------------------------------------------------------------------------- 2-D figure frames


class Frame:
    """Local 2-D frame of a figure: ``(x right, y up)`` in local units -> pixels.

    ``origin`` is the pixel position of the local (0, 0), ``scale`` pixels per local unit,
    ``mirror`` flips x (a figure facing left).  Figures (:mod:`explorer.data.worlds.figures`)
    are written once in local units and drawn by both worlds at any size and position.
    """

    def __init__(self, size: tuple[int, int], origin: tuple[float, float], scale: float, mirror: bool = False):
        self.size = size
        self.ox, self.oy = float(origin[0]), float(origin[1])
        self.scale = float(scale)
        self.sx = -1.0 if mirror else 1.0

    def pt(self, x: float, y: float) -> tuple[float, float]:
        return self.ox + self.sx * x * self.scale, self.oy - y * self.scale

    def poly(self, points) -> Optional[Shape]:
        return polygon(self.size, [self.pt(x, y) for x, y in points])

    def ellipse(self, cx, cy, rx, ry, angle: float = 0.0) -> Optional[Shape]:
        x, y = self.pt(cx, cy)
        return ellipse(self.size, x, y, rx * self.scale, ry * self.scale, -self.sx * angle)

    def disk(self, cx, cy, r) -> Optional[Shape]:
        return self.ellipse(cx, cy, r, r)

    def ring(self, cx, cy, r, thickness) -> Optional[Shape]:
        x, y = self.pt(cx, cy)
        return ring(self.size, x, y, r * self.scale, r * self.scale, thickness * self.scale)

    def capsule(self, x0, y0, x1, y1, r0, r1=None) -> Optional[Shape]:
        a, b = self.pt(x0, y0)
        c, d = self.pt(x1, y1)
        return capsule(self.size, a, b, c, d, r0 * self.scale, None if r1 is None else r1 * self.scale)

    def rect(self, x0, y0, x1, y1) -> Optional[Shape]:
        a, b = self.pt(x0, y0)
        c, d = self.pt(x1, y1)
        return rect(self.size, a, b, c, d)


# --------------------------------------------------------------------------- canvas


class Canvas:
    """Base colours and region ownership of one scene, plus the region table.

    Region 0 exists from the start (label ``IGNORE_INDEX``, no texture): every pixel is
    owned by some region.  Regions are added with :meth:`add_region` and painted with
    :meth:`paint`; :meth:`shade` darkens or lightens colours without changing ownership.
    """

    def __init__(self, height: int, width: int):
        self.h, self.w = int(height), int(width)
        self.size = (self.h, self.w)
        self.colour = np.zeros((self.h, self.w, 3), np.float32)
        self.region = np.zeros((self.h, self.w), np.int32)
        self.labels: list[int] = [IGNORE_INDEX]
        self.textures: list[int] = [-1]
        self.gains: list[float] = [0.0]
        self.instances: list[int] = [0]
        self.shuffleable: list[bool] = [False]
        #: regions that shadows may darken (:meth:`shade` with ``regions=``), e.g. the ground
        self.ground_regions: list[int] = []

    def add_region(self, label: int, rng: np.random.Generator, *, texture: Optional[int] = None,
                   instance: int = 0, shuffleable: Optional[bool] = None) -> int:
        """A new region of class ``label``; its texture signature defaults to its label.

        The texture gain (0.75–1.35) is drawn from ``rng`` (the layout stream), so a
        region's texture strength does not depend on the image size.  ``instance`` (> 0 for
        a foreground object) is what VOC-style boundary bands are drawn around.  Ignored
        regions are never re-assigned by shuffling.
        """
        if texture is None:
            texture = -1 if label == IGNORE_INDEX else label
        self.labels.append(int(label))
        self.textures.append(int(texture))
        self.gains.append(float(0.75 + 0.6 * rng.random()))
        self.instances.append(int(instance))
        self.shuffleable.append(bool(label != IGNORE_INDEX) if shuffleable is None else shuffleable)
        return len(self.labels) - 1

    def paint(self, shape: Optional[Shape], colour, region: Optional[int] = None) -> None:
        """Paint ``colour`` ((3,), an array over the window or over the whole image) into
        ``shape``; claim its pixels for ``region`` (None: change the colour only)."""
        if shape is None:
            return
        ys, xs = shape.slices
        m = shape.mask
        if not m.any():
            return
        col = np.asarray(colour, np.float32)
        if col.ndim == 3:
            if col.shape[:2] == self.size:  # a full-image colour array
                col = col[ys, xs]
            col = np.broadcast_to(col, m.shape + (3,))[m]
        self.colour[ys, xs][m] = col
        if region is not None:
            self.region[ys, xs][m] = region

    def paint_where(self, mask: np.ndarray, colour, region) -> None:
        """Full-image variant of :meth:`paint`: ``mask`` (H, W); colour (3,) or (H, W, 3) or (n, 3)
        per masked pixel; region an int or an (H, W) array of ids."""
        if not mask.any():
            return
        col = np.asarray(colour, np.float32)
        if col.ndim == 3:
            col = col[mask]
        self.colour[mask] = col
        reg = np.asarray(region)
        self.region[mask] = reg[mask] if reg.ndim == 2 else reg

    def shade(self, shape: Optional[Shape], factor: float, regions: Optional[Sequence[int]] = None) -> None:
        """Multiply colours in ``shape`` by ``factor`` (only over ``regions``, when given)."""
        if shape is None:
            return
        ys, xs = shape.slices
        m = shape.mask
        if regions is not None:
            m = m & np.isin(self.region[ys, xs], np.asarray(regions))
        self.colour[ys, xs][m] *= np.float32(factor)

    # -- end of drawing

    def label_map(self, labels: Optional[np.ndarray] = None) -> np.ndarray:
        table = np.asarray(self.labels if labels is None else labels, np.int64)
        return table[self.region]

    def instance_map(self) -> np.ndarray:
        return np.asarray(self.instances, np.int32)[self.region]


def shuffle_classes(canvas: Canvas, rng: np.random.Generator, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels and textures of a shuffled scene: every shuffleable region gets a class drawn
    uniformly from ``[0, num_classes)`` (label and texture follow it); other regions keep
    theirs.  Geometry and base colours are untouched, so the layout no longer tells the class.
    """
    labels = np.asarray(canvas.labels, np.int64).copy()
    textures = np.asarray(canvas.textures, np.int64).copy()
    draw = rng.integers(0, num_classes, size=len(labels))
    movable = np.asarray(canvas.shuffleable, bool)
    labels[movable] = draw[movable]
    textures[movable] = draw[movable]
    return labels, textures


# --------------------------------------------------------------------------- textures


@dataclass(frozen=True)
class TextureSignature:
    """A class's texture: a grating of dominant ``period`` (pixels), wave-vector
    ``orientation`` (degrees) and colour ``axis`` ("L" luminance, "RG" red-green, "BY"
    blue-yellow opponent)."""

    period: float
    orientation: float
    axis: str


#: the values each attribute of a signature takes: 4 x 2 x 3 = 24 signatures.  Only 0 and
#: 90 degrees: both are mirror-symmetric, so a horizontal (or vertical) flip of an image
#: keeps every texture its class's (a 45-degree grating would become a 135-degree one)
PERIODS = (2.5, 3.4, 4.6, 6.2)
ORIENTATIONS = (0.0, 90.0)
AXES = ("L", "RG", "BY")
#: colour direction of each axis; max |component| = 1, so the amplitude is per channel
AXIS_RGB = {
    "L": np.array([1.0, 1.0, 1.0], np.float32),
    "RG": np.array([1.0, -1.0, 0.0], np.float32),
    "BY": np.array([0.5, 0.5, -1.0], np.float32),
}
#: peak amplitude (per channel, [0, 1] units) of a texture at gain 1; region gains are
#: 0.75-1.35, so peaks of 3.4-6.1/255 (standard deviations of 2.4-4.3/255)
TEXTURE_PEAK = 4.5 / 255.0
#: per-region random jitter of a signature: relative period, orientation (degrees)
PERIOD_JITTER = 0.06
ANGLE_JITTER = 6.0


def signatures(codes: Sequence[tuple[int, int, int]]) -> tuple[TextureSignature, ...]:
    """A world's texture table from (period index, orientation index, axis index) codes.

    Each world assigns one signature per class (plus any extra, like the street's bonnet),
    chosen so that classes that often touch differ in at least two of the three attributes.
    """
    return tuple(TextureSignature(PERIODS[p], ORIENTATIONS[o], AXES[a]) for p, o, a in codes)


def texture_layer(region: np.ndarray, textures: np.ndarray, gains: np.ndarray,
                  table: Sequence[TextureSignature], rng: np.random.Generator) -> np.ndarray:
    """The (H, W, 3) additive texture of a scene.

    Region r carries a grating ``gain[r] * TEXTURE_PEAK * cos(2 pi f_r . x + phi_r)`` along
    its signature's colour axis, where the frequency f_r is the signature's, jittered per
    region (period +-6 %, orientation +-6 degrees), and the phase phi_r is uniform: the
    same class never repeats one template, but a small CNN learns the signature in a few
    hundred steps.  Regions with texture index -1 get none.
    """
    h, w = region.shape
    n = len(textures)
    u = rng.random((n, 3)).astype(np.float32)  # a fixed number of draws per region
    sig = np.maximum(textures, 0)
    period = np.array([t.period for t in table], np.float32)[sig] * (1 + PERIOD_JITTER * (2 * u[:, 0] - 1))
    theta = np.radians(np.array([t.orientation for t in table], np.float32)[sig] + ANGLE_JITTER * (2 * u[:, 1] - 1))
    fx = (2 * np.pi * np.cos(theta) / period).astype(np.float32)
    fy = (2 * np.pi * np.sin(theta) / period).astype(np.float32)
    phase = (2 * np.pi * u[:, 2]).astype(np.float32)
    amp = np.where(textures >= 0, gains * TEXTURE_PEAK, 0.0).astype(np.float32)
    axes = np.stack([AXIS_RGB[t.axis] for t in table])[sig]
    yy = np.arange(h, dtype=np.float32)[:, None]
    xx = np.arange(w, dtype=np.float32)[None, :]
    field = np.cos(fx[region] * xx + fy[region] * yy + phase[region]) * amp[region]
    return field[..., None] * axes[region]


# --------------------------------------------------------------------------- light, blur, noise


def smooth_field(rng: np.random.Generator, size: tuple[int, int], grid: tuple[int, int]) -> np.ndarray:
    """A smooth random field (H, W), standard normal values on a coarse ``grid`` (rows, cols)
    of cells, bilinearly interpolated; drawn from ``rng`` independently of the image size."""
    gy, gx = grid
    coarse = rng.standard_normal((gy + 1, gx + 1)).astype(np.float32)
    return upsample(coarse, size)


def upsample(coarse: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear interpolation of a (gy+1, gx+1) grid of corner values onto (H, W) pixel centres."""
    h, w = size
    gy, gx = coarse.shape[0] - 1, coarse.shape[1] - 1
    v = (np.arange(h, dtype=np.float32) + 0.5) / h * gy
    u = (np.arange(w, dtype=np.float32) + 0.5) / w * gx
    i0 = np.minimum(v.astype(np.int64), gy - 1) if gy > 0 else np.zeros(h, np.int64)
    j0 = np.minimum(u.astype(np.int64), gx - 1) if gx > 0 else np.zeros(w, np.int64)
    ty = (v - i0)[:, None]
    tx = (u - j0)[None, :]
    i1 = np.minimum(i0 + 1, gy)
    j1 = np.minimum(j0 + 1, gx)
    a = coarse[i0][:, j0] * (1 - tx) + coarse[i0][:, j1] * tx
    b = coarse[i1][:, j0] * (1 - tx) + coarse[i1][:, j1] * tx
    return (a * (1 - ty) + b * ty).astype(np.float32)


def blur121(img: np.ndarray) -> np.ndarray:
    """Separable [1, 2, 1] / 4 blur over the first two axes (edges replicated): optics."""
    out = img * 0.5
    out[1:] += 0.25 * img[:-1]
    out[:-1] += 0.25 * img[1:]
    out[0] += 0.25 * img[0]
    out[-1] += 0.25 * img[-1]
    res = out * 0.5
    res[:, 1:] += 0.25 * out[:, :-1]
    res[:, :-1] += 0.25 * out[:, 1:]
    res[:, 0] += 0.25 * out[:, 0]
    res[:, -1] += 0.25 * out[:, -1]
    return res


def boundary_band(instances: np.ndarray, half_width: int) -> np.ndarray:
    """VOC-style void band: pixels within ``half_width`` (Chebyshev) of a pixel of another
    instance, where instance 0 (background) counts as one instance."""
    k = 2 * half_width + 1
    hi = ndimage.maximum_filter(instances, size=k, mode="nearest")
    lo = ndimage.minimum_filter(instances, size=k, mode="nearest")
    return hi != lo


def finish(canvas: Canvas, table: Sequence[TextureSignature], rng: np.random.Generator, *,
           light: Optional[np.ndarray] = None,
           labels: Optional[np.ndarray] = None, textures: Optional[np.ndarray] = None,
           noise_std: float = 1.5 / 255.0) -> tuple[np.ndarray, np.ndarray]:
    """Turn a painted canvas into a photograph-like image and its label map.

    ``image = quantise8(clip((blur(base) + texture) * light + sensor noise))``, float32
    (3, H, W); labels int64 (H, W).  ``table`` is the world's texture signatures;
    ``labels``/``textures`` override the region table (shuffled scenes); ``rng`` is the
    pixel stream (texture jitter and phases, sensor noise).
    """
    lab_t = np.asarray(canvas.labels if labels is None else labels, np.int64)
    tex_t = np.asarray(canvas.textures if textures is None else textures, np.int64)
    gains = np.asarray(canvas.gains, np.float32)
    img = blur121(canvas.colour)
    img += texture_layer(canvas.region, tex_t, gains, table, rng)
    if light is not None:
        img *= light[..., None]
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(noise_std)
    np.clip(img, 0.0, 1.0, out=img)
    img = np.round(img * 255.0) / 255.0
    return np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32), lab_t[canvas.region]


def lighting(rng: np.random.Generator, size: tuple[int, int], *, smooth: float = 0.06, gradient: float = 0.2,
             vignette: float = 0.25) -> np.ndarray:
    """Multiplicative light (H, W): a smooth random field, a random horizontal gradient and a
    vignette; drawn from the layout stream, so it is the same at every size."""
    h, w = size
    g = rng.random()
    field = smooth_field(rng, size, (2, 4))
    gx = (np.arange(w, dtype=np.float32) + 0.5) / w - 0.5
    gy = (np.arange(h, dtype=np.float32) + 0.5) / h - 0.5
    vig = 1.0 - vignette * (gx[None, :] ** 2 + gy[:, None] ** 2)
    return ((1.0 + smooth * field + gradient * (g - 0.5) * gx[None, :]) * vig).astype(np.float32)


def render_world(name: str, layout, table: Sequence[TextureSignature], num_classes: int, seed: int, height: int,
                 width: int, shuffle: bool, band_half_width: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
    """The render pipeline both worlds share.

    ``layout(canvas, rng)`` paints the scene from the layout stream (size-independent
    draws) and returns the light field; shuffled scenes re-assign classes from the shuffle
    stream; the pixel stream (size-dependent) draws the sensor-noise level, the texture
    jitter and phases, and the noise.  Region texture index c means ``table[c]``.  With
    ``band_half_width``, pixels within that many pixels of another object instance become
    255 (VOC boundary bands), computed from the *instances*, so the ignored pixels of a
    shuffled scene are those of the unshuffled one.
    """
    cv = Canvas(height, width)
    light = layout(cv, stream(name, seed, LAYOUT))
    labels = textures = None
    if shuffle:
        labels, textures = shuffle_classes(cv, stream(name, seed, SHUFFLE), num_classes)
    px = stream(name, seed, PIXELS, height, width)
    noise = (1.0 + 1.0 * px.random()) / 255.0
    image, label_map = finish(cv, table, px, light=light, labels=labels, textures=textures, noise_std=noise)
    if band_half_width is not None:
        label_map[boundary_band(cv.instance_map(), band_half_width)] = IGNORE_INDEX
    return image, label_map
