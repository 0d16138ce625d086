"""The Predictor: good and bad files, input order, heat maps, folders, runtimes, and the torch-free ONNX path."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dermascan.inference import (
    Prediction,
    PredictionError,
    Predictor,
    RuntimeUnavailableError,
    available_runtimes,
    choose_runtime,
)
from dermascan.inference.runtimes import backend_for_model
from dermascan.models import load_checkpoint
from dermascan.taxonomy import API_NAMES, CLASSES
from dermascan.testing import random_bundle, random_run, synthetic_jpeg

OPERATING_POINT = {
    "temperature": 1.2,
    "threshold": 0.25,
    "target_sensitivity": 0.9,
    "criterion": "point",
    "risk_bands": {"moderate": 0.08, "high": 0.25},
    "selected_on": "val",
    "validation": {},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = random_run(tmp_path_factory.mktemp("run") / "cnn", "resnet18", image_size=32)
    (run / "operating_point.json").write_text(json.dumps(OPERATING_POINT))
    return run


@pytest.fixture(scope="module")
def predictor(run: Path) -> Predictor:
    return Predictor.from_path(run, runtime="torch", device="cpu", batch_size=2)


@pytest.fixture(scope="module")
def onnx_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One random-weight resnet18 bundle shared by the test modules of a session.
    return random_bundle(tmp_path_factory.getbasetemp() / "shared-resnet18-64", "resnet18", 64, reuse=True)


# ------------------------------------------------------------------------------------------ test files


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` with almost no pixel data: a decompression-bomb stand-in."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def _exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape 90x60, displayed portrait 60x90
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 90, 3), dtype=np.uint8)).save(
        buf, format="JPEG", exif=exif
    )
    return buf.getvalue()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (70, 90, 3), dtype=np.uint8))
    good_jpeg = synthetic_jpeg(120, 90, seed=1)
    content = {
        "a_good.jpg": good_jpeg,
        "b_not_an_image.jpg": b"this is a text file, not a JPEG",
        "c_truncated.jpg": good_jpeg[: len(good_jpeg) // 2],
        "d_tiny.png": _png(Image.new("RGB", (4, 4), (120, 80, 60))),
        "e_cmyk.jpg": _jpeg(rgb.convert("CMYK")),
        "f_grey.png": _png(rgb.convert("L")),
        "g_rgba.png": _png(rgb.convert("RGBA")),
        "h_exif.jpg": _exif_rotated_jpeg(),
        "i_huge.png": _png_header_only(30_000, 20_000),
    }
    for name, data in content.items():
        (d / name).write_bytes(data)
    (d / "notes.txt").write_text("skipped in folder runs: not an image suffix")
    return {name: d / name for name in content}


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG")
    return buf.getvalue()


BAD = {
    "b_not_an_image.jpg": "not an image",
    "c_truncated.jpg": "truncated",
    "d_tiny.png": "too small",
    "i_huge.png": "exceeds limit",
}  # PIL's decompression-bomb guard fires before DermaScan's own limit


# ------------------------------------------------------------------------------------------------ tests


def test_good_and_bad_files_in_input_order(predictor: Predictor, files: dict[str, Path]) -> None:
    paths = list(files.values())
    results = predictor.predict(paths)
    assert [r.image for r in results] == [str(p) for p in paths]
    for name, r in zip(files, results, strict=True):
        if name in BAD:
            assert isinstance(r, PredictionError), name
            assert BAD[name] in r.error and name in r.error
            assert r.to_dict() == {"image": str(files[name]), "error": r.error}
        else:
            assert isinstance(r, Prediction), (name, r)


def test_prediction_fields(predictor: Predictor, files: dict[str, Path]) -> None:
    (r,) = predictor.predict([files["a_good.jpg"]])
    d = r.to_dict()
    assert list(d["probabilities"]) == list(CLASSES)
    assert abs(sum(r.probabilities.values()) - 1) < 1e-6
    assert d["primary_name"] == API_NAMES[d["primary"]]
    assert d["confidence"] == pytest.approx(r.probabilities[r.primary], abs=1e-6)
    assert d["melanoma_risk"] == pytest.approx(r.probabilities["MEL"], abs=1e-6)
    assert d["melanoma_flag"] == (r.melanoma_risk >= 0.25) and d["threshold"] == 0.25
    expected_band = "high" if r.melanoma_risk >= 0.25 else "moderate" if r.melanoma_risk >= 0.08 else "low"
    assert d["risk_band"] == expected_band
    assert d["model_version"].startswith("cnn-")
    assert json.loads(json.dumps(d)) == d
    assert set(r.timings_ms) >= {"decode", "preprocess", "inference", "total"}


def test_temperature_and_threshold_are_applied(predictor: Predictor, run: Path, files: dict[str, Path]) -> None:
    loaded = load_checkpoint(run / "best.ckpt")
    x = predictor.prepare(files["a_good.jpg"]).x[None]
    with torch.no_grad():
        logits = loaded.model(torch.from_numpy(x)).numpy()
    want = torch.softmax(torch.from_numpy(logits) / 1.2, dim=1).numpy()[0]
    (r,) = predictor.predict([files["a_good.jpg"]])
    np.testing.assert_allclose([r.probabilities[c] for c in CLASSES], want, atol=1e-5)


def test_flag_follows_the_threshold_not_the_argmax() -> None:
    probs = np.array([[0.3, 0.6, 0.1, 0, 0, 0, 0], [0.5, 0.1, 0.4, 0, 0, 0, 0], [0.2, 0.7, 0.1, 0, 0, 0, 0]])

    from types import SimpleNamespace

    from dermascan.decision import DecisionPolicy

    p = Predictor.__new__(Predictor)
    p.card = SimpleNamespace(policy=DecisionPolicy(threshold=0.25))
    primary, flags = p.decide(probs)
    assert flags.tolist() == [True, True, False]
    assert primary.tolist() == [0, 0, 1]  # p(MEL) 0.3 >= 0.25 beats a 0.6 nevus


def test_conversions_cmyk_grey_rgba_exif(predictor: Predictor, files: dict[str, Path]) -> None:
    names = ["e_cmyk.jpg", "f_grey.png", "g_rgba.png", "h_exif.jpg"]
    results = predictor.predict([files[n] for n in names], heatmap=True)
    assert all(isinstance(r, Prediction) for r in results)
    sizes = [r.heatmap.shape for r in results]
    assert sizes == [(70, 90), (70, 90), (70, 90), (90, 60)]  # (H, W) of the upright image


def test_bytes_pil_and_arrays(predictor: Predictor) -> None:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
    inputs = [synthetic_jpeg(64, 48), Image.fromarray(arr), arr, arr[:, :, 0], arr.astype(np.float32)]
    results = predictor.predict(inputs, names=["jpeg", "pil", "rgb", "grey", "float"])
    assert [type(r).__name__ for r in results] == ["Prediction"] * 4 + ["PredictionError"]
    assert "uint8" in results[-1].error
    rgb, pil = results[1], results[2]
    assert rgb.probabilities == pil.probabilities


def test_heatmap_shape_and_range(predictor: Predictor) -> None:
    (r,) = predictor.predict([synthetic_jpeg(200, 150)], heatmap=True)
    assert r.heatmap.shape == (150, 200) and r.heatmap.dtype == np.float32
    assert r.heatmap.min() >= 0.0 and r.heatmap.max() <= 1.0
    left, _, right, _ = r.heatmap_box  # a landscape image loses its left and right margins to the crop
    assert r.heatmap[:, :left].max(initial=0) == 0 and r.heatmap[:, right:].max(initial=0) == 0
    overlay = r.overlay()
    assert overlay.size == (200, 150)
    assert r.to_dict(heatmap_png=True)["heatmap_png"].startswith("iVBOR")  # base64 of the PNG signature


def test_vit_attention_heatmap(tmp_path: Path) -> None:
    run = random_run(tmp_path / "vit", "vit_tiny", image_size=32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # uncalibrated run
        p = Predictor.from_path(run, device="cpu")
    assert p.heatmap_kind == "attention"
    (r,) = p.predict([synthetic_jpeg(90, 60)], heatmap=True)
    assert r.heatmap.shape == (60, 90)


def test_heatmap_without_maps_output_is_a_clear_error(run: Path) -> None:
    loaded = load_checkpoint(run / "best.ckpt")
    backend, kind = backend_for_model(loaded.model, heatmap=False, device="cpu")
    p = Predictor(backend, Predictor.from_path(run, device="cpu").card, kind)
    assert isinstance(p.predict([synthetic_jpeg(64, 48)])[0], Prediction)
    with pytest.raises(ValueError, match="no heat-map output"):
        p.predict([synthetic_jpeg(64, 48)], heatmap=True)


def test_predict_paths_folder_order_batches_and_heatmaps(
    predictor: Predictor, files: dict[str, Path], tmp_path: Path
) -> None:
    folder = files["a_good.jpg"].parent
    extra = tmp_path / "more.jpg"
    extra.write_bytes(synthetic_jpeg(80, 80, seed=5))
    out = tmp_path / "maps"
    results = list(
        predictor.predict_paths([folder, extra, tmp_path / "missing.jpg"], batch_size=2, workers=2, heatmap_dir=out)
    )
    expected = [str(files[n]) for n in sorted(files)] + [str(extra), str(tmp_path / "missing.jpg")]
    assert [r.image for r in results] == expected  # notes.txt skipped, order kept
    assert isinstance(results[-1], PredictionError) and "not found" in results[-1].error
    ok = [r for r in results if isinstance(r, Prediction)]
    assert len(ok) == 6
    for r in ok:
        assert Path(r.to_dict()["heatmap"]).is_file() and r.heatmap is None  # written, then released
    assert len(list(out.glob("*_heatmap.png"))) == 6


def test_runtime_choice(onnx_bundle: Path) -> None:
    assert choose_runtime("checkpoint") == "torch"
    assert choose_runtime("torchscript") == "torchscript"
    have = available_runtimes()
    assert have["torch"] is None and set(have) >= {"onnxruntime", "openvino", "torch", "torchscript"}
    if have["openvino"] is None:
        assert choose_runtime("onnx") == "openvino"  # x86-64 CPU without a CUDA provider
    with pytest.raises(ValueError, match="unknown runtime"):
        Predictor.from_path(onnx_bundle, runtime="tensorflow")
    with pytest.raises(RuntimeUnavailableError, match="needs a torchscript bundle"):
        Predictor.from_path(onnx_bundle, runtime="torchscript")


def test_one_rule_says_which_runtime_serves_what() -> None:
    from dermascan.inference.runtimes import unavailable_reason

    assert unavailable_reason("onnxruntime", "onnx") is None
    assert unavailable_reason("torch", "checkpoint") is None
    assert "checkpoint runs on torch" in unavailable_reason("onnxruntime", "checkpoint")
    assert "state dict" in unavailable_reason("torch", "onnx", have_weights=False)
    assert unavailable_reason("torch", "onnx", have_weights=True) is None
    assert "needs a onnx bundle" in unavailable_reason("openvino", "torchscript")


def test_onnxruntime_threads_do_not_spin_between_calls(onnx_bundle: Path) -> None:
    # Spinning idle threads steal the clinic's few cores from decoding and rendering (see OnnxRuntimeBackend).
    session = Predictor.from_path(onnx_bundle, runtime="onnxruntime").backend.session
    assert session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_onnx_serving_path_never_imports_torch(onnx_bundle: Path) -> None:
    runtimes = ["onnxruntime"] + (["openvino"] if available_runtimes()["openvino"] is None else [])
    code = (
        "import sys\n"
        "from dermascan.inference import Predictor\n"
        "from dermascan.testing import synthetic_jpeg\n"
        f"for rt in {runtimes!r}:\n"
        f"    p = Predictor.from_path({str(onnx_bundle)!r}, runtime=rt)\n"
        "    r = p.predict([synthetic_jpeg(100, 80)], heatmap=True)[0]\n"
        "    assert r.heatmap.shape == (80, 100), r\n"
        "    print(r.to_dict(heatmap_png=True)['primary'])\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert all(line in CLASSES for line in proc.stdout.split()) and len(proc.stdout.split()) == len(runtimes)


def test_openvino_matches_onnxruntime(onnx_bundle: Path) -> None:
    if available_runtimes()["openvino"] is not None:
        pytest.skip("openvino is not installed: the OpenVINO runtime cannot be tested here")
    images = [synthetic_jpeg(90 + i, 70, seed=i) for i in range(3)]
    ort_p = Predictor.from_path(onnx_bundle, runtime="onnxruntime")
    ov_p = Predictor.from_path(onnx_bundle, runtime="openvino")
    assert ov_p.backend.describe() == {"runtime": "openvino", "precision": "fp32", "device": "CPU"}
    for a, b in zip(ort_p.predict(images, heatmap=True), ov_p.predict(images, heatmap=True), strict=True):
        assert max(abs(a.probabilities[c] - b.probabilities[c]) for c in CLASSES) < 1e-4
        assert a.heatmap.shape == b.heatmap.shape


def test_logits_match_predict_and_average_flips(predictor: Predictor, files: dict[str, Path]) -> None:
    """Evaluation reads logits through the same decode and preprocessing as predict (one inference path)."""
    images = [files["a_good.jpg"], files["e_cmyk.jpg"], files["f_grey.png"]]
    logits = predictor.logits(images)
    probs = predictor.probabilities(logits)
    for r, p in zip(predictor.predict(images), probs, strict=True):
        np.testing.assert_allclose([r.probabilities[c] for c in CLASSES], p, atol=1e-6)
    flipped = predictor.logits(images, tta=True)
    assert flipped.shape == logits.shape and not np.allclose(flipped, logits)  # four views, not one
    x = np.stack([predictor.prepare(i).x for i in images])
    views = [x, x[..., ::-1], x[..., ::-1, :], x[..., ::-1, ::-1]]
    want = np.mean([predictor.infer(np.ascontiguousarray(v))[0] for v in views], axis=0)
    np.testing.assert_allclose(flipped, want, atol=1e-5)


def test_logits_name_a_bad_image(predictor: Predictor, files: dict[str, Path]) -> None:
    from dermascan.data.io import ImageError

    with pytest.raises(ImageError, match="b_not_an_image"):
        predictor.logits([files["a_good.jpg"], files["b_not_an_image.jpg"]])


def test_a_tta_operating_point_is_refused_by_the_single_view_predictor(tmp_path: Path) -> None:
    run = random_run(tmp_path / "tta", "resnet18", image_size=32)
    (run / "operating_point.json").write_text(json.dumps({**OPERATING_POINT, "tta": True}))
    with pytest.raises(ValueError, match="flip-averaged"):
        Predictor.from_path(run, runtime="torch")
