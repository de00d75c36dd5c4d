"""Street world: Cityscapes-style driving scenes with the 19 train-id classes.

A pinhole camera 1.5 m above a flat ground looks down a straight street: the horizon and
the vanishing point are drawn per scene, the road is a band of the ground plane (so a
trapezoid to the vanishing point), with sidewalks, optional grass (terrain) strips,
walls, fences and hedges along it, building blocks with windows (or a tree line) on both
sides and a skyline across its far end.  Things stand on the ground at a depth ``Z`` and
are drawn far to near, at a scale focal / Z: cars, trucks, buses and the odd tram
(boxes seen from behind, with their side face, wheels, windows, lights), people,
riders on bicycles and motorbikes, parked bicycles and motorbikes, trees, bushes, poles
(street lights, sign poles with traffic signs, traffic lights).  The ego vehicle's bonnet
(a curved band at the bottom) and a thin rectification border are labelled 255.

The ground and the facades are rendered by inverting the camera on coordinate grids
(every ground pixel knows its (X, Z), every facade pixel its (Z, height)), so windows,
lane marks and zebra crossings are in perspective for free.  All geometry is drawn from
the layout random stream in metres and normalised image coordinates, so a seed gives the
same scene at every resolution of the same aspect ratio.

Class evidence: base colours come from the broad shared distribution with only an
occasional class-typical colour (grey road, blue sky, green vegetation...), and every
region carries its class texture (:mod:`explorer.data.worlds.draw`).  In a *shuffled* scene
every region (a building block, the road, a car, a person, the sky...) is re-assigned a
uniformly random class: label and texture follow the new class, geometry and colours do
not, so only the texture tells the class.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from explorer.data.datasets import IGNORE_INDEX
from explorer.data.worlds import figures
from explorer.data.worlds.draw import (
    Canvas,
    ColourBias,
    Frame,
    Shape,
    dark_colour,
    glass_colour,
    hsv,
    jitter,
    lighting,
    polygon,
    random_colour,
    rect,
    render_world,
    signatures,
)

NAME = "street"
NUM_CLASSES = 19
(ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, LIGHT, SIGN, VEGETATION, TERRAIN, SKY, PERSON, RIDER, CAR,
 TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE) = range(NUM_CLASSES)
#: texture signature of the (ignored) ego-vehicle bonnet: not any class's
BONNET_TEXTURE = 19
#: texture signature of each class (then the bonnet's), as (period, orientation, axis)
#: indices into draw.PERIODS (2.5, 3.4, 4.6, 6.2 px), ORIENTATIONS (0, 90 deg) and AXES
#: (L, RG, BY); chosen so that classes that often touch (road/sidewalk, building/sky,
#: pole/sign, rider/bicycle, ...) differ in two attributes (or in period by 2+ steps)
TEXTURES = signatures([
    (3, 0, 0), (1, 0, 1), (3, 1, 2), (0, 0, 0), (2, 1, 2), (0, 0, 2), (2, 1, 1), (3, 1, 1), (2, 0, 1), (0, 1, 2),
    (1, 0, 0), (2, 0, 0), (1, 1, 2), (0, 1, 0), (3, 0, 1), (3, 0, 2), (0, 1, 1), (2, 1, 0), (0, 0, 1), (1, 1, 1),
])
CAM_HEIGHT = 1.5

#: occasional class-typical colours (used with probability ``p`` only; see ColourBias)
BIAS = {
    ROAD: ColourBias(s=(0.0, 0.1), v=(0.25, 0.5)),
    SIDEWALK: ColourBias(s=(0.0, 0.15), v=(0.4, 0.7)),
    BUILDING: ColourBias(s=(0.05, 0.3), v=(0.3, 0.75)),
    VEGETATION: ColourBias(h=(0.18, 0.33), s=(0.3, 0.65), v=(0.15, 0.5)),
    TERRAIN: ColourBias(h=(0.1, 0.28), s=(0.25, 0.55), v=(0.3, 0.6)),
    SKY: ColourBias(h=(0.53, 0.62), s=(0.1, 0.45), v=(0.65, 0.92)),
    POLE: ColourBias(s=(0.0, 0.15), v=(0.3, 0.6)),
}


def colour(rng: np.random.Generator, cls: int) -> np.ndarray:
    return random_colour(rng, BIAS.get(cls))


class Camera:
    """Pinhole camera: ``x = xh + F X / Z``, ``y = yh + F (CAM_HEIGHT - Y) / Z`` (pixels)."""

    def __init__(self, size: tuple[int, int], horizon: float, vp: float, focal: float):
        self.size = size
        h, w = size
        self.F = focal * h
        self.xh = vp * w
        self.yh = horizon * h

    def x(self, X, Z):
        return self.xh + self.F * X / Z

    def y(self, Y, Z):
        return self.yh + self.F * (CAM_HEIGHT - Y) / Z

    def pt(self, X, Y, Z) -> tuple[float, float]:
        return self.x(X, Z), self.y(Y, Z)

    def frame(self, X: float, Z: float, mirror: bool = False) -> Frame:
        """Local frame of a figure standing at (X, Z), in metres, facing the camera."""
        return Frame(self.size, (self.x(X, Z), self.y(0.0, Z)), self.F / Z, mirror)

    def quad(self, pts3d) -> Shape | None:
        return polygon(self.size, [self.pt(*p) for p in pts3d])


# --------------------------------------------------------------------------- planes


def _side_block(cam: Camera, Xp: float, z0: float, z1: float, top) -> tuple[Shape, np.ndarray, np.ndarray] | None:
    """The pixels of the vertical plane X = Xp between depths z0 and z1, from the ground up
    to ``top(Z)`` metres: (shape, Z per column (1, w), height above ground (h, w))."""
    h, w = cam.size
    xa, xb = cam.x(Xp, z0), cam.x(Xp, z1)
    lo, hi = min(xa, xb), max(xa, xb)
    j0, j1 = max(0, math.ceil(lo - 0.5)), min(w, math.floor(hi - 0.5) + 1)
    if j1 <= j0:
        return None
    xc = np.arange(j0, j1, dtype=np.float64) + 0.5
    Z = cam.F * Xp / (xc - cam.xh)
    top_z = np.asarray(top(Z), np.float64) * np.ones_like(Z)
    ytop = cam.yh + cam.F * (CAM_HEIGHT - top_z) / Z
    ybot = cam.yh + cam.F * CAM_HEIGHT / Z
    i0, i1 = max(0, math.ceil(ytop.min() - 0.5)), min(h, math.floor(ybot.max() - 0.5) + 1)
    if i1 <= i0:
        return None
    yc = np.arange(i0, i1, dtype=np.float64)[:, None] + 0.5
    Yw = CAM_HEIGHT - (yc - cam.yh) * Z[None, :] / cam.F
    mask = (Yw >= 0) & (Yw <= top_z[None, :])
    return Shape(i0, j0, mask), Z[None, :], Yw


def _front_block(cam: Camera, Zp: float, x0: float, x1: float, top) -> tuple[Shape, np.ndarray, np.ndarray] | None:
    """The pixels of the plane Z = Zp facing the camera, X in [x0, x1], up to ``top(X)``."""
    h, w = cam.size
    j0 = max(0, math.ceil(cam.x(x0, Zp) - 0.5))
    j1 = min(w, math.floor(cam.x(x1, Zp) - 0.5) + 1)
    if j1 <= j0:
        return None
    X = (np.arange(j0, j1, dtype=np.float64) + 0.5 - cam.xh) * Zp / cam.F
    top_x = np.asarray(top(X), np.float64) * np.ones_like(X)
    ytop = cam.y(top_x, Zp)
    ybot = cam.y(0.0, Zp)
    i0, i1 = max(0, math.ceil(ytop.min() - 0.5)), min(h, math.floor(ybot - 0.5) + 1)
    if i1 <= i0:
        return None
    yc = np.arange(i0, i1, dtype=np.float64)[:, None] + 0.5
    Yw = np.broadcast_to(CAM_HEIGHT - (yc - cam.yh) * Zp / cam.F, (i1 - i0, j1 - j0))
    mask = (Yw >= 0) & (Yw <= top_x[None, :])
    return Shape(i0, j0, mask), X[None, :], Yw


def _frac(a):
    return a - np.floor(a)


@dataclass
class Facade:
    """A building block's look: base colour, window grid (metres), window colour."""

    colour: np.ndarray
    window: np.ndarray
    trim: np.ndarray
    floor: float
    spacing: float
    win_w: float
    win_h: float
    ground_floor: float
    phase: float
    windows: bool

    @staticmethod
    def draw(rng: np.random.Generator) -> "Facade":
        u = rng.random(8)
        return Facade(colour(rng, BUILDING), glass_colour(rng), jitter(rng, colour(rng, BUILDING), 0.2),
                      2.8 + 1.0 * u[0], 1.8 + 2.2 * u[1], 0.3 + 0.35 * u[2], 0.35 + 0.3 * u[3],
                      3.0 + 1.5 * u[4], u[5] * 10.0, u[6] < 0.9)

    def paint(self, cv: Canvas, cam: Camera, region: int, along: np.ndarray, Yw: np.ndarray, depth: np.ndarray,
              shape: Shape, height) -> None:
        """Facade colours over ``shape``: ``along`` = the in-plane horizontal coordinate
        (metres), ``depth`` = distance (for the window-size check)."""
        col = np.broadcast_to(self.colour, shape.mask.shape + (3,)).copy()
        px_per_m = cam.F / depth
        a = _frac((along + self.phase) / self.spacing)
        resolved = px_per_m * self.spacing * self.win_w >= 1.2
        if self.windows:
            upper = (Yw > self.ground_floor) & (Yw < np.asarray(height) - 0.8)
            fy = _frac((Yw - self.ground_floor) / self.floor)
            win = upper & (a < self.win_w) & (fy > 0.3) & (fy < 0.3 + self.win_h) & resolved
            shop = (Yw > 0.4) & (Yw < self.ground_floor - 0.6) & (a < 0.8) & resolved
            col[win | shop] = self.window
        top = (Yw > np.asarray(height) - 0.5)
        col[top] = self.trim
        cv.paint(shape, col, region)


