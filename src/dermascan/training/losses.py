"""The training loss of brief section 3.4: class-weighted cross-entropy plus a focal term on melanoma.

    L = CE_w(logits, y) + lambda_1 * FL_mel(logits, y)

* ``CE_w`` is PyTorch's weighted cross-entropy (a weighted *mean*: divided by the sum of the weights of the
  batch's targets), with weights from :func:`dermascan.data.sampling.class_weights` to counter HAM10000's imbalance
  (two thirds nevi).
* ``FL_mel`` is a binary focal loss on melanoma versus the rest, with ``p = softmax(logits)[:, MEL]``:
  ``-(1 - p)^gamma log p`` for melanoma samples and ``-p^gamma log(1 - p)`` for the others, averaged over the
  batch. It pushes the training towards the melanomas the model still misses, the errors that cost lives.

Both terms are computed from ``log_softmax``: ``log p`` is its melanoma column and ``log(1 - p)`` the
log-sum-exp of the other columns, exact without forming ``1 - p`` (which rounds to 0 once ``p`` is near 1
and would give ``log 0 = -inf``). Extreme logits (1e4) give finite values and gradients.

Weight decay (lambda_2 in the brief) is not a loss term here: AdamW applies it, see
``dermascan.training.optim.param_groups``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dermascan.taxonomy import MELANOMA_INDEX

LossKind = Literal["ce", "weighted_ce_focal"]


def melanoma_focal_loss(
    logits: Tensor,
    target: Tensor,
    gamma: float = 2.0,
    melanoma_index: int = MELANOMA_INDEX,
    reduction: Literal["mean", "sum", "none"] = "mean",
) -> Tensor:
    """Binary focal loss of melanoma versus the rest, from multi-class logits.

    Args:
        logits: ``(B, K)`` raw scores.
        target: ``(B,)`` class indices.
        gamma: focusing parameter; 0 gives the plain binary cross-entropy of melanoma versus rest.
        melanoma_index: column of melanoma in ``logits``.
        reduction: ``mean`` over the batch (the brief), ``sum``, or ``none`` for ``(B,)`` values.

    Returns:
        The loss (a scalar, or ``(B,)`` with ``reduction="none"``).
    """
    log_probs = F.log_softmax(logits.float(), dim=1)  # (B, K)
    log_p = log_probs[:, melanoma_index]  # (B,) log P(melanoma)
    others = torch.cat([log_probs[:, :melanoma_index], log_probs[:, melanoma_index + 1 :]], dim=1)  # (B, K-1)
    log_not_p = torch.logsumexp(others, dim=1)  # (B,) log(1 - P(melanoma)), exact
    is_mel = target == melanoma_index  # (B,)
    # (1 - p)^g = exp(g log(1 - p)): no pow of a value that rounds to 0, so no inf gradient at gamma < 1.
    loss_pos = -torch.exp(gamma * log_not_p) * log_p  # (B,) melanoma samples
    loss_neg = -torch.exp(gamma * log_p) * log_not_p  # (B,) other samples
    loss = torch.where(is_mel, loss_pos, loss_neg)  # both branches finite, so where() passes finite grads
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


class MelanomaFocalLoss(nn.Module):
    """Weighted cross-entropy plus ``focal_weight`` times the melanoma focal loss (brief section 3.4).

    Args:
        class_weights: ``(K,)`` per-class weights for the cross-entropy; ``None`` for uniform.
        focal_gamma: focusing parameter of the focal term (2.0 in the brief).
        focal_weight: lambda_1, the weight of the focal term (0.3 in the brief); 0 leaves weighted CE.
        melanoma_index: column of melanoma in the logits (0 in the ISIC 2018 order).
        label_smoothing: target smoothing of the cross-entropy term only (PyTorch's ``label_smoothing``); the
            focal term keeps hard melanoma targets.
    """

    class_weights: Tensor | None

    def __init__(
        self,
        class_weights: Tensor | Sequence[float] | None = None,
        focal_gamma: float = 2.0,
        focal_weight: float = 0.3,
        melanoma_index: int = MELANOMA_INDEX,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if focal_gamma < 0:
            raise ValueError(f"focal_gamma must be >= 0, got {focal_gamma}")
        if focal_weight < 0:
            raise ValueError(f"focal_weight must be >= 0, got {focal_weight}")
        weights = None
        if class_weights is not None:
            weights = torch.as_tensor(class_weights, dtype=torch.float32).flatten()
            if not torch.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0:
                raise ValueError(f"class_weights must be finite, >= 0 and not all 0, got {weights.tolist()}")
            if not 0 <= melanoma_index < len(weights):
                raise ValueError(f"melanoma_index {melanoma_index} is outside {len(weights)} class weights")
        # A non-persistent buffer follows .to(device) but stays out of checkpoints: the weights are derived
        # from the training counts, which the run config records.
        self.register_buffer("class_weights", weights, persistent=False)
        self.focal_gamma = float(focal_gamma)
        self.focal_weight = float(focal_weight)
        self.melanoma_index = int(melanoma_index)
        self.label_smoothing = float(label_smoothing)

    def terms(self, logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """The two terms separately, for logging: ``(weighted_ce, melanoma_focal)``.

        Args:
            logits: ``(B, K)`` raw scores.
            target: ``(B,)`` class indices.
        """
        # Both terms are computed in float32 whatever the module was cast to (.double(), a "-true" precision).
        weight = None if self.class_weights is None else self.class_weights.float()
        ce = F.cross_entropy(logits.float(), target, weight=weight, label_smoothing=self.label_smoothing)
        focal = melanoma_focal_loss(logits, target, self.focal_gamma, self.melanoma_index)
        return ce, focal

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Scalar loss ``CE_w + focal_weight * FL_mel`` for ``(B, K)`` logits and ``(B,)`` targets."""
        ce, focal = self.terms(logits, target)
        return ce + self.focal_weight * focal

    def extra_repr(self) -> str:
        return (
            f"focal_gamma={self.focal_gamma}, focal_weight={self.focal_weight}, "
            f"melanoma_index={self.melanoma_index}, weighted={self.class_weights is not None}, "
            f"label_smoothing={self.label_smoothing}"
        )


def create_loss(
    kind: LossKind = "weighted_ce_focal",
    class_weights: Tensor | Sequence[float] | None = None,
    focal_gamma: float = 2.0,
    focal_weight: float = 0.3,
    melanoma_index: int = MELANOMA_INDEX,
    label_smoothing: float = 0.0,
) -> nn.Module:
    """Build the training loss by name; the result is called as ``loss(logits, target)``.

    Args:
        kind: ``ce`` is the brief's baseline (plain cross-entropy, uniform weights: ``class_weights`` must
            be ``None``); ``weighted_ce_focal`` is :class:`MelanomaFocalLoss`.
        class_weights: ``(K,)`` cross-entropy weights for ``weighted_ce_focal`` (``None``: uniform).
        focal_gamma: focal focusing parameter.
        focal_weight: lambda_1, weight of the focal term.
        melanoma_index: melanoma column.
        label_smoothing: target smoothing of the cross-entropy (term).

    Raises:
        ValueError: unknown ``kind``, or class weights given to the unweighted ``ce`` baseline.
    """
    if kind == "ce":
        if class_weights is not None:
            raise ValueError(
                "kind='ce' is the unweighted baseline; pass class_weights=None, or use "
                "kind='weighted_ce_focal' (with focal_weight=0 for weighted cross-entropy alone)"
            )
        return nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    if kind == "weighted_ce_focal":
        return MelanomaFocalLoss(class_weights, focal_gamma, focal_weight, melanoma_index, label_smoothing)
    raise ValueError(f"unknown loss kind {kind!r}; use 'ce' or 'weighted_ce_focal'")


__all__ = [
    "LossKind",
    "MelanomaFocalLoss",
    "create_loss",
    "melanoma_focal_loss",
]
