"""JPEG draft decoding (:attr:`Preprocessing.jpeg_draft`): one decode for training, evaluation and serving."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dermascan.config import DRAFT_MIN_SIDE, Preprocessing
from dermascan.data.datasets import DermoscopyDataset
from dermascan.data.io import capture_size, load_image
from dermascan.data.preprocess import preprocess
from dermascan.data.transforms import eval_transform
from dermascan.inference.inputs import prepare_image
from dermascan.testing import synthetic_jpeg


def _png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.open(io.BytesIO(synthetic_jpeg(width, height))).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("size", "draft", "decoded"),
    [
        ((1024, 768), 384, (512, 384)),  # 1/2 keeps the shorter side at 384
        ((1024, 768), 256, (512, 384)),  # 1/4 would give 192 < 256
        ((1024, 768), 96, (128, 96)),  # 1/8
        ((768, 1024), 384, (384, 512)),  # portrait: the shorter side decides too
        ((600, 450), 256, (600, 450)),  # 1/2 would give 225 < 256: full scale
        ((1024, 768), None, (1024, 768)),
    ],
)
def test_draft_scale_keeps_the_shorter_side(size: tuple[int, int], draft: int | None, decoded: tuple[int, int]) -> None:
    img = load_image(synthetic_jpeg(*size), draft=draft)
    assert img.size == decoded and img.mode == "RGB"


def test_draft_only_touches_jpeg_and_changes_pixels_little() -> None:
    assert load_image(_png(1024, 768), draft=256).size == (1024, 768)  # PNG has no DCT scaling
    pre = Preprocessing(input_size=224)
    data = synthetic_jpeg()
    full = preprocess(load_image(data), pre)
    draft = preprocess(load_image(data, draft=pre.jpeg_draft), pre)
    assert full.shape == draft.shape == (3, 224, 224)
    # normalised units (~1/0.226 per unit of [0, 1]): a few hundredths at most, not a different image
    assert 0 < np.abs(full - draft).mean() < 0.02


def test_preprocessing_field_defaults_and_old_records() -> None:
    assert Preprocessing(input_size=224).jpeg_draft == DRAFT_MIN_SIDE
    assert Preprocessing(input_size=448).jpeg_draft == 512  # never below the resize size
    assert Preprocessing(input_size=64, jpeg_draft=None).jpeg_draft is None
    pre = Preprocessing(input_size=96)
    assert Preprocessing.from_dict(pre.to_dict()) == pre
    # a manifest or checkpoint written before the field existed: its model saw full-scale decodes
    old = {k: v for k, v in pre.to_dict().items() if k != "jpeg_draft"}
    assert Preprocessing.from_dict(old).jpeg_draft is None


@pytest.mark.parametrize("jpeg_draft", [DRAFT_MIN_SIDE, None])
def test_training_reader_and_predictor_decode_alike(tmp_path, jpeg_draft: int | None) -> None:
    """The dataset training and evaluation read gives the Predictor's input, draft or not."""
    pre = Preprocessing(input_size=64, jpeg_draft=jpeg_draft)
    path = tmp_path / "big.jpg"
    path.write_bytes(synthetic_jpeg(1024, 768, seed=3))
    frame = pd.DataFrame({"path": [str(path)], "label": [0], "image_id": ["big"]})
    x_train, _ = DermoscopyDataset(frame, eval_transform(pre), pre.jpeg_draft)[0]  # (3, 64, 64)
    prepared = prepare_image(path, pre)
    assert prepared.error is None
    expected = (512, 384) if jpeg_draft else (1024, 768)
    assert prepared.rgb.size == expected
    np.testing.assert_allclose(x_train.numpy(), prepared.x, atol=1e-5)
    # bytes and paths decode the same way
    np.testing.assert_array_equal(prepare_image(path.read_bytes(), pre).x, prepared.x)


def test_capture_size_is_upright_whatever_the_decode_scale() -> None:
    """An EXIF-rotated 1024x768 JPEG is a 768x1024 capture, at full scale or drafted."""
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees to display
    Image.open(io.BytesIO(synthetic_jpeg(1024, 768))).save(buf, format="JPEG", exif=exif)
    data = buf.getvalue()
    for draft in (None, 384):
        img = load_image(data, draft=draft)
        assert img.height > img.width
        assert capture_size((1024, 768), img) == (768, 1024)