def _wobbly(base: float, rng: np.random.Generator, amount: float = 0.25):
    u = rng.random(4) * 2 * math.pi
    k1, k2 = 0.25 + 0.3 * rng.random(), 0.8 + 0.8 * rng.random()

    def top(a):
        return base * (1 + amount * (0.6 * np.sin(k1 * a + u[0]) + 0.4 * np.sin(k2 * a + u[1])))

    return top


# --------------------------------------------------------------------------- things


def _car_box(cv: Canvas, cam: Camera, rng: np.random.Generator, region: int, X: float, Z: float, kind: int) -> None:
    """A car, truck, bus or tram seen from behind (or the front), with its visible side."""
    u = rng.random(6)
    if kind == CAR:
        w, h, L = 1.7 + 0.25 * u[0], 1.4 + 0.25 * u[1], 4.0 + 0.8 * u[2]
    elif kind == TRUCK:
        w, h, L = 2.4 + 0.15 * u[0], 2.8 + 1.0 * u[1], 6.5 + 4.0 * u[2]
    elif kind == BUS:
        w, h, L = 2.5 + 0.05 * u[0], 3.0 + 0.3 * u[1], 11.0 + 1.5 * u[2]
    else:  # TRAIN (a tram)
        w, h, L = 2.4 + 0.2 * u[0], 3.3 + 0.3 * u[1], 20.0 + 12.0 * u[2]
    body = random_colour(rng)
    side = jitter(rng, body, 0.15) * 0.85
    glass = glass_colour(rng)
    tyre = dark_colour(rng)
    lamp = np.array([0.85, 0.12, 0.08], np.float32) if u[3] < 0.75 else np.array([0.95, 0.92, 0.8], np.float32)
    Xl, Xr = X - w / 2, X + w / 2
    base = 0.3 if kind == CAR else 0.45
    belt = 0.55 * h + 0.1 if kind == CAR else 0.45 * h
    # Ground shadow under the vehicle (on ground regions only).
    sh = cam.quad([(Xl - 0.2, 0.0, Z - 0.3), (Xr + 0.2, 0.0, Z - 0.3), (Xr + 0.2, 0.0, Z + L), (Xl - 0.2, 0.0, Z + L)])
    cv.shade(sh, 0.55, cv.ground_regions)
    # The visible side face (the side facing the camera's axis).
    Xs = Xl if Xl > 0 else (Xr if Xr < 0 else None)
    if Xs is not None:
        if kind == CAR:
            cv.paint(cam.quad([(Xs, base, Z), (Xs, base, Z + L), (Xs, belt, Z + L - 0.2), (Xs, belt, Z)]), side, region)
            cab = [(Xs, belt, Z + 0.15 * L), (Xs, belt, Z + 0.72 * L), (Xs, h, Z + 0.58 * L), (Xs, h, Z + 0.3 * L)]
            cv.paint(cam.quad(cab), side, region)
            cv.paint(cam.quad([(Xs, belt + 0.07, Z + 0.2 * L), (Xs, belt + 0.07, Z + 0.67 * L),
                               (Xs, h - 0.07, Z + 0.55 * L), (Xs, h - 0.07, Z + 0.33 * L)]), glass, region)
        else:
            cv.paint(cam.quad([(Xs, base, Z), (Xs, base, Z + L), (Xs, h, Z + L), (Xs, h, Z)]), side, region)
            if kind in (BUS, TRAIN):
                n = max(2, int(L / 1.6))
                for i in range(n):
                    za = Z + 0.3 + i * (L - 0.6) / n
                    zb = za + 0.8 * (L - 0.6) / n
                    cv.paint(cam.quad([(Xs, h * 0.5, za), (Xs, h * 0.5, zb), (Xs, h - 0.35, zb), (Xs, h - 0.35, za)]),
                             glass, region)
            else:
                cv.paint(cam.quad([(Xs, h * 0.3, Z + 0.2), (Xs, h * 0.3, Z + L - 0.2), (Xs, h * 0.38, Z + L - 0.2),
                                   (Xs, h * 0.38, Z + 0.2)]), jitter(rng, side, 0.3), region)
        rw = 0.33 if kind == CAR else 0.5
        wheels = (Z + 0.18 * L, Z + 0.82 * L) if kind != TRAIN else (Z + 2, Z + 3.2, Z + L - 3.2, Z + L - 2)
        ang = np.linspace(0, 2 * np.pi, 14, endpoint=False)
        for zc in wheels:
            cv.paint(cam.quad([(Xs, rw + rw * math.sin(t), zc + rw * math.cos(t)) for t in ang]), tyre, region)
    # Rear face, nearest: body, cabin with rear window, lights, bumper, wheels below.
    x0, x1 = cam.x(Xl, Z), cam.x(Xr, Z)
    if kind == CAR:
        cv.paint(cam.quad([(Xl, base, Z), (Xr, base, Z), (Xr, belt, Z), (Xl, belt, Z)]), body, region)
        cab = [(Xl + 0.08, belt, Z), (Xr - 0.08, belt, Z), (Xr - 0.3, h, Z), (Xl + 0.3, h, Z)]
        cv.paint(cam.quad(cab), body, region)
        cv.paint(cam.quad([(Xl + 0.18, belt + 0.06, Z), (Xr - 0.18, belt + 0.06, Z), (Xr - 0.35, h - 0.07, Z),
                           (Xl + 0.35, h - 0.07, Z)]), glass, region)
        ly = belt - 0.12
        for a, b in ((Xl + 0.05, Xl + 0.35), (Xr - 0.35, Xr - 0.05)):
            cv.paint(rect(cv.size, cam.x(a, Z), cam.y(ly + 0.1, Z), cam.x(b, Z), cam.y(ly - 0.08, Z)), lamp, region)
        cv.paint(rect(cv.size, cam.x(X - 0.25, Z), cam.y(base + 0.25, Z), cam.x(X + 0.25, Z), cam.y(base + 0.12, Z)),
                 np.array([0.85, 0.85, 0.8], np.float32), region)
    else:
        cv.paint(rect(cv.size, x0, cam.y(h, Z), x1, cam.y(base, Z)), body, region)
        if kind in (BUS, TRAIN):
            cv.paint(rect(cv.size, cam.x(Xl + 0.15, Z), cam.y(h - 0.25, Z), cam.x(Xr - 0.15, Z), cam.y(h * 0.55, Z)),
                     glass, region)
        else:
            cv.paint(rect(cv.size, cam.x(X - 0.02, Z), cam.y(h - 0.1, Z), cam.x(X + 0.02, Z), cam.y(base + 0.1, Z)),
                     jitter(rng, body, 0.4), region)
        for a in (Xl + 0.08, Xr - 0.33):
            cv.paint(rect(cv.size, cam.x(a, Z), cam.y(base + 0.45, Z), cam.x(a + 0.25, Z), cam.y(base + 0.25, Z)),
                     lamp, region)
    cv.paint(rect(cv.size, x0, cam.y(base + 0.1, Z), x1, cam.y(base - 0.02, Z)), jitter(rng, dark_colour(rng)), region)
    for a, b in ((Xl + 0.05, Xl + 0.35), (Xr - 0.35, Xr - 0.05)):
        cv.paint(rect(cv.size, cam.x(a, Z), cam.y(base, Z), cam.x(b, Z), cam.y(0.0, Z)), tyre, region)


