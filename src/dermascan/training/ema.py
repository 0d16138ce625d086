"""An exponential moving average of the weights: the per-step form of stochastic weight averaging.

Training from scratch for a few epochs ends on weights that still move a lot from step to step; their average
over the last few hundred steps is usually a flatter, better point (Polyak averaging; timm's ``ModelEmaV2``).
Unlike SWA's average of a few epoch ends, it is ready after every step, so each epoch's validation (and so
``best.ckpt``) can score it directly.
"""

from __future__ import annotations

import torch
from torch import nn


def ema_decay_at(decay: float, step: int) -> float:
    """The decay used at optimiser ``step``: ramps up from 0.1 so the first steps do not keep the random init."""
    return min(decay, (1 + step) / (10 + step))


@torch.no_grad()
def update_ema(average: nn.Module, model: nn.Module, decay: float) -> None:
    """``average <- decay * average + (1 - decay) * model``, in place, for every float parameter and buffer.

    BatchNorm's running statistics are averaged like the weights they belong to; integer buffers (its batch
    count) are copied.
    """
    for avg, new in zip(average.state_dict().values(), model.state_dict().values(), strict=True):
        if avg.is_floating_point():
            avg.lerp_(new.to(avg.dtype), 1.0 - decay)
        else:
            avg.copy_(new)


def swap_prefixes(state_dict: dict[str, torch.Tensor], a: str, b: str) -> None:
    """Exchange the tensors stored under prefix ``a`` with those under prefix ``b`` (same suffixes), in place."""
    a_keys = [k for k in state_dict if k.startswith(a)]
    for key in a_keys:
        other = b + key[len(a) :]
        state_dict[key], state_dict[other] = state_dict[other], state_dict[key]


__all__ = ["ema_decay_at", "swap_prefixes", "update_ema"]
