"""Grad-CAM: the formula on a known head, class selection, side effects, ViT support, and explain_image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dermascan.config import Preprocessing
from dermascan.explain import default_gradcam_layer, explain_image, grad_cam, write_explanation
from dermascan.models import LoadedModel, create_model
from dermascan.taxonomy import CLASSES


@pytest.fixture(scope="module")
def resnet() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("resnet18").eval()


def _layer4(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    out: list[torch.Tensor] = []
    handle = model.layer4.register_forward_hook(lambda _m, _a, o: out.append(o))
    with torch.no_grad():
        model(x)
    handle.remove()
    return out[0]  # (B, C, h, w)


def test_gradcam_equals_cam_formula_for_pool_linear_head(resnet: torch.nn.Module) -> None:
    # With a global-average-pool + linear head, d y_k / d A_c[i, j] = w_kc / (h w): Grad-CAM is
    # ReLU(sum_c w_kc A_c) / (h w), exactly.
    x = torch.randn(2, 3, 64, 64)
    result = grad_cam(resnet, x, class_index=[3, 5])
    feats = _layer4(resnet, x)  # (B, C, h, w)
    h, w = feats.shape[-2:]
    expected = torch.stack(
        [torch.relu(torch.einsum("c,chw->hw", resnet.fc.weight[k], feats[b])) / (h * w) for b, k in enumerate([3, 5])]
    )  # (B, h, w)
    assert result.maps.shape == (2, 2, 2)
    torch.testing.assert_close(result.maps, expected, atol=1e-6, rtol=1e-4)
    assert result.layer == "layer4"
    assert result.class_index.tolist() == [3, 5]


def test_default_class_is_the_prediction_and_logits_match(resnet: torch.nn.Module) -> None:
    x = torch.randn(3, 3, 64, 64)
    result = grad_cam(resnet, x)
    with torch.no_grad():
        logits = resnet(x)  # (B, K)
    torch.testing.assert_close(result.logits, logits)
    assert result.class_index.tolist() == logits.argmax(1).tolist()
    assert (result.maps >= 0).all()


def test_one_class_index_applies_to_the_batch(resnet: torch.nn.Module) -> None:
    x = torch.randn(2, 3, 64, 64)
    assert grad_cam(resnet, x, class_index=4).class_index.tolist() == [4, 4]


@pytest.mark.parametrize("bad", [7, -1, [0, 1, 2]])
def test_bad_class_index_raises(resnet: torch.nn.Module, bad: object) -> None:
    with pytest.raises(ValueError, match="class_index"):
        grad_cam(resnet, torch.randn(2, 3, 64, 64), class_index=bad)


def test_no_side_effects_and_frozen_models_work() -> None:
    torch.manual_seed(1)
    model = create_model("resnet18", freeze=True)  # train mode, partly frozen
    model.requires_grad_(False)  # fully frozen: nothing upstream of layer4 requires grad
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():  # callers may hold no_grad; Grad-CAM enables what it needs
        result = grad_cam(model, x)
    assert model.training, "the previous mode must be restored"
    assert all(p.grad is None for p in model.parameters()), "no gradients may be left on the parameters"
    assert not model.layer4._forward_hooks, "the hook must be removed"
    assert result.maps.abs().sum() > 0


def test_bad_layer_and_inference_mode_raise(resnet: torch.nn.Module) -> None:
    with pytest.raises(ValueError, match="no submodule"):
        grad_cam(resnet, torch.randn(1, 3, 64, 64), layer="layer9")
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode"):
        grad_cam(resnet, torch.randn(1, 3, 64, 64))


def test_default_layers() -> None:
    assert default_gradcam_layer(create_model("resnet18")) == "layer4"
    assert default_gradcam_layer(create_model("vit_tiny", image_size=32)) == "encoder.layers.encoder_layer_5.ln_1"
    timm_vit = create_model("timm:vit_tiny_patch16_224", image_size=32)
    assert default_gradcam_layer(timm_vit) == "blocks.11.norm1"
    with pytest.raises(ValueError, match="layer="):
        default_gradcam_layer(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)))


def test_vit_gradcam_on_the_last_blocks_input_tokens() -> None:
    torch.manual_seed(0)
    model = create_model("vit_tiny", image_size=32).eval()
    # torchvision zero-initialises the ViT head, which would make every gradient zero.
    torch.nn.init.normal_(model.heads.head.weight, std=0.5)
    result = grad_cam(model, torch.randn(2, 3, 32, 32))
    assert result.maps.shape == (2, 4, 4)  # the 4 x 4 patch grid
    assert result.maps.sum() > 0


def _loaded(model: torch.nn.Module, size: int) -> LoadedModel:
    pre = Preprocessing(input_size=size)
    model.preprocessing = pre
    return LoadedModel(model.eval(), model.arch, pre, CLASSES, {})


def test_explain_image_maps_the_crop_onto_the_original(resnet: torch.nn.Module, tmp_path) -> None:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (70, 100, 3), dtype=np.uint8))  # landscape: margins left/right
    path = tmp_path / "lesion.png"
    img.save(path)
    loaded = _loaded(resnet, 64)
    heat, probs, over = explain_image(loaded, path)
    assert heat.shape == (70, 100) and heat.dtype == np.float32
    assert probs.shape == (len(CLASSES),) and probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert over.size == img.size and over.mode == "RGB"
    # Resize to 104 x 73, crop 64: the model saw the box (19, 4, 81, 65) of the original; the margin
    # carries no heat and stays uncoloured.
    assert heat[:, :19].max() == 0 and heat[:, 81:].max() == 0 and heat[:4].max() == 0 and heat[65:].max() == 0
    assert heat[4:65, 19:81].max() > 0.99
    np.testing.assert_array_equal(np.asarray(over)[:, :19], np.asarray(img)[:, :19])

    out = tmp_path / "out" / "heat.png"
    result = write_explanation(loaded, path, out, method="gradcam", class_index=0)
    assert out.is_file() and Image.open(out).size == img.size
    np.testing.assert_allclose(result.probs, probs, atol=1e-6)


def test_explain_image_rejects_attention_for_a_cnn_and_bad_input(resnet: torch.nn.Module) -> None:
    loaded = _loaded(resnet, 64)
    img = Image.new("RGB", (64, 64), (200, 150, 130))
    for method in ("attention", "rollout"):
        with pytest.raises(ValueError, match="CNN"):
            explain_image(loaded, img, method=method)
    with pytest.raises(ValueError, match="unknown explanation method"):
        explain_image(loaded, img, method="lime")
    with pytest.raises(ValueError, match="class_index"):
        explain_image(loaded, img, class_index=len(CLASSES))
