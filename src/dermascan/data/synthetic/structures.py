"""Dermoscopic structures that several lesion painters share: globules, streaks, regression, vessels."""

from __future__ import annotations

import math

import numpy as np

from dermascan.data.synthetic.canvas import C_BLUE_GREY, C_WHITE, T_BLACK, T_DARK_BROWN, T_RED, Canvas
from dermascan.data.synthetic.draw import bezier, blur, smoothstep


def globules(cv: Canvas, struct: float) -> None:
    rng = cv.rng
    count = int(rng.integers(6, 18) + 25 * struct * rng.random())
    if struct < 0.45 and rng.random() < 0.5:
        # Peripheral rim of globules (a growing nevus) or a regular central cluster.
        ang = rng.uniform(0, 2 * np.pi, count)
        rr = rng.uniform(0.75, 0.92, count) if rng.random() < 0.5 else rng.uniform(0.0, 0.55, count)
        pts = np.stack([np.cos(ang) * rr, np.sin(ang) * rr], 1) * cv.radius + cv.half
        sizes = np.full(count, rng.uniform(0.12, 0.2))
    else:
        pts = cv.points_inside(count, 0.0, 0.8 + 0.35 * struct)
        if struct > 0.45:
            # Cluster toward one side: asymmetric distribution of dots.
            focus = cv.points_inside(1, 0.3, 0.9)
            pts = pts * (1 - 0.5 * struct) + focus * 0.5 * struct if len(focus) else pts
        sizes = rng.uniform(0.06, 0.12 + 0.2 * struct, len(pts))
    layer = cv.layer()
    for (x, y), s in zip(pts, sizes, strict=True):
        r = cv.pixels(float(s))
        layer.ellipse(x, y, r, r * rng.uniform(0.75, 1.0), value=rng.uniform(0.6, 1.0))
    colour = T_BLACK if struct > 0.5 and rng.random() < 0.5 else T_DARK_BROWN
    cv.absorb(layer.array(0.6) * 1.3, colour)


def streaks(cv: Canvas, struct: float) -> None:
    """Radial streaks / pseudopods at the border, over a sector (irregular) or all round (Spitz/Reed)."""
    rng = cv.rng
    count = int(rng.integers(5, 16))
    centre = rng.uniform(0, 2 * np.pi)
    width_sector = rng.uniform(0.6, 2.2) if struct > 0.5 else 2 * np.pi
    layer = cv.layer()
    steps = np.linspace(0.3, 1.8, 40) * cv.radius
    for _ in range(count):
        ang = centre + rng.uniform(-width_sector / 2, width_sector / 2)
        ray = np.array([math.cos(ang), math.sin(ang)])
        normal = np.array([-ray[1], ray[0]])
        # Walk the ray to where the border lies in this direction.
        xs = (cv.half + ray[0] * steps).astype(int).clip(0, cv.side - 1)
        ys = (cv.half + ray[1] * steps).astype(int).clip(0, cv.side - 1)
        outside = np.flatnonzero(cv.d[ys, xs] > 1.0)
        r_border = steps[outside[0]] if outside.size else steps[-1]
        r0, r1 = r_border * 0.78, r_border * rng.uniform(1.02, 1.12)
        bend = normal * rng.normal(0, 0.05) * r_border
        w0, w1 = cv.pixels(rng.uniform(0.12, 0.22)), cv.pixels(rng.uniform(0.03, 0.08))
        tip = ray * r1 + bend + cv.half
        base = ray * r0 + cv.half
        # A tapered wedge from inside the lesion to just past its border.
        layer.polygon([tuple(base + normal * w0), tuple(tip + normal * w1), tuple(tip - normal * w1),
                       tuple(base - normal * w0)], value=rng.uniform(0.6, 0.95))  # fmt: skip
        if rng.random() < 0.35:  # pseudopod: a small bulb at the tip
            r = cv.pixels(rng.uniform(0.07, 0.12))
            layer.ellipse(tip[0], tip[1], r, r, value=0.85)
    cv.absorb(layer.array(0.6) * 1.3, T_DARK_BROWN)


def regression(cv: Canvas) -> None:
    """White scar-like area with blue-grey peppering."""
    rng = cv.rng
    region = blur(cv.region(rng.uniform(0.12, 0.3), 1.2, edge=1.0), cv.pixels(0.1))
    cv.scatter(region * rng.uniform(0.3, 0.55) * (1.0 + 0.2 * cv.noise(0.2)), C_WHITE)
    pts = cv.points_inside(int(rng.integers(20, 60)), 0.0, 0.95)
    layer = cv.layer()
    for x, y in pts:
        layer.ellipse(x, y, cv.pixels(0.04), cv.pixels(0.04), value=0.8)
    pepper = layer.array(0.4) * smoothstep(0.05, 0.3, region)
    cv.scatter(pepper * 0.8, C_BLUE_GREY)


def vessels(cv: Canvas, kind: str, count: int) -> None:
    """Dotted/glomerular (AKIEC), comma (dermal nevus) or arborizing (BCC) vessels."""
    rng = cv.rng
    layer = cv.layer()
    if kind in ("dotted", "glomerular"):
        pts = cv.points_inside(count, 0.0, 0.9)
        for x, y in pts:
            r = cv.pixels(rng.uniform(0.04, 0.08 if kind == "dotted" else 0.13))
            if kind == "glomerular":
                layer.ring(x, y, r, r * 0.8, width=1, value=0.9)
            layer.ellipse(x, y, r * 0.6, r * 0.6, value=0.9)
        cv.absorb(layer.array(0.4) * 1.5, T_RED)
        return
    if kind == "comma":
        for x, y in cv.points_inside(count, 0.0, 0.8):
            ang = rng.uniform(0, 2 * np.pi)
            length = cv.pixels(rng.uniform(0.3, 0.6))
            p = np.array([[x, y], [x + length * math.cos(ang + 0.5), y + length * math.sin(ang + 0.5)],
                          [x + length * math.cos(ang), y + length * math.sin(ang)]])  # fmt: skip
            layer.line(bezier(p, 6), width=cv.pixels(0.07), value=0.9)
        cv.absorb(layer.array(0.4) * 1.3, T_RED)
        return

    # Arborizing: thick trunks that branch into ever thinner, sharply focused red vessels.
    def branch(x: float, y: float, ang: float, length: float, width: float, depth: int) -> None:
        bend = rng.normal(0, 0.35)
        x2, y2 = x + length * math.cos(ang + bend), y + length * math.sin(ang + bend)
        mid = (x + (x2 - x) * 0.5 + rng.normal(0, length * 0.15), y + (y2 - y) * 0.5 + rng.normal(0, length * 0.15))
        layer.line(bezier(np.array([[x, y], mid, [x2, y2]]), 6), width=width, value=1.0)
        if depth > 0:
            for turn in (-1, 1):
                if rng.random() < 0.85:
                    branch(x2, y2, ang + bend + turn * rng.uniform(0.3, 0.9), length * rng.uniform(0.55, 0.8),
                           max(width * 0.65, 0.6), depth - 1)  # fmt: skip

    for x, y in cv.points_inside(count, 0.1, 0.8):
        to_centre = math.atan2(cv.half - y, cv.half - x) + rng.normal(0, 1.2)
        branch(x, y, to_centre, cv.radius * rng.uniform(0.25, 0.45), cv.pixels(rng.uniform(0.1, 0.17)), 3)
    cv.absorb(layer.array(0.35) * 1.6, T_RED)
