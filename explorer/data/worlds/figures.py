"""Figures drawn by both worlds: people, riders, bicycles, motorbikes, side-view vehicles.

Each figure is written once in metres, in a local :class:`~explorer.data.worlds.draw.Frame`
(x right, y up, origin on the ground under the figure's centre) and painted into one
canvas region (its parts — a face, a tyre, a window — get their own colours but share the
region's label and texture).  The street world places figures with a perspective scale
(pixels per metre = focal / depth), the objects world with a scale that fills a chosen
share of the image.  Poses and proportions are drawn from the caller's layout generator.
"""
from __future__ import annotations

import numpy as np

from explorer.data.worlds.draw import Canvas, Frame, dark_colour, glass_colour, jitter, random_colour, skin_colour


def person(cv: Canvas, fr: Frame, region: int, rng: np.random.Generator, *, height: float | None = None,
           side_view: bool = False) -> None:
    """A standing or walking person (front or side view), feet at the frame origin."""
    u = rng.random(12)
    k = (1.5 + 0.45 * u[0] if height is None else height) / 1.75
    top, bottom = random_colour(rng), random_colour(rng)
    skin, hair, shoes = skin_colour(rng), dark_colour(rng), dark_colour(rng)
    stride = (0.05 + 0.25 * u[1]) * k
    swing = (0.02 + 0.15 * u[2]) * k
    hip_y, sh_y = 0.9 * k, 1.43 * k
    half_sh = (0.2 + 0.05 * u[3]) * k * (0.55 if side_view else 1.0)
    half_hip = (0.15 + 0.03 * u[4]) * k * (0.65 if side_view else 1.0)
    leg_r = 0.065 * k
    if side_view:
        feet = ((-stride, 0.05 * k), (stride, 0.05 * k))
        hips = ((0.0, hip_y), (0.0, hip_y))
    else:
        feet = ((-0.11 * k - 0.3 * stride * (u[5] - 0.5), 0.05 * k), (0.11 * k + 0.3 * stride * (u[6] - 0.5), 0.05 * k))
        hips = ((-0.09 * k, hip_y), (0.09 * k, hip_y))
    for (fx, fy), (hx, hy) in zip(feet, hips):
        cv.paint(fr.capsule(hx, hy, fx, fy + 0.04 * k, leg_r * 1.15, leg_r * 0.8), bottom, region)
        cv.paint(fr.ellipse(fx + (0.05 * k if side_view else 0.0), 0.035 * k, 0.09 * k, 0.045 * k), shoes, region)
    skirt = u[7] < 0.2
    if skirt:
        cv.paint(fr.poly([(-half_hip * 1.5, 0.55 * k), (half_hip * 1.5, 0.55 * k), (half_hip, hip_y + 0.05 * k),
                          (-half_hip, hip_y + 0.05 * k)]), bottom, region)
    coat = u[8] < 0.3
    low = (0.62 if coat else 0.84) * k
    torso = [(-half_hip, low), (half_hip, low), (half_sh, sh_y), (half_sh * 0.6, sh_y + 0.06 * k),
             (-half_sh * 0.6, sh_y + 0.06 * k), (-half_sh, sh_y)]
    cv.paint(fr.poly(torso), top, region)
    arm = jitter(rng, top, 0.1)
    for side in (-1.0, 1.0):
        sx = side * half_sh * 0.95 if not side_view else 0.0
        hand_x = sx + side * 0.05 * k + (swing * side if side_view else swing * (u[9] - 0.5))
        hand_y = 0.82 * k + 0.1 * k * u[10]
        cv.paint(fr.capsule(sx, sh_y - 0.03 * k, hand_x, hand_y, 0.055 * k, 0.045 * k), arm, region)
        cv.paint(fr.disk(hand_x, hand_y - 0.02 * k, 0.045 * k), skin, region)
    cv.paint(fr.capsule(0.0, sh_y, 0.0, sh_y + 0.1 * k, 0.045 * k), skin, region)
    head_y = sh_y + 0.2 * k
    cv.paint(fr.ellipse(0.0, head_y, 0.095 * k, 0.12 * k), skin, region)
    cv.paint(fr.ellipse(-0.02 * k if side_view else 0.0, head_y + 0.05 * k, 0.1 * k, 0.075 * k), hair, region)
    if u[11] < 0.25:  # a bag
        bag = random_colour(rng)
        bx = (half_sh + 0.08 * k) * (1 if u[11] < 0.12 else -1)
        cv.paint(fr.rect(bx - 0.1 * k, 0.75 * k, bx + 0.1 * k, 1.0 * k), bag, region)


