"""Rendering one capture: skin, the warped lesion canvas, nuisances, device colour, then the final resize."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image

from dermascan.data.synthetic.config import DERMOSCOPES, TAG_IMAGE_DRAW, SynthConfig
from dermascan.data.synthetic.draw import blur, warp_affine
from dermascan.data.synthetic.lesions import paint_lesion
from dermascan.data.synthetic.nuisances import draw_bubbles, draw_hair, draw_ink, draw_ruler, draw_vignette
from dermascan.data.synthetic.plan import Capture, Lesion, metadata_row, plan_image
from dermascan.data.synthetic.skin import CONTRAST, paint_skin


def _render(config: SynthConfig, lesion: Lesion, cap: Capture) -> tuple[np.ndarray, np.ndarray]:
    """Draw one capture at the render size: (uint8 RGB image, float32 d-field; < 1 inside the lesion)."""
    size = config.render_size
    scale = size / 224.0  # line widths and blurs are designed at 224 px
    rng = np.random.default_rng([config.seed, TAG_IMAGE_DRAW, cap.index])
    ppm = size / lesion.fov_mm * cap.zoom
    img = paint_skin(rng, lesion.fitzpatrick, size, ppm)

    cv = paint_lesion(config, lesion, size)
    # Inverse map: image pixel -> lesion canvas pixel (rotate by -rotation, divide by zoom).
    centre = np.array([(0.5 + cap.offset[0]) * size, (0.5 + cap.offset[1]) * size])
    cr, sr = math.cos(cap.rotation) / cap.zoom, math.sin(cap.rotation) / cap.zoom
    matrix = (cr, sr, cv.half + 0.5 - cr * centre[0] - sr * centre[1],
              -sr, cr, cv.half + 0.5 + sr * centre[0] - cr * centre[1])  # fmt: skip
    # Only the image box the rotated canvas can reach is resampled: the rest is untouched skin.
    reach = (cv.half + 2) * cap.zoom * math.sqrt(2.0)
    x0, y0 = (max(0, math.floor(c - reach)) for c in centre)
    x1, y1 = (min(size, math.ceil(c + reach)) for c in centre)
    dfield = np.full((size, size), 10.0, dtype=np.float32)
    if x1 > x0 and y1 > y0:
        a, b, c, d, e, f = matrix
        box = (a, b, c + a * x0 + b * y0, d, e, f + d * x0 + e * y0)
        stack = np.concatenate([cv.mul, cv.add, cv.d[..., None]], axis=2)
        warped = warp_affine(stack, (x1 - x0, y1 - y0), box, fill=(1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 10.0))
        patch = img[y0:y1, x0:x1]
        lesioned = patch * warped[..., 0:3] + warped[..., 3:6]
        patch += CONTRAST[lesion.fitzpatrick - 1] * (lesioned - patch)
        dfield[y0:y1, x0:x1] = warped[..., 6]

    flags = cap.flags
    radius_px = lesion.diameter_mm / 2.0 * ppm
    if flags["ink"]:
        draw_ink(rng, img, size, centre, radius_px, scale)
    if flags["hair"]:
        draw_hair(rng, img, size, scale)
    if flags["bubbles"]:
        draw_bubbles(rng, img, size, scale)
    if flags["ruler"]:
        draw_ruler(rng, img, size, ppm, scale)
    device = DERMOSCOPES[cap.dermoscope]
    img *= np.asarray(device.gains, dtype=np.float32) * (device.exposure * cap.exposure)
    np.clip(img, 0.0, 1.0, out=img)
    if device.gamma != 1.0:
        np.power(img, device.gamma, out=img)
    if device.saturation != 1.0:
        grey = img.mean(axis=2, keepdims=True)
        img = grey + device.saturation * (img - grey)
    if flags["vignette"]:
        draw_vignette(rng, img, size)
    if flags["blur"]:
        img = blur(img, rng.uniform(1.0, 2.2) * scale)
    out = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return out, dfield


def render_image(config: SynthConfig, index: int) -> tuple[Image.Image, np.ndarray, dict[str, Any]]:
    """Draw image ``index`` of a dataset: a pure function of ``(config, index)``, independent of ``n``.

    Args:
        config: the dataset config (``n`` only bounds ``index``).
        index: image number, ``0 <= index < config.n``.

    Returns:
        (RGB image of ``config.size`` pixels, boolean lesion mask of the same size, metadata row).

    Raises:
        IndexError: ``index`` is outside ``0 .. n-1``.
    """
    lesion, cap = plan_image(config, index)
    pixels, dfield = _render(config, lesion, cap)
    image = Image.fromarray(pixels)
    if config.size != config.render_size:
        image = image.resize((config.size, config.size), Image.LANCZOS)
        dfield = np.asarray(Image.fromarray(dfield).resize((config.size, config.size), Image.BILINEAR))
    return image, dfield < 1.0, metadata_row(lesion, cap)