def _tree(cv: Canvas, cam: Camera, rng: np.random.Generator, region: int, X: float, Z: float, bush: bool) -> None:
    fr = cam.frame(X, Z)
    leaf = colour(rng, VEGETATION)
    u = rng.random(3)
    if bush:
        n, R, cy = 3 + int(3 * u[0]), 0.4 + 0.5 * u[1], 0.5
    else:
        n, R, cy = 4 + int(4 * u[0]), 1.2 + 1.8 * u[1], 2.2 + 1.8 * u[2]
        trunk = jitter(rng, hsv(0.08, 0.3, 0.3), 0.4)
        cv.paint(fr.capsule(0.0, 0.0, 0.0, cy + 0.3 * R, 0.12 + 0.08 * u[0], 0.08), trunk, region)
    pts = rng.random((n, 4))
    for a, b, c, d in pts:
        ex, ey = (a - 0.5) * 1.6 * R, cy + (b - 0.3) * 1.1 * R if not bush else (b * 0.4) * R
        cv.paint(fr.ellipse(ex, ey + (R if not bush else 0.0), R * (0.5 + 0.4 * c), R * (0.45 + 0.35 * d)),
                 jitter(rng, leaf, 0.2), region)


def _pole(cv: Canvas, cam: Camera, rng: np.random.Generator, regions: dict, X: float, Z: float, kind: str,
          toward_road: float) -> None:
    """A pole (street light, sign pole or traffic-light pole) with its sign or light."""
    fr = cam.frame(X, Z)
    u = rng.random(6)
    metal = colour(rng, POLE)
    r = 0.06 + 0.05 * u[0]
    if kind == "light":
        H = 6.0 + 3.0 * u[1]
        cv.paint(fr.capsule(0, 0, 0, H, r * 1.3, r * 0.8), metal, regions[POLE])
        arm = toward_road * (1.2 + 1.5 * u[2])
        cv.paint(fr.capsule(0, H, arm, H + 0.3, r * 0.6), metal, regions[POLE])
        cv.paint(fr.ellipse(arm, H + 0.2, 0.35, 0.12), jitter(rng, metal, 0.3), regions[POLE])
    elif kind == "sign":
        H = 2.4 + 0.8 * u[1]
        cv.paint(fr.capsule(0, 0, 0, H + 0.2, r * 0.8), metal, regions[POLE])
        face = random_colour(rng)
        rim = random_colour(rng)
        s = 0.3 + 0.15 * u[2]
        shape = int(u[3] * 4)
        cy = H + s * 0.7
        if shape == 0:
            cv.paint(fr.disk(0, cy, s), rim, regions[SIGN])
            cv.paint(fr.disk(0, cy, s * 0.75), face, regions[SIGN])
        elif shape == 1:
            for k, col in ((1.0, rim), (0.65, face)):  # a triangle, point down
                cv.paint(fr.poly([(-s * 1.1 * k, cy + s * 0.6 * k), (s * 1.1 * k, cy + s * 0.6 * k),
                                  (0, cy - s * 1.1 * k)]), col, regions[SIGN])
        elif shape == 2:
            cv.paint(fr.rect(-s * 0.9, cy - s, s * 0.9, cy + s), rim, regions[SIGN])
            cv.paint(fr.rect(-s * 0.75, cy - s * 0.85, s * 0.75, cy + s * 0.85), face, regions[SIGN])
        else:
            for k, col in ((1.0, rim), (0.7, face)):  # a diamond
                cv.paint(fr.poly([(0, cy + s * k), (s * k, cy), (0, cy - s * k), (-s * k, cy)]), col, regions[SIGN])
        if u[4] < 0.35:  # a second, rectangular sign below
            cv.paint(fr.rect(-s * 0.9, H - 0.55, s * 0.9, H - 0.1), random_colour(rng), regions[SIGN])
    else:  # traffic light
        H = 3.0 + 1.0 * u[1]
        cv.paint(fr.capsule(0, 0, 0, H, r), metal, regions[POLE])
        box = dark_colour(rng)
        hanging = u[2] < 0.4
        bx = toward_road * (2.5 + 2.0 * u[3]) if hanging else 0.0
        by = H + 1.8 if hanging else H
        if hanging:
            cv.paint(fr.capsule(0, H, 0, by + 0.2, r), metal, regions[POLE])
            cv.paint(fr.capsule(0, by + 0.2, bx, by + 0.2, r * 0.7), metal, regions[POLE])
        cv.paint(fr.rect(bx - 0.17, by - 0.95, bx + 0.17, by + 0.05), box, regions[LIGHT])
        lit = int(u[4] * 3)
        lamps = (np.array([0.95, 0.15, 0.1], np.float32), np.array([0.95, 0.7, 0.1], np.float32),
                 np.array([0.2, 0.9, 0.4], np.float32))
        for i in range(3):
            c = lamps[i] if i == lit else lamps[i] * 0.3
            cv.paint(fr.disk(bx, by - 0.15 - 0.3 * i, 0.1), c, regions[LIGHT])


