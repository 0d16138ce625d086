"""What the Predictor returns for one image: a :class:`Prediction`, or a :class:`PredictionError`."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
from PIL import Image

from dermascan.taxonomy import API_NAMES

__all__ = ["ImageInput", "Prediction", "PredictionError", "Result", "write_overlay"]

#: What :meth:`Predictor.predict` accepts per image.
ImageInput = Union[str, os.PathLike, bytes, Image.Image, np.ndarray]  # noqa: UP007 (a runtime alias)


@dataclass
class Prediction:
    """The result for one image.

    Attributes:
        image: the image's name (its path, or the name given).
        probabilities: calibrated class probabilities by class code, in the ISIC 2018 order.
        primary: code of the diagnosis by DermaScan's decision rule (melanoma exactly when flagged).
        confidence: probability of ``primary``.
        melanoma_risk: calibrated ``p(melanoma)``.
        melanoma_flag: ``melanoma_risk >= threshold`` (uncalibrated model: the argmax is melanoma).
        risk_band: ``low`` / ``moderate`` / ``high``, or ``None`` for an uncalibrated model.
        threshold: the melanoma operating threshold used (``None``: uncalibrated).
        model_version: version of the model that answered.
        heatmap: (H, W) float32 in [0, 1] over the decoded (upright) image, for the ``primary`` class;
            zero outside the centre crop the model saw. ``None`` unless asked for.
        heatmap_box: (left, top, right, bottom) of that crop in the image.
        heatmap_path: where ``predict_paths(heatmap_dir=...)`` wrote the overlay PNG.
        timings_ms: decode, preprocess, inference (the batch's time divided by its size), heatmap, total.
        embedding: (k,) float32, the penultimate features through the bundle's projection (what embedding drift
            compares), or ``None`` (no projection, or a graph without the features output).
    """

    image: str
    probabilities: dict[str, float]
    primary: str
    confidence: float
    melanoma_risk: float
    melanoma_flag: bool
    risk_band: str | None
    threshold: float | None
    model_version: str
    heatmap: np.ndarray | None = field(default=None, repr=False)
    heatmap_box: tuple[int, int, int, int] | None = None
    heatmap_path: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    embedding: np.ndarray | None = field(default=None, repr=False)
    _rgb: Image.Image | None = field(default=None, repr=False, compare=False)

    @property
    def primary_name(self) -> str:
        """API name of the primary diagnosis (``melanocytic_nevus``)."""
        return API_NAMES[self.primary]

    def overlay(self, alpha: float = 0.45, max_side: int = 0) -> Image.Image:
        """The heat map blended over the image (only inside the crop the model saw).

        Args:
            alpha: opacity of the colour layer.
            max_side: downscale so the longer side is at most this many pixels (0: the image's size). The
                image and the map are downscaled *before* blending: blending a 12-megapixel capture at full
                size and shrinking it afterwards costs seconds.
        """
        from dermascan.explain.render import overlay

        if self.heatmap is None or self._rgb is None:
            raise ValueError(f"{self.image}: no heat map; predict with heatmap=True")
        rgb, heat, box = self._rgb, self.heatmap, self.heatmap_box
        w, h = rgb.size
        if max_side and max(w, h) > max_side:
            scale = max_side / max(w, h)
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            factor = int(1 / scale)
            if factor >= 2:  # a box filter by the integer part first: a tenth of the cost of a bilinear resize
                rgb = rgb.reduce(factor)
            if rgb.size != size:
                rgb = rgb.resize(size, Image.Resampling.BILINEAR)
            # The heat map is smooth (a 7x7 or 14x14 grid upsampled): sampling it at the new pixel centres loses
            # nothing visible and costs a fifth of resizing it.
            rows = ((np.arange(size[1]) + 0.5) * h / size[1]).astype(np.intp)
            cols = ((np.arange(size[0]) + 0.5) * w / size[0]).astype(np.intp)
            heat = heat.take(rows, axis=0).take(cols, axis=1)  # (h', w'); twice as fast as heat[np.ix_(...)]
            box = None if box is None else tuple(round(v * scale) for v in box)
        return overlay(rgb, heat, alpha=alpha, box=box)

    def overlay_base64(self, alpha: float = 0.45, max_side: int = 0, format: str = "png") -> str:
        """:meth:`overlay` as base64 ``png`` or ``jpeg`` (the API's ``attention_map``)."""
        from dermascan.explain.render import to_base64

        return to_base64(self.overlay(alpha, max_side), format)

    @staticmethod
    def media_type(format: str) -> str:
        """The media type of an overlay encoded as ``format`` (``jpeg``: ``image/jpeg``)."""
        from dermascan.explain.render import MEDIA_TYPES

        return MEDIA_TYPES[format]

    def embedding_list(self) -> list[float] | None:
        """The embedding as JSON-ready floats (the store's ``embedding`` column), or ``None``."""
        return None if self.embedding is None else [round(float(v), 5) for v in self.embedding]

    def release_images(self) -> None:
        """Drop the decoded image and the heat map (the overlay can no longer be drawn): keeps memory flat."""
        self.heatmap, self._rgb = None, None

    def to_dict(self, heatmap_png: bool = False) -> dict[str, Any]:
        """JSON-ready dict (one line of ``dermascan predict``).

        Args:
            heatmap_png: add ``heatmap_png``, the overlay as base64 PNG (the API's ``attention_map``).
        """
        out: dict[str, Any] = {
            "image": self.image,
            "probabilities": {k: round(v, 6) for k, v in self.probabilities.items()},
            "primary": self.primary,
            "primary_name": self.primary_name,
            "confidence": round(self.confidence, 6),
            "melanoma_risk": round(self.melanoma_risk, 6),
            "melanoma_flag": self.melanoma_flag,
            "risk_band": self.risk_band,
            "threshold": self.threshold,
            "model_version": self.model_version,
        }
        if self.heatmap_path is not None:
            out["heatmap"] = self.heatmap_path
        if heatmap_png:
            out["heatmap_png"] = self.overlay_base64()
        return out


@dataclass
class PredictionError:
    """An image that could not be analysed, and why (the message names the file and the fix)."""

    image: str
    error: str

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.image, "error": self.error}


Result = Prediction | PredictionError


def write_overlay(pred: Prediction, out_dir: Path, used: set[str]) -> Path:
    stem = Path(pred.image).stem or "image"
    name, n = f"{stem}_heatmap.png", 1
    while name in used:  # two files with one name in different folders
        n += 1
        name = f"{stem}_{n}_heatmap.png"
    used.add(name)
    from dermascan import _io

    buf = io.BytesIO()
    pred.overlay().save(buf, format="PNG")
    return _io.write_bytes(out_dir / name, buf.getvalue())
