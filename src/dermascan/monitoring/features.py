"""Image features for data quality and input drift: computed once per image, at analysis time, and stored with
the prediction (and on the training split at export, for the reference). numpy and PIL only: the serving
process computes them and must stay free of torch and scipy.

Features (all but the size in [0, 1] or a small positive range):

* ``width``, ``height``: the decoded image's size in pixels (resolution).
* ``brightness``, ``contrast``: mean and standard deviation of the luma (ITU-R BT.601).
* ``sharpness``: variance of the 4-neighbour Laplacian of the luma, the usual focus measure (a blurred or
  out-of-focus capture has little high-frequency energy).
* ``mean_r``, ``mean_g``, ``mean_b``: channel means (a dermoscope's colour profile shows here first).
* ``grey_world``: grey-world deviation, the standard deviation of the three channel means over their mean: 0
  for a neutral average colour; a colour cast raises it (skin is not grey, so the training range is the
  reference, not 0).
* ``dark_corner``: share of the pixels outside the inscribed ellipse that are darker than :data:`DARK_LUMA`:
  the dark vignette corners of contact dermoscopes.

Everything but the size is computed on a thumbnail of at most :data:`THUMBNAIL` px a side: means barely
change, the Laplacian is measured at one scale whatever the capture's resolution, and the full image would
cost more than the model on a 12 M pixel capture.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

THUMBNAIL = 256
DARK_LUMA = 0.15
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)

#: Every feature, in the order reports list them; the ones input drift (PSI) watches are :data:`DRIFT_FEATURES`.
FEATURES = (
    "width",
    "height",
    "brightness",
    "contrast",
    "sharpness",
    "mean_r",
    "mean_g",
    "mean_b",
    "grey_world",
    "dark_corner",
)
#: The features compared with the training reference. Width and height are checked against the training
#: range (a resolution far outside it is a quality flag) but not by PSI: a clinic's camera has one resolution,
#: so its histogram is a spike whose PSI says "another camera", which the colour features already say.
DRIFT_FEATURES = tuple(f for f in FEATURES if f not in ("width", "height"))


def image_features(rgb: Image.Image, size: tuple[int, int] | None = None) -> dict[str, float]:
    """The features of one upright RGB image (see the module docstring).

    Args:
        rgb: the decoded image.
        size: (width, height) of the capture when ``rgb`` was decoded at a reduced scale (a JPEG draft).

    Returns:
        feature name -> value, every name of :data:`FEATURES`.
    """
    w, h = rgb.size
    capture = size or (w, h)
    small = rgb.convert("RGB") if rgb.mode != "RGB" else rgb
    if max(w, h) > THUMBNAIL:
        # A box filter by the integer part of the scale, then bilinear for the rest (reducing_gap=1): on a
        # 1024x768 photo 0.9 ms against 2.7 ms with a bilinear pass over twice the size (reducing_gap=2), and
        # this runs on every answer of the service.
        scale = THUMBNAIL / max(w, h)
        thumb = (max(1, round(w * scale)), max(1, round(h * scale)))
        small = small.resize(thumb, Image.Resampling.BILINEAR, reducing_gap=1.0)
    x = np.asarray(small, dtype=np.float32) / 255.0  # (h', w', 3)
    # Weighted sum, not `x @ _LUMA`: a matrix product wakes OpenBLAS's threads, which then spin on the cores the
    # model's next forward pass needs (measured: the service's inference took ~2x the Predictor's own).
    luma = x[..., 0] * _LUMA[0] + x[..., 1] * _LUMA[1] + x[..., 2] * _LUMA[2]  # (h', w')
    means = np.array([x[..., c].mean() for c in range(3)])  # (3,); a strided reshape(-1, 3).mean is 9x slower
    grey = float(means.mean())
    return {
        "width": int(capture[0]),
        "height": int(capture[1]),
        "brightness": float(luma.mean()),
        "contrast": float(luma.std()),
        "sharpness": laplacian_variance(luma),
        "mean_r": float(means[0]),
        "mean_g": float(means[1]),
        "mean_b": float(means[2]),
        "grey_world": float(means.std() / grey) if grey > 0 else 0.0,
        "dark_corner": dark_corner_share(luma),
    }


def laplacian_variance(luma: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian over the interior pixels of a (H, W) image in [0, 1]."""
    if min(luma.shape) < 3:
        return 0.0
    lap = luma[:-2, 1:-1] + luma[2:, 1:-1] + luma[1:-1, :-2] + luma[1:-1, 2:] - 4.0 * luma[1:-1, 1:-1]  # (H-2, W-2)
    return float(lap.var())


def dark_corner_share(luma: np.ndarray, dark: float = DARK_LUMA) -> float:
    """Share of the pixels outside the ellipse inscribed in a (H, W) image that are darker than ``dark``."""
    h, w = luma.shape
    yy = (np.arange(h, dtype=np.float32) - (h - 1) / 2) / (h / 2)
    xx = (np.arange(w, dtype=np.float32) - (w - 1) / 2) / (w / 2)
    corners = (yy[:, None] ** 2 + xx[None, :] ** 2) > 1.0  # (H, W)
    n = int(corners.sum())
    return float((luma[corners] < dark).sum() / n) if n else 0.0


__all__ = [
    "DARK_LUMA",
    "DRIFT_FEATURES",
    "FEATURES",
    "THUMBNAIL",
    "dark_corner_share",
    "image_features",
    "laplacian_variance",
]
