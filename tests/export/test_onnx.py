"""ONNX export: heat-map outputs, a truly dynamic batch (CNN and ViT), fp16 graphs and bf16 bundles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from dermascan.explain import heatmap_model
from dermascan.export.onnx import export_onnx
from dermascan.inference import available_runtimes
from dermascan.models import create_model
from dermascan.testing import random_bundle


def _model(arch: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model(arch, image_size=32).eval()
    if arch.startswith("vit"):
        torch.nn.init.normal_(model.heads.head.weight, std=0.5)  # torchvision starts ViT heads at zero
    return model


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One random-weight resnet18 bundle shared by the test modules of a session (exported once).
    return random_bundle(tmp_path_factory.getbasetemp() / "shared-resnet18-64", "resnet18", 64, reuse=True)


def _check_dynamic_batch(path: Path, wrapped: torch.nn.Module, size: int, maps_shape: tuple[int, ...]) -> None:
    proto = onnx.load(str(path))
    assert [o.name for o in proto.graph.output] == ["logits", "maps", "features"]
    assert not proto.graph.input[0].type.tensor_type.shape.dim[0].HasField("dim_value")  # symbolic batch
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):  # the dynamo exporter has been seen to fix a ViT at batch 1
        x = torch.randn(batch, 3, size, size)
        with torch.no_grad():
            want_logits, want_maps, want_feats = wrapped(x)
        logits, maps, feats = session.run(None, {"image": x.numpy()})
        assert logits.shape == (batch, 7) and maps.shape == (batch, *maps_shape)
        np.testing.assert_allclose(logits, want_logits.numpy(), atol=1e-4)
        np.testing.assert_allclose(maps, want_maps.numpy(), atol=1e-4)
        np.testing.assert_allclose(feats, want_feats.numpy(), atol=1e-4)


def test_vit_heatmap_graph_has_a_dynamic_batch(tmp_path: Path) -> None:
    wrapped = heatmap_model(_model("vit_tiny")).eval()
    path = export_onnx(wrapped, tmp_path / "model.onnx", input_size=32)
    _check_dynamic_batch(path, wrapped, 32, (1, 4, 4))  # one head-mean CLS attention map on the 4 x 4 patch grid


def test_cnn_bundle_graph_has_a_dynamic_batch(bundle: Path) -> None:
    model = create_model("resnet18", weights=str(bundle / "weights.safetensors"), image_size=64).eval()
    _check_dynamic_batch(bundle / "model.onnx", heatmap_model(model).eval(), 64, (7, 2, 2))  # a CAM per class


def test_fp16_graph_keeps_a_float32_interface(tmp_path: Path) -> None:
    model = _model("resnet18")
    path = export_onnx(model, tmp_path / "fp16.onnx", input_size=32, precision="fp16")
    proto = onnx.load(str(path))
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in proto.graph.initializer)
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    if available_runtimes()["openvino"] is None:  # ORT's CPU provider is not trusted with fp16 graphs
        import openvino as ov

        x = torch.randn(3, 3, 32, 32)
        compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        with torch.no_grad():
            want = model(x).numpy()
        np.testing.assert_allclose(compiled(x.numpy())[0], want, atol=2e-2)
    assert model.fc.weight.dtype == torch.float32  # the caller's model is left in fp32


def test_bf16_bundle_checks_decisions_on_openvino(tmp_path: Path) -> None:
    bundle = random_bundle(tmp_path, "resnet18", 32, precision="bf16")
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["model"]["precision"] == "bf16"
    by_runtime = {r["runtime"]: r for r in manifest["parity"]}
    assert by_runtime["onnxruntime"]["compute_precision"] == "fp32"  # ORT has no bf16 convolution
    if available_runtimes()["openvino"] is None:
        ov = by_runtime["openvino"]
        assert ov["compute_precision"] == "bf16" and ov["criterion"].startswith("primary and flag agreement")
        assert ov["passed"] and ov["primary_agreement"] >= 0.995