def bicycle(cv: Canvas, fr: Frame, region: int, rng: np.random.Generator, thick: float = 1.0) -> dict:
    """A bicycle in side view (wheel base 1.05 m), wheels on the ground; returns the saddle
    and handlebar positions (for a rider).  ``thick`` scales tubes and tyres (close-ups)."""
    frame_col = random_colour(rng)
    tyre = dark_colour(rng)
    r, t = 0.34, 0.05 * thick
    rear, front = (-0.52, r), (0.53, r)
    bb = (-0.03, 0.3)
    seat = (-0.2, 0.83)
    head = (0.4, 0.86)
    head_low = (0.43, 0.72)
    tube = 0.025 * thick
    for cx, cy in (rear, front):
        cv.paint(fr.ring(cx, cy, r, t), tyre, region)
        cv.paint(fr.capsule(cx - r * 0.7, cy, cx + r * 0.7, cy, 0.008), tyre, region)  # spokes
        cv.paint(fr.capsule(cx, cy - r * 0.7, cx, cy + r * 0.7, 0.008), tyre, region)
        cv.paint(fr.disk(cx, cy, 0.04), frame_col, region)
    for a, b in ((rear, bb), (rear, seat), (bb, seat), (seat, head), (bb, head_low), (head, front), (head_low, front)):
        cv.paint(fr.capsule(a[0], a[1], b[0], b[1], tube), frame_col, region)
    saddle = (seat[0] - 0.03, seat[1] + 0.1)
    cv.paint(fr.capsule(seat[0], seat[1], saddle[0], saddle[1], tube * 0.8), frame_col, region)
    cv.paint(fr.capsule(saddle[0] - 0.1, saddle[1] + 0.02, saddle[0] + 0.08, saddle[1] + 0.02, 0.035), tyre, region)
    bar = (head[0] - 0.05, head[1] + 0.16)
    cv.paint(fr.capsule(head[0], head[1], bar[0], bar[1], tube), frame_col, region)
    cv.paint(fr.capsule(bar[0], bar[1], bar[0] - 0.12, bar[1] + 0.02, tube), tyre, region)
    cv.paint(fr.disk(bb[0], bb[1], 0.07), frame_col, region)
    return {"saddle": saddle, "bar": bar, "pedal": (bb[0] + 0.1, bb[1] - 0.08)}


