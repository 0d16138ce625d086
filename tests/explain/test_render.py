"""The torch-free renderer: normalisation, crop geometry, overlay, colour table, base64 PNG."""

from __future__ import annotations

import base64
import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from dermascan.config import Preprocessing
from dermascan.explain.render import (
    TURBO,
    crop_box_for,
    heatmap_from_maps,
    heatmap_on_image,
    normalize_map,
    overlay,
    resized_size,
    to_base64,
)


def test_render_imports_neither_torch_nor_matplotlib() -> None:
    code = (
        "import sys\n"
        "import dermascan.explain.render\n"
        "from dermascan.explain import heatmap_from_maps, overlay, to_base64\n"
        "bad = [m for m in ('torch', 'matplotlib') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_heatmap_relu_minmax_and_resize() -> None:
    maps = np.zeros((3, 2, 2), dtype=np.float32)
    maps[1] = [[-5.0, 1.0], [2.0, 3.0]]  # negatives are clipped by the ReLU
    maps[2] = [[9.0, 0.0], [0.0, 0.0]]
    heat = heatmap_from_maps(maps, 1, (20, 10))
    assert heat.shape == (10, 20) and heat.dtype == np.float32
    assert heat.min() >= 0 and heat.max() <= 1
    assert heat[-1, -1] == pytest.approx(1.0, abs=1e-4) and heat[0, 0] == pytest.approx(0.0)  # peak 1 - 2^-16
    # class 2 peaks top-left
    assert np.unravel_index(heatmap_from_maps(maps, 2, (20, 10)).argmax(), (10, 20)) == (0, 0)


def test_resized_heat_stays_in_unit_range_without_a_clip() -> None:
    rng = np.random.default_rng(0)
    for i in range(30):
        h, w = (int(v) for v in rng.integers(1, 16, 2))
        out_w, out_h = (int(v) for v in rng.integers(1, 900, 2))
        maps = rng.random((1, h, w)).astype(np.float32) ** 4  # peaky, like real maps
        heat = heatmap_from_maps(maps, 0, (out_w, out_h))
        assert heat.min() >= 0.0 and heat.max() <= 1.0, (i, heat.min(), heat.max())
    buf = np.full((40, 50), -1.0, dtype=np.float32)
    view = buf[5:25, 10:40]
    assert heatmap_from_maps(maps, 0, (30, 20), out=view) is view and view.min() >= 0 and buf[0, 0] == -1.0
    with pytest.raises(ValueError, match="out must be"):
        heatmap_from_maps(maps, 0, (30, 20), out=np.zeros((20, 30), np.float64))


def test_rendering_runs_blas_on_one_thread_and_restores_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from threadpoolctl import threadpool_info

    inside: list[int] = []
    matmul = np.matmul

    def spy(*args: object, **kwargs: object) -> np.ndarray:
        inside.extend(lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas")
        return matmul(*args, **kwargs)

    before = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    monkeypatch.setattr(np, "matmul", spy)
    heatmap_from_maps(np.ones((1, 7, 7), np.float32), 0, (64, 48))
    monkeypatch.undo()
    assert inside and set(inside) == {1}
    assert [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"] == before


def test_single_map_ignores_class_index_and_2d_is_accepted() -> None:
    m = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    np.testing.assert_array_equal(heatmap_from_maps(m, 5, (8, 8)), heatmap_from_maps(m[0], 0, (8, 8)))


@pytest.mark.parametrize("value", [0.0, 3.0, -2.0])
def test_flat_or_negative_map_gives_zeros_not_nan(value: float) -> None:
    heat = heatmap_from_maps(np.full((1, 3, 3), value, dtype=np.float32), 0, (6, 6))
    assert np.isfinite(heat).all() and heat.max() == 0
    assert normalize_map(np.full((2, 2), np.nan)).max() == 0


def test_bad_maps_raise() -> None:
    with pytest.raises(ValueError, match="out of range"):
        heatmap_from_maps(np.ones((7, 2, 2)), 7, (4, 4))
    with pytest.raises(ValueError, match=r"\(M, h, w\)"):
        heatmap_from_maps(np.ones((1, 1, 2, 2)), 0, (4, 4))


def test_crop_box_matches_the_eval_transform() -> None:
    import torch

    from dermascan.data.transforms import eval_transform

    # An image whose red channel encodes x and green encodes y: the crop's first/last pixels tell where it is.
    w, h = 300, 200
    xs = np.broadcast_to(np.linspace(0, 255, w), (h, w))
    ys = np.broadcast_to(np.linspace(0, 255, h)[:, None], (h, w))
    img = Image.fromarray(np.stack([xs, ys, np.zeros((h, w))], -1).round().astype(np.uint8))
    pre = Preprocessing(input_size=64, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    crop = eval_transform(pre)(img) * 255  # (3, 64, 64) in pixel values
    left, top, right, bottom = crop_box_for(img.size, pre)
    assert isinstance(left, int)
    to_x, to_y = (w - 1) / 255, (h - 1) / 255
    assert float(crop[0, 32, 0]) * to_x == pytest.approx(left, abs=3)
    assert float(crop[0, 32, -1]) * to_x == pytest.approx(right - 1, abs=3)
    assert float(crop[1, 0, 32]) * to_y == pytest.approx(top, abs=3)
    assert float(crop[1, -1, 32]) * to_y == pytest.approx(bottom - 1, abs=3)
    assert torch.is_tensor(crop)


def test_crop_box_of_a_square_image_at_input_size_is_the_centre() -> None:
    pre = Preprocessing(input_size=224)  # resize 256
    assert resized_size((512, 512), 256) == (256, 256)
    assert resized_size((400, 300), 256) == (341, 256)  # torchvision truncates the long side
    assert crop_box_for((256, 256), pre) == (16, 16, 240, 240)
    assert crop_box_for((512, 512), pre) == (32, 32, 480, 480)


def test_heatmap_on_image_leaves_the_margin_at_zero() -> None:
    pre = Preprocessing(input_size=32, resize_size=32)
    maps = np.ones((1, 4, 4), dtype=np.float32)
    maps[0, 0, 0] = 2.0
    heat, box = heatmap_on_image(maps, 0, (60, 40), pre)  # landscape: margins left and right
    assert heat.shape == (40, 60) and box == (10, 0, 50, 40)
    assert heat[:, :10].max() == 0 and heat[:, 50:].max() == 0
    assert heat[box[1] : box[3], box[0] : box[2]].max() == pytest.approx(1.0, abs=1e-4)


def test_overlay_blends_inside_the_box_only() -> None:
    img = Image.new("RGB", (60, 40), (200, 150, 120))
    heat = np.ones((40, 60), dtype=np.float32)
    out = overlay(img, heat, alpha=0.5, box=(10, 0, 50, 40))
    arr, base = np.asarray(out).astype(int), np.asarray(img).astype(int)
    assert out.size == img.size and out.mode == "RGB"
    np.testing.assert_array_equal(arr[:, :10], base[:, :10])
    expected = np.round(0.5 * base[0, 20] + 0.5 * TURBO[255]).astype(int)
    assert np.abs(arr[5, 20] - expected).max() <= 1  # PIL's blend truncates: within 1/255 of the formula
    assert not np.array_equal(arr[5, 20], base[5, 20])  # and it did colour the box
    np.testing.assert_array_equal(np.asarray(overlay(img, heat, alpha=0.0)), base)
    # A heat map of another size is resized to the image.
    assert overlay(img, np.ones((4, 6), dtype=np.float32)).size == img.size
    with pytest.raises(ValueError, match="alpha"):
        overlay(img, heat, alpha=1.5)


def test_turbo_table_matches_matplotlib() -> None:
    import matplotlib

    ref = matplotlib.colormaps["turbo"](np.linspace(0, 1, 256))[:, :3] * 255
    assert TURBO.shape == (256, 3) and TURBO.dtype == np.uint8
    assert np.abs(TURBO.astype(float) - ref).max() <= 8


def test_png_base64_round_trip() -> None:
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (9, 7, 3), dtype=np.uint8))
    decoded = Image.open(io.BytesIO(base64.b64decode(to_base64(img, "png"))))
    assert decoded.format == "PNG"
    np.testing.assert_array_equal(np.asarray(decoded), np.asarray(img))


def test_jpeg_overlay_is_close_to_the_lossless_one() -> None:
    yy, xx = np.mgrid[0:96, 0:128]
    photo = Image.fromarray(np.stack([150 + yy // 2, 100 + xx // 4, 90 + 0 * xx], -1).astype(np.uint8))
    heat = np.exp(-((yy - 48) ** 2 + (xx - 64) ** 2) / 800.0).astype(np.float32)  # (96, 128)
    img = overlay(photo, heat, alpha=0.45)
    decoded = Image.open(io.BytesIO(base64.b64decode(to_base64(img, "jpeg"))))
    assert decoded.format == "JPEG" and decoded.size == img.size
    assert np.abs(np.asarray(decoded, float) - np.asarray(img, float)).mean() < 2.0  # of 255
    with pytest.raises(ValueError, match="unknown image format 'gif'"):
        to_base64(img, "gif")
