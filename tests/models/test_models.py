"""create_model, the registry, model_info, freezing and attention capture."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dermascan.config import Preprocessing
from dermascan.models import (
    _registry,
    attention_layer_names,
    capture_attention,
    create_model,
    list_models,
    model_info,
    register_model,
    set_frozen_bn_eval,
)
from dermascan.taxonomy import NUM_CLASSES

# Small inputs keep every forward pass well under a second on 2 CPU cores. CNNs take any size;
# ViTs are built for the size they are given.
FAST_SIZE = {"resnet18": 64, "resnet50": 64, "vit_b_16": 32, "vit_tiny": 32}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _build_fast(name: str, **kw) -> tuple[nn.Module, torch.Tensor]:
    size = FAST_SIZE[name]
    model = create_model(name, image_size=size if model_info(name)["family"] == "vit" else None, **kw)
    return model, torch.randn(2, 3, size, size)


def test_registry_lists_the_brief_models() -> None:
    assert {"resnet50", "vit_b_16", "resnet18", "vit_tiny"} <= set(list_models())
    assert list_models("vit*") == ["vit_b_16", "vit_tiny"]


@pytest.mark.parametrize("name", list_models())
def test_forward_shape_and_attributes(name: str) -> None:
    model, x = _build_fast(name)
    model.eval()
    with torch.no_grad():
        logits = model(x)  # (B, K)
    assert logits.shape == (2, NUM_CLASSES)
    assert torch.isfinite(logits).all()
    assert model.arch == name
    assert isinstance(model.preprocessing, Preprocessing)
    info = model_info(name)
    assert info["family"] in ("cnn", "vit")
    head = model.get_submodule(info["classifier"])
    assert isinstance(head, nn.Linear) and head.out_features == NUM_CLASSES
    # The Grad-CAM and attention layers named by model_info exist in the model.
    model.get_submodule(info["gradcam_layer"])
    if info["family"] == "vit":
        model.get_submodule(info["attention_blocks"])


@pytest.mark.parametrize("name", list_models())
def test_freeze_freezes_exactly_the_documented_modules(name: str) -> None:
    model, _ = _build_fast(name, freeze=True)
    prefixes = tuple(f"{m}." for m in model_info(name)["freeze"])
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    expected = {n for n, _ in model.named_parameters() if n.startswith(prefixes)}
    assert frozen and frozen == expected
    unfrozen, _ = _build_fast(name, freeze=False)
    assert all(p.requires_grad for p in unfrozen.parameters())


def test_resnet_freeze_is_the_briefs_first_six_layers() -> None:
    model = create_model("resnet18", freeze=True)
    assert [n for n, _ in list(model.named_children())[:6]] == model_info("resnet18")["freeze"]
    frozen_tops = {n.split(".")[0] for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen_tops == {"conv1", "bn1", "layer1", "layer2"}
    assert model.fc.weight.requires_grad and model.layer3[0].conv1.weight.requires_grad


def test_vit_freeze_is_the_patch_embedding() -> None:
    model = create_model("vit_tiny", freeze=True)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"conv_proj.weight", "conv_proj.bias"}


def test_set_frozen_bn_eval_keeps_running_stats_of_frozen_layers() -> None:
    model = create_model("resnet18", freeze=True)
    model.train()
    # bn1; layer1: 2 blocks x 2 BN; layer2: 3 BN in the downsampling block + 2.
    assert set_frozen_bn_eval(model) == 1 + 2 * 2 + (3 + 2)
    assert not model.bn1.training and not model.layer2[0].downsample[1].training
    assert model.layer3[0].bn1.training
    before = model.bn1.running_mean.clone()
    model(torch.randn(2, 3, 32, 32))
    assert torch.equal(model.bn1.running_mean, before)


def test_preprocessing_comes_from_the_torchvision_weights() -> None:
    assert create_model("resnet18").preprocessing == Preprocessing(224, 256, interpolation="bilinear")
    pre50 = create_model("resnet50").preprocessing
    assert (pre50.input_size, pre50.resize_size, pre50.interpolation) == (224, 232, "bilinear")
    assert create_model("resnet18", image_size=112).preprocessing.resize_size == 128
    tiny = create_model("vit_tiny").preprocessing
    assert tiny.input_size == 64 and model_info("vit_tiny")["default_image_size"] == 64


def test_vit_b_16_default_is_the_brief_model() -> None:
    model = create_model("vit_b_16")
    assert model.image_size == 224 and model.patch_size == 16
    assert model.heads.head.in_features == 768 and model.heads.head.out_features == NUM_CLASSES
    assert model.preprocessing.resize_size == 256
    assert len(attention_layer_names(model)) == 12


def test_model_info_family() -> None:
    assert model_info("resnet50")["family"] == "cnn"
    assert model_info("resnet50")["gradcam_layer"] == "layer4"
    assert model_info("vit_b_16")["family"] == "vit"
    assert model_info("vit_b_16")["attention_blocks"] == "encoder.layers"
    assert model_info("timm:resnet18")["family"] == "cnn"
    timm_vit = model_info("timm:vit_tiny_patch16_224")
    assert timm_vit["family"] == "vit" and timm_vit["attention_blocks"] == "blocks"


def test_unknown_name_lists_the_choices() -> None:
    with pytest.raises(ValueError, match=r"resnet50.*timm:<name>"):
        create_model("resnet5O")
    with pytest.raises(ValueError, match="unknown timm model"):
        create_model("timm:no_such_net")


def test_bad_image_size() -> None:
    with pytest.raises(ValueError, match="divisible"):
        create_model("vit_tiny", image_size=60)


def test_duplicate_registration_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    # A private copy of the registry: registering here must not leak into other tests.
    monkeypatch.setattr(_registry, "_MODELS", dict(_registry._MODELS))
    spec = {"family": "cnn", "default_image_size": 32, "classifier": "fc", "freeze": (), "gradcam_layer": "x"}
    with pytest.raises(ValueError, match="already registered"):
        register_model("resnet18", **spec)(lambda num_classes, image_size: nn.Linear(1, num_classes))

    @register_model("toy", **spec)
    def toy(num_classes: int, image_size: int) -> nn.Module:
        return nn.Sequential()

    assert "toy" in list_models()
    with pytest.raises(ValueError, match="already registered"):
        register_model("toy", **spec)(toy)
    with pytest.raises(ValueError, match="reserved"):
        register_model("timm:toy", **spec)


def test_timm_resnet18_weights_none() -> None:
    model = create_model("timm:resnet18", weights="none")
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, NUM_CLASSES)
    assert model.arch == "timm:resnet18"
    assert model.preprocessing.input_size == 224 and model.preprocessing.interpolation == "bicubic"


def test_timm_cnn_takes_an_image_size_for_its_preprocessing() -> None:
    """Training always passes the recipe's image_size; a timm CNN has no img_size argument and must still build."""
    model = create_model("timm:resnet18d", weights="none", image_size=48).eval()
    assert model.preprocessing.input_size == 48
    with torch.no_grad():
        assert model(torch.randn(2, 3, 48, 48)).shape == (2, NUM_CLASSES)