def motorbike(cv: Canvas, fr: Frame, region: int, rng: np.random.Generator) -> dict:
    """A motorbike in side view (wheel base 1.4 m); returns saddle and handlebar positions."""
    body = random_colour(rng)
    tyre = dark_colour(rng)
    metal = jitter(rng, np.array([0.55, 0.55, 0.55], np.float32), 0.3)
    r = 0.32
    rear, front = (-0.7, r), (0.7, r)
    for cx, cy in (rear, front):
        cv.paint(fr.ring(cx, cy, r, 0.1), tyre, region)
        cv.paint(fr.disk(cx, cy, 0.13), metal, region)
    cv.paint(fr.poly([(-0.35, 0.3), (0.3, 0.28), (0.45, 0.55), (0.2, 0.75), (-0.3, 0.7)]), jitter(rng, metal), region)
    cv.paint(fr.ellipse(0.12, 0.8, 0.3, 0.13, -0.1), body, region)  # tank
    cv.paint(fr.poly([(-0.85, 0.72), (-0.2, 0.82), (-0.2, 0.72), (-0.75, 0.6)]), body, region)  # tail
    cv.paint(fr.capsule(-0.55, 0.84, -0.1, 0.86, 0.06), dark_colour(rng), region)  # seat
    cv.paint(fr.capsule(0.7, r, 0.45, 1.0, 0.035), metal, region)  # fork
    cv.paint(fr.capsule(0.45, 1.0, 0.3, 1.08, 0.03), tyre, region)
    cv.paint(fr.ellipse(0.62, 0.92, 0.08, 0.1), jitter(rng, np.array([0.9, 0.9, 0.8], np.float32)), region)
    cv.paint(fr.capsule(-0.3, 0.3, -0.9, 0.38, 0.045), metal, region)  # exhaust
    return {"saddle": (-0.3, 0.9), "bar": (0.3, 1.08), "pedal": (-0.05, 0.35)}


def rider(cv: Canvas, fr: Frame, region: int, rng: np.random.Generator, mount: dict) -> None:
    """A person seated on a bicycle or motorbike (side view), given the mount's key points."""
    top, bottom = random_colour(rng), random_colour(rng)
    skin, hair = skin_colour(rng), dark_colour(rng)
    sx, sy = mount["saddle"]
    bx, by = mount["bar"]
    px, py = mount["pedal"]
    hip = (sx, sy + 0.06)
    shoulder = (sx + 0.35 * (bx - sx) + 0.05, sy + 0.6)
    knee = (sx + 0.45 * (bx - sx) + 0.1, sy - 0.02)
    cv.paint(fr.capsule(hip[0], hip[1], knee[0], knee[1], 0.08, 0.07), bottom, region)
    cv.paint(fr.capsule(knee[0], knee[1], px, py + 0.05, 0.065, 0.05), bottom, region)
    cv.paint(fr.ellipse(px + 0.05, py, 0.1, 0.045), dark_colour(rng), region)
    cv.paint(fr.capsule(hip[0], hip[1] + 0.05, shoulder[0], shoulder[1], 0.15, 0.13), top, region)
    cv.paint(fr.capsule(shoulder[0], shoulder[1], bx, by + 0.02, 0.055, 0.045), jitter(rng, top), region)
    cv.paint(fr.disk(bx, by + 0.02, 0.045), skin, region)
    head = (shoulder[0] + 0.08, shoulder[1] + 0.2)
    cv.paint(fr.ellipse(head[0], head[1], 0.1, 0.12), skin, region)
    if rng.random() < 0.5:  # helmet
        cv.paint(fr.ellipse(head[0] - 0.01, head[1] + 0.04, 0.13, 0.1), random_colour(rng), region)
    else:
        cv.paint(fr.ellipse(head[0] - 0.02, head[1] + 0.05, 0.105, 0.075), hair, region)


