"""Skin by Fitzpatrick type I-VI under a dermoscope: colour, mottling, furrows, grain, and lesion contrast."""

from __future__ import annotations

import numpy as np

from dermascan.data.synthetic.draw import ridge, smooth_noise

# Skin colour under a dermoscope (sRGB, 0-1) for Fitzpatrick I..VI.
_SKIN = np.array([
    [0.93, 0.78, 0.75], [0.91, 0.73, 0.66], [0.85, 0.65, 0.54],
    [0.72, 0.52, 0.39], [0.55, 0.38, 0.27], [0.38, 0.26, 0.19],
], dtype=np.float32)  # fmt: skip
# Share of lesion contrast that survives the epidermal melanin of each skin type.
CONTRAST = (1.0, 0.97, 0.90, 0.80, 0.68, 0.58)


def paint_skin(rng: np.random.Generator, fitz: int, size: int, ppm: float) -> np.ndarray:
    base = _SKIN[fitz - 1] * rng.uniform(0.96, 1.04, 3).astype(np.float32)
    img = np.empty((size, size, 3), dtype=np.float32)
    img[:] = base
    mottle = smooth_noise(rng, size, size, size / 4)
    redness = smooth_noise(rng, size, size, size / 6)
    # Skin furrows: a faint, fine net of lighter lines (polarised light), two scales crossing.
    furrows = ridge(smooth_noise(rng, size, size, ppm * rng.uniform(0.5, 0.8)), 0.1)
    furrows += 0.5 * ridge(smooth_noise(rng, size, size, ppm * rng.uniform(1.2, 2.0)), 0.08)
    texture = smooth_noise(rng, size, size, 2.5 * size / 224)
    grain = rng.standard_normal((size, size), dtype=np.float32)
    lum = 1.0 + 0.03 * mottle + rng.uniform(0.025, 0.05) * furrows + 0.02 * texture + 0.012 * grain
    img *= lum[..., None]
    # Erythema only adds red (never subtracts it), or the skin turns cyan in places.
    redness = np.maximum(redness, 0.0) * rng.uniform(0.01, 0.045)
    img[..., 1] -= redness * base[1]
    img[..., 2] -= 0.8 * redness * base[2]
    return img
