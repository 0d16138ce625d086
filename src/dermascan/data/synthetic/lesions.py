"""Painting one lesion per class: the melanocytic lesions (NV, MEL) and BCC, AKIEC, BKL, DF, VASC.

Each painter sets the outline on a :class:`Canvas` and lays the class's dermoscopic structures on it,
in paint order; :func:`paint_lesion` picks the painter and seeds it from ``(seed, lesion number)``.
"""

from __future__ import annotations

import math

import numpy as np

from dermascan.data.synthetic.canvas import (
    C_BLUE_GREY,
    C_MILIA,
    C_SCALE,
    C_TRANSLUCENT,
    C_VEIL,
    C_WHITE,
    T_BLACK,
    T_CRUST,
    T_DARK_BROWN,
    T_DARK_RED,
    T_LIGHT_BROWN,
    T_PINK,
    T_PURPLE,
    T_RED,
    T_WAXY,
    Canvas,
)
from dermascan.data.synthetic.config import TAG_LESION_DRAW, SynthConfig
from dermascan.data.synthetic.draw import blur, ridge, smoothstep
from dermascan.data.synthetic.plan import Lesion
from dermascan.data.synthetic.structures import globules, regression, streaks, vessels


def _feature(rng: np.random.Generator, malignancy: float, overlap: float) -> float:
    """A noisy read-out of the malignancy latent: one per feature, so features disagree at times."""
    return float(np.clip(malignancy + rng.normal(0.0, 0.35 * overlap), 0.0, 1.0))


def _paint_melanocytic(cv: Canvas, lesion: Lesion, overlap: float) -> None:
    rng = cv.rng
    m = lesion.malignancy
    asym, border, colours, struct = (_feature(rng, m, overlap) for _ in range(4))
    cv.shape(
        elongation=1.0 + abs(rng.normal(0.05 + 0.35 * asym, 0.12)),
        low=0.03 + 0.22 * asym,
        high=0.005 + 0.05 * border,
        lumpy=0.02 + 0.14 * border,
        softness=float(np.clip(rng.normal(0.36 - 0.24 * border, 0.06), 0.06, 0.5)),
    )
    a, d = cv.alpha, cv.d
    # Pigment density: a dome, uneven by colour heterogeneity, with an off-centre blotch for asymmetry.
    base = rng.uniform(0.55, 0.95)
    dome = 1.0 - rng.uniform(0.1, 0.45) * np.square(np.minimum(d, 1.0))
    density = base * dome + (0.08 + 0.45 * colours) * cv.noise(rng.uniform(1.0, 2.5))
    density *= 1.0 + 0.12 * cv.noise(0.15)  # fine granularity: real pigment is never flat
    if asym > 0.25:
        ang = rng.uniform(0, 2 * np.pi)
        r_off = 0.25 + 0.4 * asym
        cx, cy = r_off * math.cos(ang) * cv.radius, r_off * math.sin(ang) * cv.radius
        blot = np.exp(-(np.square(cv.x - cx) + np.square(cv.y - cy)) / (2 * (0.35 * cv.radius) ** 2))
        density = density + rng.uniform(0.3, 0.8) * asym * blot
    density = np.maximum(density, 0.0) * a
    if lesion.subtype == "dermal":
        # Dermal (Unna/Miescher) nevus: little pigment, pink, a few comma vessels: looks like BCC at times.
        cv.absorb(a * 0.8, T_PINK)
        cv.absorb(density * 0.35, T_LIGHT_BROWN)
        vessels(cv, "comma", rng.integers(3, 9))
        return
    cv.absorb(np.minimum(density, 1.1), T_LIGHT_BROWN)
    n_colours = 1 + int(5.5 * colours**1.5 + rng.uniform(0, 1.0))
    extras = ["dark"]
    extras += list(rng.permutation(["black", "blue", "red", "white"])) if n_colours > 2 else []
    chosen = set(extras[: n_colours - 1])
    if "dark" in chosen:
        cv.absorb(np.clip(density - 0.55, 0.0, 0.8) * 1.4, T_DARK_BROWN)
    if "black" in chosen:
        cv.absorb(smoothstep(0.95, 1.35, density) * 1.2 * cv.region(0.25, 1.2), T_BLACK)
    # Pigment network: regular, thin and fading at the edge in nevi; thick, broken and uneven in melanoma.
    if rng.random() < (0.75 if struct < 0.5 else 0.6):
        cell = rng.uniform(0.2, 0.3) * (1.0 + 0.3 * struct)
        width = 0.16 + 0.22 * struct * np.abs(1.0 + 0.6 * cv.noise(2.0))
        # Two overlaid labyrinths close each other's open ends into a mesh of holes.
        net = np.maximum(ridge(cv.noise(cell), width), ridge(cv.noise(cell * 1.3), width))
        keep = smoothstep(-0.6, 0.2, cv.noise(1.5) + 1.2 - 1.6 * struct) if struct > 0.4 else 1.0
        fade = smoothstep(1.05, 0.55, d) if struct < 0.5 else smoothstep(1.02, 0.9, d)
        strength = rng.uniform(0.35, 0.6) * (1.0 + 0.6 * struct)
        cv.absorb(net * keep * fade * a * strength, T_DARK_BROWN)
    # Dots and globules: even and central/peripheral in nevi, uneven and clustered in melanoma.
    if rng.random() < 0.45 + 0.25 * struct:
        globules(cv, struct)
    if rng.random() < 0.02 + 0.7 * smoothstep(0.5, 0.8, np.float32(struct)):
        streaks(cv, struct)
    if "blue" in chosen or rng.random() < 0.9 * smoothstep(0.55, 0.8, np.float32(struct)):
        ecc = rng.uniform(-0.4, 0.4, size=2)
        veil = cv.region(rng.uniform(0.12, 0.35), 1.5, centre=(ecc[0], ecc[1]), spread=0.7, edge=1.2)
        veil *= 1.0 + 0.25 * cv.noise(0.3)  # ground-glass, not a flat patch
        cv.scatter(veil * rng.uniform(0.45, 0.7), C_VEIL if rng.random() < 0.6 else C_BLUE_GREY)
    if "white" in chosen or rng.random() < 0.02 + 0.5 * smoothstep(0.55, 0.8, np.float32(struct)):
        regression(cv)
    if "red" in chosen:
        cv.absorb(blur(cv.region(0.2, 1.5, edge=1.2), cv.pixels(0.2)) * 0.5, T_RED)
        if rng.random() < 0.5:
            vessels(cv, "dotted", int(rng.integers(6, 20)))


