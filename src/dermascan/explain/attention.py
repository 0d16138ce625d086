"""Vision Transformer heat maps: class-token attention of the last block, and attention rollout.

Both read the attention matrices through :func:`dermascan.models.capture_attention` (hooks on the attention
modules; ``forward`` is never edited), from a single forward pass.

* **Last-block CLS attention** (the brief, section 3.7): row ``CLS`` of the last block's softmax, restricted
  to the patch columns, per head ``(B, heads, h, w)`` and averaged over heads ``(B, h, w)``. It shows where
  the token the classifier reads looked in the final mixing step.
* **Attention rollout** (Abnar & Zuidema, 2020, "Quantifying Attention Flow in Transformers"): attention
  spreads through the residual stream across layers, so each layer's matrix is fused over heads (the head
  **mean**, the paper's choice; max fusion sharpens maps but discards heads that disagree), the residual
  connection is added as the identity, ``A_l = 0.5 * W_l + 0.5 * I``, rows are renormalised to sum to 1,
  and the layers are multiplied, ``R = A_L @ ... @ A_1``. Row ``CLS`` of ``R`` to the patches is the map.

Token layout: torchvision ViTs have one class token first; timm ViTs have ``num_prefix_tokens`` prefix
tokens (class token first when there is one, then register or distillation tokens) before the patches.
A timm ViT without a class token (``class_token=False``, average-pooled head) has no CLS row to read: its
map is the attention each patch *receives*, averaged over all query tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torchvision.models import VisionTransformer

from dermascan.models import capture_attention


@dataclass(frozen=True)
class ViTLayout:
    """Where the patch tokens sit in a ViT's token sequence.

    Attributes:
        patch_size: patch side in pixels; the token grid of an ``H x W`` input is ``H // p x W // p``.
        num_prefix_tokens: tokens before the patch tokens (class, register and distillation tokens).
        has_class_token: token 0 is a class token whose attention row the maps read.
    """

    patch_size: int
    num_prefix_tokens: int
    has_class_token: bool


def vit_layout(model: nn.Module) -> ViTLayout:
    """Read the token layout of a torchvision or timm Vision Transformer.

    Raises:
        ValueError: ``model`` is not a ViT this module understands (a CNN: use Grad-CAM).
    """
    if isinstance(model, VisionTransformer):
        return ViTLayout(patch_size=int(model.patch_size), num_prefix_tokens=1, has_class_token=True)
    patch_embed = getattr(model, "patch_embed", None)
    if patch_embed is not None and hasattr(model, "blocks") and hasattr(model, "num_prefix_tokens"):
        patch = patch_embed.patch_size
        patch = int(patch[0] if isinstance(patch, tuple | list) else patch)
        return ViTLayout(
            patch_size=patch,
            num_prefix_tokens=int(model.num_prefix_tokens),
            has_class_token=getattr(model, "cls_token", None) is not None,
        )
    raise ValueError(
        f"{type(model).__name__} is not a Vision Transformer (torchvision VisionTransformer or timm ViT); "
        "attention maps need one, use Grad-CAM for a CNN"
    )


def is_vit(model: nn.Module) -> bool:
    """Whether ``model`` is a Vision Transformer the attention methods understand."""
    try:
        vit_layout(model)
    except ValueError:
        return False
    return True


def cls_attention(attn: Tensor, num_prefix_tokens: int, has_class_token: bool = True) -> Tensor:
    """Attention from the class token to each patch token.

    Args:
        attn: attention matrices ``(B, heads, N, N)`` (or ``(B, N, N)``), rows summing to 1, prefix tokens
            first.
        num_prefix_tokens: tokens before the patches.
        has_class_token: read row 0; otherwise average the rows of all query tokens (attention received).

    Returns:
        ``(B, heads, P)`` (or ``(B, P)``), ``P = N - num_prefix_tokens`` in raster order of the patch grid.
    """
    if has_class_token:
        return attn[..., 0, num_prefix_tokens:]  # (B, heads, P)
    return attn[..., :, num_prefix_tokens:].mean(dim=-2)  # (B, heads, P)


def to_grid(tokens: Tensor, grid: tuple[int, int]) -> Tensor:
    """Reshape per-patch values ``(..., P)`` into the patch grid ``(..., h, w)`` (row-major, as patchified)."""
    h, w = grid
    if tokens.shape[-1] != h * w:
        raise ValueError(f"{tokens.shape[-1]} patch tokens do not fill a {h} x {w} grid")
    return tokens.reshape(*tokens.shape[:-1], h, w)  # (..., h, w)


def attention_rollout(attentions: Sequence[Tensor], residual: float = 0.5) -> Tensor:
    """Attention rollout over layers (Abnar & Zuidema, 2020), heads fused by their mean.

    Args:
        attentions: one ``(B, heads, N, N)`` softmax per layer, input layer first.
        residual: weight of the identity standing for the residual connection (0.5 in the paper).

    Returns:
        ``(B, N, N)``: how much each output token (row) draws on each input token (column); rows sum to 1.
    """
    if not attentions:
        raise ValueError("attention_rollout needs at least one layer's attention")
    n = attentions[0].shape[-1]
    eye = torch.eye(n, dtype=attentions[0].dtype, device=attentions[0].device)  # (N, N)
    rollout: Tensor | None = None
    for attn in attentions:
        fused = attn.mean(dim=1) if attn.dim() == 4 else attn  # (B, N, N)
        a = (1.0 - residual) * fused + residual * eye  # (B, N, N)
        a = a / a.sum(dim=-1, keepdim=True)  # rows sum to 1 again
        # Later layers act on the output of earlier ones: R_l = A_l @ R_{l-1}.
        rollout = a if rollout is None else a @ rollout  # (B, N, N)
    assert rollout is not None
    return rollout


@dataclass
class AttentionMaps:
    """Attention heat maps of one batch, all from the same forward pass (detached, on the model's device).

    Attributes:
        logits: ``(B, K)`` class scores of that pass.
        heads: ``(B, heads, h, w)`` last-block class-token attention to the patches, per head.
        mean: ``(B, h, w)`` the same, averaged over heads (what the export head computes).
        rollout: ``(B, h, w)`` attention rollout across all blocks, class-token row.
    """

    logits: Tensor
    heads: Tensor
    mean: Tensor
    rollout: Tensor


def attention_maps(model: nn.Module, x: Tensor) -> AttentionMaps:
    """Last-block class-token attention (per head and head mean) and rollout, in one forward pass.

    The model is put in eval mode for the pass (attention dropout would perturb the matrices) and its
    previous mode restored.

    Args:
        model: a torchvision or timm ViT.
        x: ``(B, 3, H, W)`` normalised input.

    Returns:
        :class:`AttentionMaps` on the ``H // patch x W // patch`` grid.
    """
    layout = vit_layout(model)
    grid = (x.shape[-2] // layout.patch_size, x.shape[-1] // layout.patch_size)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), capture_attention(model) as attns:
            logits = model(x)  # (B, K)
    finally:
        model.train(was_training)
    last = cls_attention(attns[-1], layout.num_prefix_tokens, layout.has_class_token)  # (B, heads, P)
    heads = to_grid(last, grid)  # (B, heads, h, w)
    rolled = attention_rollout(attns)  # (B, N, N)
    rollout = to_grid(cls_attention(rolled, layout.num_prefix_tokens, layout.has_class_token), grid)  # (B, h, w)
    return AttentionMaps(logits=logits, heads=heads, mean=heads.mean(dim=1), rollout=rollout)


__all__ = [
    "AttentionMaps",
    "ViTLayout",
    "attention_maps",
    "attention_rollout",
    "cls_attention",
    "is_vit",
    "to_grid",
    "vit_layout",
]
