"""Lesion-grouped k-fold cross-validation of one training recipe, with the melanoma-first figures pooled.

Per fold (:func:`~dermascan.data.splits.make_fold_splits`): the held-out fold is scored; of the other folds,
half a fold's worth of lesions selects the checkpoint and locks the temperature and threshold
(:func:`~dermascan.evaluation.evaluate.evaluate`), the rest trains. Over the folds every lesion is scored once,
by a model that never saw it, at a threshold chosen on other lesions. The pooled predictions give one figure
per metric with a bootstrap (AUROC, specificity at 90% and 95% sensitivity, balanced multi-class accuracy) or
Wilson (the locked threshold's sensitivity and specificity) interval; the per-fold figures show the spread
between folds.

These are validation figures on held-out lesions of the data given, never test figures.
"""

from __future__ import annotations

import functools
import json
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dermascan import _io
from dermascan.errors import ConfigError
from dermascan.evaluation import metrics
from dermascan.evaluation.bootstrap import bootstrap_ci
from dermascan.evaluation.intervals import Estimate, wilson_estimate
from dermascan.taxonomy import CLASSES, MELANOMA_INDEX
from dermascan.training.config import shipped_epoch

CV_FILE = "cv.json"
FOLDS_FILE = "folds.csv"
POOLED_FILE = "predictions.csv"
MINUTES_FILE = "minutes.json"
#: Sensitivities the specificity is read at (the brief's 90% and the stricter 95%).
SENSITIVITIES = (0.90, 0.95)


@dataclass
class CVConfig:
    """One cross-validated recipe.

    Attributes:
        data: dataset folder (ISIC 2018 / HAM10000 / ImageFolder layout) with lesion ids.
        out: output folder (``fold<k>/run``, ``fold<k>/eval``, ``cv.json``, ``folds.csv``, ``predictions.csv``).
        folds: number of folds.
        preset: training preset the recipe starts from.
        train: further :class:`~dermascan.training.config.TrainConfig` fields (they win over the preset).
        target_sensitivity: sensitivity the threshold is locked for on each fold's validation half.
        seed: seeds the folds and (with the fold number) each training.
        n_boot: bootstrap resamples of the pooled intervals.
        only: run these folds only (e.g. ``(0,)`` for a quick look); the pooled figures then cover them only.
        against: another cross-validation's folder (same data, folds and seed): what this recipe bought
            against it, paired on the images both scored (:func:`paired_difference`).
        tta: each fold's temperature and threshold are locked on, and its images scored by, the average over the
            image and its flips (the policy the Predictor then serves with ``tta``).
        models_from: another cross-validation's folder whose trained folds are reused (linked, not copied): only
            the evaluation runs, so a change of the decision policy (``tta``, the target) costs minutes, not
            an hour, and is paired with that folder's figures on the very same models.
        ensemble: two or more cross-validation folders (same data, folds and seed) whose trained folds are scored
            together: each image by the mean of their models' logits, each fold's temperature and threshold locked
            on that mean over its validation half, as for one model. Nothing is trained; the training minutes
            are the members' sum.
    """

    data: str
    out: str
    folds: int = 5
    preset: str = "ham10000-cpu"
    train: dict[str, Any] = field(default_factory=dict)
    target_sensitivity: float = 0.90
    seed: int = 0
    n_boot: int = 1000
    only: tuple[int, ...] | None = None
    against: str | None = None
    tta: bool = False
    models_from: str | None = None
    ensemble: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.folds < 2:
            raise ConfigError(f"--folds must be at least 2, got {self.folds}")
        if self.only is not None:
            self.only = tuple(self.only)
            bad = [k for k in self.only if not 0 <= k < self.folds]
            if bad or not self.only:
                raise ConfigError(f"--fold must name folds in 0..{self.folds - 1}, got {list(self.only) or '(none)'}")
        if self.against is not None and not (Path(self.against) / POOLED_FILE).is_file():
            # said before an hour of training, not after
            raise ConfigError(
                f"--against {self.against} has no {POOLED_FILE}: give the folder of a finished `dermascan cv`"
            )
        if self.models_from is not None:
            if not any(Path(self.models_from).glob("fold*/run/last.ckpt")):
                raise ConfigError(
                    f"--models-from {self.models_from} holds no trained folds: give the folder of a `dermascan cv`"
                )
            # which epoch a run ships is read off its checkpoints, not trained: the one key that may differ
            trained = sorted(set(self.train) - {"checkpoint"})
            if trained:
                raise ConfigError(
                    "--models-from reuses trained folds: training options ("
                    + ", ".join(trained)
                    + ") cannot change them; leave them out (checkpoint: last may stay), or train anew without "
                    "--models-from"
                )
            if Path(self.models_from).resolve() == Path(self.out).resolve():
                raise ConfigError("--models-from must name another folder than --out")
        if self.ensemble is not None:
            self._check_ensemble()
        for key in ("data", "out", "val_fraction", "test_fraction"):
            if key in self.train:
                raise ConfigError(f"{key} is set by the cross-validation itself; leave it out of the training options")

    def _check_ensemble(self) -> None:
        self.ensemble = tuple(str(m) for m in self.ensemble or ())
        if len(self.ensemble) < 2:
            raise ConfigError(f"--ensemble needs at least two `dermascan cv` folders, got {len(self.ensemble)}")
        if self.models_from is not None or self.train:
            raise ConfigError(
                "--ensemble scores the members' trained folds: leave out --models-from and training options"
                + (f" ({', '.join(sorted(self.train))})" if self.train else "")
            )
        for member in self.ensemble:
            if not any(Path(member).glob("fold*/run/last.ckpt")):
                raise ConfigError(f"--ensemble {member} holds no trained folds: give the folder of a `dermascan cv`")
            if Path(member).resolve() == Path(self.out).resolve():
                raise ConfigError("--ensemble members must be other folders than --out")