# --------------------------------------------------------------------------- the scene
#
# ``layout`` paints a scene in steps, one function each.  Every step draws from the same
# layout stream, so the order of the steps (and of the draws inside them) is part of every
# scene: changing it changes all scenes (tests/data/test_world_golden.py catches that).


def _camera(cv: Canvas, rng: np.random.Generator) -> tuple[Camera, float]:
    """Decide the camera (horizon height, vanishing point, focal length) and the depth
    ``z_end`` (metres) of the street's far end; returns ``(camera, z_end)``."""
    u = rng.random(8)
    cam = Camera(cv.size, horizon=0.36 + 0.1 * u[0], vp=0.4 + 0.2 * u[1], focal=1.0 + 0.35 * u[2])
    return cam, 70.0 + 110.0 * u[3]


def _sky(cv: Canvas, cam: Camera, rng: np.random.Generator) -> None:
    """Paint the sky over the whole canvas (everything else is painted over it): a vertical
    gradient, lighter towards the horizon."""
    H, W = cv.size
    sky = cv.add_region(SKY, rng)
    sky_c = colour(rng, SKY)
    v = (np.arange(H, dtype=np.float32) + 0.5) / H
    t = np.clip(v / max(cam.yh / H, 1e-3), 0, 1)[:, None, None]
    sky_grad = sky_c * (0.85 + 0.15 * t) + (0.2 * t) * (np.ones(3, np.float32) - sky_c)
    cv.paint(rect(cv.size, 0, 0, W, H), np.broadcast_to(sky_grad, (H, W, 3)), sky)


