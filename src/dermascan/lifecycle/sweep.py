"""Hyper-parameter sweeps with Optuna (brief 4.7, "hyperparameter sweeps").

``dermascan sweep --data D --trials N [--storage URL]``: TPE sampling over learning rate, weight decay, the focal
term's weight (lambda) and gamma, class weighting and image size, each trial a real training run
(:func:`dermascan.training.train.train`) in ``OUT/trials/<number>``. The objective is the melanoma specificity at 90%
sensitivity on the **validation** split (the figure the training loop already measures every epoch); the test split
is never read. A median pruner stops a trial whose per-epoch validation figure falls below the median of earlier
trials at the same epoch.

Every trial shares one lesion-grouped split (the seed is fixed), so trials differ only in their hyper-parameters.
Parallel workers share the study through ``--storage``: SQLite on one machine, PostgreSQL across machines (each
worker runs the same command; Optuna hands out trials).

Writes ``OUT/trials.csv`` (one row per trial), ``OUT/importance.png`` (fANOVA importances, once two trials have
completed) and ``OUT/best.yaml`` (the best trial's training config, for ``dermascan train --config best.yaml``).
Optuna is imported here only.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dermascan import _io
from dermascan.errors import ConfigError, DermaScanError

OBJECTIVE = "melanoma_specificity_at_target"  # per-epoch validation figure in the training history
TARGET_SENSITIVITY = 0.90


class SweepError(DermaScanError, RuntimeError):
    """A sweep that cannot run (no Optuna, no trial completed), with the fix."""


@dataclass(frozen=True)
class SearchSpace:
    """The ranges the sampler draws from (log scale for the rates).

    Attributes:
        lr: learning-rate range.
        weight_decay: AdamW weight-decay range.
        focal_weight: weight (lambda_1) of the melanoma focal term.
        focal_gamma: focusing parameter of the focal term.
        class_weighting: class-weighting schemes to choose from.
        image_size: network input sides to choose from.
    """

    lr: tuple[float, float] = (1e-4, 3e-3)
    weight_decay: tuple[float, float] = (1e-6, 1e-2)
    focal_weight: tuple[float, float] = (0.0, 2.0)
    focal_gamma: tuple[float, float] = (0.0, 4.0)
    class_weighting: tuple[str, ...] = ("inverse", "sqrt_inverse", "clipped")
    image_size: tuple[int, ...] = (64, 96)

    def suggest(self, trial: Any) -> dict[str, Any]:
        return {
            "lr": trial.suggest_float("lr", *self.lr, log=True),
            "weight_decay": trial.suggest_float("weight_decay", *self.weight_decay, log=True),
            "focal_weight": trial.suggest_float("focal_weight", *self.focal_weight),
            "focal_gamma": trial.suggest_float("focal_gamma", *self.focal_gamma),
            "class_weighting": trial.suggest_categorical("class_weighting", list(self.class_weighting)),
            "image_size": trial.suggest_categorical("image_size", list(self.image_size)),
        }


def _optuna():  # type: ignore[no-untyped-def]
    try:
        import optuna
    except ImportError as e:
        raise SweepError("Optuna is not installed: pip install 'dermascan[lifecycle]'") from e
    return optuna


def _pruning_callback(trial: Any) -> Any:
    """A Lightning callback that reports the per-epoch validation figure to the trial and prunes on its advice."""
    import lightning as L

    optuna = _optuna()

    class _Report(L.Callback):
        def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            value = float(getattr(pl_module, "last_val", {}).get(OBJECTIVE, math.nan))
            if math.isnan(value):
                return  # undefined on this epoch (no melanoma found at any threshold): nothing to compare
            trial.report(value, trainer.current_epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"epoch {trainer.current_epoch}: {OBJECTIVE} {value:.3f} below the median")

    return _Report()


def sweep(
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    trials: int,
    storage: str | None = None,
    study_name: str = "dermascan",
    preset: str = "cpu-demo",
    space: SearchSpace | None = None,
    seed: int = 0,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run ``trials`` trials (more workers may join through ``storage``) and write the sweep's outputs.

    Args:
        data: the dataset folder.
        out: the sweep folder (trial runs, trials.csv, importance.png, best.yaml).
        trials: trials this worker runs.
        storage: Optuna storage URL (default: SQLite ``OUT/sweep.db``).
        study_name: the study's name in the storage (workers of one sweep share it).
        preset: the training preset each trial starts from.
        space: the search space.
        seed: the sampler's seed and every trial's split/initialisation seed.
        overrides: fixed TrainConfig values for every trial (e.g. ``epochs``, ``batch_size``).

    Returns:
        ``{"best_value", "best_params", "n_complete", "n_pruned", "files"}``.
    """
    optuna = _optuna()
    from dermascan.training.config import resolve_config
    from dermascan.training.train import train

    if trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {trials}")
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    storage = storage or f"sqlite:///{(root / 'sweep.db').resolve()}"
    space = space or SearchSpace()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
        load_if_exists=True,
    )

    def objective(trial: Any) -> float:
        params = space.suggest(trial)
        cfg = resolve_config(
            preset,
            **{**(overrides or {}), **params},
            data=str(data),
            out=str(root / "trials" / f"{trial.number:04d}"),
            loss="weighted_ce_focal",
            target_sensitivity=TARGET_SENSITIVITY,
            seed=seed,
        )
        result = train(cfg, progress=False, callbacks=[_pruning_callback(trial)])
        best = max(result.history, key=lambda r: r.get("val_selection", -math.inf), default=None)
        value = float(best[OBJECTIVE]) if best is not None else math.nan
        trial.set_user_attr("run", cfg.out)
        trial.set_user_attr("epochs", result.epochs_run)
        if math.isnan(value):
            raise optuna.TrialPruned("the validation figure is undefined (no melanoma in the validation split?)")
        return value

    study.optimize(objective, n_trials=trials, catch=())
    return write_outputs(study, root, preset, overrides or {})


