"""ViT attention maps: last-block class-token attention, rollout, token layouts, and the ViT explain paths."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dermascan.config import Preprocessing
from dermascan.explain import attention_maps, attention_rollout, cls_attention, explain_image, vit_layout
from dermascan.models import LoadedModel, capture_attention, create_model
from dermascan.taxonomy import CLASSES


@pytest.fixture(scope="module")
def vit() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("vit_tiny", image_size=32).eval()


def _timm_vit(**kw: object) -> torch.nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    return VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=7, **kw).eval()


def _softmax_rows(b: int, heads: int, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, heads, n, n, generator=g).softmax(dim=-1)  # (B, H, N, N)


def test_rollout_of_identity_is_identity() -> None:
    eye = torch.eye(5).expand(2, 3, 5, 5)  # (B, H, N, N)
    torch.testing.assert_close(attention_rollout([eye, eye, eye]), torch.eye(5).expand(2, 5, 5))


def test_rollout_matches_the_paper_by_hand() -> None:
    layers = [_softmax_rows(2, 3, 6, seed) for seed in range(3)]
    expected = []
    for b in range(2):
        r = np.eye(6)
        for a in layers:
            m = 0.5 * a[b].mean(0).numpy() + 0.5 * np.eye(6)
            m /= m.sum(-1, keepdims=True)
            r = m @ r
        expected.append(r)
    out = attention_rollout(layers)  # (B, N, N)
    np.testing.assert_allclose(out.numpy(), np.stack(expected), atol=1e-6)
    np.testing.assert_allclose(out.sum(-1).numpy(), 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="at least one"):
        attention_rollout([])


def test_cls_attention_with_and_without_a_class_token() -> None:
    a = _softmax_rows(1, 2, 7, 0)  # 3 prefix tokens + 4 patches
    torch.testing.assert_close(cls_attention(a, 3), a[:, :, 0, 3:])
    torch.testing.assert_close(cls_attention(a, 3, has_class_token=False), a[:, :, :, 3:].mean(-2))


def test_attention_maps_shapes_and_consistency(vit: torch.nn.Module) -> None:
    x = torch.randn(2, 3, 32, 32)
    maps = attention_maps(vit, x)
    assert maps.heads.shape == (2, 3, 4, 4)  # 3 heads, 32 / 8 = 4 x 4 patch grid
    assert maps.mean.shape == maps.rollout.shape == (2, 4, 4)
    torch.testing.assert_close(maps.mean, maps.heads.mean(1))
    # A class-token row over the patches is part of a softmax row: non-negative, at most 1.
    assert (maps.heads >= 0).all() and (maps.heads.sum((-1, -2)) <= 1 + 1e-5).all()
    with torch.no_grad():
        torch.testing.assert_close(maps.logits, vit(x))
    # Same numbers as reading capture_attention by hand: last layer, row 0, patch columns.
    with torch.no_grad(), capture_attention(vit) as attns:
        vit(x)
    torch.testing.assert_close(maps.heads, attns[-1][:, :, 0, 1:].reshape(2, 3, 4, 4))
    rolled = attention_rollout(attns)[:, 0, 1:].reshape(2, 4, 4)
    torch.testing.assert_close(maps.rollout, rolled)


def test_attention_maps_restores_train_mode() -> None:
    model = create_model("vit_tiny", image_size=32)
    assert model.training
    attention_maps(model, torch.randn(1, 3, 32, 32))
    assert model.training


def test_layouts_of_torchvision_and_timm_vits(vit: torch.nn.Module) -> None:
    assert vit_layout(vit).num_prefix_tokens == 1 and vit_layout(vit).patch_size == 8
    reg = vit_layout(_timm_vit(reg_tokens=4))
    assert (reg.num_prefix_tokens, reg.has_class_token, reg.patch_size) == (5, True, 8)
    avg = vit_layout(_timm_vit(class_token=False, global_pool="avg"))
    assert (avg.num_prefix_tokens, avg.has_class_token) == (0, False)
    with pytest.raises(ValueError, match="Grad-CAM"):
        vit_layout(create_model("resnet18"))


@pytest.mark.parametrize("kw", [{}, {"reg_tokens": 4}, {"class_token": False, "global_pool": "avg"}])
def test_timm_vits_with_prefix_tokens(kw: dict) -> None:
    model = _timm_vit(**kw)
    maps = attention_maps(model, torch.randn(2, 3, 32, 32))
    assert maps.heads.shape == (2, 2, 4, 4) and maps.rollout.shape == (2, 4, 4)
    assert torch.isfinite(maps.rollout).all() and (maps.mean > 0).all()


def test_explain_image_methods_on_a_vit(vit: torch.nn.Module) -> None:
    vit.preprocessing = Preprocessing(input_size=32)
    loaded = LoadedModel(vit, "vit_tiny", vit.preprocessing, CLASSES, {})
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8))
    heats = {}
    for method in ("auto", "attention", "rollout", "gradcam"):
        heat, probs, over = explain_image(loaded, img, method=method)
        assert heat.shape == (40, 40) and over.size == (40, 40) and probs.shape == (7,)
        heats[method] = heat
    np.testing.assert_array_equal(heats["auto"], heats["attention"])  # auto = attention for a ViT
    assert not np.array_equal(heats["attention"], heats["rollout"])