def _cross_section(rng: np.random.Generator) -> tuple[float, float, list[dict]]:
    """Decide the street's cross-section (metres, X < 0 left of the camera).

    Returns ``(road_l, road_r, sides)``: the road's edges and, for the left then the right
    side, a dict: ``sgn`` (-1 left, +1 right), ``edge`` (the curb's X), widths of the
    ``grass`` strip (0 if none), the sidewalk (``walk``) and the ``setback`` between the lot
    front and the building line (0 if none), what stands at the ``front`` of the lot
    ("wall", "fence", "hedge" or None), what at the ``back`` ("building" or "trees"), and
    whether the setback is paved (``plaza``, else grass).
    """
    road_l = -(2.5 + 6.0 * rng.random())
    road_r = 2.5 + 6.0 * rng.random()
    sides = []
    for sgn, edge in ((-1.0, road_l), (1.0, road_r)):
        su = rng.random(8)
        grass = 0.8 + 1.7 * su[0] if su[1] < 0.3 else 0.0
        walk = 1.5 + 3.5 * su[2]
        front = ("wall", "fence", "hedge", None, None)[int(su[3] * 5)]
        setback = 0.0 if su[4] < 0.5 else 1.0 + 5.0 * su[5]
        back = "building" if su[6] < 0.82 else "trees"
        sides.append(dict(sgn=sgn, edge=edge, grass=grass, walk=walk, front=front, setback=setback, back=back,
                          plaza=su[7] < 0.4))
    return road_l, road_r, sides


def _ground_bands(cv: Canvas, rng: np.random.Generator, sides: list[dict], road_l: float,
                  road_r: float) -> tuple[int, list[tuple[float, float, int]], dict]:
    """Add the ground regions and decide their colours: the road and, on each side from the
    curb outwards, the grass strip, the sidewalk, the setback (paved or grass) and terrain
    out to 200 m.

    Sets each side's ``front_x`` (X of the lot front) and ``back_x`` (X of the building
    line) and the canvas's ``ground_regions``.  Returns ``(road region, bands, colours)``:
    the bands as ``(x_lo, x_hi, region)`` with the road last, the colour of each region.
    """
    bands = []  # list of (x_lo, x_hi, region)
    road = cv.add_region(ROAD, rng)
    ground_colours = {road: colour(rng, ROAD)}
    for sd in sides:
        sgn, x = sd["sgn"], sd["edge"]
        seq = []
        if sd["grass"]:
            seq.append((TERRAIN, sd["grass"]))
        seq.append((SIDEWALK, sd["walk"]))
        if sd["setback"]:
            seq.append((SIDEWALK if sd["plaza"] else TERRAIN, sd["setback"]))
        seq.append((TERRAIN, 200.0))
        for cls, width in seq:
            reg = cv.add_region(cls, rng)
            ground_colours[reg] = colour(rng, cls)
            x2 = x + sgn * width
            bands.append((min(x, x2), max(x, x2), reg))
            x = x2
        sd["front_x"] = sd["edge"] + sgn * (sd["grass"] + sd["walk"])
        sd["back_x"] = sd["front_x"] + sgn * sd["setback"]
    bands.append((road_l, road_r, road))
    cv.ground_regions = [b[2] for b in bands]
    return road, bands, ground_colours


def _road_marks(rng: np.random.Generator, Xg: np.ndarray, Zg: np.ndarray, road_l: float,
                road_r: float) -> tuple[np.ndarray, np.ndarray]:
    """Decide the road marks, given the ground's (X, Z) per pixel: dashed lane lines, edge
    lines and, in 3 scenes in 10, a zebra crossing.  Returns ``(colour, mask)`` (the mask is
    still to be restricted to the road)."""
    ru = rng.random(6)
    mark = np.asarray(hsv(0.12, 0.1 * ru[0], 0.75 + 0.2 * ru[1]))
    lane_w = 3.0 + 0.5 * ru[2]
    lanes = np.arange(road_l + lane_w, road_r - 1.0, lane_w)
    lines = np.zeros(Xg.shape, bool)
    dash = _frac(Zg / 9.0 + ru[3]) < 0.4
    for lx in lanes:
        lines |= (np.abs(Xg - lx) < 0.08) & dash
    lines |= (np.abs(Xg - road_l - 0.3) < 0.07) | (np.abs(Xg - road_r + 0.3) < 0.07)
    if ru[4] < 0.3:
        zc = 8.0 + 20.0 * ru[5]
        lines |= (np.abs(Zg - zc) < 2.0) & (_frac(Xg / 1.1) < 0.5)
    return mark, lines


def _ground(cv: Canvas, cam: Camera, rng: np.random.Generator, road: int, bands: list[tuple[float, float, int]],
            ground_colours: dict, road_l: float, road_r: float) -> None:
    """Paint the ground plane below the horizon by inverting the camera (every pixel knows its
    (X, Z)): each pixel takes the band it falls in, then the road marks and lighter curbs
    along the road edges."""
    H, W = cv.size
    yy = np.arange(H, dtype=np.float64)[:, None] + 0.5
    xx = np.arange(W, dtype=np.float64)[None, :] + 0.5
    below = yy > cam.yh + 0.5
    dy = np.maximum(yy - cam.yh, 1e-3)
    Zg = cam.F * CAM_HEIGHT / dy
    Xg = (xx - cam.xh) * Zg / cam.F
    ground = np.broadcast_to(below, (H, W))
    reg_map = np.full((H, W), road, np.int32)
    col_map = np.broadcast_to(ground_colours[road], (H, W, 3)).copy()
    for lo, hi, reg in bands:
        m = ground & (Xg >= lo) & (Xg < hi)
        reg_map[m] = reg
        col_map[m] = ground_colours[reg]
    mark, lines = _road_marks(rng, Xg, Zg, road_l, road_r)
    on_road = ground & (reg_map == road)
    col_map[on_road & lines] = mark
    # Curbs: a lighter strip along the road edges.
    curb = ground & ((np.abs(Xg - road_l) < 0.15) | (np.abs(Xg - road_r) < 0.15)) & (reg_map != road)
    col_map[curb] = col_map[curb] * 1.25 + 0.05
    cv.paint_where(ground, col_map, reg_map)


