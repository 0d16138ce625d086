from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dermascan.config import Preprocessing
from dermascan.data.transforms import Augmentation, eval_transform, train_transform


@pytest.fixture
def image() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8))


def test_eval_transform_shape_and_normalisation(image: Image.Image) -> None:
    pre = Preprocessing(input_size=48)
    x = eval_transform(pre)(image)
    assert x.shape == (3, 48, 48) and x.dtype == torch.float32
    # Undo the normalisation: values must be back in [0, 1].
    raw = x * torch.tensor(pre.std)[:, None, None] + torch.tensor(pre.mean)[:, None, None]
    assert raw.min() >= -1e-6 and raw.max() <= 1 + 1e-6


def test_eval_transform_is_deterministic_and_centre_crops(image: Image.Image) -> None:
    pre = Preprocessing(input_size=32, resize_size=32)
    a, b = eval_transform(pre)(image), eval_transform(pre)(image)
    torch.testing.assert_close(a, b)
    # resize_size == input_size on a 120x90 image: width int(32 * 120 / 90) = 42 -> crop columns 5..37.
    resized = image.resize((42, 32), Image.Resampling.BILINEAR)
    expected = (np.asarray(resized, dtype=np.float32)[:, 5:37] / 255 - pre.mean) / pre.std
    np.testing.assert_allclose(a.permute(1, 2, 0).numpy(), expected, atol=1e-5)


def test_train_transform_augments_but_keeps_shape(image: Image.Image) -> None:
    pre = Preprocessing(input_size=48)
    t = train_transform(pre, Augmentation(erasing=1.0))
    torch.manual_seed(0)
    a, b = t(image), t(image)
    assert a.shape == b.shape == (3, 48, 48)
    assert not torch.equal(a, b)


def test_bad_augmentation_and_preprocessing() -> None:
    with pytest.raises(ValueError, match="crop_scale"):
        Augmentation(crop_scale=(0.9, 0.1))
    with pytest.raises(ValueError, match="input_size"):
        Preprocessing(input_size=2)
    with pytest.raises(ValueError, match="interpolation"):
        Preprocessing(interpolation="nearest")