def write_outputs(study: Any, root: Path, preset: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """trials.csv, importance.png and best.yaml of a study."""
    from dermascan.training.config import resolve_config

    optuna = _optuna()
    state = optuna.trial.TrialState
    frame = study.trials_dataframe(attrs=("number", "value", "state", "params", "user_attrs", "duration"))
    _io.write_csv(root / "trials.csv", frame)
    complete = study.get_trials(deepcopy=False, states=(state.COMPLETE,))
    pruned = study.get_trials(deepcopy=False, states=(state.PRUNED,))
    if not complete:
        raise SweepError(f"no trial completed ({len(pruned)} pruned): run more --trials or more epochs")
    files = ["trials.csv"]
    importances: dict[str, float] = {}
    if len(complete) >= 2:
        importances = optuna.importance.get_param_importances(study)
        _plot_importance(importances, root / "importance.png")
        files.append("importance.png")
    best = study.best_trial
    cfg = resolve_config(preset, **{**overrides, **best.params}, loss="weighted_ce_focal")
    config = {k: v for k, v in cfg.to_dict().items() if k not in ("data", "out")}
    header = (
        f"# best of {len(complete)} completed trial(s) of study {study.study_name!r}: validation melanoma specificity "
        f"at {TARGET_SENSITIVITY:.0%} sensitivity = {best.value:.4f} (trial {best.number})\n"
    )
    _io.write_text(root / "best.yaml", header + yaml.safe_dump(config, sort_keys=False))
    files.append("best.yaml")
    return {
        "best_value": best.value,
        "best_params": best.params,
        "best_trial": best.number,
        "n_complete": len(complete),
        "n_pruned": len(pruned),
        "importances": importances,
        "files": files,
    }


def _plot_importance(importances: dict[str, float], path: Path) -> None:
    from dermascan.evaluation.plots import _new_figure, _save

    names: Sequence[str] = list(importances)[::-1]
    fig = _new_figure(5.5, 0.4 * len(names) + 1.2)
    ax = fig.add_subplot(1, 1, 1)
    ax.barh(names, [importances[n] for n in names], color="#4c72b0")
    ax.set_xlabel("importance (fANOVA)")
    ax.set_title("what moved validation specificity at 90% sensitivity", fontsize=10)
    _save(fig, path)


__all__ = ["OBJECTIVE", "SearchSpace", "SweepError", "sweep", "write_outputs"]
