"""Turn raw heat maps into an overlay on the patient's image. numpy + PIL only, never torch.

The serving process of an ONNX bundle never imports torch (it would add ~700 MiB and a second), so this
module is the whole rendering path: the ONNX graph returns raw maps (``heatmap_model``), and everything after
that happens here. matplotlib is not imported either: the colour map is a built-in 256-entry Turbo table.

Geometry: the model sees a centre crop of the resized image (``Preprocessing``: shorter side resized to
``resize_size``, then an ``input_size`` square centre crop). A heat map describes that square only, so
:func:`heatmap_on_image` maps it back onto the crop's region of the *original* image (:func:`crop_box_for`)
and leaves the cropped-out margin at zero; :func:`overlay` with ``box=`` leaves that margin uncoloured, so a
clinician sees which parts of the photo the model did not look at.

Serving recipe (``maps`` is the second output of an exported ``heatmap_model``, one image)::

    heat, box = heatmap_on_image(maps[0], class_index, image.size, preprocessing)  # (H, W) in [0, 1]
    attention_map = to_base64(overlay(image, heat, alpha=0.45, box=box), "jpeg")
"""

from __future__ import annotations

import base64
import contextlib
import functools
import io
from collections.abc import Iterator
from typing import Any

import numpy as np
from PIL import Image

from dermascan.config import Preprocessing

#: ``(left, top, right, bottom)`` in pixels of the original image, PIL's box convention.
Box = tuple[int, int, int, int]


# Google's Turbo colour map (Mikhailov, 2019) at 17 evenly spaced anchors (matplotlib's table, rounded to
# uint8); linear interpolation between them stays within 8/255 of the full table. Perceptually ordered,
# without the dark low end of inferno that would hide the skin underneath.
_TURBO_ANCHORS = (
    (48, 18, 59),
    (64, 64, 162),
    (70, 107, 227),
    (66, 148, 255),
    (40, 188, 235),
    (24, 221, 194),
    (50, 242, 152),
    (109, 254, 98),
    (164, 252, 60),
    (205, 236, 52),
    (238, 207, 58),
    (253, 172, 52),
    (251, 126, 33),
    (235, 80, 14),
    (208, 47, 5),
    (169, 22, 1),
    (122, 4, 3),
)


def _turbo_lut() -> np.ndarray:
    anchors = np.asarray(_TURBO_ANCHORS, dtype=np.float64)  # (17, 3)
    xs = np.linspace(0.0, 1.0, len(anchors))
    x = np.linspace(0.0, 1.0, 256)
    rgb = np.stack([np.interp(x, xs, anchors[:, c]) for c in range(3)], axis=1)  # (256, 3)
    return np.round(rgb).astype(np.uint8)


#: ``(256, 3)`` uint8 Turbo colour table; index ``round(heat * 255)``.
TURBO: np.ndarray = _turbo_lut()


def normalize_map(m: np.ndarray) -> np.ndarray:
    """ReLU, then min-max scale to ``[0, 1]``. A flat map (no evidence anywhere) becomes zeros, never NaN."""
    m = np.maximum(np.asarray(m, dtype=np.float32), 0.0)
    lo, hi = float(m.min()), float(m.max())
    if not np.isfinite(lo) or not np.isfinite(hi) or hi - lo <= 1e-12 * max(1.0, abs(hi)):
        return np.zeros_like(m, dtype=np.float32)
    return ((m - lo) / (hi - lo)).astype(np.float32)


