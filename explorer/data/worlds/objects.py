"""Objects world: Pascal-VOC-style scenes, 1–4 objects of the 20 VOC classes on clutter.

The background (class 0) is an indoor room (wall and floor, with windows, frames, shelves,
doors, rugs) or an outdoor view (sky, ground or water, hills, tree and building
silhouettes), plus random clutter shapes; every background piece is its own region with
the background texture.  Then 1–4 objects are drawn as recognisable side- or front-view
figures in metres (people, cars, buses, trains, bicycles, motorbikes, aeroplanes, boats,
birds, cats, dogs, horses, cows, sheep, bottles, chairs, tables, sofas, potted plants,
monitors), scaled to fill a share of the image, possibly cropped by the image border and
overlapping each other (nearer = lower in the image = drawn later).  As in VOC's
annotations, a band of 255 a few pixels wide (about 1 % of the short side) covers every
object's outline, against the background and against other objects.

As in the street world, base colours are shared by all classes and each class carries
its faint texture signature (:mod:`explorer.data.worlds.draw`); in a shuffled scene every
region — background pieces included — gets a random class in [0, 21), so neither layout
nor shape tells the class, only texture.  The boundary bands are computed from object
instances, not labels, so a shuffled scene has exactly the ignored pixels of its
unshuffled twin.
"""
from __future__ import annotations

import math

import numpy as np

