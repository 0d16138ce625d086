"""Lesion size for the error analysis: from the clinical diameter, a lesion mask, or the image itself.

Sizes come from the first source available: ``diameter_mm`` (small < 6 mm, the "D" of the ABCD rule; medium
6-10 mm; large > 10 mm), ``mask_path`` (the lesion's fraction of the image area, cut at its tertiles in these
data), or the image (Otsu threshold on a smoothed grey image, the largest dark region, holes filled; a rough
proxy used only when neither diameter nor mask exists).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage

__all__ = [
    "SIZE_BINS_MM",
    "SIZE_GROUPS",
    "as_rgb",
    "estimate_lesion_fraction",
    "lesion_size_groups",
    "load_image",
    "mask_area_fraction",
    "otsu_threshold",
    "resolve_path",
]

#: Diameter cuts in mm: small < 6 (the ABCD rule's "D"), medium 6-10, large > 10.
SIZE_BINS_MM: tuple[float, float] = (6.0, 10.0)
SIZE_GROUPS: tuple[str, ...] = ("small", "medium", "large")
# Images and masks are read at most this large: area fractions barely change and memory stays small.
_MAX_SIDE = 256


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold: the cut that maximises the between-class variance of ``values``' histogram.

    Returns:
        The threshold (values ``<=`` it form the darker class); NaN when all values are equal.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    lo, hi = float(v.min()), float(v.max())
    if not hi > lo:
        return math.nan
    hist, edges = np.histogram(v, bins=bins, range=(lo, hi))
    centres = 0.5 * (edges[:-1] + edges[1:])
    w0 = np.cumsum(hist).astype(np.float64)  # (bins,) weight at or below each cut
    w1 = w0[-1] - w0
    m = np.cumsum(hist * centres)
    with np.errstate(invalid="ignore", divide="ignore"):
        mu0 = m / w0
        mu1 = (m[-1] - m) / w1
        between = w0 * w1 * (mu0 - mu1) ** 2
    return float(centres[int(np.nanargmax(between[:-1]))])


def as_rgb(image: Any) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise ValueError(f"expected an RGB image (H, W, 3), got an array of shape {arr.shape}")
    return arr[..., :3]


def estimate_lesion_fraction(image: Any) -> float:
    """Estimate the lesion's fraction of the image area from the image alone.

    Grey image, Gaussian smoothing (so hair and texture do not split the lesion), Otsu threshold, then the
    largest dark connected region with its holes filled. Dark regions touching the border (dermoscope
    vignette corners) are passed over for an inner region at least a quarter their size, since a lesion
    is normally centred. A rough proxy: pale lesions, dense hair or dark skin can fool it.

    Args:
        image: RGB image, a (H, W, 3) array or a PIL image.

    Returns:
        Area fraction in [0, 1]; NaN for a uniform image (nothing to segment).
    """
    rgb = as_rgb(image).astype(np.float64)
    grey = rgb @ np.array([0.299, 0.587, 0.114])  # (H, W) luma
    h, w = grey.shape
    smooth = ndimage.gaussian_filter(grey, sigma=max(1.0, min(h, w) / 64.0))
    t = otsu_threshold(smooth)
    if math.isnan(t):
        return math.nan
    labels, n = ndimage.label(smooth <= t)
    if n == 0:
        return 0.0
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]  # (n,) pixels per region
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    touches = np.isin(np.arange(1, n + 1), border)
    best = int(np.argmax(sizes))
    inner = np.where(touches, 0, sizes)
    if touches[best] and inner.max() >= 0.25 * sizes[best]:
        best = int(np.argmax(inner))
    region = ndimage.binary_fill_holes(labels == best + 1)
    return float(region.mean())


def resolve_path(path: Any, image_root: str | os.PathLike[str] | None) -> Path | None:
    if path is None or (isinstance(path, float) and math.isnan(path)) or str(path) == "":
        return None
    p = Path(str(path))
    return p if p.is_absolute() or image_root is None else Path(image_root) / p


def load_image(path: Path | None, mode: str = "RGB", resample: int = Image.BILINEAR) -> np.ndarray | None:
    if path is None:
        return None
    try:
        with Image.open(path) as img:
            img.draft(mode, (_MAX_SIDE, _MAX_SIDE))  # JPEG decodes at reduced scale; a no-op for PNG
            img = img.convert(mode)
            img.thumbnail((_MAX_SIDE, _MAX_SIDE), resample)
            return np.asarray(img)
    except (OSError, ValueError):
        return None  # a missing or unreadable file is counted as "unknown", not a crash


def mask_area_fraction(path: str | os.PathLike[str]) -> float:
    """Lesion fraction of the image area in a binary mask PNG (0 background, 255 lesion); NaN if unreadable."""
    mask = load_image(Path(path), mode="L", resample=Image.NEAREST)
    return math.nan if mask is None else float(np.mean(mask > 127))


def _tertiles(fraction: np.ndarray) -> tuple[np.ndarray, list[float]]:
    known = fraction[np.isfinite(fraction)]
    if known.size == 0:
        return np.full(len(fraction), None, dtype=object), []
    edges = [float(e) for e in np.quantile(known, [1.0 / 3.0, 2.0 / 3.0])]
    groups = np.where(fraction <= edges[0], "small", np.where(fraction <= edges[1], "medium", "large"))
    return np.where(np.isfinite(fraction), groups, None), edges


def lesion_size_groups(
    predictions: pd.DataFrame, image_root: str | os.PathLike[str] | None = None
) -> tuple[pd.Series, dict[str, Any]]:
    """Size group (``small`` / ``medium`` / ``large``, ``None`` when unknown) of each row, and how it was found.

    The source is the first of ``diameter_mm``, ``mask_path`` and the image at ``path`` that the frame has
    (see the module docstring for the bins).

    Args:
        predictions: the predictions frame.
        image_root: folder that relative ``path`` / ``mask_path`` values are relative to (default: as given).

    Returns:
        ``(groups, info)``: a Series aligned with ``predictions``, and ``{"source", "bins", "edges",
        "n_unknown"}`` (``source`` is ``None``, with a ``reason``, when no source exists).
    """
    cols = predictions.columns
    if "diameter_mm" in cols and predictions["diameter_mm"].notna().any():
        d = pd.to_numeric(predictions["diameter_mm"], errors="coerce").to_numpy(dtype=np.float64)
        small, large = SIZE_BINS_MM
        groups = np.where(d < small, "small", np.where(d <= large, "medium", "large"))
        groups = np.where(np.isfinite(d), groups, None)
        info: dict[str, Any] = {
            "source": "diameter_mm", "unit": "mm", "edges": list(SIZE_BINS_MM),
            "bins": {"small": f"< {small:g} mm", "medium": f"{small:g}-{large:g} mm", "large": f"> {large:g} mm"},
        }  # fmt: skip
    elif "mask_path" in cols and predictions["mask_path"].notna().any():
        fraction = np.array([mask_area_fraction(p) if (p := resolve_path(v, image_root)) else math.nan
                             for v in predictions["mask_path"]])  # fmt: skip
        groups, edges = _tertiles(fraction)
        info = {"source": "mask", "unit": "fraction of image area", "edges": edges, "bins": _tertile_bins(edges)}
    elif "path" in cols:
        fraction = []
        for v in predictions["path"]:
            rgb = load_image(resolve_path(v, image_root))
            fraction.append(math.nan if rgb is None else estimate_lesion_fraction(rgb))
        groups, edges = _tertiles(np.array(fraction, dtype=np.float64))
        info = {"source": "image", "unit": "fraction of image area (Otsu estimate)", "edges": edges,
                "bins": _tertile_bins(edges)}  # fmt: skip
    else:
        groups = np.full(len(predictions), None, dtype=object)
        info = {"source": None, "reason": "no diameter_mm, mask_path or path column: lesion size is unknown"}
    series = pd.Series(groups, index=predictions.index, dtype=object)
    info["n_unknown"] = int(series.isna().sum())
    return series, info


def _tertile_bins(edges: list[float]) -> dict[str, str]:
    if not edges:
        return {}
    return {"small": f"<= {edges[0]:.3f}", "medium": f"{edges[0]:.3f}-{edges[1]:.3f}", "large": f"> {edges[1]:.3f}"}
