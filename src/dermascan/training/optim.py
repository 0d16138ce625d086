"""Optimiser parameter groups: the brief's weight decay (lambda_2 = 0.01), applied by AdamW.

Decay is for weight matrices and kernels only. Biases and normalisation scales (1-D tensors) and the ViT
class token and position embedding are excluded, as in timm and the ViT/DeiT recipes: shrinking a
LayerNorm gain or a position embedding towards 0 is not regularisation, it removes signal.
"""

from __future__ import annotations

from typing import Any

from torch import nn

#: Parameter names (last component) that never decay: torchvision ViT tokens and embeddings.
NO_DECAY_NAMES = frozenset({"class_token", "pos_embedding", "cls_token", "pos_embed", "reg_token", "dist_token"})


def param_groups(model: nn.Module, weight_decay: float = 0.01) -> list[dict[str, Any]]:
    """Split the trainable parameters into a decayed and a non-decayed group for ``torch.optim.AdamW``.

    Frozen parameters (``requires_grad=False``) are left out, so the optimiser holds no state for them.

    Args:
        model: the network.
        weight_decay: decay of the first group (lambda_2).

    Returns:
        ``[{"params": [...], "weight_decay": weight_decay}, {"params": [...], "weight_decay": 0.0}]``,
        without empty groups. Use as ``AdamW(param_groups(model, 0.01), lr=...)``.
    """
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    # timm models name their own exceptions (e.g. {"pos_embed", "cls_token"}).
    extra = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or name in extra or name.rsplit(".", 1)[-1] in NO_DECAY_NAMES:
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [
        {"params": decay, "weight_decay": float(weight_decay)},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


__all__ = ["NO_DECAY_NAMES", "param_groups"]