def cross_validate(cfg: CVConfig, progress: bool = True) -> dict[str, Any]:
    """Train and evaluate every fold, pool the scored halves, and write ``cv.json`` and the tables.

    A fold whose run folder already holds a trained ``last.ckpt`` and an evaluation is not trained again, so an
    interrupted cross-validation resumes where it stopped.

    Returns:
        The summary (``cv.json``): config, per-fold figures and minutes, pooled figures with intervals.

    Raises:
        ConfigError: a fold's validation or test split has no melanoma (too few lesions for this many folds).
    """
    from dermascan.data.splits import make_fold_splits
    from dermascan.evaluation.evaluate import evaluate
    from dermascan.runs import load_run
    from dermascan.training.config import read_run_data, resolve_config

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    base = resolve_config(cfg.preset, data=cfg.data, out=str(out / "fold0" / "run"), **cfg.train)
    members = [cfg.models_from] if cfg.models_from is not None else list(cfg.ensemble or ())
    if members:  # the recipe that trained the reused folds (an ensemble's first member)
        base = load_run(_source_run(members[0], (cfg.only or (0,))[0]), model=False).config or base
        if "checkpoint" in cfg.train:
            if cfg.train["checkpoint"] == "best" and base.checkpoint == "last":
                # such a training kept no epoch by its selection score: best.ckpt is the last epoch
                raise ConfigError(
                    f"--models-from {members[0]} shipped its last epochs (checkpoint: last), so its epochs with the "
                    "best selection score were never saved; drop checkpoint: best, or train anew with it"
                )
            base = replace(base, checkpoint=cfg.train["checkpoint"])
    index = read_run_data(base, progress=progress)
    rows, pooled = [], []
    for k in cfg.only if cfg.only is not None else range(cfg.folds):
        run_dir, eval_dir = out / f"fold{k}" / "run", out / f"fold{k}" / "eval"
        splits = make_fold_splits(index.frame, cfg.folds, k, cfg.seed)
        _check_fold(index.frame, splits, k)
        minutes = None
        if cfg.ensemble is not None:
            if not (eval_dir / "predictions_detail.csv").is_file():
                if progress:
                    print(f"fold {k + 1}/{cfg.folds}: scoring the ensemble of {len(cfg.ensemble)}", flush=True)
                _score_ensemble(cfg, k, splits, index, eval_dir, progress)
            minutes = sum(_minutes(_source_run(m, k).parent, None) or 0.0 for m in cfg.ensemble)
        elif cfg.models_from is not None and not (run_dir / "last.ckpt").exists():
            _link_run(_source_run(cfg.models_from, k), run_dir, splits, base.checkpoint)
        # the minutes are written once training finished: a last.ckpt without them is an interrupted training
        trained = (run_dir / "last.ckpt").is_file() and (run_dir.parent / MINUTES_FILE).is_file()
        if cfg.ensemble is None and not (trained and (eval_dir / "predictions_detail.csv").is_file()):
            if not trained:
                minutes = _train_fold(cfg, k, splits, index, run_dir, progress)
            if progress:
                print(f"fold {k + 1}/{cfg.folds}: locking the threshold and scoring" + (" (TTA)" * cfg.tta), flush=True)
            evaluate(
                run_dir,
                eval_dir,
                index=index,
                tta=cfg.tta,
                target_sensitivity=cfg.target_sensitivity,
                recalibrate=True,
                n_boot=200,
                progress=False,
            )
        scored = pd.read_csv(eval_dir / "predictions_detail.csv")
        scored["fold"] = k
        pooled.append(scored)
        rows.append({"fold": k, "minutes": _minutes(run_dir.parent, minutes), **_figures(scored, cfg, n_boot=0)})
        if progress:
            r = rows[-1]
            print(f"fold {k + 1}: melanoma AUROC {r['auroc']:.3f}, spec@90% {r['spec_at_90']:.3f}", flush=True)
    frame = pd.concat(pooled, ignore_index=True)
    _io.write_csv(out / POOLED_FILE, frame[["fold", "image_id", "label", "pred", "p_melanoma", *CLASSES]])
    _io.write_csv(out / FOLDS_FILE, pd.DataFrame(rows))
    summary = {
        "config": asdict(cfg)
        | {
            "only": list(cfg.only) if cfg.only is not None else None,
            "ensemble": list(cfg.ensemble) if cfg.ensemble is not None else None,
        },
        "recipe": {k: v for k, v in base.to_dict().items() if k not in ("data", "out")},
        "note": "validation figures: each lesion scored once, by a model trained without its fold",
        "folds": rows,
        "pooled": _figures(frame, cfg, cfg.n_boot),
        "training_minutes": {
            "mean": _mean([r["minutes"] for r in rows]),
            "per_fold": [r["minutes"] for r in rows],
        },
    }
    if cfg.against is not None:
        summary["against"] = {"reference": cfg.against, **paired_difference(cfg.against, out, cfg.n_boot, cfg.seed)}
    _io.write_json(out / CV_FILE, summary)
    _io.write_text(out / "cv.md", format_summary(summary))
    return summary


