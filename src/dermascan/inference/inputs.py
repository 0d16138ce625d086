"""The Predictor's inputs: paths, bytes, PIL images or arrays, decoded to upright RGB with the size limits."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dermascan.config import Preprocessing
from dermascan.data.io import MAX_PIXELS, MIN_SIDE, ImageError, is_image_file, load_image, to_rgb
from dermascan.data.preprocess import preprocess
from dermascan.inference.results import ImageInput

__all__ = ["Prepared", "decode", "expand_paths", "name_of", "prepare_image"]


def expand_paths(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """Files as given (even without an image suffix, so a bad one gets its error) and the image files of
    folders, recursively and sorted."""
    for p in paths:
        p = Path(p)
        if p.is_dir():
            yield from sorted(f for f in p.rglob("*") if f.is_file() and is_image_file(f))
        else:
            yield p


def name_of(item: Any, index: int | None = None) -> str:
    if isinstance(item, str | os.PathLike):
        return str(item)
    filename = getattr(item, "filename", None)  # a PIL image opened from a file
    if isinstance(filename, str) and filename:
        return filename
    return f"image-{index}" if index is not None else "image"


def decode(item: ImageInput, label: str, draft: int | None = None) -> Image.Image:
    """Any accepted input -> upright RGB PIL image, with the size limits of :func:`load_image`.

    ``draft``: :func:`load_image`'s reduced-scale JPEG decoding, for files and bytes (an image already decoded
    is taken as it is).
    """
    if isinstance(item, str | os.PathLike | bytes | bytearray | memoryview):
        data = bytes(item) if isinstance(item, bytearray | memoryview) else item
        return load_image(data, name=label, draft=draft)
    if isinstance(item, Image.Image):
        img = item
    elif isinstance(item, np.ndarray):
        if item.dtype != np.uint8 or item.ndim not in (2, 3) or (item.ndim == 3 and item.shape[2] not in (1, 3, 4)):
            raise ImageError(
                f"{label}: an image array must be uint8 (H, W), (H, W, 3) RGB or (H, W, 4) RGBA, got "
                f"{item.dtype} {item.shape}; convert floats with (x * 255).round().astype(np.uint8)"
            )
        img = Image.fromarray(item[:, :, 0] if item.ndim == 3 and item.shape[2] == 1 else item)
    else:
        raise ImageError(f"{label}: unsupported input type {type(item).__name__} (path, bytes, PIL image or array)")
    w, h = img.size
    if w * h > MAX_PIXELS:
        raise ImageError(f"{label}: {w}x{h} is larger than the {MAX_PIXELS:,} pixel limit; downscale it")
    if min(w, h) < MIN_SIDE:
        raise ImageError(f"{label}: {w}x{h} is too small (need at least {MIN_SIDE} px per side)")
    return to_rgb(img)


@dataclass
class Prepared:
    """An image after decoding and preprocessing (or the error it raised)."""

    name: str
    rgb: Image.Image | None = None
    x: np.ndarray | None = None  # (3, S, S)
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)


def prepare_image(item: ImageInput, pre: Preprocessing, name: str | None = None) -> Prepared:
    """Decode and preprocess one image as every Predictor does; errors are caught and returned, never raised.

    A function of its own so that decoding can run where no model is loaded (the decode tasks of
    :mod:`dermascan.scoring`, ahead of the actors that hold the model).

    Returns:
        The decoded image, its network input ``x`` (3, S, S) and stage timings, or ``error`` (a message that
        names the image and what is wrong).
    """
    label = name or name_of(item)
    p = Prepared(label)
    t0 = time.perf_counter()
    try:
        p.rgb = decode(item, label, pre.jpeg_draft)
        t1 = time.perf_counter()
        p.x = preprocess(p.rgb, pre)
        t2 = time.perf_counter()
        p.timings = {"decode": (t1 - t0) * 1e3, "preprocess": (t2 - t1) * 1e3}
    except ImageError as e:
        p.error = str(e)
    except Exception as e:  # an unexpected decoder failure must not stop a folder run
        p.error = f"{label}: could not be decoded ({type(e).__name__}: {e})"
    return p
