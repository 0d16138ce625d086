"""A model wrapper that returns class scores, heat maps *and* the embedding from one forward pass, for export.

``heatmap_model(model)(x) -> (logits (B, K), maps (B, M, h, w), features (B, D))`` uses only plain tensor ops,
so it exports
with ``torch.onnx.export`` (dynamo and legacy) and ``torch.jit.trace`` with a dynamic batch axis, and a
deployed bundle gets its heat map without autograd, hooks or a second pass:

* **CNN** with a global-average-pool + linear head (torchvision ResNet, timm ResNet): Grad-CAM at the last
  stage reduces to CAM (Zhou et al., 2016). With ``y_c = sum_k w_ck mean_ij A_k[i, j] + b_c`` the Grad-CAM
  weight is ``alpha_k = w_ck / (h w)``, so Grad-CAM is ``ReLU(sum_k w_ck A_k) / (h w)``: the class-weighted
  sum of the final feature maps, up to a positive factor that min-max normalisation removes. The wrapper
  returns it for every class, ``maps = einsum('kc,bchw->bkhw', W, A)``: ``M = K`` maps, not ReLU'd or
  normalised (the torch-free renderer does both, :func:`dermascan.explain.render.heatmap_from_maps`).
* **ViT**: ``M = 1``, the head-averaged attention of the class token to the patch tokens in the last block,
  on the patch grid: exactly :func:`dermascan.explain.attention.attention_maps`' ``mean``. The wrapper runs
  the embedding and blocks ``0 .. L-2`` as the model does and computes the last block's attention
  explicitly. Rewriting that one block is allowed here (and only here): the plain model keeps its fused
  attention kernels, and the explain path still reads attention through hooks.

``features`` is the penultimate embedding the classifier reads (the pooled last-stage features of a CNN, the
normalised class token of a ViT): the logits are ``fc(features)``. Drift monitoring compares it with the
training reference (:mod:`dermascan.monitoring.embedding`); it costs nothing extra, it is computed anyway.

The wrapper shares the model's parameters (no copy) and its logits equal the plain model's.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn
from torchvision.models import ResNet, VisionTransformer

from dermascan.errors import DermaScanError
from dermascan.explain.attention import cls_attention, vit_layout

MapKind = Literal["cam", "attention"]


class _HeatmapModel(nn.Module):
    """Common attributes: ``kind`` (``cam`` / ``attention``), ``arch`` and ``preprocessing`` of the model."""

    kind: MapKind

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.arch = getattr(model, "arch", None)
        self.preprocessing = getattr(model, "preprocessing", None)
        self.train(model.training)


class TorchvisionResNetCAM(_HeatmapModel):
    """CAM for every class from a torchvision ResNet: ``(logits (B, K), maps (B, K, h, w), features (B, C))``."""

    kind: MapKind = "cam"

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        m = self.model
        f = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        f = m.layer4(m.layer3(m.layer2(m.layer1(f))))  # (B, C, h, w): the Grad-CAM layer's output
        pooled = torch.flatten(m.avgpool(f), 1)  # (B, C)
        maps = torch.einsum("kc,bchw->bkhw", m.fc.weight, f)  # (B, K, h, w)
        return m.fc(pooled), maps, pooled


class TimmCNNCAM(_HeatmapModel):
    """CAM for every class from a timm CNN whose head is average pool (+ dropout) + linear."""

    kind: MapKind = "cam"

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        m = self.model
        f = m.forward_features(x)  # (B, C, h, w)
        pooled = m.forward_head(f, pre_logits=True)  # (B, C)
        maps = torch.einsum("kc,bchw->bkhw", m.get_classifier().weight, f)  # (B, K, h, w)
        return m.get_classifier()(pooled), maps, pooled


class TorchvisionViTAttention(_HeatmapModel):
    """Logits and the last block's head-mean class-token attention of a torchvision ViT: ``(B, 1, h, w)``."""

    kind: MapKind = "attention"

    def __init__(self, model: VisionTransformer) -> None:
        super().__init__(model)
        self.grid = model.image_size // model.patch_size

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        m = self.model
        enc = m.encoder
        t = m._process_input(x)  # (B, P, D)
        cls = m.class_token.expand(t.shape[0], -1, -1)  # (B, 1, D)
        t = torch.cat([cls, t], dim=1)  # (B, N, D), N = P + 1
        t = enc.dropout(t + enc.pos_embedding)  # what Encoder.forward does before its layers
        layers = list(enc.layers)
        for block in layers[:-1]:
            t = block(t)  # (B, N, D)
        last = layers[-1]
        # EncoderBlock.forward, with the attention weights asked for (per head, averaged below).
        y = last.ln_1(t)
        y, attn = last.self_attention(y, y, y, need_weights=True, average_attn_weights=False)  # attn (B, H, N, N)
        t = last.dropout(y) + t
        t = t + last.mlp(last.ln_2(t))  # (B, N, D)
        cls_out = enc.ln(t)[:, 0]  # (B, D)
        maps = cls_attention(attn, 1).mean(dim=1, keepdim=True)  # (B, 1, P)
        return m.heads(cls_out), maps.reshape(-1, 1, self.grid, self.grid), cls_out  # (B, K), (B, 1, h, w), (B, D)