def paired_difference(reference: str | Path, other: str | Path, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """What ``other``'s recipe bought against ``reference``'s, on the images both scored (the same data, folds
    and seed score the same images): the difference (other - reference) of melanoma AUROC and specificity at
    90% and 95% sensitivity, with a paired bootstrap interval (the same resampled images for both, stratified
    by melanoma). Paired, because most of each figure's uncertainty is which images a fold holds, and both
    recipes share it.

    Raises:
        ConfigError: a folder without ``predictions.csv``, or no image scored by both.
    """
    frames = []
    for folder in (reference, other):
        path = Path(folder) / POOLED_FILE
        if not path.is_file():
            raise ConfigError(f"{folder} has no {POOLED_FILE}: give the folder of a finished `dermascan cv`")
        frames.append(pd.read_csv(path, usecols=["image_id", "label", "p_melanoma"]))
    both = frames[0].merge(frames[1], on=["image_id", "label"], suffixes=("_ref", "_new"))
    if both.empty:
        raise ConfigError(f"{reference} and {other} scored no image in common: run both on the same data and folds")
    y = (both["label"].to_numpy() == MELANOMA_INDEX).astype(int)
    scores = both[["p_melanoma_ref", "p_melanoma_new"]].to_numpy(np.float64)  # (N, 2)
    figures = {"auroc": metrics.roc_auc_score} | {
        f"spec_at_{round(t * 100)}": functools.partial(_spec_at, target=t) for t in SENSITIVITIES
    }
    out: dict[str, Any] = {"n_images": len(both), "n_melanomas": int(y.sum())}
    for name, fn in figures.items():
        e = bootstrap_ci(functools.partial(_delta, fn=fn), y, scores, n_boot=n_boot, seed=seed)
        out[name] = {"difference": round(e.value, 4), "interval": _est(e)}
    return out


def _spec_at(y: np.ndarray, p: np.ndarray, target: float) -> float:
    return metrics.specificity_at_sensitivity(y, p, target)[0]


def _delta(y: np.ndarray, scores: np.ndarray, fn: Any) -> float:
    return float(fn(y, scores[:, 1]) - fn(y, scores[:, 0]))


def _check_fold(frame: pd.DataFrame, splits: pd.DataFrame, k: int) -> None:
    dx = splits["image_id"].map(frame.set_index("image_id")["dx"])
    for half in ("val", "test"):
        if not ((splits["split"] == half) & (dx == CLASSES[MELANOMA_INDEX])).any():
            raise ConfigError(
                f"fold {k}'s {half} split holds no melanoma: too few melanoma lesions for this many folds; "
                "use fewer --folds or more images"
            )


def _train_fold(cfg: CVConfig, k: int, splits: pd.DataFrame, index: Any, run_dir: Path, progress: bool) -> float:
    """Train fold ``k``'s model on its training lesions; returns (and records) the training minutes."""
    from dermascan.data.splits import write_splits
    from dermascan.runs import SPLITS_FILE
    from dermascan.training.config import resolve_config
    from dermascan.training.train import train

    run_dir.mkdir(parents=True, exist_ok=True)
    write_splits(splits, run_dir / SPLITS_FILE)  # the data module trains on these instead of its own
    config = resolve_config(cfg.preset, data=cfg.data, out=str(run_dir), seed=cfg.seed * 100 + k, **cfg.train)
    if progress:
        print(f"fold {k + 1}/{cfg.folds}: training {config.arch} at {config.image_size} px", flush=True)
    t0 = time.perf_counter()
    train(config, index=index, progress=progress)
    minutes = (time.perf_counter() - t0) / 60
    _io.write_json(run_dir.parent / MINUTES_FILE, {"training_minutes": minutes})
    return minutes


def _source_run(folder: str, k: int) -> Path:
    """Fold ``k``'s trained run in another cross-validation's ``folder`` (``--models-from``, ``--ensemble``)."""
    run = Path(folder) / f"fold{k}" / "run"
    if not ((run / "last.ckpt").is_file() and (run.parent / MINUTES_FILE).is_file()):
        raise ConfigError(
            f"{folder} has no finished fold {k} (no {run / 'last.ckpt'} and {run.parent / MINUTES_FILE}): let that "
            "cross-validation finish first"
        )
    return run


def _check_same_folds(source: Path, splits: pd.DataFrame) -> None:
    """Raises ConfigError when ``source`` was trained on other folds (another data, fold count or seed)."""
    from dermascan.data.splits import read_splits
    from dermascan.runs import SPLITS_FILE

    theirs = read_splits(source / SPLITS_FILE)
    same = theirs.set_index("image_id")["split"].sort_index().equals(splits.set_index("image_id")["split"].sort_index())
    if not same:
        raise ConfigError(
            f"{source} was trained on other folds than these: reuse a cross-validation of the same --data, --folds "
            "and --seed"
        )


def _score_ensemble(cfg: CVConfig, k: int, splits: pd.DataFrame, index: Any, eval_dir: Path, progress: bool) -> None:
    """Fold ``k`` scored by the mean of the members' logits (the geometric mean of their probabilities), its
    temperature and threshold locked on that mean over the validation half (:func:`~dermascan.evaluation.evaluate.
    lock_point`, as for one model); writes the fold's ``operating_point.json`` and ``predictions_detail.csv``."""
    from dermascan.decision import apply_temperature
    from dermascan.evaluation.evaluate import lock_point, predict_logits, prediction_frame, select
    from dermascan.runs import load_run

    assert cfg.ensemble is not None
    sources = [_source_run(m, k) for m in cfg.ensemble]
    for source in sources:
        _check_same_folds(source, splits)
    runs = [load_run(source) for source in sources]
    val, test = select(index, splits, "val"), select(index, splits, "test")

    def mean_logits(frame: pd.DataFrame) -> np.ndarray:  # (N, K)
        return np.mean([predict_logits(r.loaded, frame, tta=cfg.tta, progress=progress) for r in runs], axis=0)

    point = lock_point(mean_logits(val), val["label"].to_numpy(), cfg.target_sensitivity, tta=cfg.tta)
    probs = apply_temperature(mean_logits(test), point["temperature"])  # (N, K)
    eval_dir.mkdir(parents=True, exist_ok=True)
    _io.write_json(eval_dir / "operating_point.json", point)
    _io.write_csv(
        eval_dir / "predictions_detail.csv", prediction_frame(test, probs, point["threshold"]), float_format="%.6f"
    )


def _link_run(source: Path, run_dir: Path, splits: pd.DataFrame, checkpoint: str) -> None:
    """A run folder of its own for ``source``'s trained model: checkpoints linked, the small files copied, no
    operating point (this cross-validation locks its own), the training minutes carried over. With
    ``checkpoint="last"``, its ``best.ckpt`` is the source's ``last.ckpt`` (the epoch the schedule ended on),
    what training with that setting ships.

    Raises:
        ConfigError: ``source`` was trained on other folds (another data, fold count or seed).
    """
    from dermascan.runs import BEST_CHECKPOINT, CONFIG_FILE, LAST_CHECKPOINT
    from dermascan.training.config import resolve_config, save_config

    _check_same_folds(source, splits)
    run_dir.mkdir(parents=True, exist_ok=True)
    for f in sorted(source.iterdir()):
        if f.name == "operating_point.json" or not f.is_file():
            continue
        if f.suffix == ".ckpt":
            shipped = source / LAST_CHECKPOINT if f.name == BEST_CHECKPOINT and checkpoint == "last" else f
            (run_dir / f.name).symlink_to(shipped.resolve())
        else:
            shutil.copy2(f, run_dir / f.name)
    if (run_dir / CONFIG_FILE).is_file():  # the run folder says which epoch its best.ckpt is
        save_config(resolve_config(config_file=run_dir / CONFIG_FILE, checkpoint=checkpoint), run_dir / CONFIG_FILE)
    shutil.copy2(source.parent / MINUTES_FILE, run_dir.parent / MINUTES_FILE)


def _minutes(fold_dir: Path, measured: float | None) -> float | None:
    """This session's training minutes, or the ones a resumed (or reused) fold recorded before."""
    path = fold_dir / MINUTES_FILE
    if measured is not None:
        return round(measured, 2)
    if path.is_file():
        return round(float(json.loads(path.read_text())["training_minutes"]), 2)
    return None


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(float(np.mean(known)), 2) if known else None


def _figures(frame: pd.DataFrame, cfg: CVConfig, n_boot: int) -> dict[str, Any]:
    """The melanoma-first figures of scored images; with ``n_boot`` their intervals too."""
    label = frame["label"].to_numpy()
    y = (label == MELANOMA_INDEX).astype(int)
    p = frame["p_melanoma"].to_numpy(np.float64)
    flag = (frame["pred"].to_numpy() == MELANOMA_INDEX).astype(int)  # the decision at each fold's own threshold
    tp, fn = int(((flag == 1) & (y == 1)).sum()), int(((flag == 0) & (y == 1)).sum())
    tn, fp = int(((flag == 0) & (y == 0)).sum()), int(((flag == 1) & (y == 0)).sum())
    pred = frame["pred"].to_numpy()
    out: dict[str, Any] = {
        "n_images": len(frame),
        "n_melanomas": int(y.sum()),
        "auroc": metrics.roc_auc_score(y, p),
        **{f"spec_at_{round(t * 100)}": _spec_at(y, p, t) for t in SENSITIVITIES},
        "sensitivity": tp / max(1, tp + fn),
        "specificity": tn / max(1, tn + fp),
        "balanced_accuracy": metrics.balanced_accuracy_score(label, pred),
    }
    if n_boot:
        out["intervals"] = {
            "auroc": _est(bootstrap_ci(metrics.roc_auc_score, y, p, n_boot=n_boot, seed=cfg.seed)),
            **{
                f"spec_at_{round(t * 100)}": _est(
                    bootstrap_ci(functools.partial(metrics.specificity_at_sensitivity, target=t), y, p, n_boot=n_boot)
                )
                for t in SENSITIVITIES
            },
            "sensitivity": _est(wilson_estimate(tp, tp + fn, what="sensitivity")),
            "specificity": _est(wilson_estimate(tn, tn + fp, what="specificity")),
            "balanced_accuracy": _est(bootstrap_ci(metrics.balanced_accuracy_score, label, pred, n_boot=n_boot)),
        }
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}


