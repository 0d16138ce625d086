"""Side jobs of a training run, kept out of the loop: history files and atomic checkpoints."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from dermascan import _io
from dermascan.runs import HISTORY_CSV, HISTORY_JSON

HISTORY_KEYS = (
    "epoch", "train_loss", "val_loss", "val_accuracy", "val_balanced_accuracy", "melanoma_sensitivity",
    "melanoma_specificity", "melanoma_auroc", "melanoma_specificity_at_target", "val_selection", "lr",
)  # fmt: skip


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write checkpoints to a temporary file and rename: a kill -9 mid-write leaves the old file intact."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None) -> None:
        with _io.atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)

    def load_checkpoint(self, path: str | os.PathLike, map_location: Any = None, weights_only: bool | None = None):
        # Only plain data is stored (see LesionClassifier), so the safe loader always suffices.
        return torch.load(path, map_location=map_location or "cpu", weights_only=True)


class HistoryWriter(L.Callback):
    """Append one row per epoch to ``history.csv`` and ``history.json`` in the run folder (rank 0 only).

    On resume, rows from epochs that will be re-run are dropped, so the files match an uninterrupted run.
    """

    def __init__(self, out_dir: str | Path) -> None:
        self.out = Path(out_dir)
        self.rows: list[dict[str, float]] = []

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Runs after a checkpoint is restored, so current_epoch is the epoch training resumes at.
        path = self.out / HISTORY_JSON
        if path.exists():
            self.rows = [r for r in json.loads(path.read_text()) if r["epoch"] < trainer.current_epoch]

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        m = trainer.callback_metrics
        row = {"epoch": trainer.current_epoch, "train_loss": float(m.get("train_loss_epoch", float("nan")))}
        row.update({k: float(v) for k, v in getattr(pl_module, "last_val", {}).items()})
        row["lr"] = float(trainer.optimizers[0].param_groups[0]["lr"])
        self.rows.append({k: row.get(k, float("nan")) for k in HISTORY_KEYS})
        _io.write_json(self.out / HISTORY_JSON, self.rows)
        _io.write_csv(self.out / HISTORY_CSV, pd.DataFrame(self.rows, columns=list(HISTORY_KEYS)))
