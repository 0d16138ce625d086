"""Vision Transformers: ViT-B/16 (the brief's section 3.4) and ViT-Tiny (CPU-sized), plus attention access.

Both are torchvision ``VisionTransformer`` instances, so the attention hooks (and anything built on them,
such as attention rollout) behave identically on the small model used in tests and on the real one.

``capture_attention`` reads the attention matrices through forward hooks on the named attention modules;
``forward`` is never edited. The hooks exist only inside the ``with`` block, so plain inference keeps the
fused attention kernels.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torch import Tensor, nn
from torchvision.models import VisionTransformer, ViT_B_16_Weights
from torchvision.models import vit_b_16 as tv_vit_b_16
from torchvision.models.vision_transformer import interpolate_embeddings

from dermascan.models._registry import register_model

# ViT-Tiny: DeiT-Ti width (192, 3 heads, MLP 4x) with half the depth and 8 px patches, so a 64 px image
# still gives an 8 x 8 token grid: trains on a laptop CPU in minutes, and its heat maps are not one blob.
VIT_TINY_PATCH = 8
VIT_TINY_LAYERS = 6
VIT_TINY_HEADS = 3
VIT_TINY_DIM = 192


def _check_image_size(image_size: int, patch: int, name: str) -> None:
    if image_size % patch != 0 or image_size < patch:
        raise ValueError(f"{name} needs image_size divisible by its patch size {patch}, got {image_size}")


def resize_pos_embedding(state_dict: dict[str, Any], model: nn.Module) -> dict[str, Any]:
    """Interpolate a torchvision ViT position embedding to ``model``'s image size, when they differ.

    Lets ImageNet ViT-B/16 weights (224 px, 14 x 14 grid) start a model built for another image size.
    """
    pos = state_dict.get("encoder.pos_embedding")
    if pos is None or not isinstance(model, VisionTransformer):
        return state_dict
    if pos.shape == model.encoder.pos_embedding.shape:
        return state_dict
    return dict(interpolate_embeddings(model.image_size, model.patch_size, dict(state_dict)))


_VIT_SPEC: dict[str, Any] = {
    "family": "vit",
    "classifier": "heads.head",
    # The brief: "optionally freeze the patch embedding layer".
    "freeze": ("conv_proj",),
    "attention_blocks": "encoder.layers",
    "fixed_image_size": True,
    "adapt_state_dict": resize_pos_embedding,
}


@register_model(
    "vit_b_16",
    default_image_size=224,
    patch_size=16,
    gradcam_layer="encoder.layers.encoder_layer_11",
    imagenet_weights=ViT_B_16_Weights.IMAGENET1K_V1,
    description="ViT-B/16 (torchvision), the brief's transformer; heads.head -> Linear(768, num_classes)",
    **_VIT_SPEC,
)
def vit_b_16(num_classes: int, image_size: int) -> nn.Module:
    """ViT-B/16 with random weights for square ``image_size`` inputs (a multiple of 16)."""
    _check_image_size(image_size, 16, "vit_b_16")
    return tv_vit_b_16(num_classes=num_classes, image_size=image_size)


@register_model(
    "vit_tiny",
    default_image_size=64,
    patch_size=VIT_TINY_PATCH,
    gradcam_layer=f"encoder.layers.encoder_layer_{VIT_TINY_LAYERS - 1}",
    description="ViT-Tiny (torchvision VisionTransformer, patch 8, 6 x 192, 3 heads) for 64-128 px on CPU",
    **_VIT_SPEC,
)
def vit_tiny(num_classes: int, image_size: int) -> nn.Module:
    """A small torchvision ``VisionTransformer`` (no ImageNet weights exist for it)."""
    _check_image_size(image_size, VIT_TINY_PATCH, "vit_tiny")
    return VisionTransformer(
        image_size=image_size,
        patch_size=VIT_TINY_PATCH,
        num_layers=VIT_TINY_LAYERS,
        num_heads=VIT_TINY_HEADS,
        hidden_dim=VIT_TINY_DIM,
        mlp_dim=4 * VIT_TINY_DIM,
        num_classes=num_classes,
    )


# ---------------------------------------------------------------------------------------- attention access


def _is_timm_attention(module: nn.Module) -> bool:
    # timm's Attention (and the variants that copy its layout, e.g. EVA's) compute
    # softmax(q k^T) -> attn_drop -> @ v when `fused_attn` is off; duck-typed so timm is not imported here.
    return hasattr(module, "fused_attn") and isinstance(getattr(module, "attn_drop", None), nn.Module)


def attention_layer_names(model: nn.Module) -> list[str]:
    """Names of the attention modules :func:`capture_attention` hooks, in forward order.

    torchvision ViTs: ``encoder.layers.encoder_layer_<i>.self_attention`` (``nn.MultiheadAttention``);
    timm ViTs: ``blocks.<i>.attn``.
    """
    return [name for name, m in model.named_modules() if isinstance(m, nn.MultiheadAttention) or _is_timm_attention(m)]


@contextmanager
def capture_attention(model: nn.Module, detach: bool = True) -> Iterator[list[Tensor]]:
    """Record every attention matrix computed by ``model`` inside the ``with`` block.

    Each forward pass appends one ``(B, heads, N, N)`` tensor per attention layer, in layer order, where
    ``N`` is the number of tokens (patches + class token, class token first). Rows are softmax outputs and
    sum to 1. Capture in eval mode: in train mode the matrices are taken after attention dropout.

    How: on a torchvision ``nn.MultiheadAttention`` a forward pre-hook (``with_kwargs=True``) turns the
    block's ``need_weights=False`` into ``need_weights=True, average_attn_weights=False``, and a forward hook
    reads ``output[1]``. On a timm ``Attention`` the fused kernel never materialises the matrix, so
    ``fused_attn`` is switched off and a hook on ``attn_drop`` reads its input (the softmax). The model's
    output is unchanged; all hooks are removed and ``fused_attn`` restored on exit, even on error.

    Args:
        model: a torchvision or timm Vision Transformer.
        detach: store detached tensors (heat maps). ``False`` keeps them in the graph, for gradient-weighted
            attention methods.

    Yields:
        The list that fills up during forward passes; clear it between images if needed.

    Raises:
        ValueError: the model has no attention layer (a CNN: use Grad-CAM on ``model_info()["gradcam_layer"]``).

    Example::

        with capture_attention(model) as maps:
            logits = model(x)
        # maps[i]: (B, heads, N, N) of layer i
    """
    maps: list[Tensor] = []
    handles: list[Any] = []
    restore_fused: list[tuple[nn.Module, bool]] = []

    def keep(t: Tensor) -> None:
        maps.append(t.detach() if detach else t)

    def ask_for_weights(
        _m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        # Per-head weights: averaging over heads would lose what rollout and per-head views need.
        return args, {**kwargs, "need_weights": True, "average_attn_weights": False}

    def read_mha(_m: nn.Module, _args: tuple[Any, ...], output: tuple[Tensor, Tensor | None]) -> None:
        keep(output[1])  # (B, heads, N, N)

    def read_softmax(_m: nn.Module, args: tuple[Tensor, ...], _output: Tensor) -> None:
        keep(args[0])  # (B, heads, N, N): the input of attn_drop is the softmax itself

    found = False
    try:
        for m in model.modules():
            if isinstance(m, nn.MultiheadAttention):
                handles.append(m.register_forward_pre_hook(ask_for_weights, with_kwargs=True))
                handles.append(m.register_forward_hook(read_mha))
                found = True
            elif _is_timm_attention(m):
                restore_fused.append((m, bool(m.fused_attn)))
                m.fused_attn = False
                handles.append(m.attn_drop.register_forward_hook(read_softmax))
                found = True
        if not found:
            raise ValueError(
                f"{type(model).__name__} has no attention layer to capture; for a CNN use Grad-CAM on "
                "model_info(arch)['gradcam_layer']"
            )
        yield maps
    finally:
        for h in handles:
            h.remove()
        for m, fused in restore_fused:
            m.fused_attn = fused


__all__ = [
    "attention_layer_names",
    "capture_attention",
    "resize_pos_embedding",
    "vit_b_16",
    "vit_tiny",
]