def _paint_bcc(cv: Canvas, lesion: Lesion, pigmented: bool, keep: float) -> None:
    rng = cv.rng
    cv.shape(1.0 + abs(rng.normal(0.2, 0.15)), rng.uniform(0.05, 0.2), rng.uniform(0.01, 0.04),
             rng.uniform(0.04, 0.12), rng.uniform(0.12, 0.3))  # fmt: skip
    a = cv.alpha
    cv.scatter(a * rng.uniform(0.15, 0.35), C_TRANSLUCENT)  # translucent, pearly
    cv.absorb(a * rng.uniform(0.4, 0.9), T_PINK)
    if rng.random() < 0.8 * keep:
        vessels(cv, "arborizing", int(rng.integers(2, 5)))
    if rng.random() < 0.5 * keep or pigmented:
        layer = cv.layer()
        for x, y in cv.points_inside(int(rng.integers(2, 9)), 0.0, 0.85):
            rx = cv.pixels(rng.uniform(0.25, 0.7))
            layer.ellipse(x, y, rx, rx * rng.uniform(0.5, 0.9), value=rng.uniform(0.45, 0.8))
        nests = layer.array(cv.pixels(0.15)) * (1.0 + 0.3 * cv.noise(0.15))  # ovoid, granular, soft-edged
        cv.scatter(nests, C_BLUE_GREY)
    if pigmented:  # pigmented BCC: brown-grey blotches and dots, a melanoma look-alike
        cv.absorb(blur(cv.region(0.15, 1.5, edge=1.0), cv.pixels(0.1)) * 0.9, T_DARK_BROWN)
        layer = cv.layer()
        for x, y in cv.points_inside(int(rng.integers(5, 20)), 0.0, 0.85):
            r = cv.pixels(rng.uniform(0.08, 0.2))
            layer.ellipse(x, y, r, r, value=rng.uniform(0.6, 0.9))
        cv.scatter(layer.array(0.6), C_BLUE_GREY)
    if rng.random() < 0.5:  # shiny white strands
        layer = cv.layer()
        for x, y in cv.points_inside(int(rng.integers(3, 8)), 0.0, 0.8):
            ang, ln = rng.uniform(0, np.pi), cv.pixels(rng.uniform(0.4, 1.0))
            layer.line([(x, y), (x + ln * math.cos(ang), y + ln * math.sin(ang))], cv.pixels(0.06), 0.8)
        cv.scatter(layer.array(0.5) * 0.7, C_WHITE)
    if rng.random() < 0.35 * keep:  # ulceration
        ulcer = cv.region(rng.uniform(0.05, 0.15), 0.8, centre=tuple(rng.uniform(-0.3, 0.3, 2)), spread=0.4)
        cv.absorb(ulcer * 1.4, T_CRUST)


