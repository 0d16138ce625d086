"""Drawing primitives for the synthetic dermoscopy generator: noise fields, soft shapes, warps.

Everything here works on float32 numpy arrays (values in [0, 1] unless said otherwise) or on PIL
images used as fast C rasterisers. Nothing here loops over pixels in Python: shapes are drawn by
PIL's ``ImageDraw`` (one call per shape) and softened by one Gaussian blur per layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

__all__ = [
    "Layer",
    "bezier",
    "blur",
    "ridge",
    "smooth_noise",
    "smoothstep",
    "warp_affine",
]


def smooth_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Band-limited noise with unit standard deviation and features about ``cell`` pixels wide.

    A small grid of independent normals is upsampled bicubically; cheap (the grid is tiny) and
    smooth, which is all skin mottling, pigment heterogeneity and network holes need.

    Args:
        rng: the random stream to draw the grid from.
        height: output height in pixels.
        width: output width in pixels.
        cell: grid spacing in output pixels (the size of one blob of the noise).

    Returns:
        Array (height, width) float32, mean ~0, std 1.
    """
    cell = max(float(cell), 1.0)
    gh = int(np.ceil(height / cell)) + 3
    gw = int(np.ceil(width / cell)) + 3
    grid = rng.standard_normal((gh, gw), dtype=np.float32)
    big_w, big_h = round(gw * cell), round(gh * cell)
    up = np.asarray(Image.fromarray(grid).resize((big_w, big_h), Image.BICUBIC))
    # Drop the border cells, where bicubic interpolation has no neighbour on one side.
    y0 = (big_h - height) // 2
    x0 = (big_w - width) // 2
    out = up[y0 : y0 + height, x0 : x0 + width]
    std = float(out.std())
    return (out - float(out.mean())) / (std if std > 1e-6 else 1.0)


def ridge(noise: np.ndarray, width: float | np.ndarray) -> np.ndarray:
    """Thin lines along the zero crossings of a smooth noise field (a labyrinth of cells).

    Zero crossings of band-limited noise form a closed, irregular net, which at dermoscopic
    resolution reads as a pigment network (or as skin furrows, or as cerebriform ridges).

    Args:
        noise: smooth noise with unit standard deviation.
        width: line half-width in noise units (0.15 thin ... 0.6 thick).

    Returns:
        Array of the same shape in [0, 1], 1 on the lines.
    """
    return np.exp(-np.square(noise / np.maximum(width, 1e-3)))


def smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    """Hermite step from 0 at ``edge0`` to 1 at ``edge1`` (either order), float32."""
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32, copy=False)


def blur(array: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a 2-D array (or each channel of a (H, W, C) array); a no-op for tiny sigma."""
    if sigma < 0.25:
        return array
    sig = (sigma, sigma, 0.0) if array.ndim == 3 else sigma
    return ndimage.gaussian_filter(array, sig, mode="nearest", truncate=3.0)


def bezier(points: np.ndarray, steps: int = 12) -> list[tuple[float, float]]:
    """Points along a quadratic or cubic Bezier curve given its 3 or 4 control points (N, 2)."""
    t = np.linspace(0.0, 1.0, steps)[:, None]
    if len(points) == 3:
        p0, p1, p2 = points
        curve = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
    else:
        p0, p1, p2, p3 = points[:4]
        curve = (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3
    return [(float(x), float(y)) for x, y in curve]


class Layer:
    """A single-channel coverage layer rasterised by PIL, read back as float32 in [0, 1].

    Shapes overwrite each other (no accumulation) with an opacity ``value`` in [0, 1], which is
    the right thing for opaque things like hairs, clods and marker ink.
    """

    def __init__(self, height: int, width: int) -> None:
        self.image = Image.new("L", (width, height), 0)
        self.draw = ImageDraw.Draw(self.image)
        self.empty = True

    @staticmethod
    def _v(value: float) -> int:
        return round(255 * min(max(value, 0.0), 1.0))

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, value: float = 1.0) -> None:
        """A filled axis-aligned ellipse centred on (cx, cy) with radii (rx, ry) in pixels."""
        rx, ry = max(rx, 0.5), max(ry, 0.5)
        self.draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=self._v(value))
        self.empty = False

    def ring(self, cx: float, cy: float, rx: float, ry: float, width: int, value: float = 1.0) -> None:
        """An ellipse outline of ``width`` pixels."""
        rx, ry = max(rx, 1.0), max(ry, 1.0)
        self.draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), outline=self._v(value), width=max(width, 1))
        self.empty = False

    def polygon(self, points: Sequence[tuple[float, float]], value: float = 1.0) -> None:
        """A filled polygon."""
        self.draw.polygon(list(points), fill=self._v(value))
        self.empty = False

    def line(self, points: Sequence[tuple[float, float]], width: float, value: float = 1.0) -> None:
        """A polyline. Widths under a pixel are drawn 1 pixel wide and proportionally fainter."""
        w = max(round(width), 1)
        if width < 1.0:
            value *= max(width, 0.2)
        self.draw.line(list(points), fill=self._v(value), width=w, joint="curve" if w > 2 else None)
        self.empty = False

    def array(self, soften: float = 0.0) -> np.ndarray:
        """The coverage as float32 (H, W) in [0, 1], blurred by ``soften`` pixels."""
        out = np.asarray(self.image, dtype=np.float32) * (1.0 / 255.0)
        return blur(out, soften) if soften > 0 else out


def warp_affine(
    channels: np.ndarray, size: tuple[int, int], matrix: tuple[float, ...], fill: Sequence[float]
) -> np.ndarray:
    """Resample a (H, W, C) float32 canvas into a (height, width, C) array with an inverse affine map.

    Args:
        channels: the source canvas, channels last.
        size: output (width, height) in pixels.
        matrix: PIL's (a, b, c, d, e, f): output pixel (x, y) reads source (a x + b y + c, d x + e y + f).
        fill: per-channel value for output pixels that fall outside the source.

    Returns:
        Array (height, width, C) float32, bilinear.
    """
    out = np.empty((size[1], size[0], channels.shape[2]), dtype=np.float32)
    for c in range(channels.shape[2]):
        src = Image.fromarray(np.ascontiguousarray(channels[:, :, c]))
        dst = src.transform(size, Image.AFFINE, matrix, resample=Image.BILINEAR, fillcolor=fill[c])
        out[:, :, c] = np.asarray(dst)
    return out
