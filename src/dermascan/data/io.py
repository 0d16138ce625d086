"""Image decoding shared by training, evaluation and serving. PIL and numpy only: no torch import,
so the torch-free serving path decodes exactly as training did."""

from __future__ import annotations

import io
import os
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from dermascan.errors import DermaScanError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

#: Smallest side we accept: below this a dermoscopic image has no usable detail.
MIN_SIDE = 16
#: Largest pixel count we decode (a 16k x 12k capture); guards against decompression bombs.
MAX_PIXELS = 200_000_000


class ImageError(DermaScanError, ValueError):
    """An image that cannot be used, with a message that names the file and the fix."""


def load_image(
    source: str | os.PathLike[str] | bytes, *, name: str | None = None, draft: int | None = None
) -> Image.Image:
    """Decode an image file or bytes into an RGB PIL image, upright.

    Conversions (documented, not errors): EXIF orientation is applied; greyscale, palette, CMYK and
    16-bit images are converted to 8-bit RGB; an alpha channel is composited on white (a transparent
    PNG export of a dermoscope photo has its lesion in the opaque part).

    Args:
        source: a path or the encoded bytes.
        name: how messages name the image (default: the path).
        draft: a JPEG whose shorter side is at least twice this is decoded at the largest DCT scale (1/2, 1/4,
            1/8) that keeps its shorter side at least ``draft`` (libjpeg's scaled decoding: a 1024x768 photo decodes
            at 512x384 without the inverse transform and colour conversion of the pixels it drops, 4.0 -> 3.1 ms for
            a noisy 213 KB file, and every later step has a quarter of the pixels). The size limits
            apply to the file's own size. ``None`` (and any other format): full scale. A model's
            :attr:`~dermascan.config.Preprocessing.jpeg_draft` says which it was trained with.

    Raises:
        ImageError: the file is missing, not an image, truncated, or too small/large.
    """
    label = name or (str(source) if not isinstance(source, bytes) else "<bytes>")
    try:
        fp = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")  # noqa: SIM115
    except FileNotFoundError as e:
        raise ImageError(f"{label}: file not found") from e
    try:
        with fp:
            img = Image.open(fp)
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise ImageError(f"{label}: {w}x{h} is larger than the {MAX_PIXELS:,} pixel limit; downscale it")
            if min(w, h) < MIN_SIDE:
                raise ImageError(f"{label}: {w}x{h} is too small (need at least {MIN_SIDE} px per side)")
            if draft is not None and img.format == "JPEG":
                img.draft(img.mode, (draft, draft))  # a square request: the shorter side decides the scale
            img.load()  # decode fully now so a truncated file fails here, not inside a training step
    except ImageError:
        raise
    except UnidentifiedImageError as e:
        raise ImageError(f"{label}: not an image file PIL can read (expected JPEG or PNG)") from e
    except (OSError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageError(f"{label}: unreadable or truncated image ({e})") from e
    return to_rgb(img)


def _rotated(img: Image.Image) -> bool:
    """Whether the EXIF orientation tag asks for a rotation or flip (1, or no tag, is upright)."""
    return img.getexif().get(0x0112, 1) != 1


def to_rgb(img: Image.Image) -> Image.Image:
    """Upright 8-bit RGB version of a decoded PIL image (see :func:`load_image` for the rules)."""
    # only when the tag asks for it: without one, exif_transpose still returns a full copy of the pixels
    img = ImageOps.exif_transpose(img) if _rotated(img) else img
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    elif img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: scale to 8 bits instead of clipping at 255.
        img = img.point(lambda v: v / 256).convert("L")
    return img.convert("RGB") if img.mode != "RGB" else img


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels."""
    with Image.open(path) as img:
        return img.size


def capture_size(header: tuple[int, int], decoded: Image.Image) -> tuple[int, int]:
    """The capture's upright (width, height): the file header's size, turned as :func:`load_image` turned the
    image (EXIF orientation), whatever scale it was decoded at (a JPEG draft)."""
    w, h = header
    return (w, h) if (decoded.width >= decoded.height) == (w >= h) else (h, w)


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