class TimmViTAttention(_HeatmapModel):
    """Logits and the last block's head-mean class-token attention of a timm ViT: ``(B, 1, h, w)``.

    The last block runs as timm wrote it; its attention matrix is recomputed beside it from the same
    ``norm1 -> qkv -> q_norm/k_norm`` path (one extra ``q k^T`` for one block), so the logits stay bit-equal
    to the model's whatever attention kernel timm picks.
    """

    kind: MapKind = "attention"

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        layout = vit_layout(model)
        self.num_prefix_tokens = layout.num_prefix_tokens
        self.has_class_token = layout.has_class_token
        gh, gw = model.patch_embed.grid_size
        self.grid = (int(gh), int(gw))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        m = self.model
        t = m.norm_pre(m.patch_drop(m._pos_embed(m.patch_embed(x))))  # (B, N, D)
        blocks = list(m.blocks)
        for block in blocks[:-1]:
            t = block(t)  # (B, N, D)
        last = blocks[-1]
        a = last.attn
        y = last.norm1(t)  # (B, N, D)
        b, n, _ = y.shape
        qkv = a.qkv(y).reshape(b, n, 3, a.num_heads, a.head_dim).permute(2, 0, 3, 1, 4)  # (3, B, H, N, hd)
        q, k = a.q_norm(qkv[0]), a.k_norm(qkv[1])  # (B, H, N, hd)
        attn = ((q * a.scale) @ k.transpose(-2, -1)).softmax(dim=-1)  # (B, H, N, N)
        t = m.norm(last(t))  # (B, N, D)
        pooled = m.forward_head(t, pre_logits=True)  # (B, D)
        maps = cls_attention(attn, self.num_prefix_tokens, self.has_class_token).mean(dim=1, keepdim=True)  # (B, 1, P)
        return m.head(pooled), maps.reshape(-1, 1, *self.grid), pooled  # (B, K), (B, 1, h, w), (B, D)


class UnsupportedArchitectureError(DermaScanError, ValueError):
    """The architecture has no single-pass heat-map head (its head is not pool + linear, or no CLS attention)."""


def _timm_cnn_supported(model: nn.Module) -> bool:
    pool = getattr(model, "global_pool", None)
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    return (
        type(model).__name__ == "ResNet" and getattr(pool, "pool_type", None) == "avg" and isinstance(head, nn.Linear)
    )


def _timm_vit_supported(model: nn.Module) -> bool:
    try:
        from timm.layers import Attention
        from timm.models.vision_transformer import VisionTransformer as TimmViT
    except ImportError:  # pragma: no cover - timm is a dependency
        return False
    return (
        isinstance(model, TimmViT)
        and not getattr(model, "dynamic_img_size", False)
        and all(type(block.attn) is Attention for block in model.blocks)
    )


def heatmap_model(model: nn.Module) -> nn.Module:
    """Wrap ``model`` so one forward pass returns ``(logits (B, K), maps (B, M, h, w), features (B, D))``.

    ``M = K`` CAMs (one per class) for a CNN, ``M = 1`` attention map for a ViT; the wrapper's ``kind``
    attribute says which (``"cam"`` / ``"attention"``). Maps are raw: render them with
    :func:`dermascan.explain.render.heatmap_from_maps`. Put the model in eval mode before exporting.

    Supported: torchvision ResNet and ViT (every registered architecture), timm ResNets with an average-pool
    head, timm ``VisionTransformer`` with standard attention blocks (class and register tokens handled).

    Raises:
        UnsupportedArchitectureError: another architecture (its head is not pool + linear, or its attention is not the
            standard one); the message names the fallback.
    """
    if isinstance(model, ResNet):
        return TorchvisionResNetCAM(model)
    if isinstance(model, VisionTransformer):
        return TorchvisionViTAttention(model)
    if _timm_cnn_supported(model):
        return TimmCNNCAM(model)
    if _timm_vit_supported(model):
        return TimmViTAttention(model)
    raise UnsupportedArchitectureError(
        f"no single-pass heat-map head for {type(model).__name__} ({getattr(model, 'arch', 'unknown arch')}): "
        "supported are torchvision ResNet/ViT, timm ResNet (avg pool) and timm VisionTransformer; use "
        "dermascan.explain.grad_cam or attention_maps on the eager model instead"
    )


__all__ = [
    "TimmCNNCAM",
    "TimmViTAttention",
    "TorchvisionResNetCAM",
    "TorchvisionViTAttention",
    "heatmap_model",
]
