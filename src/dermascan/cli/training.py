"""``dermascan train``: its options are TrainConfig's fields (tests/test_cli.py checks both ways)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dermascan.cli._app import (
    Accelerator,
    Checkpoint,
    Loss,
    MetadataOpt,
    OutOpt,
    Sampler,
    SkipBadOpt,
    TrackingOpt,
    TrainPrecision,
    Weighting,
    app,
)
from dermascan.errors import ConfigError

#: Options of `train` that are not TrainConfig fields: how the config is assembled.
ASSEMBLY_OPTIONS = ("preset", "config", "resume", "tracking_uri")
#: TrainConfig fields without a flag: set them in a --config YAML file.
YAML_ONLY_FIELDS = ("augment",)


@app.command()
def train(
    data: Annotated[Path | None, typer.Option(help="Dataset folder (not needed with --resume).")] = None,
    metadata: MetadataOpt = None,
    out: OutOpt = Path("runs/run"),
    preset: Annotated[
        str | None,
        typer.Option(help="cpu-demo, ham10000-cpu, isic2018-resnet50-baseline, isic2018-resnet50, isic2018-vit_b_16."),
    ] = None,
    config: Annotated[Path | None, typer.Option(help="YAML file of config keys (overrides the preset).")] = None,
    arch: Annotated[str | None, typer.Option(help="resnet50, vit_b_16, resnet18, vit_tiny or timm:<name>.")] = None,
    weights: Annotated[str | None, typer.Option(help="none, imagenet, or a local state-dict file.")] = None,
    freeze: Annotated[bool | None, typer.Option("--freeze/--no-freeze", help="Freeze early layers.")] = None,
    image_size: Annotated[int | None, typer.Option(help="Network input side in pixels.")] = None,
    loss: Annotated[Loss | None, typer.Option(help="ce (baseline) or weighted_ce_focal.")] = None,
    class_weighting: Annotated[
        Weighting | None,
        typer.Option(
            help="inverse (the brief's baseline, N / (K N_i)), sqrt_inverse (its square root, mean 1: measured better "
            "in the demo; the cpu-demo default), clipped (inverse capped at 5), uniform."
        ),
    ] = None,
    focal_gamma: Annotated[float | None, typer.Option(help="Focusing parameter of the melanoma focal term.")] = None,
    focal_weight: Annotated[float | None, typer.Option(help="Weight (lambda_1) of the melanoma focal term.")] = None,
    label_smoothing: Annotated[
        float | None,
        typer.Option(help="Label smoothing of the cross-entropy term (0-1; the focal term keeps hard targets)."),
    ] = None,
    ema_decay: Annotated[
        float | None,
        typer.Option(
            help="Average the weights over training (decay per step, e.g. 0.997; 0 off): validated and saved."
        ),
    ] = None,
    sampler: Annotated[Sampler | None, typer.Option(help="shuffle or balanced.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Maximum epochs.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per step per device.")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate.")] = None,
    weight_decay: Annotated[float | None, typer.Option(help="AdamW weight decay (not on norms and biases).")] = None,
    warmup_epochs: Annotated[float | None, typer.Option(help="Linear warm-up before the cosine decay.")] = None,
    grad_clip: Annotated[float | None, typer.Option(help="Gradient-norm clip (0 disables).")] = None,
    precision: Annotated[TrainPrecision | None, typer.Option(help="auto, 32-true, bf16-mixed, 16-mixed.")] = None,
    devices: Annotated[int | None, typer.Option(help="Processes/GPUs; >1 runs DDP.")] = None,
    accelerator: Annotated[Accelerator | None, typer.Option(help="auto, cpu or gpu.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for split, init, sampling, augmentation.")] = None,
    patience: Annotated[int | None, typer.Option(help="Early-stopping patience (epochs).")] = None,
    checkpoint: Annotated[
        Checkpoint | None,
        typer.Option(help="Which epoch best.ckpt ships: best (validation selection score) or last (schedule's end)."),
    ] = None,
    target_sensitivity: Annotated[
        float | None, typer.Option(help="Melanoma sensitivity at which validation specificity selects the checkpoint.")
    ] = None,
    val_fraction: Annotated[float | None, typer.Option(help="Validation share per class.")] = None,
    test_fraction: Annotated[float | None, typer.Option(help="Test share per class.")] = None,
    num_workers: Annotated[int | None, typer.Option(help="Loader workers (-1 automatic).")] = None,
    val_data: Annotated[
        Path | None,
        typer.Option(
            help="Separate validation folder (e.g. official ISIC 2018 validation), used whole as the val split."
        ),
    ] = None,
    test_data: Annotated[Path | None, typer.Option(help="Separate test folder, used whole as the test split.")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Pre-resized image cache folder.")] = None,
    limit_train_batches: Annotated[int | None, typer.Option(help="Cap steps per epoch (smoke runs).")] = None,
    skip_bad: SkipBadOpt = False,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from last.ckpt.")] = False,
    tracking_uri: TrackingOpt = None,
) -> None:
    """Train a classifier; writes config.yaml, splits.csv, best.ckpt, last.ckpt, history.csv/json to --out."""
    import dataclasses

    from dermascan.runs import CONFIG_FILE
    from dermascan.training.config import TrainConfig, resolve_config
    from dermascan.training.train import train as run_training

    given = locals()
    overrides = {f.name: given[f.name] for f in dataclasses.fields(TrainConfig) if f.name in given}
    overrides = {k: str(v) if isinstance(v, Path) else v for k, v in overrides.items()}
    overrides["skip_bad"] = skip_bad or None  # a flag: "not given" must not override the run's own setting
    saved = out / CONFIG_FILE
    if resume and saved.exists():
        cfg = resolve_config(config_file=saved, **overrides)  # the run's own config, plus what you change
    else:
        cfg = resolve_config(preset=preset, config_file=config, **overrides)
    if not cfg.data:
        raise ConfigError("--data is required (a dataset folder; `dermascan synth --out DIR` makes one)")
    result = run_training(cfg, resume=resume)
    typer.echo(f"trained {result.epochs_run} epoch(s); best selection score {result.best_score:.4f}")
    typer.echo(f"run folder: {result.out} (best.ckpt, last.ckpt, history.csv, splits.csv, config.yaml, data.json)")
    if tracking_uri is not None:
        from dermascan.lifecycle.registry import log_training

        typer.echo(f"logged to MLflow run {log_training(result.out, tracking_uri)} at {tracking_uri}")


@app.command()
def cv(
    data: Annotated[Path, typer.Option(help="Dataset folder with lesion ids (e.g. ../shared/data/ham10000-200).")],
    out: OutOpt = Path("cv"),
    folds: Annotated[int, typer.Option(help="Folds, by lesion; each lesion is scored once.")] = 5,
    fold: Annotated[
        list[int] | None, typer.Option(help="Run only this fold (repeatable): a quick look before all of them.")
    ] = None,
    preset: Annotated[str, typer.Option(help="Training preset the recipe starts from.")] = "ham10000-cpu",
    config: Annotated[Path | None, typer.Option(help="YAML file of training keys (overrides the preset).")] = None,
    arch: Annotated[str | None, typer.Option(help="Architecture (resnet18, timm:<name>, ...).")] = None,
    image_size: Annotated[int | None, typer.Option(help="Network input side in pixels.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Maximum epochs.")] = None,
    target_sensitivity: Annotated[float, typer.Option(help="Sensitivity each fold's threshold is locked for.")] = 0.90,
    seed: Annotated[int, typer.Option(help="Seeds the folds and the trainings.")] = 0,
    against: Annotated[
        Path | None,
        typer.Option(help="A reference `dermascan cv` folder (same data, folds, seed): the paired difference."),
    ] = None,
    tta: Annotated[
        bool, typer.Option(help="Lock each threshold on, and score, the average over the image and its flips.")
    ] = False,
    models_from: Annotated[
        Path | None,
        typer.Option(help="Reuse this `dermascan cv` folder's trained folds: only the evaluation runs (e.g. --tta)."),
    ] = None,
    ensemble: Annotated[
        list[Path] | None,
        typer.Option(
            help="Score these `dermascan cv` folders' trained folds together (repeat, two or more): each image by "
            "the mean of their logits, each fold's threshold locked on it; nothing is trained."
        ),
    ] = None,
) -> None:
    """Cross-validate a training recipe by lesion: melanoma AUROC, specificity at 90% and 95% sensitivity, the
    locked threshold's sensitivity and specificity and balanced accuracy, pooled with 95% intervals, per fold,
    and the training minutes (cv.json, cv.md)."""
    import yaml

    from dermascan.crossval import CVConfig, cross_validate

    overrides = yaml.safe_load(config.read_text()) if config is not None else {}
    overrides = dict(overrides or {}) | {
        k: v for k, v in {"arch": arch, "image_size": image_size, "epochs": epochs}.items() if v is not None
    }
    cfg = CVConfig(
        data=str(data),
        out=str(out),
        folds=folds,
        preset=preset,
        train=overrides,
        target_sensitivity=target_sensitivity,
        seed=seed,
        only=tuple(fold) if fold else None,
        against=str(against) if against is not None else None,
        tta=tta,
        models_from=str(models_from) if models_from is not None else None,
        ensemble=tuple(str(m) for m in ensemble) if ensemble else None,
    )
    summary = cross_validate(cfg)
    p, iv = summary["pooled"], summary["pooled"]["intervals"]
    typer.echo(
        f"melanoma AUROC {p['auroc']:.3f} [{iv['auroc'][0]:.3f}, {iv['auroc'][1]:.3f}], specificity at 90% "
        f"sensitivity {p['spec_at_90']:.3f} [{iv['spec_at_90'][0]:.3f}, {iv['spec_at_90'][1]:.3f}] "
        f"(validation figures over {len(summary['folds'])} fold(s))"
    )
    if "against" in summary:
        d = summary["against"]
        typer.echo(
            f"against {against}: AUROC {d['auroc']['difference']:+.3f} [{d['auroc']['interval'][0]:+.3f}, "
            f"{d['auroc']['interval'][1]:+.3f}], specificity at 90% sensitivity {d['spec_at_90']['difference']:+.3f} "
            f"[{d['spec_at_90']['interval'][0]:+.3f}, {d['spec_at_90']['interval'][1]:+.3f}] (paired, "
            f"{d['n_images']} images)"
        )
    typer.echo(f"wrote {out / 'cv.md'} and {out / 'cv.json'}")