def heatmap_from_maps(
    maps: np.ndarray, class_index: int, out_size: tuple[int, int], out: np.ndarray | None = None
) -> np.ndarray:
    """Pick the map of ``class_index``, ReLU, min-max normalise and resize it bilinearly.

    Args:
        maps: ``(M, h, w)`` raw maps of one image (``heatmap_model``'s second output without the batch
            axis): ``M = K`` CAMs of a CNN or ``M = 1`` attention map of a ViT. ``(h, w)`` is accepted as
            ``M = 1``.
        class_index: which class's map; ignored when ``M == 1`` (an attention map is class-agnostic).
        out_size: ``(width, height)`` of the result, PIL's order.
        out: write the result into this float32 ``(height, width)`` array (a view is fine) instead of a
            new one.

    Returns:
        ``(height, width)`` float32 heat in ``[0, 1]`` (``out`` when given).

    Raises:
        ValueError: wrong shape, or ``class_index`` out of range for ``M > 1``.
    """
    maps = np.asarray(maps)
    if maps.ndim == 2:
        maps = maps[None]  # (1, h, w)
    if maps.ndim != 3:
        raise ValueError(f"maps must be (M, h, w) for one image, got shape {maps.shape}")
    if maps.shape[0] == 1:
        m = maps[0]
    elif 0 <= class_index < maps.shape[0]:
        m = maps[class_index]
    else:
        raise ValueError(f"class_index {class_index} out of range for {maps.shape[0]} maps")
    heat = normalize_map(m)  # (h, w)
    width, height = int(out_size[0]), int(out_size[1])
    if width < 1 or height < 1:
        raise ValueError(f"out_size must be positive (width, height), got {out_size}")
    if out is not None and (out.shape != (height, width) or out.dtype != np.float32):
        raise ValueError(f"out must be float32 of shape {(height, width)}, got {out.dtype} {out.shape}")
    # Separable bilinear upsampling as two small matrix products: the same weights as PIL's BILINEAR resize,
    # about 10x faster than a float PIL image round trip (it was most of the heat map's serving cost).
    # Every output is a convex combination of values in [0, 1], so it cannot go below 0; scaling by
    # 1 - 2^-16 keeps float rounding of the weights (a few 1e-7) from stepping above 1 without a clipping
    # pass over the full-size map (a quarter of the rendering time; invisible: 255 colour levels).
    small = heat.astype(np.float32) * np.float32(1 - 2**-16)  # (h, w)
    with _one_blas_thread():
        rows = _bilinear_matrix(height, heat.shape[0]) @ small  # (H, w)
        return np.matmul(rows, _bilinear_matrix(width, heat.shape[1]).T, out=out)  # (H, W)


@contextlib.contextmanager
def _one_blas_thread() -> Iterator[None]:
    """numpy's BLAS on one thread inside the block.

    OpenBLAS's idle threads busy-wait after a multi-threaded product and take the cores from the model's next
    forward pass (measured on 2 cores: eager ResNet-50 37 -> 80 ms per image when rendering left them
    spinning); one thread also runs these products faster (0.15 vs 0.25 ms at 1024 x 768). The BLAS
    libraries are looked up once (threadpoolctl); switching them costs a microsecond per call.
    """
    libs = _blas_libraries()
    before = [lib.num_threads for lib in libs]
    for lib in libs:
        lib.set_num_threads(1)
    try:
        yield
    finally:
        for lib, n in zip(libs, before, strict=True):
            lib.set_num_threads(n)


@functools.cache
def _blas_libraries() -> tuple[Any, ...]:
    """threadpoolctl's controllers of the BLAS libraries loaded in this process (numpy's OpenBLAS, MKL)."""
    from threadpoolctl import ThreadpoolController

    return tuple(ThreadpoolController().select(user_api="blas").lib_controllers)


@functools.lru_cache(maxsize=64)
def _bilinear_matrix(out_len: int, in_len: int) -> np.ndarray:
    """``(out_len, in_len)`` interpolation weights of PIL's BILINEAR filter (its ``precompute_coeffs``)."""
    scale = in_len / out_len
    support = max(scale, 1.0)  # PIL widens the triangle when downsampling (antialiasing)
    w = np.zeros((out_len, in_len), dtype=np.float64)
    for x in range(out_len):
        center = (x + 0.5) * scale
        lo, hi = max(int(center - support + 0.5), 0), min(int(center + support + 0.5), in_len)
        taps = np.arange(lo, hi)
        k = np.maximum(0.0, 1.0 - np.abs((taps - center + 0.5) / support))
        w[x, lo:hi] = k / k.sum() if k.sum() > 0 else 0.0
    w = w.astype(np.float32)
    w.setflags(write=False)
    return w


