"""INT8 bundles: quantized graph, calibration on training images, parity gate, refusals (never timings)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from dermascan.export import ExportParityError, export_bundle
from dermascan.export.quantize import (
    Int8Graph,
    QuantizationError,
    float_ladder,
    layer_sensitivity,
    max_float_nodes,
    quantize_onnx,
)
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


def _tiny_cnn(broken: bool) -> torch.nn.Module:
    """Three convolutions and a classifier; ``broken``: the middle convolution reads an input channel that is
    always 0 through weights of 100, harmless in float, but its per-channel int8 scale (100 / 127) then
    rounds every other weight of that layer to 0 or +-0.8."""
    torch.manual_seed(0)
    convs = [torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Conv2d(4, 8, 3, padding=1), torch.nn.Conv2d(8, 8, 3)]
    model = torch.nn.Sequential(
        convs[0], torch.nn.ReLU(), convs[1], torch.nn.ReLU(), convs[2], torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, len(CLASSES)),
    )  # fmt: skip
    with torch.no_grad():
        torch.nn.init.normal_(model[-1].weight, std=2.0)  # logits that move with the image, as a trained model's
    if broken:
        with torch.no_grad():
            convs[0].weight[0], convs[0].bias[0] = 0.0, -1.0  # channel 0 is ReLU(-1) = 0 everywhere
            convs[1].weight[:, 0] = 100.0
    return model.eval()


@pytest.fixture(scope="module")
def tiny_int8(tmp_path_factory: pytest.TempPathFactory) -> tuple[Int8Graph, list[np.ndarray]]:
    """The broken tiny CNN prepared for int8, and held-out images (other than the calibration ones)."""
    from dermascan.export.onnx import export_onnx

    work = tmp_path_factory.mktemp("tiny-int8")
    export_onnx(_tiny_cnn(broken=True), work / "fp32.onnx", 16, "fp32")
    rng = np.random.default_rng(0)

    def images(n: int) -> np.ndarray:  # noise around a colour per image: pooled features differ between images
        return (rng.normal(size=(n, 3, 16, 16)) + 2 * rng.normal(size=(n, 3, 1, 1))).astype(np.float32)

    calibration, held_out = [images(8), images(8)], [images(32)]
    return Int8Graph(work / "fp32.onnx", calibration, work), held_out


def test_sensitivity_ranks_every_weighted_node_once_and_the_fragile_one_first(
    tiny_int8: tuple[Int8Graph, list[np.ndarray]],
) -> None:
    int8, held_out = tiny_int8
    graph = onnx.load(str(int8.fp32_path)).graph
    weighted = [n.name for n in graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    assert sorted(int8.nodes) == sorted(weighted) and len(weighted) == 4  # three convolutions and the classifier
    scores = layer_sensitivity(int8, held_out)
    assert sorted(scores) == sorted(weighted) and all(np.isfinite(v) for v in scores.values())
    ranking = list(scores)
    assert int8.weights[ranking[0]] == "2.weight"  # the middle convolution (Sequential index 2)
    assert scores[ranking[0]] > 10 * max(abs(scores[n]) for n in ranking[1:])
    assert list(scores.values()) == sorted(scores.values(), reverse=True)


def test_a_node_kept_in_float_computes_in_float_on_both_runtimes(
    tiny_int8: tuple[Int8Graph, list[np.ndarray]], tmp_path: Path
) -> None:
    from dermascan.inference.backends import OnnxRuntimeBackend, OpenVINOBackend

    int8, held_out = tiny_int8
    fragile = next(n for n, w in int8.weights.items() if w == "2.weight")
    mixed = int8.write(tmp_path / "mixed.onnx", [fragile])
    graph = onnx.load(str(mixed)).graph
    producers = {o: n.op_type for n in graph.node for o in n.output}
    inputs = {n.name: list(n.input) for n in graph.node}
    assert inputs[fragile][1] == "2.weight" and "2.weight" not in producers  # an fp32 initializer, no DQ
    assert all(producers[inputs[n][1]] == "DequantizeLinear" for n in int8.nodes if n != fragile)
    # ONNX Runtime would quantize those weights at load time (WeightBiasQuantization) and the layer would run
    # in int8 after all, as far from fp32 as all-int8: the int8 backend must keep it in float.
    x = held_out[0]
    ref = OnnxRuntimeBackend(int8.fp32_path, "fp32", "cpu").run(x).logits
    backends = [OnnxRuntimeBackend] + ([OpenVINOBackend] if available_runtimes()["openvino"] is None else [])
    for backend in backends:
        err_all = np.abs(backend(int8.write(tmp_path / "all.onnx"), "int8").run(x).logits - ref).mean()
        err_mixed = np.abs(backend(mixed, "int8").run(x).logits - ref).mean()
        assert err_mixed < err_all / 10, backend.runtime
    with pytest.raises(ValueError, match="not quantized weighted nodes"):
        int8.write(tmp_path / "bad.onnx", ["no_such_node"])


def test_float_ladder_doubles_up_to_the_limit() -> None:
    ranking = [f"n{i}" for i in range(21)]
    assert max_float_nodes(21) == 5 and max_float_nodes(3) == 1
    assert [len(r) for r in float_ladder(ranking, 5)] == [1, 2, 4, 5]
    assert [len(r) for r in float_ladder(ranking, 4)] == [1, 2, 4]
    assert float_ladder(ranking, 1) == [["n0"]] and float_ladder([], 5) == []
    assert all(r == ranking[: len(r)] for r in float_ladder(ranking, 8))  # always the most sensitive first


def test_int8_ladder_keeps_more_layers_in_float_until_parity_passes(
    run_with_data: tuple[Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dermascan.export.exporter as export_lib

    run, _ = run_with_data
    n_train = sum(1 for line in (run / "splits.csv").read_text().splitlines()[1:] if line.endswith(",train"))
    real = export_lib.check_bundle_parity
    tried: list[list[str]] = []

    def needs_two_in_float(bundle_dir: Path, *args: object, **kwargs: object) -> object:
        tried.append(json.loads((bundle_dir / "manifest.json").read_text())["model"]["quantization"]["float_layers"])
        if len(tried[-1]) < 2:
            raise ExportParityError(f"simulated: {len(tried[-1])} in float flips decisions", [])
        return real(bundle_dir, *args, **kwargs)

    monkeypatch.setattr(export_lib, "check_bundle_parity", needs_two_in_float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # uncalibrated run
        bundle = export_bundle(
            run, tmp_path / "mixed", precision="int8", parity_runtimes=["onnxruntime"], max_calibration_images=16
        )
    assert [len(t) for t in tried] == [0, 1, 2]
    quant = json.loads((bundle / "manifest.json").read_text())["model"]["quantization"]
    ranking = list(quant["sensitivity"])
    assert len(ranking) == 21  # resnet18: 20 convolutions and the classifier
    assert quant["float_layers"] == tried[-1] == ranking[:2] and tried[1] == ranking[:1]
    assert quant["calibration_images"] == 16 and quant["sensitivity_images"] == n_train - 16  # the other ones
    assert [(r["float_layers"], r["passed"]) for r in quant["ladder"]] == [(0, False), (1, False), (2, True)]
    assert "onnxruntime" in quant["ladder"][-1]["agreement"]
    graph = onnx.load(str(bundle / "model.onnx")).graph
    producers = {o: n.op_type for n in graph.node for o in n.output}
    weight_dq = {n.name: producers.get(n.input[1]) for n in graph.node if n.op_type in ("Conv", "Gemm")}
    assert sorted(n for n, p in weight_dq.items() if p != "DequantizeLinear") == sorted(ranking[:2])
    assert quant["float_layer_weights"] == [n.input[1] for r in ranking[:2] for n in graph.node if n.name == r]

    # Asked for exactly one graph: no ladder, and its float nodes as given.
    tried.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bundle = export_bundle(
            run, tmp_path / "given", precision="int8", parity_runtimes=["onnxruntime"], int8_float_layers=ranking[:3]
        )
    quant = json.loads((bundle / "manifest.json").read_text())["model"]["quantization"]
    assert tried == [ranking[:3]] and quant["float_layer_choice"].startswith("given") and quant["sensitivity"] is None


def test_int8_is_refused_when_the_ladder_runs_out(
    run_with_data: tuple[Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dermascan.export.exporter as export_lib

    run, _ = run_with_data
    tried: list[int] = []

    def always_fails(bundle_dir: Path, *args: object, **kwargs: object) -> object:
        tried.append(
            len(json.loads((bundle_dir / "manifest.json").read_text())["model"]["quantization"]["float_layers"])
        )
        raise ExportParityError("simulated: flips decisions", [])

    monkeypatch.setattr(export_lib, "check_bundle_parity", always_fails)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ExportParityError, match=r"up to 5 of 21 weighted layers in float \(the limit") as e:
            export_bundle(run, tmp_path / "refused", precision="int8", parity_runtimes=["onnxruntime"])
    assert tried == [0, 1, 2, 4, 5]
    assert "all-int8: simulated" in str(e.value) and "bf16" in str(e.value)
    assert not (tmp_path / "refused").exists() and not list(tmp_path.glob(".refused*"))