def test_timm_freeze_freezes_the_stem() -> None:
    model = create_model("timm:resnet18", freeze=True)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"conv1.weight", "bn1.weight", "bn1.bias"}


# ------------------------------------------------------------------------------------------ attention


def _timm_vit() -> nn.Module:
    return create_model("timm:vit_tiny_patch16_224", image_size=32)  # 2 x 2 patches + class token


@pytest.mark.parametrize(
    ("build", "layers", "heads", "tokens"),
    [
        (lambda: create_model("vit_tiny", image_size=32), 6, 3, 4 * 4 + 1),
        (_timm_vit, 12, 3, 2 * 2 + 1),
    ],
    ids=["torchvision", "timm"],
)
def test_capture_attention(build, layers: int, heads: int, tokens: int) -> None:
    model = build().eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        plain = model(x)
        with capture_attention(model) as maps:
            captured = model(x)
    assert len(maps) == layers
    for a in maps:
        assert a.shape == (2, heads, tokens, tokens)
        torch.testing.assert_close(a.sum(-1), torch.ones(2, heads, tokens), atol=1e-5, rtol=0)
        assert (a >= 0).all()
    # Capturing must not change the prediction.
    torch.testing.assert_close(captured, plain, atol=1e-5, rtol=1e-5)
    # Hooks gone, fused attention back on: plain inference is untouched after the block.
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks
        if hasattr(m, "fused_attn"):
            assert m.fused_attn == type(m)(4, num_heads=1).fused_attn
    with torch.no_grad():
        torch.testing.assert_close(model(x), plain)
    assert len(maps) == layers  # nothing recorded outside the block


def test_capture_attention_torchvision_is_exact() -> None:
    model = create_model("vit_tiny", image_size=32).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        plain = model(x)
        with capture_attention(model):
            captured = model(x)
    assert torch.equal(captured, plain)


def test_capture_attention_keeps_graph_when_asked() -> None:
    model = create_model("vit_tiny", image_size=32).eval()
    with capture_attention(model, detach=False) as maps:
        model(torch.randn(1, 3, 32, 32))
    assert maps[-1].requires_grad
    maps[-1][0, 0, 0].sum().backward()
    assert model.encoder.layers[-1].self_attention.in_proj_weight.grad is not None


def test_capture_attention_removes_hooks_on_error() -> None:
    model = create_model("vit_tiny", image_size=32).eval()
    with pytest.raises(AssertionError), capture_attention(model):
        model(torch.randn(1, 3, 48, 48))  # wrong size: the ViT raises mid-forward
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_capture_attention_rejects_a_cnn() -> None:
    with pytest.raises(ValueError, match="Grad-CAM"), capture_attention(create_model("resnet18")):
        pass
