"""Nuisances a model must ignore, drawn in the image frame: hair, ruler ticks, marker ink, gel bubbles, vignette.

Whether a capture shows each one is decided in :mod:`dermascan.data.synthetic.plan` (its metadata flags);
blur and the device's colour cast are applied by :mod:`dermascan.data.synthetic.render`.
"""

from __future__ import annotations

import math

import numpy as np

from dermascan.data.synthetic.draw import Layer, bezier, smoothstep


def draw_hair(rng: np.random.Generator, img: np.ndarray, size: int, scale: float) -> None:
    layer = Layer(size, size)
    count = int(rng.integers(2, 14))
    colours = []
    for _ in range(count):
        start = rng.uniform(-0.2, 1.2, 2) * size
        ang = rng.uniform(0, 2 * np.pi)
        length = rng.uniform(0.4, 1.3) * size
        ctrl = np.array([start, start + length * 0.5 * np.array([math.cos(ang), math.sin(ang)]),
                         start + length * np.array([math.cos(ang + rng.normal(0, 0.5)),
                                                    math.sin(ang + rng.normal(0, 0.5))])])  # fmt: skip
        ctrl[1] += rng.normal(0, 0.12 * length, 2)
        layer.line(bezier(ctrl, 16), width=rng.uniform(0.7, 1.8) * scale, value=rng.uniform(0.7, 1.0))
        colours.append(rng.uniform(0.05, 0.3))
    cover = layer.array(0.5 * scale)[..., None]
    tone = float(np.mean(colours))
    hair_colour = np.array([tone * 1.1, tone * 0.85, tone * 0.7], dtype=np.float32)
    img *= 1.0 - cover
    img += cover * hair_colour


def draw_ruler(rng: np.random.Generator, img: np.ndarray, size: int, ppm: float, scale: float) -> None:
    layer = Layer(size, size)
    side = int(rng.integers(4))
    inset = rng.uniform(0.03, 0.12) * size
    step = ppm * (1.0 if rng.random() < 0.8 else 0.5)
    pos = np.arange(rng.uniform(0, step), size, step)
    for k, p in enumerate(pos):
        length = size * (0.06 if k % 5 == 0 else 0.03)
        a, b = (inset, inset + length)
        if side == 0:
            seg = [(p, a), (p, b)]
        elif side == 1:
            seg = [(p, size - a), (p, size - b)]
        elif side == 2:
            seg = [(a, p), (b, p)]
        else:
            seg = [(size - a, p), (size - b, p)]
        layer.line(seg, width=1.2 * scale, value=0.85)
    cover = layer.array(0.4 * scale)[..., None]
    img *= 1.0 - cover
    img += cover * 0.06


def draw_ink(rng: np.random.Generator, img: np.ndarray, size: int, centre: np.ndarray, radius: float,
         scale: float) -> None:  # fmt: skip
    layer = Layer(size, size)
    ring = radius * rng.uniform(1.2, 1.7)
    if rng.random() < 0.6:  # dots around the lesion (excision margin)
        for ang in rng.uniform(0, 2 * np.pi, int(rng.integers(2, 7))):
            c = centre + ring * np.array([math.cos(ang), math.sin(ang)])
            r = rng.uniform(1.5, 3.5) * scale
            layer.ellipse(c[0], c[1], r, r * rng.uniform(0.7, 1.0), value=rng.uniform(0.6, 0.9))
    else:  # a stroke or an arc next to it
        a0 = rng.uniform(0, 2 * np.pi)
        angs = a0 + np.linspace(0, rng.uniform(0.4, 1.6), 10)
        pts = [(float(centre[0] + ring * math.cos(t)), float(centre[1] + ring * math.sin(t))) for t in angs]
        layer.line(pts, width=rng.uniform(1.5, 3.5) * scale, value=rng.uniform(0.5, 0.85))
    cover = layer.array(0.8 * scale)[..., None]
    ink = np.array([0.40, 0.22, 0.58], dtype=np.float32) * rng.uniform(0.8, 1.1)
    img *= 1.0 - cover
    img += cover * ink


def draw_bubbles(rng: np.random.Generator, img: np.ndarray, size: int, scale: float) -> None:
    rim, body = Layer(size, size), Layer(size, size)
    for _ in range(int(rng.integers(1, 14))):
        x, y = rng.uniform(0, size, 2)
        r = rng.uniform(0.01, 0.07) * size
        ry = r * rng.uniform(0.7, 1.0)
        body.ellipse(x, y, r, ry, value=0.25)
        rim.ring(x, y, r, ry, width=max(1, round(scale)), value=0.9)
        rim.ellipse(x - 0.35 * r, y - 0.35 * ry, 0.15 * r + 0.5, 0.15 * ry + 0.5, value=1.0)  # glint
    cover = np.maximum(rim.array(0.5 * scale), body.array(0.6 * scale))[..., None]
    img *= 1.0 - cover
    img += cover * 0.97


def draw_vignette(rng: np.random.Generator, img: np.ndarray, size: int) -> None:
    c = (size - 1) / 2.0
    coords = (np.arange(size, dtype=np.float32) - c) / c
    rho = np.hypot(coords[None, :], coords[:, None])
    field_r = rng.uniform(1.02, 1.38)
    edge = rng.uniform(0.03, 0.1)
    inside = smoothstep(field_r + edge, field_r - edge, rho)
    darkness = rng.uniform(0.02, 0.15)
    falloff = 1.0 - rng.uniform(0.05, 0.2) * np.square(np.minimum(rho, field_r) / field_r)
    img *= (darkness + (1.0 - darkness) * inside * falloff)[..., None]
