"""The torch-free preprocessing equals the training eval transform (max |diff| < 1e-5 after normalisation)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from dermascan.config import Preprocessing
from dermascan.data.io import load_image
from dermascan.data.preprocess import geometry, preprocess, preprocess_batch
from dermascan.data.transforms import eval_transform


def _random_image(w: int, h: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def _assert_matches_eval_transform(img: Image.Image, pre: Preprocessing) -> None:
    want = eval_transform(pre)(img).numpy()  # (3, S, S)
    got = preprocess(img, pre)
    assert got.shape == want.shape == (3, pre.input_size, pre.input_size)
    assert got.dtype == np.float32
    assert float(np.abs(got - want).max()) < 1e-5


@pytest.mark.parametrize(
    ("size", "pre"),
    [
        ((120, 90), Preprocessing(input_size=64)),  # landscape
        ((90, 161), Preprocessing(input_size=64)),  # portrait, odd crop offset
        ((73, 73), Preprocessing(input_size=32, interpolation="bicubic")),  # square, bicubic
        ((16, 40), Preprocessing(input_size=32)),  # smaller than the input: upsampled
        ((37, 37), Preprocessing(input_size=32, resize_size=37)),  # already at the resize size: no resize
        ((301, 157), Preprocessing(input_size=56, resize_size=60, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))),
        ((1024, 768), Preprocessing(input_size=224, resize_size=232)),  # the ResNet-50 V2 recipe
    ],
)
def test_numpy_preprocessing_equals_eval_transform(size: tuple[int, int], pre: Preprocessing) -> None:
    _assert_matches_eval_transform(_random_image(*size, seed=size[0]), pre)


def test_random_shapes_equal_eval_transform() -> None:
    rng = np.random.default_rng(1)
    for i in range(8):
        w, h = (int(v) for v in rng.integers(16, 400, 2))
        pre = Preprocessing(
            input_size=int(rng.choice([32, 48, 64])), interpolation=str(rng.choice(["bilinear", "bicubic"]))
        )
        _assert_matches_eval_transform(_random_image(w, h, seed=i), pre)


def test_exif_rotated_jpeg_is_decoded_upright_then_matches() -> None:
    # A 60x40 landscape photo stored with EXIF orientation 6 (rotate 90 degrees clockwise to display).
    img = _random_image(60, 40, seed=3)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif, quality=95)
    upright = load_image(buf.getvalue())
    assert upright.size == (40, 60)  # displayed as portrait
    _assert_matches_eval_transform(upright, Preprocessing(input_size=32))


def test_geometry_follows_torchvision_truncation_and_rounding() -> None:
    pre = Preprocessing(input_size=224, resize_size=256)
    g = geometry((1024, 768), pre)
    assert g.resized == (341, 256)  # int(256 * 1024 / 768) = int(341.33)
    assert g.crop == (58, 16, 282, 240)  # round((341 - 224) / 2) = round(58.5) = 58 (half to even)


def test_batch_stacks_and_rejects_non_rgb() -> None:
    pre = Preprocessing(input_size=32)
    batch = preprocess_batch([_random_image(50, 40, 0), _random_image(40, 70, 1)], pre)
    assert batch.shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="RGB"):
        preprocess(_random_image(50, 40, 0).convert("L"), pre)