def _building_shadow(cv: Canvas, cam: Camera, rng: np.random.Generator, sides: list[dict], z_end: float) -> None:
    """In half the scenes, shade a strip of ground along one side's building line (3 to 15 m
    wide, the length of the street), as if in its buildings' shadow."""
    su = rng.random(3)
    if su[0] < 0.5:
        sd = sides[int(su[1] * 2)]
        xb = sd["back_x"]
        reach = -sd["sgn"] * (3.0 + 12.0 * su[2])
        cv.shade(cam.quad([(xb, 0, 1.0), (xb + reach, 0, 1.0), (xb + reach, 0, z_end), (xb, 0, z_end)]), 0.72,
                 cv.ground_regions)


def _skyline(cv: Canvas, cam: Camera, rng: np.random.Generator, sides: list[dict], z_end: float) -> None:
    """Paint the skyline across the street's far end (the plane Z = z_end), from 60 m beyond
    the left building line to 60 m beyond the right one: blocks of buildings with facades
    (3 in 4) or of trees with a wobbly top."""
    x = sides[0]["back_x"] - 60.0
    while x < sides[1]["back_x"] + 60.0:
        bu = rng.random(3)
        width = 8.0 + 20.0 * bu[0]
        if bu[1] < 0.75:
            reg = cv.add_region(BUILDING, rng)
            fac = Facade.draw(rng)
            height = 6.0 + 28.0 * bu[2] ** 1.5
            blk = _front_block(cam, z_end, x, x + width, lambda X, hh=height: hh)
            if blk is not None:
                shp, Xc, Yw = blk
                fac.paint(cv, cam, reg, Xc, Yw, np.full_like(Xc, z_end), shp, height)
        else:
            reg = cv.add_region(VEGETATION, rng)
            top = _wobbly(5.0 + 8.0 * bu[2], rng, 0.3)
            leaf = colour(rng, VEGETATION)
            blk = _front_block(cam, z_end, x, x + width, top)
            if blk is not None:
                cv.paint(blk[0], leaf, reg)
        x += width


def _building_line(cv: Canvas, cam: Camera, rng: np.random.Generator, sd: dict, z_end: float) -> None:
    """Paint one side's building line (the plane X = back_x) from 1 m to z_end, block by
    block: buildings with facades (with a few gaps and the odd tree block) or, on a
    tree-lined side, a tree line with a wobbly top."""
    z = 1.0
    while z < z_end:
        bu = rng.random(3)
        length = 8.0 + 25.0 * bu[0]
        z1 = min(z + length, z_end)
        if sd["back"] == "building" and bu[1] > 0.08:
            reg = cv.add_region(BUILDING, rng)
            fac = Facade.draw(rng)
            height = 5.0 + 19.0 * bu[2]
            blk = _side_block(cam, sd["back_x"], z, z1, lambda Z, hh=height: hh)
            if blk is not None:
                shp, Zc, Yw = blk
                fac.paint(cv, cam, reg, Zc, Yw, Zc, shp, height)
        elif sd["back"] == "trees" or bu[1] <= 0.04:
            reg = cv.add_region(VEGETATION, rng)
            leaf = colour(rng, VEGETATION)
            blk = _side_block(cam, sd["back_x"], z, z1, _wobbly(4.0 + 8.0 * bu[2], rng, 0.3))
            if blk is not None:
                cv.paint(blk[0], leaf, reg)
        z = z1


def _lot_front(cv: Canvas, cam: Camera, rng: np.random.Generator, sd: dict, z_end: float) -> None:
    """Paint one side's lot front (the plane X = front_x), if it has one, in segments with
    random gaps: a wall (with a lighter or darker coping), a fence (bars, rails and posts;
    solid where the bars are too fine to resolve) or a hedge."""
    if sd["front"] is None:
        return
    z = 1.0 + 10.0 * rng.random()
    while z < z_end:
        bu = rng.random(4)
        length = 10.0 + 40.0 * bu[0]
        z1 = min(z + length, z_end)
        xf = sd["front_x"]
        if sd["front"] == "wall":
            reg = cv.add_region(WALL, rng)
            height = 0.8 + 2.2 * bu[1]
            face = colour(rng, WALL)
            coping = jitter(rng, face, 0.3)
            blk = _side_block(cam, xf, z, z1, lambda Z, hh=height: hh)
            if blk is not None:
                shp, Zc, Yw = blk
                cv.paint(shp, np.where((Yw > height - 0.15)[..., None], coping, face), reg)
        elif sd["front"] == "fence":
            reg = cv.add_region(FENCE, rng)
            height = 1.0 + 1.2 * bu[1]
            pitch = 0.12 + 0.2 * bu[2]
            paint = colour(rng, FENCE)
            blk = _side_block(cam, xf, z, z1, lambda Z, hh=height: hh)
            if blk is not None:
                shp, Zc, Yw = blk
                resolved = cam.F / Zc * pitch >= 2.5
                bars = (_frac(Zc / pitch) < 0.45) | ~resolved
                rails = (np.abs(Yw - height + 0.1) < 0.06) | (np.abs(Yw - 0.25) < 0.06)
                posts = _frac(Zc / 2.5) < 0.06
                cv.paint(shp.where(bars | rails | posts), paint, reg)
        else:
            reg = cv.add_region(VEGETATION, rng)
            leaf = colour(rng, VEGETATION)
            blk = _side_block(cam, xf, z, z1, _wobbly(0.9 + 1.2 * bu[1], rng, 0.15))
            if blk is not None:
                cv.paint(blk[0], leaf, reg)
        z = z1 + (0.0 if bu[3] < 0.5 else 3.0 + 20.0 * rng.random())


def _side_planes(cv: Canvas, cam: Camera, rng: np.random.Generator, sides: list[dict], z_end: float) -> None:
    """Paint the vertical planes along the street, side by side (left then right): the
    building line at the back, then the wall, fence or hedge at the front of the lot."""
    for sd in sides:
        _building_line(cv, cam, rng, sd, z_end)
        _lot_front(cv, cam, rng, sd, z_end)


# A thing standing on the ground: (Z, placement order, kind (a class), X, extra keywords).
Thing = tuple[float, int, int, float, dict]


def _add(things: list[Thing], Z: float, kind: int, X: float, **kw) -> None:
    """Append a thing at (X, Z) to ``things``, remembering the order it was placed in."""
    things.append((Z, len(things), kind, X, kw))