def car_side(cv: Canvas, fr: Frame, region: int, rng: np.random.Generator, *, length: float = 4.3) -> None:
    """A car in side view, front to the right, wheels on the ground at the frame origin."""
    u = rng.random(4)
    body = random_colour(rng)
    glass = glass_colour(rng)
    tyre = dark_colour(rng)
    L = length
    h = 1.35 + 0.25 * u[0]
    belt = 0.55 * h + 0.1
    hatch = u[1] < 0.4
    cv.paint(fr.poly([(-L / 2, 0.3), (L / 2 - 0.1, 0.28), (L / 2, 0.45), (L / 2 - 0.05, belt - 0.05),
                      (L / 2 - 0.6, belt + 0.02), (-L / 2 + 0.1, belt + 0.05), (-L / 2 - 0.03, 0.55)]), body, region)
    r0 = -L / 2 + (0.15 if hatch else 0.55)
    cabin = [(r0, belt), (L / 2 - 1.35, belt), (L / 2 - 1.9, h), (r0 + (0.25 if hatch else 0.55), h)]
    cv.paint(fr.poly(cabin), body, region)
    inset = 0.08
    win = [(r0 + inset + 0.1, belt + inset), (L / 2 - 1.35 - inset * 2, belt + inset),
           (L / 2 - 1.9 - inset, h - inset), (r0 + (0.25 if hatch else 0.55) + inset, h - inset)]
    cv.paint(fr.poly(win), glass, region)
    pillar = (win[0][0] + win[1][0]) / 2 + 0.1
    cv.paint(fr.capsule(pillar, belt + inset, pillar - 0.1, h - inset, 0.045), body, region)
    cv.paint(fr.capsule(-L / 2 + 0.2, belt - 0.25, L / 2 - 0.2, belt - 0.25, 0.012), jitter(rng, body, 0.3), region)
    cv.paint(fr.ellipse(L / 2 - 0.08, belt - 0.15, 0.08, 0.06), np.array([0.92, 0.9, 0.75], np.float32), region)
    cv.paint(fr.ellipse(-L / 2 + 0.04, belt - 0.1, 0.05, 0.07), np.array([0.75, 0.1, 0.08], np.float32), region)
    rw = 0.33
    hub = jitter(rng, np.array([0.6, 0.6, 0.62], np.float32), 0.3)
    for wx in (-L / 2 + 0.8, L / 2 - 0.8):
        cv.paint(fr.disk(wx, rw, rw), tyre, region)
        cv.paint(fr.disk(wx, rw, rw * 0.55), hub, region)


def bus_side(cv: Canvas, fr: Frame, region: int, rng: np.random.Generator, *, length: float = 11.0,
             height: float = 3.1, train: bool = False) -> None:
    """A bus (or a train carriage, ``train=True``) in side view, front to the right."""
    body = random_colour(rng)
    stripe = random_colour(rng)
    glass = glass_colour(rng)
    tyre = dark_colour(rng)
    L, H = length, height
    base = 0.25 if not train else 0.5
    nose = 0.35 if not train else 1.2
    cv.paint(fr.poly([(-L / 2, base), (L / 2 - 0.1, base), (L / 2, base + 0.3), (L / 2, H - nose),
                      (L / 2 - nose * 0.8, H), (-L / 2 + 0.15, H), (-L / 2, H - 0.15)]), body, region)
    cv.paint(fr.rect(-L / 2, base + 0.35, L / 2, base + 0.6), stripe, region)
    n = int(L / 1.3)
    pitch = (L - 1.2) / n
    for i in range(n):
        x0 = -L / 2 + 0.4 + i * pitch
        cv.paint(fr.rect(x0, H * 0.55, x0 + pitch * 0.82, H - 0.35), glass, region)
    cv.paint(fr.poly([(L / 2 - 0.05, H * 0.5), (L / 2 - 0.05, H - nose - 0.1), (L / 2 - nose * 0.7, H - 0.2),
                      (L / 2 - nose * 0.7 - 0.3, H * 0.5)]), glass, region)
    if not train:
        for wx in (-L / 2 + 2.0, L / 2 - 2.4):
            cv.paint(fr.disk(wx, 0.5, 0.5), tyre, region)
            cv.paint(fr.disk(wx, 0.5, 0.25), jitter(rng, np.array([0.55, 0.55, 0.55], np.float32)), region)
        cv.paint(fr.rect(L / 2 - 1.6, 0.5, L / 2 - 0.8, H * 0.52), glass, region)  # door
    else:
        cv.paint(fr.rect(-L / 2 + 0.3, 0.0, L / 2 - 0.3, base), dark_colour(rng), region)  # bogies
        for wx in (-L / 2 + 1.5, -L / 2 + 2.4, L / 2 - 2.4, L / 2 - 1.5):
            cv.paint(fr.disk(wx, 0.4, 0.4), tyre, region)
