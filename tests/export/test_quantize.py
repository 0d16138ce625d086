"""INT8 bundles: quantized graph, calibration on training images, parity gate, refusals (never timings)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest

from dermascan.export import ExportParityError, export_bundle
from dermascan.export.quantize import QuantizationError, float_ends, quantize_onnx
from dermascan.inference import Predictor
from dermascan.inference.runtimes import available_runtimes
from dermascan.taxonomy import CLASSES
from dermascan.testing import random_bundle, random_run, synthetic_jpeg


@pytest.fixture(scope="module")
def int8_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_bundle(tmp_path_factory.mktemp("int8"), "resnet18", 64, precision="int8")


def test_int8_bundle_is_quantized_checked_and_served(int8_bundle: Path) -> None:
    manifest = json.loads((int8_bundle / "manifest.json").read_text())
    assert manifest["model"]["precision"] == "int8"
    assert manifest["model"]["quantization"]["calibration_images"] == 16
    assert sorted(p.name for p in int8_bundle.iterdir()) == ["manifest.json", "model.onnx", "weights.safetensors"]
    ops = {n.op_type for n in onnx.load(str(int8_bundle / "model.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    checked = {r["runtime"] for r in manifest["parity"]}
    assert "onnxruntime" in checked
    for r in manifest["parity"]:
        assert r["passed"] and r["compute_precision"] == "int8" and r["primary_agreement"] >= 0.995

    images = [synthetic_jpeg(120, 90, seed=7), b"not an image"]
    runtimes = ["onnxruntime"] + (["openvino"] if available_runtimes()["openvino"] is None else [])
    for rt in runtimes:
        p = Predictor.from_path(int8_bundle, runtime=rt)
        assert p.backend.precision == "int8"
        good, bad = p.predict(images, heatmap=True)
        assert sum(good.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
        assert set(good.probabilities) == set(CLASSES) and good.heatmap.shape == (90, 120)
        assert "not an image" in bad.error or "image-1" in bad.error
    eager = Predictor.from_path(int8_bundle, runtime="torch")  # the fp32 weights, in fp32
    assert eager.backend.precision == "fp32"


def test_heatmap_output_is_not_read_back_from_uint8(int8_bundle: Path) -> None:
    # ORT quantizes convolutions, matrix products and pooling; the class-activation product (an Einsum) and
    # the maps output stay float, so the map keeps its small values.
    graph = onnx.load(str(int8_bundle / "model.onnx")).graph
    producers = {o: n for n in graph.node for o in n.output}
    assert producers["maps"].op_type not in ("DequantizeLinear", "QuantizeLinear")


def test_int8_refusals(int8_bundle: Path, tmp_path: Path) -> None:
    fp32 = random_bundle(tmp_path / "fp32", "resnet18", 64, parity_runtimes=["onnxruntime"])
    with pytest.raises(ValueError, match="quantized graph"):
        Predictor.from_path(fp32, runtime="onnxruntime", precision="int8")
    run = fp32.parent / "run"
    with pytest.raises(ValueError, match="ONNX precision"):
        export_bundle(run, tmp_path / "ts", fmt="torchscript", precision="int8", parity_images=[synthetic_jpeg()])
    vit = random_run(tmp_path / "vit", "vit_tiny", 32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # uncalibrated run
        with pytest.raises(ValueError, match="bf16"):
            export_bundle(vit, tmp_path / "vit-bundle", precision="int8", parity_images=[synthetic_jpeg()])
    assert not (tmp_path / "vit-bundle").exists()
    with pytest.raises(QuantizationError, match="calibration"):
        quantize_onnx(fp32 / "model.onnx", tmp_path / "q.onnx", [])


def test_calibration_defaults_to_the_training_split(run_with_data: tuple[Path, list[str]], tmp_path: Path) -> None:
    run, val = run_with_data
    n_train = sum(1 for line in (run / "splits.csv").read_text().splitlines()[1:] if line.endswith(",train"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # uncalibrated run
        bundle = export_bundle(run, tmp_path / "bundle", precision="int8", parity_runtimes=["onnxruntime"])
        served = Predictor.from_path(bundle, runtime="onnxruntime")
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["model"]["quantization"]["calibration_images"] == n_train
    assert manifest["parity"][0]["n_images"] == len(val)  # checked on validation, fitted on training images
    x = np.zeros((1, 3, 32, 32), np.float32)
    assert served.backend.run(x)[0].shape == (1, len(CLASSES))


def test_float_ends_are_the_stem_and_the_last_stage(int8_bundle: Path, tmp_path: Path) -> None:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32 = random_bundle(tmp_path / "fp32", "resnet18", 64, parity_runtimes=["onnxruntime"])
    pre = tmp_path / "pre.onnx"
    quant_pre_process(str(fp32 / "model.onnx"), str(pre), skip_symbolic_shape=True)
    convs = [n.name for n in onnx.load(str(pre)).graph.node if n.op_type == "Conv"]
    # resnet18: 20 convolutions; the last stage (2 blocks of 2 + a downsample) works at the final resolution
    assert float_ends(pre) == sorted([convs[0], *convs[-5:]])


def test_int8_falls_back_to_float_ends_when_all_int8_fails_parity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dermascan.export.exporter as export_lib

    real = export_lib.check_bundle_parity
    calls: list[str] = []

    def fail_all_int8(bundle_dir: Path, *args: object, **kwargs: object) -> object:
        quant = json.loads((bundle_dir / "manifest.json").read_text())["model"]["quantization"]
        calls.append(quant["float_layers"])
        if quant["float_layers"] == "none":
            raise ExportParityError("simulated: all-int8 flips decisions", [])
        return real(bundle_dir, *args, **kwargs)

    monkeypatch.setattr(export_lib, "check_bundle_parity", fail_all_int8)
    bundle = random_bundle(tmp_path / "mixed", "resnet18", 64, precision="int8", parity_runtimes=["onnxruntime"])
    assert calls == ["none", "first convolution and last stage"]
    quant = json.loads((bundle / "manifest.json").read_text())["model"]["quantization"]
    assert quant["float_layers"] == "first convolution and last stage"
    ops = [n.op_type for n in onnx.load(str(bundle / "model.onnx")).graph.node]
    assert "QuantizeLinear" in ops  # still an int8 graph in the middle

    monkeypatch.setattr(
        export_lib,
        "check_bundle_parity",
        lambda *a, **k: (_ for _ in ()).throw(ExportParityError("simulated: always fails", [])),
    )
    with pytest.raises(ExportParityError, match="then, with the first convolution and last stage in float"):
        random_bundle(tmp_path / "refused", "resnet18", 64, precision="int8", parity_runtimes=["onnxruntime"])
    assert not (tmp_path / "refused" / "bundle").exists()