def _est(e: Estimate) -> list[float]:
    return [round(e.lo, 4), round(e.hi, 4)]


def format_summary(summary: dict[str, Any]) -> str:
    """Markdown: the recipe, the pooled figures with intervals, and one row per fold."""
    p, iv = summary["pooled"], summary["pooled"]["intervals"]
    recipe = summary["recipe"]

    def ci(key: str) -> str:
        lo, hi = iv[key]
        return f"{p[key]:.3f} [{lo:.3f}, {hi:.3f}]"

    n, folds = len(summary["folds"]), summary["config"]["folds"]
    scope = f"{folds} folds by lesion" if n == folds else f"{n} of {folds} folds by lesion (a quick look)"
    lines = [
        f"# Cross-validation: {scope} ({summary['note']})",
        "",
        f"Recipe: {recipe['arch']} at {recipe['image_size']} px, {recipe['epochs']} epochs "
        f"({shipped_epoch(recipe.get('checkpoint', 'best'))}), loss {recipe['loss']}, "
        f"class weights {recipe['class_weighting']} (preset {summary['config']['preset']}"
        + "".join(f", {k}: {v}" for k, v in sorted(summary["config"].get("train", {}).items()))
        + ")"
        + (
            "; threshold locked on, and images scored with, flip test-time augmentation"
            if summary["config"].get("tta")
            else ""
        )
        + (f"; the trained folds of {summary['config']['models_from']}" if summary["config"].get("models_from") else "")
        + (
            f"; an ensemble: the mean logits of {' and '.join(summary['config']['ensemble'])}, the first one's recipe "
            "shown"
            if summary["config"].get("ensemble")
            else ""
        )
        + ".",
        f"Mean training minutes per fold: {summary['training_minutes']['mean']}.",
        "",
        "| figure (pooled over folds, 95% interval) | value |",
        "|---|---|",
        f"| melanoma AUROC | {ci('auroc')} |",
        f"| specificity at 90% sensitivity | {ci('spec_at_90')} |",
        f"| specificity at 95% sensitivity | {ci('spec_at_95')} |",
        f"| locked threshold: sensitivity | {ci('sensitivity')} |",
        f"| locked threshold: specificity | {ci('specificity')} |",
        f"| balanced multi-class accuracy | {ci('balanced_accuracy')} |",
        "",
        "| fold | images | melanomas | AUROC | spec@90% | spec@95% | sens (locked) | spec (locked) | balanced acc "
        "| minutes |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    against = summary.get("against")
    if against is not None:
        rows = [
            f"| {label} | {against[key]['difference']:+.3f} [{against[key]['interval'][0]:+.3f}, "
            f"{against[key]['interval'][1]:+.3f}] |"
            for key, label in (("auroc", "melanoma AUROC"), ("spec_at_90", "spec. at 90% sens."),
                               ("spec_at_95", "spec. at 95% sens."))
        ]  # fmt: skip
        lines[-3:-3] = [
            "",
            f"Against {against['reference']} (paired on the {against['n_images']} images both scored, this recipe "
            "minus the reference, 95% paired bootstrap):",
            "",
            "| figure | difference |",
            "|---|---|",
            *rows,
        ]
    for r in summary["folds"]:
        lines.append(
            f"| {r['fold']} | {r['n_images']} | {r['n_melanomas']} | {r['auroc']:.3f} | {r['spec_at_90']:.3f} | "
            f"{r['spec_at_95']:.3f} | {r['sensitivity']:.3f} | {r['specificity']:.3f} | {r['balanced_accuracy']:.3f} | "
            f"{r['minutes'] if r['minutes'] is not None else '-'} |"
        )
    return "\n".join(lines) + "\n"


__all__ = ["CV_FILE", "CVConfig", "cross_validate", "format_summary", "paired_difference"]