def _paint_akiec(cv: Canvas, lesion: Lesion, pigmented: bool, keep: float) -> None:
    rng = cv.rng
    cv.shape(1.0 + abs(rng.normal(0.25, 0.2)), rng.uniform(0.05, 0.2), rng.uniform(0.01, 0.04),
             rng.uniform(0.08, 0.18), rng.uniform(0.25, 0.45))  # fmt: skip
    a = cv.alpha
    # Strawberry pattern: red erythema pierced by white follicular openings.
    cv.absorb(a * rng.uniform(0.6, 1.1) * (1.0 + 0.3 * cv.noise(1.5)), T_PINK)
    cv.absorb(a * rng.uniform(0.2, 0.5), T_RED)
    spacing = cv.pixels(rng.uniform(0.6, 1.0))
    grid = np.arange(-cv.half, cv.half, spacing)
    gx, gy = np.meshgrid(grid, grid)
    pts = np.stack([gx.ravel(), gy.ravel()], 1) + cv.half + rng.normal(0, spacing * 0.3, (gx.size, 2))
    pts = pts[rng.random(len(pts)) < rng.uniform(0.4, 0.8)]
    layer = cv.layer()
    for x, y in pts:
        r = cv.pixels(rng.uniform(0.07, 0.14))
        layer.ellipse(x, y, r, r, value=rng.uniform(0.4, 0.8))
    cv.scatter(layer.array(cv.pixels(0.05)) * a * 0.7, C_WHITE)
    if pigmented:
        cv.absorb(ridge(cv.noise(0.5), 0.3) * a * 0.7 + 0.3 * a, T_LIGHT_BROWN)
    if rng.random() < 0.7 * keep:  # surface scale, white to yellow
        scale = cv.region(rng.uniform(0.15, 0.4), 1.0, edge=1.0)
        scale = blur(scale, cv.pixels(0.06)) * (1.0 + 0.35 * cv.noise(0.12))
        cv.scatter(scale * rng.uniform(0.35, 0.65), C_SCALE)
    if rng.random() < 0.6 * keep:
        vessels(cv, "glomerular" if rng.random() < 0.5 else "dotted", int(rng.integers(15, 50)))


def _paint_bkl(cv: Canvas, lesion: Lesion, pigmented: bool, keep: float) -> None:
    rng = cv.rng
    lentigo = lesion.subtype == "lentigo"
    cv.shape(1.0 + abs(rng.normal(0.25, 0.2)), rng.uniform(0.05, 0.2),
             rng.uniform(0.03, 0.07) if lentigo else rng.uniform(0.005, 0.03),
             rng.uniform(0.05, 0.15), rng.uniform(0.03, 0.1) if not lentigo else rng.uniform(0.1, 0.2))  # fmt: skip
    a = cv.alpha
    # Waxy "stuck-on" brown, sharply demarcated.
    level = rng.uniform(0.6, 1.3) if not lentigo else rng.uniform(0.4, 0.8)
    cv.absorb(a * level * (1.0 + 0.2 * cv.noise(1.5)), T_WAXY)
    if pigmented:  # dark, irritated keratosis: a melanoma look-alike
        cv.absorb(cv.region(0.4, 1.2) * 1.1, T_DARK_BROWN)
        cv.absorb(cv.region(0.12, 0.8) * 0.6, T_BLACK)
    if lentigo:
        if rng.random() < 0.5:  # fingerprint-like / faint pseudo-network
            cv.absorb(ridge(cv.noise(0.5), 0.35) * a * 0.6, T_LIGHT_BROWN)
        return
    if rng.random() < 0.45 * keep:  # cerebriform fissures and ridges
        # Brain-like gyri and sulci: dark, soft fissures between lighter waxy ridges.
        folds = cv.noise(rng.uniform(0.8, 1.2))
        cv.absorb(blur(ridge(folds, 0.3), cv.pixels(0.05)) * a * 0.7, T_DARK_BROWN)
        cv.scatter(smoothstep(0.6, 1.6, np.abs(folds)) * a * 0.25, C_MILIA)
    if rng.random() < 0.6 * keep:  # milia-like cysts
        layer = cv.layer()
        for x, y in cv.points_inside(int(rng.integers(3, 15)), 0.0, 0.85):
            r = cv.pixels(rng.uniform(0.1, 0.25))
            layer.ellipse(x, y, r, r, value=0.9)
        cv.scatter(layer.array(0.7), C_MILIA)
    if rng.random() < 0.5 * keep:  # comedo-like openings
        layer = cv.layer()
        for x, y in cv.points_inside(int(rng.integers(3, 12)), 0.0, 0.85):
            r = cv.pixels(rng.uniform(0.12, 0.28))
            layer.ellipse(x, y, r, r * rng.uniform(0.6, 1.0), value=0.9)
        cv.absorb(layer.array(0.6) * 1.6, T_DARK_BROWN)


