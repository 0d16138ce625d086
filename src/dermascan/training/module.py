"""The Lightning module: one model, one loss, AdamW with warm-up + cosine, validation metrics per epoch."""

from __future__ import annotations

import copy
import math
import warnings
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn

from dermascan.errors import ConfigError, DermaScanError
from dermascan.evaluation import metrics
from dermascan.models import set_frozen_bn_eval
from dermascan.taxonomy import MELANOMA_INDEX
from dermascan.training.config import TrainConfig
from dermascan.training.ema import ema_decay_at, swap_prefixes, update_ema
from dermascan.training.optim import param_groups


class NonFiniteLossError(DermaScanError, RuntimeError):
    """The loss became NaN or infinite; training cannot recover from that by itself."""


def warmup_cosine(step: int, warmup_steps: int, total_steps: int) -> float:
    """Learning-rate multiplier: linear warm-up to 1, then cosine decay to 0 at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / max(1, warmup_steps)
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def selection_score(specificity_at_target: float, auroc: float) -> float:
    """What the best checkpoint and early stopping maximise.

    Specificity at the target melanoma sensitivity cannot be gamed by calling everything melanoma (unlike
    sensitivity at argmax); AUROC breaks ties, scaled so it never outweighs a real specificity gain.
    """
    spec = 0.0 if math.isnan(specificity_at_target) else specificity_at_target
    auc = 0.0 if math.isnan(auroc) else auroc
    return spec + 1e-3 * auc


class LesionClassifier(L.LightningModule):
    """Wraps a classifier from :func:`dermascan.models.create_model` for training.

    The checkpoint's ``hyper_parameters`` hold plain data only (config, arch, preprocessing, class order),
    so a checkpoint loads with ``torch.load(weights_only=True)``.
    """

    def __init__(self, model: nn.Module, loss_fn: nn.Module, config: TrainConfig, meta: dict[str, Any]) -> None:
        super().__init__()
        self.model = model
        # The weight average (config.ema_decay > 0) is what validation scores and what best.ckpt ships.
        self.ema = copy.deepcopy(model).requires_grad_(False) if config.ema_decay > 0 else None
        self.loss_fn = loss_fn
        self.config = config
        self.save_hyperparameters({"config": config.to_dict(), **meta})
        self._val_logits: list[torch.Tensor] = []
        self._val_labels: list[torch.Tensor] = []
        self.last_val: dict[str, float] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)  # (B, K) logits

    def on_train_epoch_start(self) -> None:
        # Lightning put the whole model in train mode; frozen BatchNorm layers must keep ImageNet statistics.
        set_frozen_bn_eval(self.model)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch  # (B, 3, H, W), (B,)
        loss = self.loss_fn(self.model(x), y)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"loss is {loss.item()} at epoch {self.current_epoch}, step {self.global_step}: lower --lr "
                f"(now {self.config.lr}), keep --grad-clip on, or try --precision 32-true"
            )
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(y))
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.ema is not None:
            update_ema(self.ema, self.model, ema_decay_at(self.config.ema_decay, self.global_step))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Every reader of a checkpoint loads "model.*": store the average there, the one validation scored, and
        # the raw training weights under "ema.*", which only --resume needs (on_load_checkpoint swaps back).
        if self.ema is not None:
            swap_prefixes(checkpoint["state_dict"], "model.", "ema.")

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        averaged = any(k.startswith("ema.") for k in checkpoint["state_dict"])
        if averaged != (self.ema is not None):
            raise ConfigError(
                f"this checkpoint was trained {'with' if averaged else 'without'} weight averaging: resume it with "
                f"the ema_decay it was trained with (see the run's config.yaml), not {self.config.ema_decay}"
            )
        if self.ema is not None:
            swap_prefixes(checkpoint["state_dict"], "model.", "ema.")

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        scored = self.ema if self.ema is not None else self.model
        self._val_logits.append(scored(x).float().cpu())
        self._val_labels.append(y.cpu())

    def on_validation_epoch_end(self) -> None:
        if not self._val_logits:
            return
        logits = torch.cat(self._val_logits)  # (N, K)
        labels = torch.cat(self._val_labels)  # (N,)
        self._val_logits.clear()
        self._val_labels.clear()
        val_loss = float(nn.functional.cross_entropy(logits, labels))
        probs = logits.softmax(dim=1).numpy().astype(np.float64)
        y = labels.numpy()
        pred = probs.argmax(axis=1)
        is_mel = (y == MELANOMA_INDEX).astype(int)
        p_mel = probs[:, MELANOMA_INDEX]
        with warnings.catch_warnings():
            # Early epochs (or a sanity check) may miss a class entirely; NaN is the honest value there.
            warnings.simplefilter("ignore")
            spec_at, _ = metrics.specificity_at_sensitivity(is_mel, p_mel, self.config.target_sensitivity)
            values = {
                "val_loss": val_loss,
                "val_accuracy": metrics.accuracy_score(y, pred),
                "val_balanced_accuracy": metrics.balanced_accuracy_score(y, pred),
                "melanoma_sensitivity": metrics.sensitivity_score(is_mel, (pred == MELANOMA_INDEX).astype(int)),
                "melanoma_specificity": metrics.specificity_score(is_mel, (pred == MELANOMA_INDEX).astype(int)),
                "melanoma_auroc": metrics.roc_auc_score(is_mel, p_mel),
                "melanoma_specificity_at_target": spec_at,
            }
        values["val_selection"] = selection_score(spec_at, values["melanoma_auroc"])
        self.last_val = values
        # Every rank computed the same numbers from the whole validation split: no cross-rank reduction needed.
        shown = {"val_selection", "melanoma_auroc"}
        for k, v in values.items():
            self.log(k, float(v), prog_bar=k in shown, sync_dist=False)

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = torch.optim.AdamW(param_groups(self.model, self.config.weight_decay), lr=self.config.lr)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        steps_per_epoch = total / max(1, self.trainer.max_epochs or 1)
        warmup = int(self.config.warmup_epochs * steps_per_epoch)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, warmup, total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
