"""Image features: each one moves the way its definition says, on images built to show it."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from dermascan.monitoring.features import FEATURES, dark_corner_share, image_features, laplacian_variance


def _noise_image(seed: int = 0, size: int = 64) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(60, 200, (size, size, 3), dtype=np.uint8))


def test_every_feature_is_there_and_grey_is_neutral() -> None:
    f = image_features(Image.new("RGB", (80, 60), (128, 128, 128)))
    assert set(f) == set(FEATURES)
    assert (f["width"], f["height"]) == (80, 60)
    assert abs(f["brightness"] - 128 / 255) < 1e-3 and f["contrast"] < 1e-6
    assert f["grey_world"] < 1e-6 and f["sharpness"] < 1e-9 and f["dark_corner"] == 0.0


def test_blur_lowers_the_laplacian_variance() -> None:
    sharp = _noise_image()
    blurred = sharp.filter(ImageFilter.GaussianBlur(2))
    assert image_features(blurred)["sharpness"] < 0.2 * image_features(sharp)["sharpness"]


def test_laplacian_variance_by_hand() -> None:
    # a single bright pixel in the centre of a 3x3 image: the one interior Laplacian is -4, its variance 0;
    # on 4x3 the two interior values are -4 and 1
    x = np.zeros((3, 4), np.float32)
    x[1, 1] = 1.0
    assert laplacian_variance(x) == np.var([-4.0, 1.0])


def test_a_colour_cast_raises_the_grey_world_deviation() -> None:
    neutral = image_features(Image.new("RGB", (32, 32), (120, 120, 120)))["grey_world"]
    blue = image_features(Image.new("RGB", (32, 32), (90, 120, 170)))["grey_world"]
    means = np.array([90, 120, 170]) / 255
    assert neutral < 1e-6 and abs(blue - means.std() / means.mean()) < 1e-5


def test_dark_corners_are_counted_outside_the_inscribed_ellipse() -> None:
    size = 64
    yy, xx = np.mgrid[0:size, 0:size]
    outside = np.hypot((yy - 31.5) / 32, (xx - 31.5) / 32) > 1
    luma = np.where(outside, 0.02, 0.6).astype(np.float32)
    assert dark_corner_share(luma) == 1.0
    luma[: size // 2] = 0.6  # the two top corners lit again
    assert abs(dark_corner_share(luma) - 0.5) < 0.02
    assert dark_corner_share(np.full((size, size), 0.6, np.float32)) == 0.0


def test_large_images_are_measured_on_a_thumbnail() -> None:
    f = image_features(Image.new("RGB", (2000, 1000), (200, 150, 120)))
    assert (f["width"], f["height"]) == (2000, 1000) and abs(f["mean_r"] - 200 / 255) < 1e-3


def test_a_draft_decoded_image_keeps_its_capture_size() -> None:
    """A JPEG decoded at 1/2 scale for the model is still a 2000x1000 capture to the quality checks."""
    full = image_features(Image.new("RGB", (2000, 1000), (200, 150, 120)))
    draft = image_features(Image.new("RGB", (1000, 500), (200, 150, 120)), size=(2000, 1000))
    assert (draft["width"], draft["height"]) == (2000, 1000)
    assert abs(draft["mean_r"] - full["mean_r"]) < 1e-6 and abs(draft["brightness"] - full["brightness"]) < 1e-6
