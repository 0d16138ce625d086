"""Bundles: export -> verify -> load -> predict round trip; tampered, missing and extra files are refused."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from dermascan.export import export_bundle
from dermascan.inference import BundleError, Prediction, Predictor, load_bundle, verify_bundle
from dermascan.inference.bundle import MANIFEST_NAME, bundle_digest
from dermascan.runs import read_operating_point
from dermascan.taxonomy import CLASSES
from dermascan.testing import random_bundle, random_run, synthetic_jpeg

IMAGES = [synthetic_jpeg(90 + 13 * i, 70 + 9 * i, seed=i) for i in range(5)]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One random-weight resnet18 bundle (with DEMO_OPERATING_POINT) shared by the test modules of a session.
    return random_bundle(tmp_path_factory.getbasetemp() / "shared-resnet18-64", "resnet18", 64, reuse=True)


@pytest.fixture(scope="module")
def run(bundle: Path) -> Path:
    return bundle.parent / "run"


def _copy(bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle, tmp_path / "copy"))


def test_manifest_describes_the_model(bundle: Path) -> None:
    m = json.loads((bundle / MANIFEST_NAME).read_text())
    assert m["name"] == "dermascan-resnet18" and m["version"].startswith("run-")  # <run name>-<date>
    assert m["architecture"] == "resnet18" and m["family"] == "cnn"
    assert m["classes"] == list(CLASSES) and m["melanoma_index"] == 0
    assert m["preprocessing"]["input_size"] == 64
    assert m["decision"]["temperature"] == 1.5 and m["decision"]["threshold"] == 0.2
    assert m["decision"]["risk_bands"] == {"moderate": 0.07, "high": 0.2}
    assert m["model"] == {
        **m["model"],
        "format": "onnx",
        "file": "model.onnx",
        "precision": "fp32",
        "outputs": ["logits", "maps", "features"],
        "heatmap": "cam",
    }
    assert set(m["files"]) == {"model.onnx", "weights.safetensors"}
    assert all(len(f["sha256"]) == 64 and f["bytes"] > 0 for f in m["files"].values())
    assert {"data", "config", "checkpoint"} <= set(m["fingerprints"])
    assert m["evaluation"]["operating_point"]["target_sensitivity"] == 0.9
    assert m["parity"][0]["runtime"] == "onnxruntime" and all(p["passed"] for p in m["parity"])
    assert all(p["max_rel_feature_diff"] < 1e-3 for p in m["parity"])  # the embedding output, checked too


def test_round_trip_matches_the_eager_model(bundle: Path, run: Path) -> None:
    onnx = Predictor.from_path(bundle, runtime="onnxruntime")
    eager = Predictor.from_path(run, runtime="torch", device="cpu")
    a, b = onnx.predict(IMAGES, heatmap=True), eager.predict(IMAGES, heatmap=True)
    for pa, pb in zip(a, b, strict=True):
        assert isinstance(pa, Prediction) and isinstance(pb, Prediction)
        diff = max(abs(pa.probabilities[c] - pb.probabilities[c]) for c in CLASSES)
        assert diff < 1e-4
        assert (pa.primary, pa.melanoma_flag, pa.risk_band) == (pb.primary, pb.melanoma_flag, pb.risk_band)
        assert pa.model_version == pb.model_version  # the run and its bundle report one version
        assert pa.heatmap.shape == pb.heatmap.shape
        np.testing.assert_allclose(pa.heatmap, pb.heatmap, atol=1e-3)


def test_load_bundle_reads_the_card(bundle: Path) -> None:
    b = load_bundle(bundle)
    assert b.card.policy.threshold == 0.2 and b.card.policy.temperature == 1.5
    assert b.model_format == "onnx" and b.heatmap == "cam" and b.weights_file.name == "weights.safetensors"


def test_one_changed_byte_is_refused_naming_the_file(bundle: Path, tmp_path: Path) -> None:
    b = _copy(bundle, tmp_path)
    data = bytearray((b / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    (b / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"model\.onnx does not match its sha256"):
        Predictor.from_path(b)


def test_missing_file_is_refused(bundle: Path, tmp_path: Path) -> None:
    b = _copy(bundle, tmp_path)
    (b / "weights.safetensors").unlink()
    with pytest.raises(BundleError, match=r"weights\.safetensors is listed in the manifest but missing"):
        verify_bundle(b)


def test_unlisted_file_is_refused(bundle: Path, tmp_path: Path) -> None:
    b = _copy(bundle, tmp_path)
    (b / "extra.onnx").write_bytes(b"not listed")
    with pytest.raises(BundleError, match=r"extra\.onnx is not listed"):
        load_bundle(b)


def test_missing_or_broken_manifest_is_refused(bundle: Path, tmp_path: Path) -> None:
    b = _copy(bundle, tmp_path)
    manifest = json.loads((b / MANIFEST_NAME).read_text())
    manifest["files"]["../outside.txt"] = {"sha256": "0" * 64, "bytes": 1}
    (b / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="outside the bundle"):
        verify_bundle(b)
    (b / MANIFEST_NAME).unlink()
    with pytest.raises(BundleError, match="manifest.json is missing"):
        load_bundle(b)


def test_manifest_pointing_at_an_unverified_file_is_refused(bundle: Path, tmp_path: Path) -> None:
    b = _copy(bundle, tmp_path)
    manifest = json.loads((b / MANIFEST_NAME).read_text())
    manifest["model"]["file"] = "other.onnx"
    (b / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="not covered by its checksums"):
        load_bundle(b)


def test_pinned_digest_catches_an_edited_manifest(bundle: Path, tmp_path: Path) -> None:
    digest = bundle_digest(bundle)
    assert load_bundle(bundle, digest=digest).card.name == "dermascan-resnet18"
    b = _copy(bundle, tmp_path)
    manifest = json.loads((b / MANIFEST_NAME).read_text())
    manifest["decision"]["threshold"] = 0.9  # a quiet edit of the operating point
    (b / MANIFEST_NAME).write_text(json.dumps(manifest))
    verify_bundle(b)  # the model files are intact...
    with pytest.raises(BundleError, match="digest"):
        Predictor.from_path(b, digest=digest)  # ...but the pinned digest is not


def test_existing_output_folder_is_not_overwritten(run: Path, bundle: Path) -> None:
    with pytest.raises(ValueError, match="overwrite"):
        export_bundle(run, bundle, parity_images=IMAGES)


def test_explicit_name_and_version(run: Path, tmp_path: Path) -> None:
    out = export_bundle(
        run, tmp_path / "ts", fmt="torchscript", parity_images=IMAGES[:2], name="derma-cnn", version="2.4.1"
    )
    p = Predictor.from_path(out)
    assert p.runtime == "torchscript" and p.model_version == "2.4.1" and p.card.name == "derma-cnn"
    assert p.predict(IMAGES[:1])[0].to_dict()["model_version"] == "2.4.1"


def test_missing_operating_point_warns_and_is_uncalibrated(tmp_path: Path) -> None:
    from dermascan.inference import UncalibratedWarning

    with pytest.warns(UncalibratedWarning, match="operating_point.json not found"):
        policy, raw = read_operating_point(tmp_path)
    assert raw is None and policy.threshold is None and policy.temperature == 1.0 and not policy.calibrated


def test_uncalibrated_run_flags_by_argmax(tmp_path: Path) -> None:
    run = random_run(tmp_path / "r", "resnet18", image_size=32, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = Predictor.from_path(run, device="cpu")
    (res,) = p.predict(IMAGES[:1])
    assert res.threshold is None and res.risk_band is None
    assert res.melanoma_flag == (res.primary == "MEL")
    assert res.primary == max(res.probabilities, key=res.probabilities.get)