from explorer.data.worlds import figures
from explorer.data.worlds.draw import (
    Canvas,
    Frame,
    dark_colour,
    ellipse,
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

NAME = "objects"
NUM_CLASSES = 21
(BACKGROUND, AEROPLANE, BICYCLE, BIRD, BOAT, BOTTLE, BUS, CAR, CAT, CHAIR, COW, DININGTABLE, DOG, HORSE,
 MOTORBIKE, PERSON, POTTEDPLANT, SHEEP, SOFA, TRAIN, TVMONITOR) = range(NUM_CLASSES)

#: texture signature of each class as (period, orientation, axis) indices into
#: draw.PERIODS, ORIENTATIONS and AXES; the background's differs from most objects' in two
#: attributes (from cow, dog and person's in one), as do often-touching pairs
#: (person/bicycle, chair/table, ...)
TEXTURES = signatures([
    (3, 0, 2), (1, 0, 0), (1, 1, 0), (0, 1, 1), (3, 1, 1), (1, 1, 1), (3, 1, 0), (0, 0, 1), (0, 1, 0), (0, 1, 2),
    (0, 0, 2), (2, 0, 0), (1, 0, 2), (2, 1, 0), (2, 1, 2), (3, 0, 1), (2, 0, 1), (2, 1, 1), (1, 1, 2), (1, 0, 1),
    (0, 0, 0),
])


def band_half_width(height: int, width: int) -> int:
    """Half width of the 255 boundary band: 0.5 % of the short side, at least 1 px (a band
    of about 1 % of the short side, as VOC's 5 px at 500 px)."""
    return max(1, round(0.005 * min(height, width)))


# --------------------------------------------------------------------------- figures (metres)


def _aeroplane(cv: Canvas, fr: Frame, reg: int, rng) -> None:
    body = random_colour(rng)
    trim = random_colour(rng)
    glass = glass_colour(rng)
    cv.paint(fr.poly([(-1.2, 0.9), (-2.6, 0.5), (-0.2, 0.45), (0.6, 0.9)]), jitter(rng, body, 0.25), reg)  # far wing
    cv.paint(fr.capsule(-3.0, 1.1, 2.6, 1.0, 0.32, 0.45), body, reg)  # fuselage
    cv.paint(fr.ellipse(2.85, 0.98, 0.55, 0.4), body, reg)  # nose
    cv.paint(fr.poly([(-3.3, 1.2), (-2.2, 1.3), (-3.0, 2.7), (-3.5, 2.7)]), trim, reg)  # fin
    cv.paint(fr.poly([(-3.3, 1.05), (-2.5, 1.05), (-3.6, 0.55), (-3.9, 0.55)]), body, reg)  # tail plane
    for i in range(10):
        cv.paint(fr.disk(-1.8 + 0.4 * i, 1.22, 0.07), glass, reg)
    cv.paint(fr.poly([(2.6, 1.15), (3.15, 1.05), (2.9, 1.3), (2.55, 1.33)]), glass, reg)
    cv.paint(fr.poly([(-0.8, 0.85), (0.8, 0.85), (-0.3, -0.3), (-1.0, -0.3)]), jitter(rng, body, 0.1), reg)  # wing
    cv.paint(fr.capsule(-0.4, 0.35, 0.4, 0.35, 0.2), trim, reg)  # engine
    cv.paint(fr.rect(-3.0, 0.9, 2.6, 1.0), trim, reg)  # cheat line


def _bird(cv: Canvas, fr: Frame, reg: int, rng) -> None:
    body = random_colour(rng)
    wing = jitter(rng, random_colour(rng), 0.1)
    beak = hsv(0.1 + 0.05 * rng.random(), 0.7, 0.8)
    flying = rng.random() < 0.35
    cv.paint(fr.ellipse(0.0, 0.5, 0.42, 0.24, 0.25), body, reg)
    cv.paint(fr.poly([(-0.35, 0.4), (-0.8, 0.2), (-0.78, 0.38), (-0.3, 0.6)]), jitter(rng, body, 0.2), reg)  # tail
    cv.paint(fr.disk(0.42, 0.78, 0.17), body, reg)
    cv.paint(fr.poly([(0.55, 0.83), (0.78, 0.76), (0.55, 0.72)]), beak, reg)
    cv.paint(fr.disk(0.47, 0.83, 0.035), dark_colour(rng), reg)
    if flying:
        cv.paint(fr.poly([(-0.15, 0.6), (0.25, 0.62), (0.0, 1.25), (-0.45, 1.15)]), wing, reg)
    else:
        cv.paint(fr.ellipse(-0.08, 0.5, 0.3, 0.15, 0.3), wing, reg)
        for lx in (-0.05, 0.08):
            cv.paint(fr.capsule(lx, 0.3, lx, 0.0, 0.025), beak, reg)


def _boat(cv: Canvas, fr: Frame, reg: int, rng) -> None:
    hull = random_colour(rng)
    cv.paint(fr.poly([(-1.8, 0.75), (2.0, 0.8), (1.3, 0.0), (-1.5, 0.0)]), hull, reg)
    cv.paint(fr.rect(-1.75, 0.6, 1.9, 0.72), random_colour(rng), reg)
    cv.paint(fr.rect(-0.9, 0.75, 0.4, 1.25), random_colour(rng), reg)  # cabin
    for i in range(3):
        cv.paint(fr.rect(-0.75 + 0.4 * i, 0.92, -0.5 + 0.4 * i, 1.12), glass_colour(rng), reg)
    if rng.random() < 0.6:  # sailing boat
        cv.paint(fr.capsule(0.6, 0.75, 0.6, 3.2, 0.04), dark_colour(rng), reg)
        sail = random_colour(rng)
        cv.paint(fr.poly([(0.65, 3.1), (0.65, 0.95), (1.8, 0.95)]), sail, reg)
        cv.paint(fr.poly([(0.55, 2.9), (0.55, 1.3), (-0.5, 1.3)]), jitter(rng, sail, 0.2), reg)


def _bottle(cv: Canvas, fr: Frame, reg: int, rng) -> None:
    glass = random_colour(rng)
    cv.paint(fr.rect(-0.17, 0.0, 0.17, 0.6), glass, reg)
    cv.paint(fr.ellipse(0.0, 0.6, 0.17, 0.12), glass, reg)
    cv.paint(fr.rect(-0.06, 0.6, 0.06, 0.92), glass, reg)
    cv.paint(fr.rect(-0.07, 0.9, 0.07, 1.0), random_colour(rng), reg)  # cap
    cv.paint(fr.rect(-0.17, 0.15, 0.17, 0.42), random_colour(rng), reg)  # label
    cv.paint(fr.rect(-0.12, 0.05, -0.08, 0.55), jitter(rng, glass, 0.5), reg)  # highlight


def _chair(cv: Canvas, fr: Frame, reg: int, rng) -> None:
    wood = random_colour(rng)
    dark = jitter(rng, wood, 0.3) * 0.8
    for x, d in ((-0.2, 0.08), (0.24, 0.08), (-0.14, 0.0), (0.3, 0.0)):
        cv.paint(fr.capsule(x, 0.0 + d, x, 0.45, 0.03), dark if d else wood, reg)
    cv.paint(fr.poly([(-0.24, 0.45), (0.28, 0.45), (0.34, 0.52), (-0.18, 0.52)]), wood, reg)  # seat
    cv.paint(fr.capsule(-0.21, 0.5, -0.21, 0.98, 0.03), wood, reg)
    cv.paint(fr.capsule(0.25, 0.5, 0.25, 0.98, 0.03), wood, reg)
    cv.paint(fr.rect(-0.22, 0.7, 0.26, 0.96), jitter(rng, wood, 0.15), reg)  # back


def _table(cv: Canvas, fr: Frame, reg: int, rng) -> None:
    wood = random_colour(rng)
    cloth = rng.random() < 0.4
    top = [(-1.0, 0.72), (1.0, 0.72), (0.8, 0.9), (-0.8, 0.9)]
    for x in (-0.9, 0.9, -0.7, 0.7):
        cv.paint(fr.capsule(x, 0.0 if abs(x) > 0.8 else 0.12, x, 0.72, 0.04), jitter(rng, wood, 0.2), reg)
    cv.paint(fr.poly(top), wood, reg)
    cv.paint(fr.rect(-1.0, 0.62 if cloth else 0.67, 1.0, 0.72), jitter(rng, wood, 0.2), reg)
    for _ in range(int(rng.integers(1, 4))):  # plates
        x = -0.6 + 1.2 * rng.random()
        cv.paint(fr.ellipse(x, 0.81, 0.14, 0.035), hsv(0, 0, 0.75 + 0.2 * rng.random()), reg)


def _sofa(cv: Canvas, fr: Frame, reg: int, rng) -> None:
    cover = random_colour(rng)
    shade = jitter(rng, cover, 0.15) * 0.85
    cv.paint(fr.rect(-1.0, 0.45, 1.0, 0.9), shade, reg)  # back
    cv.paint(fr.ellipse(-0.5, 0.88, 0.5, 0.06), shade, reg)
    cv.paint(fr.ellipse(0.5, 0.88, 0.5, 0.06), shade, reg)
    cv.paint(fr.rect(-1.0, 0.1, 1.0, 0.47), cover, reg)  # seat
    cv.paint(fr.capsule(-0.05, 0.46, 0.05, 0.46, 0.02), dark_colour(rng), reg)
    for x in (-1.02, 1.02):
        cv.paint(fr.capsule(x, 0.15, x, 0.58, 0.12), jitter(rng, cover, 0.1), reg)  # arms
        cv.paint(fr.rect(x - 0.05, 0.0, x + 0.05, 0.1), dark_colour(rng), reg)  # feet
    if rng.random() < 0.5:
        cv.paint(fr.ellipse(-0.6 + 1.2 * rng.random(), 0.62, 0.2, 0.15, 0.2), random_colour(rng), reg)  # cushion


def _plant(cv: Canvas, fr: Frame, reg: int, rng) -> None:
    pot = random_colour(rng)
    leaf = random_colour(rng)
    n = 6 + int(rng.integers(0, 6))
    for i in range(n):
        a = math.pi * (0.1 + 0.8 * (i + rng.random()) / n)
        L = 0.35 + 0.35 * rng.random()
        cx, cy = math.cos(a) * L * 0.6, 0.4 + math.sin(a) * L * 0.8
        cv.paint(fr.capsule(0.0, 0.38, cx, cy, 0.012), jitter(rng, leaf, 0.3), reg)
        cv.paint(fr.ellipse(cx, cy, 0.17, 0.06, a), jitter(rng, leaf, 0.25), reg)
    cv.paint(fr.poly([(-0.15, 0.0), (0.15, 0.0), (0.21, 0.38), (-0.21, 0.38)]), pot, reg)
    cv.paint(fr.rect(-0.23, 0.33, 0.23, 0.4), jitter(rng, pot, 0.2), reg)


def _monitor(cv: Canvas, fr: Frame, reg: int, rng) -> None:
    bezel = dark_colour(rng) if rng.random() < 0.7 else random_colour(rng)
    cv.paint(fr.rect(-0.22, 0.0, 0.22, 0.04), bezel, reg)  # foot
    cv.paint(fr.rect(-0.05, 0.0, 0.05, 0.25), bezel, reg)  # neck
    cv.paint(fr.rect(-0.5, 0.2, 0.5, 0.85), bezel, reg)
    a, b = random_colour(rng), random_colour(rng)
    scr = fr.rect(-0.46, 0.24, 0.46, 0.81)
    if scr is not None:  # screen content: a smooth two-colour gradient
        gy, gx = scr.grid()
        t = ((gx - gx.min()) / max(float(gx.max() - gx.min()), 1.0))[..., None] * np.ones_like(gy)[..., None]
        cv.paint(scr, a * (1 - t) + b * t, reg)
    cv.paint(fr.disk(0.43, 0.22, 0.015), hsv(0.3, 0.8, 0.8), reg)


# quadrupeds: body length, body depth, leg length, neck rise, head size, ears, tail, head shape (metres)
_ANIMALS = {
    CAT: dict(L=0.5, depth=0.17, leg=0.19, neck=0.06, head=0.15, ears="pointy", tail="long", head_shape="round"),
    DOG: dict(L=0.75, depth=0.27, leg=0.33, neck=0.18, head=0.24, ears="floppy", tail="up", head_shape="muzzle"),
    HORSE: dict(L=1.6, depth=0.6, leg=0.95, neck=0.7, head=0.5, ears="small", tail="hang", head_shape="long"),
    COW: dict(L=1.7, depth=0.8, leg=0.7, neck=0.15, head=0.45, ears="horns", tail="hang", head_shape="long"),
    SHEEP: dict(L=1.0, depth=0.55, leg=0.4, neck=0.15, head=0.3, ears="small", tail="short", head_shape="muzzle"),
}


def _quadruped(cls: int):
    p = _ANIMALS[cls]

    def draw(cv: Canvas, fr: Frame, reg: int, rng) -> None:
        coat = random_colour(rng)
        far = jitter(rng, coat, 0.1) * 0.8
        L, D, leg = p["L"], p["depth"], p["leg"]
        cy = leg + D / 2
        r = 0.05 * L + 0.02
        for x, col in ((-0.32 * L, far), (0.3 * L, far)):  # far legs
            cv.paint(fr.capsule(x + 0.05 * L, cy, x + 0.04 * L, 0.02, r, r * 0.8), col, reg)
        if p["tail"] == "long":
            pts = [(-0.5 * L, cy), (-0.72 * L, cy + 0.1 * L), (-0.85 * L, cy + 0.35 * L), (-0.8 * L, cy + 0.6 * L)]
            for a, b in zip(pts[:-1], pts[1:]):
                cv.paint(fr.capsule(a[0], a[1], b[0], b[1], 0.025), coat, reg)
        elif p["tail"] == "up":
            cv.paint(fr.capsule(-0.48 * L, cy + 0.05, -0.68 * L, cy + 0.3, 0.035, 0.02), coat, reg)
        elif p["tail"] == "hang":
            cv.paint(fr.capsule(-0.5 * L, cy + 0.2 * D, -0.6 * L, leg * 0.5, 0.04 * L, 0.03 * L), far, reg)
        if cls == SHEEP:  # fleece: overlapping puffs
            fleece = hsv(0.1, 0.1 * rng.random(), 0.6 + 0.3 * rng.random()) if rng.random() < 0.6 else coat
            for i in range(7):
                fx = -0.4 * L + 0.8 * L * i / 6
                for fy in (cy - 0.15 * D, cy + 0.15 * D):
                    cv.paint(fr.disk(fx, fy, 0.3 * D), jitter(rng, fleece, 0.08), reg)
        else:
            cv.paint(fr.ellipse(0.0, cy, 0.52 * L, D / 2), coat, reg)
            if cls == COW and rng.random() < 0.7:  # patches
                spot = random_colour(rng)
                for _ in range(3):
                    cv.paint(fr.ellipse((rng.random() - 0.5) * 0.7 * L, cy + (rng.random() - 0.5) * 0.4 * D,
                                        0.12 * L, 0.1 * L), spot, reg)
        for x in (-0.38 * L, 0.36 * L):  # near legs
            leg = coat if cls != SHEEP else dark_colour(rng)
            cv.paint(fr.capsule(x, cy, x - 0.02 * L, 0.02, r * 1.1, r * 0.85), leg, reg)
        # neck and head
        hl = p["head"]
        nx, ny = 0.42 * L, cy + 0.15 * D
        hx, hy = 0.5 * L + 0.3 * hl, cy + D / 2 + p["neck"]
        head_col = coat if cls != SHEEP else dark_colour(rng)
        neck_r = (0.3 if cls == HORSE else 0.22) * D
        cv.paint(fr.capsule(nx, ny, hx, hy, neck_r, 0.6 * neck_r), coat if cls != SHEEP else head_col, reg)
        if cls == HORSE:  # mane
            mane = dark_colour(rng)
            cv.paint(fr.capsule(nx - 0.1 * D, ny + 0.45 * D, hx - 0.1 * hl, hy + 0.15 * hl, 0.06 * D), mane, reg)
        if p["head_shape"] == "round":
            cv.paint(fr.disk(hx + 0.1 * hl, hy, 0.5 * hl), head_col, reg)
            cv.paint(fr.ellipse(hx + 0.5 * hl, hy - 0.18 * hl, 0.22 * hl, 0.16 * hl), jitter(rng, head_col, 0.15), reg)
            tip = (hx + 0.7 * hl, hy - 0.15 * hl)
        elif p["head_shape"] == "muzzle":
            cv.paint(fr.disk(hx, hy, 0.42 * hl), head_col, reg)
            cv.paint(fr.ellipse(hx + 0.45 * hl, hy - 0.14 * hl, 0.42 * hl, 0.21 * hl), head_col, reg)
            tip = (hx + 0.85 * hl, hy - 0.1 * hl)
        else:  # long head, nose down
            cv.paint(fr.capsule(hx, hy, hx + 0.75 * hl, hy - 0.5 * hl, 0.3 * hl, 0.2 * hl), head_col, reg)
            tip = (hx + 0.85 * hl, hy - 0.55 * hl)
        cv.paint(fr.disk(tip[0], tip[1], 0.08 * hl), dark_colour(rng), reg)  # nose
        cv.paint(fr.disk(hx + 0.15 * hl, hy + 0.1 * hl, 0.07 * hl), dark_colour(rng), reg)  # eye
        if p["ears"] == "pointy":
            for a in (-0.3, 0.15):
                cv.paint(fr.poly([(hx + (a - 0.12) * hl, hy + 0.35 * hl), (hx + (a + 0.02) * hl, hy + 0.85 * hl),
                                  (hx + (a + 0.2) * hl, hy + 0.38 * hl)]), head_col, reg)
        elif p["ears"] == "floppy":
            ear = jitter(rng, head_col, 0.3)
            cv.paint(fr.ellipse(hx - 0.2 * hl, hy - 0.1 * hl, 0.14 * hl, 0.36 * hl, 0.3), ear, reg)
        elif p["ears"] == "horns":
            for a in (-0.15, 0.1):
                cv.paint(fr.capsule(hx + a * hl, hy + 0.2 * hl, hx + (a - 0.2) * hl, hy + 0.6 * hl,
                                    0.06 * hl, 0.03 * hl),
                         hsv(0.12, 0.2, 0.85), reg)
            cv.paint(fr.ellipse(hx - 0.35 * hl, hy + 0.05 * hl, 0.22 * hl, 0.08 * hl, -0.3), head_col, reg)
        else:
            cv.paint(fr.poly([(hx - 0.2 * hl, hy + 0.2 * hl), (hx - 0.1 * hl, hy + 0.55 * hl),
                              (hx + 0.05 * hl, hy + 0.25 * hl)]),
                     head_col, reg)

    return draw


def _person(cv, fr, reg, rng):
    figures.person(cv, fr, reg, rng, height=1.75)


def _car(cv, fr, reg, rng):
    figures.car_side(cv, fr, reg, rng)


def _bus(cv, fr, reg, rng):
    figures.bus_side(cv, fr, reg, rng, length=11.0)


def _train(cv, fr, reg, rng):
    figures.bus_side(cv, fr, reg, rng, length=18.0, height=3.6, train=True)


def _bicycle(cv, fr, reg, rng):
    figures.bicycle(cv, fr, reg, rng, thick=1.8)


def _motorbike(cv, fr, reg, rng):
    figures.motorbike(cv, fr, reg, rng)


#: class -> (draw function, half width, height) in the figure's local units (metres)
FIGURES = {
    AEROPLANE: (_aeroplane, 3.9, 2.8), BICYCLE: (_bicycle, 0.9, 1.1), BIRD: (_bird, 0.8, 1.0), BOAT: (_boat, 2.0, 1.4),
    BOTTLE: (_bottle, 0.18, 1.0), BUS: (_bus, 5.6, 3.2), CAR: (_car, 2.2, 1.6), CAT: (_quadruped(CAT), 0.5, 0.65),
    CHAIR: (_chair, 0.35, 1.0), COW: (_quadruped(COW), 1.2, 1.9), DININGTABLE: (_table, 1.05, 0.95),
    DOG: (_quadruped(DOG), 0.65, 1.05), HORSE: (_quadruped(HORSE), 1.4, 2.4), MOTORBIKE: (_motorbike, 1.05, 1.15),
    PERSON: (_person, 0.4, 1.85), POTTEDPLANT: (_plant, 0.45, 1.0), SHEEP: (_quadruped(SHEEP), 0.8, 1.3),
    SOFA: (_sofa, 1.15, 0.92), TRAIN: (_train, 9.0, 3.6), TVMONITOR: (_monitor, 0.5, 0.86),
}
#: classes that are often seen against the sky, high in the image
FLYING = (AEROPLANE, BIRD)
#: classes that are usually outdoors
OUTDOOR = (AEROPLANE, BOAT, BUS, CAR, COW, HORSE, SHEEP, TRAIN, MOTORBIKE, BICYCLE)


# --------------------------------------------------------------------------- background


def _background(cv: Canvas, rng, outdoor: bool) -> float:
    """Paint the background regions (all class 0); returns the floor / ground line (0..1)."""
    H, W = cv.size
    size = cv.size
    u = rng.random(6)
    line = 0.35 + 0.4 * u[0]
    tilt = (u[1] - 0.5) * 0.15
    upper = cv.add_region(BACKGROUND, rng)
    lower = cv.add_region(BACKGROUND, rng)
    top_c = random_colour(rng)
    if outdoor and u[2] < 0.7:  # a sky
        top_c = hsv(0.55 + 0.08 * u[3], 0.1 + 0.4 * u[4], 0.65 + 0.3 * u[5])
    v = (np.arange(H, dtype=np.float32) + 0.5)[:, None, None] / H
    grad = top_c * (0.9 + 0.2 * v)
    cv.paint(rect(size, 0, 0, W, H), np.broadcast_to(grad, (H, W, 3)), upper)
    yl, yr = (line - tilt) * H, (line + tilt) * H
    cv.paint(polygon(size, [(0, yl), (W, yr), (W, H + 1), (0, H + 1)]),
             np.broadcast_to(random_colour(rng) * (0.8 + 0.3 * v), (H, W, 3)), lower)
    n = 3 + int(rng.integers(0, 8))
    for _ in range(n):
        reg = cv.add_region(BACKGROUND, rng)
        c = random_colour(rng)
        alt, glass = jitter(rng, c, 0.35), glass_colour(rng)  # drawn whether or not the shape is seen
        k = int(rng.integers(0, 6))
        a = rng.random(6)
        x0, y0 = a[0] * W, a[1] * H
        sw, sh = (0.1 + 0.4 * a[2]) * W, (0.1 + 0.4 * a[3]) * H
        if outdoor:
            if k <= 1:  # hill
                xs = np.linspace(x0 - sw, x0 + sw, 9)
                ys = line * H - sh * 0.5 * np.sin(np.linspace(0, math.pi, 9)) * (0.6 + 0.4 * a[4])
                cv.paint(polygon(size, list(zip(xs, ys)) + [(x0 + sw, line * H + 2), (x0 - sw, line * H + 2)]), c, reg)
            elif k == 2:  # building silhouette with windows
                bx0, bx1 = x0, x0 + sw * 0.5
                top = line * H - sh
                shp = rect(size, bx0, top, bx1, line * H + 1)
                if shp is not None:
                    gy, gx = shp.grid()
                    win = (((gx - bx0) % max(sw * 0.08, 3) < max(sw * 0.04, 1.5))
                           & ((gy - top) % max(sh * 0.1, 3) < max(sh * 0.05, 1.5)))
                    cv.paint(shp, np.where(win[..., None], glass, c), reg)
            elif k == 3:  # tree silhouette
                cx = x0
                trunk = dark_colour(rng)
                cv.paint(rect(size, cx - 0.01 * W, line * H - sh * 0.6, cx + 0.01 * W, line * H + 1), trunk, reg)
                for i in range(4):
                    b = rng.random(3)
                    cv.paint(polygon(size, _blob(cx + (b[0] - 0.5) * sw * 0.4, line * H - sh * (0.6 + 0.4 * b[1]),
                                                 sw * 0.2 * (0.7 + 0.5 * b[2]), sh * 0.25)), jitter(rng, c, 0.15), reg)
            else:  # ground patch / path / water
                cv.paint(polygon(size, [(x0 - sw, H + 1), (x0 + sw, H + 1), (x0 + sw * 0.2, line * H),
                                        (x0 - sw * 0.1, line * H)]), c, reg)
        else:
            if k == 0:  # window with frame
                shp = rect(size, x0, y0, x0 + sw * 0.5, y0 + sh * 0.6)
                cv.paint(shp, c, reg)
                cv.paint(rect(size, x0 + 0.06 * sw, y0 + 0.06 * sh, x0 + 0.44 * sw, y0 + 0.54 * sh),
                         hsv(0.58, 0.2 * a[4], 0.6 + 0.35 * a[5]), reg)
            elif k == 1:  # picture frame
                cv.paint(rect(size, x0, y0, x0 + sw * 0.3, y0 + sh * 0.3), c, reg)
                art = random_colour(rng)
                cv.paint(rect(size, x0 + 0.03 * sw, y0 + 0.03 * sh, x0 + 0.27 * sw, y0 + 0.27 * sh), art, reg)
            elif k == 2:  # shelf / cupboard with lines
                shp = rect(size, x0, y0, x0 + sw * 0.6, y0 + sh)
                if shp is not None:
                    gy, gx = shp.grid()
                    lines = ((gy - y0) % max(sh * 0.25, 4)) < max(sh * 0.03, 1.2)
                    cv.paint(shp, np.where(lines[..., None], alt, c), reg)
            elif k == 3:  # rug on the floor
                cv.paint(ellipse(size, x0, max(y0, line * H + sh * 0.2), sw * 0.6, sh * 0.25), c, reg)
            elif k == 4:  # door
                cv.paint(rect(size, x0, line * H - sh * 1.6, x0 + sw * 0.35, line * H + 1), c, reg)
            else:  # stripes / curtain
                shp = rect(size, x0, 0, x0 + sw * 0.5, line * H)
                if shp is not None:
                    gy, gx = shp.grid()
                    stripes = ((gx - x0) % max(sw * 0.1, 4)) < max(sw * 0.05, 2)
                    cv.paint(shp, np.where(stripes[..., None], alt, c), reg)
    return line


def _blob(cx, cy, rx, ry, n: int = 12):
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    wob = 1.0 + 0.15 * np.sin(3 * t + cx)
    return list(zip(cx + rx * wob * np.cos(t), cy + ry * wob * np.sin(t)))


# --------------------------------------------------------------------------- the scene


def layout(cv: Canvas, rng) -> np.ndarray:
    """Paint one objects scene from the layout stream; returns the light field."""
    H, W = cv.size
    short = min(H, W)
    n = int(rng.choice([1, 2, 3, 4], p=[0.25, 0.3, 0.25, 0.2]))
    classes = rng.integers(1, NUM_CLASSES, size=n)
    outdoor = bool(np.mean([c in OUTDOOR for c in classes]) >= 0.5) if rng.random() < 0.85 else bool(rng.random() < 0.5)
    line = _background(cv, rng, outdoor)
    placed = []
    for i, cls in enumerate(classes):
        u = rng.random(6)
        fn, hw, hh = FIGURES[int(cls)]
        share = (0.5 + 0.4 * u[0]) if n == 1 else (0.35 + 0.35 * u[0]) if n == 2 else (0.25 + 0.3 * u[0])
        # Fit the figure's height to share * short side, unless its width would be larger
        # than 1.1 x the image width (long vehicles): then fit that.
        scale = min(share * short / hh, (0.55 + 0.55 * u[1]) * W / (2 * hw))
        x = (0.15 + 0.7 * u[2]) * W
        if int(cls) in FLYING and u[3] < 0.6:
            y = (0.25 + 0.5 * u[4]) * H + 0.5 * hh * scale
        else:
            y = min((line + (1.0 - line) * (0.2 + 0.9 * u[4])) * H, H + 0.1 * hh * scale)
        placed.append((y, i, int(cls), x, scale, u[5] < 0.5))
    placed.sort()
    for y, i, cls, x, scale, mirror in placed:
        reg = cv.add_region(cls, rng, instance=i + 1)
        FIGURES[cls][0](cv, Frame(cv.size, (x, y), scale, mirror), reg, rng)
    return lighting(rng, cv.size, smooth=0.08, gradient=0.25, vignette=0.3)


def render(seed: int, height: int, width: int, shuffle: bool) -> tuple[np.ndarray, np.ndarray]:
    """Image float32 (3, H, W) in [0, 1] and labels int64 (H, W) of objects scene ``seed``."""
    return render_world(NAME, layout, TEXTURES, NUM_CLASSES, seed, height, width, shuffle,
                        band_half_width=band_half_width(height, width))
