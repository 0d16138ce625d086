"""The model's eval preprocessing in numpy and PIL only, so a serving process never needs torch.

It reproduces :func:`dermascan.data.transforms.eval_transform` step by step (a test holds the two within
1e-5 after normalisation, on images of many shapes):

1. resize the shorter side to ``resize_size`` with PIL's resampler (torchvision does the same on PIL input);
   the longer side becomes ``int(resize_size * long / short)``, truncated, as in torchvision;
2. centre-crop ``input_size`` with the offset ``int(round((size - crop) / 2))``, as in torchvision;
3. scale to [0, 1] and normalise with the model's mean and std, in float32.

Scaling and normalisation are one lookup table per channel (256 float32 values computed with the same
float32 operations torchvision uses), since the input is 8-bit: the same values, a few times faster.

Resizing only the region the crop keeps (``Image.resize(box=...)``) would skip ~40% of the resize work, but
PIL then rounds some filter weights differently (1-level differences in a few pixels), so it is not used.
JPEG draft decoding (DCT scaling, :attr:`dermascan.config.Preprocessing.jpeg_draft`) happens before this, in
:func:`dermascan.data.io.load_image`: it changes pixel values a little, so training and evaluation decode through
it too, and the model learns on what it is served.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from dermascan.config import Preprocessing

_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


@dataclass(frozen=True)
class Geometry:
    """Where the network input comes from in an image of a given size.

    Attributes:
        resized: (width, height) after resizing the shorter side to ``resize_size``.
        crop: (left, top, right, bottom) of the centre crop, in resized pixels.

    The crop in original-image pixels (where a heat map belongs) is
    :func:`dermascan.explain.render.crop_box_for`.
    """

    resized: tuple[int, int]
    crop: tuple[int, int, int, int]


def geometry(size: tuple[int, int], pre: Preprocessing) -> Geometry:
    """Resize and crop of an image of ``size`` = (width, height), computed as torchvision computes them."""
    w, h = size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = pre.resize_size, int(pre.resize_size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    crop = pre.input_size
    top = round((new_h - crop) / 2.0)  # Python rounds half to even, as torchvision does
    left = round((new_w - crop) / 2.0)
    return Geometry((new_w, new_h), (left, top, left + crop, top + crop))


@lru_cache(maxsize=16)
def _lookup_table(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """(3, 256) float32: normalised value of each 8-bit level per channel, with torchvision's float32 ops."""
    levels = np.arange(256, dtype=np.float32) * np.float32(1.0 / 255)  # ToDtype(float32, scale=True)
    mean_ = np.asarray(mean, dtype=np.float32)[:, None]
    std_ = np.asarray(std, dtype=np.float32)[:, None]
    return ((levels[None, :] - mean_) / std_).astype(np.float32)  # Normalize: (x - mean) / std


def crop_resized(img: Image.Image, pre: Preprocessing) -> Image.Image:
    """The resized, centre-cropped RGB image (``input_size`` square) the network sees, as PIL."""
    if img.mode != "RGB":
        raise ValueError(f"preprocess expects an RGB image (use dermascan.data.io.to_rgb), got mode {img.mode}")
    g = geometry(img.size, pre)
    if g.resized != img.size:
        img = img.resize(g.resized, _RESAMPLE[pre.interpolation])
    return img.crop(g.crop)


def to_input(img: Image.Image, pre: Preprocessing) -> np.ndarray:
    """Normalised float32 CHW array of an ``input_size`` RGB image (no resizing)."""
    arr = np.asarray(img, dtype=np.uint8)  # (H, W, 3)
    lut = _lookup_table(pre.mean, pre.std)  # (3, 256)
    out = np.empty((3, arr.shape[0], arr.shape[1]), dtype=np.float32)  # (3, H, W)
    for c in range(3):
        np.take(lut[c], arr[:, :, c], out=out[c])
    return out


def preprocess(img: Image.Image, pre: Preprocessing) -> np.ndarray:
    """An RGB PIL image to the network input: float32 array (3, input_size, input_size).

    Equal to ``eval_transform(pre)(img).numpy()`` within float32 rounding (< 1e-5).
    """
    return to_input(crop_resized(img, pre), pre)


def preprocess_batch(images: list[Image.Image], pre: Preprocessing) -> np.ndarray:
    """Stack of :func:`preprocess` outputs, shape (B, 3, input_size, input_size)."""
    return np.stack([preprocess(img, pre) for img in images])


__all__ = ["Geometry", "crop_resized", "geometry", "preprocess", "preprocess_batch", "to_input"]