def resized_size(image_size: tuple[int, int], resize_size: int) -> tuple[int, int]:
    """``(width, height)`` after torchvision's ``Resize(resize_size)``: shorter side to ``resize_size``."""
    w, h = int(image_size[0]), int(image_size[1])
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(resize_size * long / short)  # torchvision truncates, it does not round
    return (resize_size, new_long) if w <= h else (new_long, resize_size)


def crop_box_for(image_size: tuple[int, int], preprocessing: Preprocessing) -> Box:
    """Where the model's centre crop lies in the original image.

    Mirrors the eval transform: torchvision ``Resize(resize_size)`` (shorter side to ``resize_size``, longer
    side ``int(resize_size * long / short)``), then ``CenterCrop(input_size)`` (offset
    ``round((side - input_size) / 2)``), mapped back by the resize scale.

    Args:
        image_size: ``(width, height)`` of the original image.
        preprocessing: the model's eval preprocessing.

    Returns:
        ``(left, top, right, bottom)`` in original pixels, clipped to the image.
    """
    w, h = int(image_size[0]), int(image_size[1])
    s = int(preprocessing.input_size)
    rw, rh = resized_size((w, h), int(preprocessing.resize_size))
    left = round((rw - s) / 2.0)
    top = round((rh - s) / 2.0)
    sx, sy = w / rw, h / rh
    box = (round(left * sx), round(top * sy), round((left + s) * sx), round((top + s) * sy))
    return (max(0, box[0]), max(0, box[1]), min(w, box[2]), min(h, box[3]))


def heatmap_on_image(
    maps: np.ndarray, class_index: int, image_size: tuple[int, int], preprocessing: Preprocessing
) -> tuple[np.ndarray, Box]:
    """A heat map over the whole original image: the crop region carries the map, the margin is zero.

    Args:
        maps: ``(M, h, w)`` raw maps of one image (see :func:`heatmap_from_maps`).
        class_index: class to show when ``M > 1``.
        image_size: ``(width, height)`` of the original image.
        preprocessing: the model's eval preprocessing (which crop the model saw).

    Returns:
        ``(heat, box)``: ``(height, width)`` float32 in ``[0, 1]`` and the crop box (pass it to
        :func:`overlay` to leave the margin uncoloured).
    """
    box = crop_box_for(image_size, preprocessing)
    left, top, right, bottom = box
    heat = np.zeros((int(image_size[1]), int(image_size[0])), dtype=np.float32)  # (H, W)
    # Written in place: the map is most of the image, a temporary copy of it cost a third of the rendering.
    heatmap_from_maps(maps, class_index, (right - left, bottom - top), out=heat[top:bottom, left:right])
    return heat, box


def colorize(heat: np.ndarray) -> np.ndarray:
    """``(H, W)`` heat in ``[0, 1]`` -> ``(H, W, 3)`` uint8 Turbo colours."""
    return np.asarray(_turbo(heat))


def _turbo(heat: np.ndarray) -> Image.Image:
    """``(H, W)`` heat in ``[0, 1]`` (NaN counts as 0) -> the RGB image of its Turbo colours."""
    # fmax first: it maps NaN to 0 (fmin(NaN, 1) would give 1). PIL's palette lookup runs in C: numpy's fancy
    # indexing of a (H, W) index into the table costs ~5x more.
    idx = (np.fmin(np.fmax(heat, 0.0), 1.0) * 255.0 + 0.5).astype(np.uint8)  # (H, W)
    palette = Image.fromarray(idx, mode="L").convert("P")
    palette.putpalette(TURBO.tobytes())
    return palette.convert("RGB")


