"""heatmap_model: logits equal to the plain model, maps equal to the explain path, features the classifier's input,
and it exports."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from dermascan.explain import attention_maps, grad_cam, heatmap_model, normalize_map
from dermascan.explain.export_head import UnsupportedArchitectureError
from dermascan.models import create_model


def _timm_reg_vit() -> torch.nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=7, reg_tokens=4)


# name -> (builder, input side, expected map grid)
CASES = {
    "resnet18": (lambda: create_model("resnet18"), 64, (7, 2, 2)),
    "timm:resnet18": (lambda: create_model("timm:resnet18"), 64, (7, 2, 2)),
    "vit_tiny": (lambda: create_model("vit_tiny", image_size=32), 32, (1, 4, 4)),
    "timm:vit_tiny": (lambda: create_model("timm:vit_tiny_patch16_224", image_size=32), 32, (1, 2, 2)),
    "timm:vit+registers": (_timm_reg_vit, 32, (1, 4, 4)),
}


def _build(name: str) -> tuple[torch.nn.Module, torch.Tensor, tuple[int, int, int]]:
    builder, size, grid = CASES[name]
    torch.manual_seed(0)
    model = builder().eval()
    return model, torch.randn(3, 3, size, size), grid


@pytest.mark.parametrize("name", list(CASES))
def test_logits_equal_the_plain_model_and_maps_have_the_contract_shape(name: str) -> None:
    model, x, grid = _build(name)
    head = heatmap_model(model)
    assert head.model is model, "the wrapper shares the model's parameters"
    with torch.no_grad():
        logits, maps, features = head(x)
        torch.testing.assert_close(logits, model(x), atol=1e-5, rtol=0)
        # the features are what the classifier reads: its linear layer maps them to the logits
        classifier = model.get_classifier() if hasattr(model, "get_classifier") else None
        if classifier is None:
            classifier = model.fc if hasattr(model, "fc") else model.heads
        torch.testing.assert_close(classifier(features), logits, atol=1e-5, rtol=0)
    assert maps.shape == (3, *grid)
    assert features.ndim == 2 and len(features) == 3
    assert head.kind == ("cam" if grid[0] == 7 else "attention")


@pytest.mark.parametrize("name", ["resnet18", "timm:resnet18"])
def test_cam_equals_gradcam_of_the_predicted_class(name: str) -> None:
    model, x, _ = _build(name)
    with torch.no_grad():
        logits, maps, _ = heatmap_model(model)(x)
    gc = grad_cam(model, x)
    for b, k in enumerate(logits.argmax(1).tolist()):
        assert gc.class_index[b] == k
        diff = np.abs(normalize_map(maps[b, k].numpy()) - normalize_map(gc.maps[b].numpy())).max()
        assert diff < 1e-4


@pytest.mark.parametrize("name", ["vit_tiny", "timm:vit_tiny", "timm:vit+registers"])
def test_vit_map_equals_the_head_mean_last_block_attention(name: str) -> None:
    model, x, _ = _build(name)
    with torch.no_grad():
        _, maps, _ = heatmap_model(model)(x)
    torch.testing.assert_close(maps[:, 0], attention_maps(model, x).mean, atol=1e-6, rtol=1e-5)


def test_unsupported_architecture_says_what_to_use() -> None:
    class Tiny(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean((2, 3))

    with pytest.raises(UnsupportedArchitectureError, match="grad_cam"):
        heatmap_model(Tiny())


def _run_onnx(path: str, x: torch.Tensor) -> list[np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x.numpy()})


@pytest.mark.parametrize("name", ["resnet18", "vit_tiny"])
def test_trace_and_legacy_onnx_export_keep_a_dynamic_batch(name: str, tmp_path) -> None:
    model, x, _ = _build(name)
    head = heatmap_model(model)
    example, other = x[:2], x  # export at batch 2, run at batch 3
    with torch.no_grad():
        ref_logits, ref_maps, ref_feats = head(other)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.trace's deprecation and TracerWarnings about asserts
        traced = torch.jit.trace(head, example)
        path = str(tmp_path / "head.onnx")
        torch.onnx.export(
            head, (example,), path, input_names=["input"], output_names=["logits", "maps", "features"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}, "maps": {0: "batch"},
                          "features": {0: "batch"}}, dynamo=False,
        )  # fmt: skip
    with torch.no_grad():
        t_logits, t_maps, t_feats = traced(other)
    torch.testing.assert_close(t_logits, ref_logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(t_maps, ref_maps, atol=1e-5, rtol=0)
    torch.testing.assert_close(t_feats, ref_feats, atol=1e-5, rtol=0)
    o_logits, o_maps, o_feats = _run_onnx(path, other)
    np.testing.assert_allclose(o_logits, ref_logits.numpy(), atol=1e-4)
    np.testing.assert_allclose(o_maps, ref_maps.numpy(), atol=1e-4)
    np.testing.assert_allclose(o_feats, ref_feats.numpy(), atol=1e-4)


@pytest.mark.slow
def test_dynamo_onnx_export_of_the_vit_head_keeps_a_dynamic_batch(tmp_path) -> None:
    # The dynamo exporter once fixed a ViT at batch 1 (PERFORMANCE.md): check batch 3 runs after exporting at 2.
    model, x, _ = _build("vit_tiny")
    head = heatmap_model(model)
    path = str(tmp_path / "head.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            head, (x[:2],), path, input_names=["input"], output_names=["logits", "maps", "features"],
            dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=256)}}, dynamo=True, verbose=False,
        )  # fmt: skip
    with torch.no_grad():
        ref_logits, ref_maps, _ = head(x)
    o_logits, o_maps, _ = _run_onnx(path, x)
    assert o_maps.shape == (3, 1, 4, 4)
    np.testing.assert_allclose(o_logits, ref_logits.numpy(), atol=1e-4)
    np.testing.assert_allclose(o_maps, ref_maps.numpy(), atol=1e-4)