def _place_vehicles(things: list[Thing], rng: np.random.Generator, sides: list[dict], road_l: float,
                    road_r: float) -> None:
    """Place 1 to 8 cars, in lanes or parked along a curb, sometimes (45%) a truck or a bus
    in a lane and rarely (12%) a tram near the middle of the road."""
    n_cars = 1 + int(rng.integers(0, 8))
    for _ in range(n_cars):
        cu = rng.random(4)
        if cu[0] < 0.45:  # parked along a curb
            sd = sides[int(cu[1] * 2)]
            X = sd["edge"] - sd["sgn"] * (1.1 + 0.2 * cu[2])
        else:
            X = road_l + 1.6 + (road_r - road_l - 3.2) * cu[2]
        _add(things, 5.0 + 40.0 * cu[3] ** 1.3, CAR, X)
    bu = rng.random(4)
    if bu[0] < 0.45:
        kind = (TRUCK, BUS)[int(bu[1] * 2)]
        _add(things, 9.0 + 35.0 * bu[2], kind, road_l + 1.8 + (road_r - road_l - 3.6) * bu[3])
    bu = rng.random(3)
    if bu[0] < 0.12:
        _add(things, 12.0 + 30.0 * bu[1], TRAIN, 0.5 * (road_l + road_r) + (bu[2] - 0.5) * 2.0)


def _place_people(things: list[Thing], rng: np.random.Generator, sides: list[dict], road_l: float,
                  road_r: float) -> None:
    """Place 0 to 8 people on the sidewalks (or grass strips), 15% of them crossing the road."""
    n_people = int(rng.integers(0, 9))
    for _ in range(n_people):
        pu = rng.random(4)
        sd = sides[int(pu[0] * 2)]
        if pu[1] < 0.15:
            X = road_l + (road_r - road_l) * pu[2]
        else:
            X = sd["edge"] + sd["sgn"] * (0.3 + (sd["grass"] + sd["walk"] - 0.5) * pu[2])
        _add(things, 4.0 + 28.0 * pu[3] ** 1.3, PERSON, X)


def _place_riders(things: list[Thing], rng: np.random.Generator, sides: list[dict]) -> None:
    """In 55% of the scenes, place 1 or 2 riders on the road near its edges, on a bicycle
    (60%) or a motorbike."""
    n_riders = int(rng.integers(1, 3)) if rng.random() < 0.55 else 0
    for _ in range(n_riders):
        ru_ = rng.random(4)
        sd = sides[int(ru_[0] * 2)]
        _add(things, 6.0 + 24.0 * ru_[1], RIDER, sd["edge"] - sd["sgn"] * (0.8 + 1.2 * ru_[2]),
             mount=BICYCLE if ru_[3] < 0.6 else MOTORCYCLE)


def _place_parked_bikes(things: list[Thing], rng: np.random.Generator, sides: list[dict]) -> None:
    """In half the scenes, place 1 to 3 riderless two-wheelers: bicycles on the sidewalk,
    motorbikes on the road along the curb."""
    n_parked = int(rng.integers(1, 4)) if rng.random() < 0.5 else 0
    for _ in range(n_parked):
        bu = rng.random(4)
        sd = sides[int(bu[0] * 2)]
        X = sd["edge"] + sd["sgn"] * (0.4 + 0.6 * bu[1]) if bu[2] < 0.7 else sd["edge"] - sd["sgn"] * 0.7
        _add(things, 5.0 + 20.0 * bu[3], BICYCLE if bu[2] < 0.7 else MOTORCYCLE, X)


def _place_vegetation(things: list[Thing], rng: np.random.Generator, sides: list[dict], z_end: float) -> None:
    """Place, on each side, an avenue of trees along the curb (60% of the sides, up to 90 m)
    and 0 to 2 bushes at the front of the lot."""
    for sd in sides:
        tu = rng.random(3)
        if tu[0] < 0.6:
            spacing = 7.0 + 12.0 * tu[1]
            X = sd["edge"] + sd["sgn"] * (0.8 + 0.5 * tu[2])
            z = 4.0 + spacing * rng.random()
            while z < min(z_end, 90.0):
                _add(things, z, VEGETATION, X + 0.3 * rng.standard_normal(), bush=False)
                z += spacing * (0.7 + 0.6 * rng.random())
        for _ in range(int(rng.integers(0, 3))):
            bu = rng.random(2)
            _add(things, 5.0 + 35.0 * bu[0], VEGETATION, sd["front_x"] - sd["sgn"] * (0.5 + 0.5 * bu[1]), bush=True)


def _place_poles(things: list[Thing], rng: np.random.Generator, sides: list[dict], z_end: float) -> None:
    """Place street lights at regular spacing along the curb of each side (70% of the sides,
    up to 60 m), then 1 to 4 sign poles (65%) or traffic lights on the sidewalks."""
    for sd in sides:
        pu = rng.random(3)
        if pu[0] < 0.7:
            spacing = 18.0 + 20.0 * pu[1]
            z = 5.0 + spacing * pu[2]
            while z < min(z_end, 60.0):
                _add(things, z, POLE, sd["edge"] + sd["sgn"] * 0.4, pole="light", road=-sd["sgn"])
                z += spacing
    for _ in range(1 + int(rng.integers(0, 4))):
        pu = rng.random(4)
        sd = sides[int(pu[0] * 2)]
        kind = "sign" if pu[1] < 0.65 else "traffic"
        _add(things, 5.0 + 30.0 * pu[2], POLE, sd["edge"] + sd["sgn"] * (0.3 + 0.5 * pu[3]), pole=kind,
             road=-sd["sgn"])


def _place_things(rng: np.random.Generator, sides: list[dict], road_l: float, road_r: float,
                  z_end: float) -> list[Thing]:
    """Decide everything that stands on the ground (vehicles, people, riders, parked
    two-wheelers, trees and bushes, poles), in that order; returns them in placement order."""
    things: list[Thing] = []
    _place_vehicles(things, rng, sides, road_l, road_r)
    _place_people(things, rng, sides, road_l, road_r)
    _place_riders(things, rng, sides)
    _place_parked_bikes(things, rng, sides)
    _place_vegetation(things, rng, sides, z_end)
    _place_poles(things, rng, sides, z_end)
    return things


