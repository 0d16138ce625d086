"""The training configuration: one typed dataclass, merged from defaults, a preset, a YAML file and flags.

The resolved config is written to every run folder (``config.yaml``) and into every checkpoint.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from dermascan.errors import ConfigError

if TYPE_CHECKING:
    from dermascan.data.readers import DermoscopyIndex

LOSSES = ("ce", "weighted_ce_focal")
SAMPLERS = ("shuffle", "balanced")
PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed")
WEIGHTINGS = ("inverse", "sqrt_inverse", "clipped", "uniform")
CHECKPOINTS = ("best", "last")


@dataclass
class TrainConfig:
    """Everything a training run depends on.

    Attributes:
        data: dataset folder (ISIC 2018, HAM10000 or ImageFolder layout).
        metadata: optional metadata CSV (``image_id``, ``lesion_id``, age, sex, site, ...) joined to the
            images of every folder read; by default each folder's own is found (``metadata.csv``,
            ``HAM10000_metadata.csv`` or one ``*metadata*.csv``). Lesion ids keep splits lesion-grouped.
        out: run folder; receives config.yaml, splits.csv, best.ckpt, last.ckpt, history.csv/json.
        arch: model name for :func:`dermascan.models.create_model` (``resnet50``, ``vit_b_16``, ``resnet18``,
            ``vit_tiny``, ``timm:<name>``).
        weights: ``none``, ``imagenet`` (torchvision download) or a path to a local state dict.
        freeze: freeze the early layers (ResNet: first 6 children; ViT: the patch embedding).
        image_size: network input side in pixels (224 for real runs, 64-96 for CPU demos).
        loss: ``ce`` (plain cross-entropy, uniform weights: the brief's baseline) or ``weighted_ce_focal``
            (class-weighted CE + focal_weight * melanoma focal loss).
        class_weighting: how class weights are derived from training counts for ``weighted_ce_focal``:
            ``inverse`` (the brief's N / (K N_i)), ``sqrt_inverse``, ``clipped`` or ``uniform``.
        focal_gamma: focusing parameter of the melanoma focal term.
        focal_weight: lambda_1, the weight of the focal term.
        label_smoothing: share of each target's probability spread evenly over all classes in the cross-entropy
            term (0: none); the melanoma focal term keeps hard targets, so melanoma is never softened.
        ema_decay: keep an exponential moving average of the weights, updated after every step with this decay
            (0.997 averages about the last 1 / (1 - 0.997) = 333 steps): the per-step form of stochastic weight
            averaging. Validation scores the average, and the checkpoints' model weights are the average.
            0 turns it off.
        sampler: ``shuffle`` (plain epochs) or ``balanced`` (class-balanced draws with replacement). Do not
            combine ``balanced`` with inverse class weights: that corrects the imbalance twice.
        epochs: maximum number of epochs.
        batch_size: images per step per device.
        lr: peak AdamW learning rate.
        weight_decay: lambda_2, AdamW decoupled weight decay (not applied to norms and biases).
        warmup_epochs: linear warm-up length before the cosine decay (fractions allowed).
        grad_clip: gradient norm clip (0 disables).
        precision: ``auto`` (bf16 autocast where the hardware has it), ``32-true``, ``bf16-mixed``, ``16-mixed``.
        patience: early stopping patience in epochs on the selection metric.
        checkpoint: which epoch's weights ``best.ckpt`` ships (what evaluate, export and the Predictor load):
            ``best``, the epoch with the highest validation selection score, or ``last``, the end of the schedule.
            The selection score is read on few melanomas (~110 in a HAM10000 fold), so ``best`` can pick a
            mid-schedule epoch by chance.
        target_sensitivity: melanoma sensitivity at which validation specificity is measured for model
            selection (raw sensitivity at argmax is gamed by calling everything melanoma).
        val_fraction: share of each class's images held out for validation.
        test_fraction: share held out for testing.
        seed: seeds the split, the initialisation, the sampler and the augmentation.
        devices: number of processes/GPUs; above 1 runs DDP.
        accelerator: ``auto``, ``cpu`` or ``gpu``.
        num_workers: data-loading worker processes (-1: automatic).
        val_data: optional separate validation folder (e.g. the official ISIC 2018 validation set); it becomes
            the ``val`` split as it is, instead of a share carved from ``data``.
        test_data: optional separate test folder, likewise for the ``test`` split.
        cache_dir: optional folder for a pre-resized image cache (real images are 600x450 and larger).
        skip_bad: leave out unreadable images instead of failing.
        limit_train_batches: cap on steps per epoch (tests and smoke runs); None for all.
        augment: overrides of :class:`dermascan.data.transforms.Augmentation` fields.
    """

    data: str = ""
    metadata: str | None = None
    out: str = "runs/run"
    arch: str = "resnet18"
    weights: str = "none"
    freeze: bool = False
    image_size: int = 224
    loss: str = "weighted_ce_focal"
    class_weighting: str = "sqrt_inverse"
    focal_gamma: float = 2.0
    focal_weight: float = 0.3
    label_smoothing: float = 0.0
    ema_decay: float = 0.0
    sampler: str = "shuffle"
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_epochs: float = 1.0
    grad_clip: float = 1.0
    precision: str = "auto"
    patience: int = 5
    checkpoint: str = "best"
    target_sensitivity: float = 0.90
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0
    devices: int = 1
    accelerator: str = "auto"
    num_workers: int = -1
    val_data: str | None = None
    test_data: str | None = None
    cache_dir: str | None = None
    skip_bad: bool = False
    limit_train_batches: int | None = None
    augment: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        checks = [
            (self.loss in LOSSES, f"loss must be one of {LOSSES}, got {self.loss!r}"),
            (self.sampler in SAMPLERS, f"sampler must be one of {SAMPLERS}, got {self.sampler!r}"),
            (self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}, got {self.precision!r}"),
            (
                self.class_weighting in WEIGHTINGS,
                f"class_weighting must be one of {WEIGHTINGS}, got {self.class_weighting!r}",
            ),
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
            (self.image_size >= 16, f"image_size must be >= 16 pixels, got {self.image_size}"),
            (self.devices >= 1, f"devices must be >= 1, got {self.devices}"),
            (0 < self.target_sensitivity < 1, f"target_sensitivity must be in (0, 1), got {self.target_sensitivity}"),
            (self.patience >= 1, f"patience must be >= 1, got {self.patience}"),
            (self.checkpoint in CHECKPOINTS, f"checkpoint must be one of {CHECKPOINTS}, got {self.checkpoint!r}"),
            (self.focal_gamma >= 0 and self.focal_weight >= 0, "focal_gamma and focal_weight must be >= 0"),
            (0 <= self.label_smoothing < 1, f"label_smoothing must be in [0, 1), got {self.label_smoothing}"),
            (0 <= self.ema_decay < 1, f"ema_decay must be in [0, 1) (0: off; 0.997 typical), got {self.ema_decay}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown config key(s) {unknown}; valid keys: {sorted(known)}")
        return cls(**d)


def shipped_epoch(checkpoint: str) -> str:
    """Which epoch a recipe ships, in words for reports: it moves the figures as much as the loss does."""
    return "the last one shipped" if checkpoint == "last" else "the best-scoring one shipped"


def data_folders(config: TrainConfig | dict[str, Any]) -> list[str]:
    """The dataset folders a run reads, in order: ``data``, then ``val_data`` and ``test_data`` when given."""
    get = config.get if isinstance(config, dict) else lambda k: getattr(config, k)
    return [str(get(k)) for k in ("data", "val_data", "test_data") if get(k)]


def read_run_data(
    config: TrainConfig | dict[str, Any],
    data: str | Path | None = None,
    metadata: str | Path | None = None,
    skip_bad: bool = False,
    progress: bool = False,
) -> DermoscopyIndex:
    """The dataset of a run: ``data`` (default: the run's folders) with ``metadata`` (default: the run's own).

    The run's metadata file goes with the run's own folders only; another ``data`` folder takes its own
    metadata (found in it, or ``metadata``).
    """
    from dermascan.data.readers import read_datasets

    get = config.get if isinstance(config, dict) else lambda k: getattr(config, k)
    if data is None:
        return read_datasets(
            data_folders(config), metadata=metadata or get("metadata"), skip_bad=skip_bad, progress=progress
        )
    return read_datasets([data], metadata=metadata, skip_bad=skip_bad, progress=progress)


def list_presets() -> list[str]:
    return sorted(
        p.name.removesuffix(".yaml") for p in resources.files("dermascan.configs").iterdir() if p.name.endswith(".yaml")
    )


def load_preset(name: str) -> dict[str, Any]:
    path = resources.files("dermascan.configs") / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown preset {name!r}; available: {', '.join(list_presets())}")
    return yaml.safe_load(path.read_text()) or {}


def resolve_config(preset: str | None = None, config_file: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """Defaults < preset < YAML file < explicit overrides (``None`` overrides are ignored)."""
    merged: dict[str, Any] = {}
    if preset:
        merged.update(load_preset(preset))
    if config_file:
        merged.update(yaml.safe_load(Path(config_file).read_text()) or {})
    merged.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig.from_dict(merged)


def save_config(config: TrainConfig, path: str | Path) -> Path:
    from dermascan import _io

    return _io.write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))
