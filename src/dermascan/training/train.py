"""Training entry point: setup -> fit. Wiring lives here and nowhere else."""

from __future__ import annotations

import json
import logging
import platform
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, TQDMProgressBar

from dermascan.data.readers import DermoscopyIndex
from dermascan.data.sampling import class_weights
from dermascan.models import create_model
from dermascan.runs import BEST_CHECKPOINT, CONFIG_FILE, HISTORY_JSON, LAST_CHECKPOINT, write_data_record
from dermascan.taxonomy import CLASSES, MELANOMA_INDEX
from dermascan.training.callbacks import AtomicCheckpointIO, HistoryWriter
from dermascan.training.config import TrainConfig, save_config
from dermascan.training.datamodule import DermoscopyDataModule
from dermascan.training.losses import create_loss
from dermascan.training.module import LesionClassifier

log = logging.getLogger(__name__)

# Lightning's start-up chatter (GPU/TPU availability, tips) drowns the progress bar; keep its warnings.
for _name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
    logging.getLogger(_name).setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")
warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\)")


@dataclass
class RunResult:
    out: Path
    best_checkpoint: Path
    last_checkpoint: Path
    epochs_run: int
    best_score: float
    history: list[dict[str, float]]


def cpu_has_fast_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 autocast is then ~1.3-2x faster than fp32 for training on CPU."""
    if platform.system() != "Linux":
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, accelerator: str) -> str:
    if precision != "auto":
        return precision
    if accelerator != "cpu" and torch.cuda.is_available():
        # T4-class GPUs have no bf16: fp16 autocast with loss scaling there.
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_has_fast_bf16() else "32-true"


def train(
    config: TrainConfig,
    resume: bool = False,
    index: DermoscopyIndex | None = None,
    progress: bool = True,
    callbacks: list[L.Callback] | None = None,
) -> RunResult:
    """Train one model as ``config`` says; with ``resume``, continue from ``out/last.ckpt``.

    ``index`` skips re-reading a dataset already in memory; ``callbacks`` are added to the trainer's.

    Raises:
        FileNotFoundError: ``resume`` without a ``last.ckpt`` to resume from.
        dermascan.training.module.NonFiniteLossError: the loss diverged.
    """
    out = Path(config.out)
    last = out / LAST_CHECKPOINT
    if resume and not last.exists():
        raise FileNotFoundError(f"cannot resume: {last} does not exist (start the run without --resume)")
    if not resume and last.exists():
        raise FileExistsError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(config.seed, workers=True, verbose=False)

    model = create_model(
        config.arch,
        num_classes=len(CLASSES),
        weights=config.weights,
        freeze=config.freeze,
        image_size=config.image_size,
    )
    data = DermoscopyDataModule(config, model.preprocessing, index=index)
    data.prepare()
    counts = data.train_counts()
    weighting = "uniform" if config.loss == "ce" else config.class_weighting
    # Splits give every class of the data a training lesion; a class absent from the data gets weight 0, said once.
    weights = class_weights(counts, weighting)
    loss_fn = create_loss(
        config.loss,
        class_weights=None if config.loss == "ce" else torch.as_tensor(weights, dtype=torch.float32),
        focal_gamma=config.focal_gamma,
        focal_weight=config.focal_weight,
        melanoma_index=MELANOMA_INDEX,
        label_smoothing=config.label_smoothing,
    )
    meta: dict[str, Any] = {
        "arch": config.arch,
        "num_classes": len(CLASSES),
        "classes": list(CLASSES),
        "preprocessing": model.preprocessing.to_dict(),
        "class_weights": weights.tolist(),
        "class_weighting": weighting,
        "train_class_counts": counts.tolist(),
        "data_fingerprint": data.data_record["fingerprint"] if data.data_record else None,
    }
    save_config(config, out / CONFIG_FILE)
    if data.data_record is not None:
        write_data_record(out, data.data_record)
    module = LesionClassifier(model, loss_fn, config, meta)

    # checkpoint "last": best.ckpt follows the schedule to its end (unmonitored, rewritten every epoch), so
    # everything that loads best.ckpt loads the last epoch's weights
    best = ModelCheckpoint(
        dirpath=out,
        filename=BEST_CHECKPOINT.removesuffix(".ckpt"),
        monitor="val_selection" if config.checkpoint == "best" else None,
        mode="max",
        save_top_k=1,
        enable_version_counter=False,
        auto_insert_metric_name=False,
    )
    # A second, unmonitored checkpoint rewritten every epoch: Lightning's save_last only writes "last" when the
    # monitored one improves, which would make --resume lose every epoch since the last improvement.
    last_ckpt = ModelCheckpoint(
        dirpath=out,
        filename=LAST_CHECKPOINT.removesuffix(".ckpt"),
        monitor=None,
        save_top_k=1,
        every_n_epochs=1,
        enable_version_counter=False,
        auto_insert_metric_name=False,
    )
    callbacks = [
        *(callbacks or []),
        best,
        last_ckpt,
        EarlyStopping(monitor="val_selection", mode="max", patience=config.patience),
        HistoryWriter(out),
    ]
    if progress:
        callbacks.append(TQDMProgressBar(refresh_rate=5))
    accelerator = config.accelerator
    trainer = L.Trainer(
        max_epochs=config.epochs,
        accelerator=accelerator,
        devices=config.devices,
        strategy="ddp" if config.devices > 1 else "auto",
        precision=resolve_precision(config.precision, accelerator),
        gradient_clip_val=config.grad_clip or None,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        default_root_dir=out,
        logger=False,
        enable_progress_bar=progress,
        enable_model_summary=False,
        use_distributed_sampler=False,  # the data module shards per rank itself (balanced or shuffled)
        num_sanity_val_steps=0,
        limit_train_batches=config.limit_train_batches,
        deterministic=False,
        log_every_n_steps=10,
    )
    trainer.fit(module, datamodule=data, ckpt_path=str(last) if resume else None)
    history_path = out / HISTORY_JSON
    rows = json.loads(history_path.read_text()) if history_path.exists() else []
    score = best.best_model_score
    return RunResult(
        out,
        out / BEST_CHECKPOINT,
        last,
        trainer.current_epoch,
        float(score) if score is not None else float("nan"),
        rows,
    )