def _draw_thing(cv: Canvas, cam: Camera, rng: np.random.Generator, kind: int, X: float, Z: float,
                kw: dict) -> None:
    """Draw one thing standing at (X, Z) in its own region(s): a vehicle box, a person, a
    rider on their mount, a parked two-wheeler, a tree or bush, or a pole (with its sign or
    traffic light)."""
    if kind in (CAR, TRUCK, BUS, TRAIN):
        _car_box(cv, cam, rng, cv.add_region(kind, rng), X, Z, kind)
    elif kind == PERSON:
        figures.person(cv, cam.frame(X, Z), cv.add_region(PERSON, rng), rng, side_view=rng.random() < 0.3)
    elif kind == RIDER:
        fr = cam.frame(X, Z, mirror=rng.random() < 0.5)
        mount_cls = kw["mount"]
        draw_mount = figures.bicycle if mount_cls == BICYCLE else figures.motorbike
        key = draw_mount(cv, fr, cv.add_region(mount_cls, rng), rng)
        figures.rider(cv, fr, cv.add_region(RIDER, rng), rng, key)
    elif kind in (BICYCLE, MOTORCYCLE):
        fr = cam.frame(X, Z, mirror=rng.random() < 0.5)
        (figures.bicycle if kind == BICYCLE else figures.motorbike)(cv, fr, cv.add_region(kind, rng), rng)
    elif kind == VEGETATION:
        _tree(cv, cam, rng, cv.add_region(VEGETATION, rng), X, Z, kw["bush"])
    else:
        regions = {POLE: cv.add_region(POLE, rng)}
        if kw["pole"] == "sign":
            regions[SIGN] = cv.add_region(SIGN, rng)
        if kw["pole"] == "traffic":
            regions[LIGHT] = cv.add_region(LIGHT, rng)
        _pole(cv, cam, rng, regions, X, Z, kw["pole"], kw["road"])


def _draw_things(cv: Canvas, cam: Camera, rng: np.random.Generator, things: list[Thing]) -> None:
    """Draw the things far to near (things at the same depth in placement order)."""
    for Z, _, kind, X, kw in sorted(things, key=lambda t: (-t[0], t[1])):
        _draw_thing(cv, cam, rng, kind, X, Z, kw)


def _bonnet(cv: Canvas, rng: np.random.Generator) -> None:
    """Paint the ego vehicle's bonnet: a curved band across the bottom, dark or coloured, with
    a highlight; ignored (255), with its own texture, never shuffled."""
    H, W = cv.size
    bu = rng.random(5)
    bonnet = cv.add_region(IGNORE_INDEX, rng, texture=BONNET_TEXTURE, shuffleable=False)
    depth = 0.05 + 0.06 * bu[0]
    curve = 0.3 + 0.5 * bu[1]
    xs = np.linspace(-0.02, 1.02, 41)
    top = H * (1.0 - depth * (1.0 - curve * (2 * xs - 1) ** 2))
    pts = [(x * W, y) for x, y in zip(xs, top)] + [(1.02 * W, H + 1), (-0.02 * W, H + 1)]
    shp = polygon(cv.size, pts)
    paint = dark_colour(rng) if bu[2] < 0.6 else random_colour(rng)
    if shp is not None:
        gy, gx = shp.grid()
        shine = 1.0 + 0.5 * np.exp(-(((gx / W) - 0.3 - 0.4 * bu[3]) / 0.12) ** 2) * (gy < H * (1 - depth * 0.6))
        cv.paint(shp, np.clip(paint * shine[..., None] + 0.03, 0, 1), bonnet)


def _border(cv: Canvas, rng: np.random.Generator) -> None:
    """Paint the rectification border: thin near-black strips on the left, right and bottom
    edges and sometimes the top; ignored (255)."""
    H, W = cv.size
    border = cv.add_region(IGNORE_INDEX, rng)
    bw = rng.random(4)
    left = max(1, round(W * (0.003 + 0.012 * bw[0])))
    right = max(1, round(W * (0.003 + 0.012 * bw[1])))
    bottom = max(1, round(H * (0.003 + 0.01 * bw[2])))
    topb = round(H * 0.012 * bw[3]) if bw[3] < 0.4 else 0
    black = hsv(0, 0, 0.02 * rng.random())
    for shp in (rect(cv.size, 0, 0, left, H), rect(cv.size, W - right, 0, W, H), rect(cv.size, 0, H - bottom, W, H),
                rect(cv.size, 0, 0, W, topb) if topb else None):
        cv.paint(shp, black, border)


def layout(canvas: Canvas, rng: np.random.Generator) -> np.ndarray:
    """Paint one street scene on ``canvas`` from the layout stream; returns the light field.

    Back to front: camera, sky, ground (road, sidewalks, grass, marks, curbs), a building
    shadow, the skyline, the planes along the street (buildings or trees, walls, fences,
    hedges), the things standing on the ground far to near, the ego bonnet, the border.
    The steps draw from ``rng`` in this order, so the order is part of every scene.
    """
    cv = canvas
    cam, z_end = _camera(cv, rng)
    _sky(cv, cam, rng)
    road_l, road_r, sides = _cross_section(rng)
    road, bands, ground_colours = _ground_bands(cv, rng, sides, road_l, road_r)
    _ground(cv, cam, rng, road, bands, ground_colours, road_l, road_r)
    _building_shadow(cv, cam, rng, sides, z_end)
    _skyline(cv, cam, rng, sides, z_end)
    _side_planes(cv, cam, rng, sides, z_end)
    _draw_things(cv, cam, rng, _place_things(rng, sides, road_l, road_r, z_end))
    _bonnet(cv, rng)
    _border(cv, rng)
    return lighting(rng, cv.size)


def render(seed: int, height: int, width: int, shuffle: bool) -> tuple[np.ndarray, np.ndarray]:
    """Image float32 (3, H, W) in [0, 1] and labels int64 (H, W) of street scene ``seed``."""
    return render_world(NAME, layout, TEXTURES, NUM_CLASSES, seed, height, width, shuffle)