def _paint_df(cv: Canvas, lesion: Lesion, pigmented: bool, keep: float) -> None:
    rng = cv.rng
    cv.shape(1.0 + abs(rng.normal(0.15, 0.1)), rng.uniform(0.03, 0.12), rng.uniform(0.005, 0.02),
             rng.uniform(0.03, 0.08), rng.uniform(0.25, 0.4))  # fmt: skip
    a, d = cv.alpha, cv.d
    cv.absorb(a * rng.uniform(0.3, 0.6), T_PINK)
    # Delicate peripheral network: a brown ring.
    ring = smoothstep(0.25, 0.7, d) * a
    net = 0.4 + 0.6 * ridge(cv.noise(0.45), 0.35)
    cv.absorb(ring * net * rng.uniform(0.6, 1.1) * (2.0 if pigmented else 1.0), T_LIGHT_BROWN)
    if rng.random() < 0.85 * keep:  # central white scar-like patch
        patch = cv.region(rng.uniform(0.15, 0.35), 1.0, centre=(0.0, 0.0), spread=0.45, edge=1.5)
        patch = blur(patch, cv.pixels(0.15)) * (1.0 + 0.2 * cv.noise(0.2))
        cv.scatter(patch * rng.uniform(0.5, 0.8), C_WHITE)


def _paint_vasc(cv: Canvas, lesion: Lesion, pigmented: bool, keep: float) -> None:
    rng = cv.rng
    cv.shape(1.0 + abs(rng.normal(0.15, 0.15)), rng.uniform(0.04, 0.15), rng.uniform(0.01, 0.04),
             rng.uniform(0.03, 0.1), rng.uniform(0.03, 0.08))  # fmt: skip
    a = cv.alpha
    cv.scatter(a * 0.3, C_TRANSLUCENT)  # whitish septa between the lacunae
    cv.absorb(a * rng.uniform(0.3, 0.8), T_RED)
    # Red-purple lacunae: well demarcated round clods packed in the lesion.
    layer_red, layer_dark = cv.layer(), cv.layer()
    dark_share = 0.6 if pigmented else rng.uniform(0.0, 0.3)
    count = int(np.clip((cv.radius / cv.pixels(0.45)) ** 2 * rng.uniform(0.8, 1.4), 6, 120))
    for x, y in cv.points_inside(count, 0.0, 0.95):
        r = cv.pixels(rng.uniform(0.25, 0.6))
        target = layer_dark if rng.random() < dark_share else layer_red
        target.ellipse(x, y, r, r * rng.uniform(0.75, 1.0), value=rng.uniform(0.7, 1.0))
    red = layer_red.array(0.7) * a
    cv.absorb(red * 1.4, T_RED if rng.random() < 0.5 else T_PURPLE)
    if not layer_dark.empty:
        cv.absorb(layer_dark.array(0.7) * a * 1.3, T_DARK_RED)


_PAINTERS = {"BCC": _paint_bcc, "AKIEC": _paint_akiec, "BKL": _paint_bkl, "DF": _paint_df, "VASC": _paint_vasc}


def paint_lesion(config: SynthConfig, lesion: Lesion, render: int) -> Canvas:
    rng = np.random.default_rng([config.seed, TAG_LESION_DRAW, lesion.number])
    ppm = render / lesion.fov_mm
    radius_px = lesion.diameter_mm / 2.0 * ppm
    half = int(min(math.ceil(radius_px * 2.1) + 4, render * 1.2))
    cv = Canvas(rng, radius_px, ppm, half)
    if lesion.code in ("NV", "MEL"):
        _paint_melanocytic(cv, lesion, config.feature_overlap)
    else:
        # Class-typical structures go missing more often as feature_overlap grows.
        keep = 1.0 - 0.3 * config.feature_overlap
        _PAINTERS[lesion.code](cv, lesion, lesion.subtype == "pigmented", keep)
    return cv