def overlay(image: Image.Image, heat: np.ndarray, alpha: float = 0.45, box: Box | None = None) -> Image.Image:
    """Blend the colour-mapped heat over the image: ``(1 - alpha) * image + alpha * turbo(heat)``.

    The colour lookup and the blend run in PIL's C code (within 1/255 of the float formula): it runs on every
    answer, and the numpy version took 4x as long on a 512 px overlay.

    Args:
        image: the image the heat map covers (converted to RGB).
        heat: ``(H, W)`` in ``[0, 1]``, the image's size (resized bilinearly if not).
        alpha: opacity of the colour layer, in ``[0, 1]``.
        box: colour only inside this ``(left, top, right, bottom)`` region (the model's crop, from
            :func:`heatmap_on_image`); ``None`` colours the whole image.

    Returns:
        A new RGB image of the same size.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    out = image.convert("RGB") if image.mode != "RGB" else image.copy()  # written below
    heat = np.asarray(heat, dtype=np.float32)
    if heat.shape != (out.height, out.width):
        heat = np.asarray(Image.fromarray(heat).resize(image.size, Image.Resampling.BILINEAR), dtype=np.float32)
    box = box if box is not None else (0, 0, out.width, out.height)
    left, top, right, bottom = box
    if right <= left or bottom <= top:
        return out
    colour = _turbo(heat[top:bottom, left:right])  # (h, w) RGB
    # only the box is blended: the margin outside it stays as photographed
    out.paste(Image.blend(out.crop(box), colour, alpha), (left, top))
    return out


def encode_png(img: Image.Image) -> bytes:
    """PNG bytes of an RGB (or L) image, fast: every row with PNG's "Up" filter, then zlib-ng at level 2.

    It runs on every answer of the service. PIL's encoder tries all five filters on every row (adaptive
    filtering) and compresses with the system zlib: on a 512 px overlay of a photo, ~17 ms against ~4 ms here
    for the same size (``benchmarks/bench_service.py`` prints both). The output is a standard 8-bit PNG.
    """
    import struct
    import zlib

    from zlib_ng import zlib_ng

    pixels = np.asarray(img if img.mode in ("RGB", "L") else img.convert("RGB"))
    h, w = pixels.shape[:2]
    rows = pixels.reshape(h, -1)  # (H, W * channels)
    raw = np.empty((h, rows.shape[1] + 1), np.uint8)
    raw[:, 0] = 2  # filter type Up: each byte minus the byte above it (mod 256)
    raw[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=raw[1:, 1:])

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    colour_type = 2 if pixels.ndim == 3 else 0  # truecolour or greyscale
    header = struct.pack(">IIBBBBB", w, h, 8, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib_ng.compress(raw.tobytes(), 2))
        + chunk(b"IEND", b"")
    )


#: How an overlay can be encoded (the service's ``attention_map_format``), by name: its media type.
MEDIA_TYPES = {"jpeg": "image/jpeg", "png": "image/png"}


def encode_image(img: Image.Image, format: str = "png") -> bytes:
    """An overlay encoded as ``png`` (lossless, :func:`encode_png`) or ``jpeg`` (quality 90, full-resolution
    colour: 4:4:4, so the heat map's colour edges are not halved).

    An overlay is a photograph with a colour layer: lossless PNG keeps the sensor noise, so it costs ~7x the
    bytes and ~8x the time of a JPEG that looks the same (``benchmarks/bench_service.py`` prints both). Over a
    clinic's uplink the bytes cost more than the encoding: ~300 KB of base64 PNG is a quarter of a second at
    10 Mbit/s.
    """
    if format == "png":
        return encode_png(img)
    if format == "jpeg":
        buf = io.BytesIO()
        img.convert("RGB").save(buf, format="JPEG", quality=90, subsampling=0)
        return buf.getvalue()
    raise ValueError(f"unknown image format {format!r}; use one of {sorted(MEDIA_TYPES)}")


def to_base64(img: Image.Image, format: str = "png") -> str:
    """:func:`encode_image` as base64 ASCII (the API's ``attention_map`` field)."""
    return base64.b64encode(encode_image(img, format)).decode("ascii")


__all__ = [
    "MEDIA_TYPES",
    "TURBO",
    "Box",
    "colorize",
    "crop_box_for",
    "encode_image",
    "encode_png",
    "heatmap_from_maps",
    "heatmap_on_image",
    "normalize_map",
    "overlay",
    "resized_size",
    "to_base64",
]
