"""Evaluate a trained run: calibrate and lock the operating point on validation, then measure on test.

Steps, in order (brief 3.6 and the clinical bar of section 1):

1. Logits for the validation split; temperature scaling fitted on them (:mod:`calibration`).
2. The melanoma threshold chosen on the calibrated validation probabilities for the target sensitivity,
   written to ``RUN/operating_point.json`` together with the temperature and risk bands. It is locked:
   evaluating again reuses it unless ``recalibrate=True``.
3. The evaluated split (``test`` by default) scored at argmax and at the locked threshold, with
   confidence intervals, into ``metrics.json``, ``predictions.csv`` (ISIC 2018 Task 3 submission format:
   probabilities only), ``decisions.csv`` (DermaScan's decision of each image, which the ISIC scorer never
   sees; see :data:`~dermascan.evaluation.evaluate_report.SUBMISSION_NOTE`), plots and ``report.html``.

The locked point is used only as it was fitted: evaluating with another view setting (``tta``), target
sensitivity or criterion than the locked ones is refused with :class:`OperatingPointMismatchError`, unless
``recalibrate=True`` chooses the point again.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dermascan import _io
from dermascan.data.readers import DatasetError, DermoscopyIndex
from dermascan.decision import DecisionPolicy, apply_temperature, decide
from dermascan.errors import DermaScanError
from dermascan.evaluation import plots
from dermascan.evaluation.calibration import fit_temperature
from dermascan.evaluation.evaluate_report import (
    SUBMISSION_NOTE,
    decision_table,
    in_sample,
    submission_table,
    write_report,
)
from dermascan.evaluation.metrics import expected_calibration_error
from dermascan.evaluation.operating_point import choose_threshold
from dermascan.evaluation.report import melanoma_report
from dermascan.models import LoadedModel
from dermascan.runs import Run, load_run, write_operating_point
from dermascan.taxonomy import CLASSES, MELANOMA_INDEX

log = logging.getLogger(__name__)

SPLIT_CHOICES = ("test", "val", "train", "all")
DEFAULT_TARGET_SENSITIVITY = 0.90


class OperatingPointMismatchError(DermaScanError, ValueError):
    """The run's locked operating point was fitted otherwise than asked (views, target or criterion)."""


def check_locked(
    point: dict[str, Any],
    run_dir: str | Path,
    *,
    tta: bool | None = None,
    target_sensitivity: float | None = None,
    require_lower_ci: bool | None = None,
) -> None:
    """Refuse to use a locked operating point with settings it was not fitted with.

    Args:
        point: the run's ``operating_point.json``.
        run_dir: the run folder (named in the message).
        tta: how the caller predicts (flip-averaged or not); ``None`` when it follows the point.
        target_sensitivity: the target the caller asks for; ``None`` when not given.
        require_lower_ci: the criterion the caller asks for; ``None`` when not given.

    Raises:
        OperatingPointMismatchError: a setting differs from the locked one; the message says to pass --recalibrate.
    """
    if tta is not None:
        try:
            DecisionPolicy.from_dict(point).check_views(tta, "`dermascan evaluate" + (" --tta`" if tta else "`"))
        except ValueError as e:
            raise OperatingPointMismatchError(f"{run_dir}: {e}") from e
    locked = float(point["target_sensitivity"])
    if target_sensitivity is not None and not math.isclose(target_sensitivity, locked):
        raise OperatingPointMismatchError(
            f"--target-sensitivity {target_sensitivity:g} differs from the operating point locked in {run_dir} "
            f"(target {locked:g}): pass --recalibrate to choose the temperature and threshold again for the new "
            "target, or leave --target-sensitivity out to evaluate at the locked point"
        )
    locked_ci = point.get("criterion") == "lower_ci"
    if require_lower_ci is not None and require_lower_ci != locked_ci:
        raise OperatingPointMismatchError(
            f"{'--lower-ci asks for' if require_lower_ci else 'the request is for'} the "
            f"{'lower_ci' if require_lower_ci else 'point'} criterion but the operating point locked in {run_dir} "
            f"was chosen with {point.get('criterion')!r}: pass --recalibrate to choose it again"
            + ("" if require_lower_ci else " (without --lower-ci)")
        )


def select(index: DermoscopyIndex, splits: pd.DataFrame | None, split: str) -> pd.DataFrame:
    """The rows of ``index`` in ``split`` (``all``: every image, for a separate test folder)."""
    if split not in SPLIT_CHOICES:
        raise ValueError(f"split must be one of {SPLIT_CHOICES}, got {split!r}")
    if split == "all":
        return index.frame
    if splits is None:
        raise DatasetError(f"no splits.csv for split {split!r}: use --split all to evaluate every image")
    ids = splits.loc[splits["split"] == split, "image_id"]
    missing = set(ids) - set(index.frame["image_id"])
    if missing:
        raise DatasetError(
            f"{len(missing)} {split} image(s) of the run are not in {index.root}, e.g. {sorted(missing)[:3]}: "
            "pass the --data the run was trained on, or --split all for a separate data set"
        )
    return index.frame.set_index("image_id").loc[ids].reset_index()


def predict_logits(
    loaded: LoadedModel, frame: pd.DataFrame, batch_size: int = 64, tta: bool = False, progress: bool = False
) -> np.ndarray:
    """Logits (N, K) of the model for every image of ``frame``, in order, through the Predictor's own decode
    and preprocessing (:meth:`dermascan.inference.Predictor.logits`): evaluation measures what is served.

    With ``tta`` the logits are averaged over the image and its horizontal, vertical and double flips
    (the test-time augmentation of the ISIC 2018 winners; dermoscopy has no natural orientation).
    """
    from dermascan.inference.predictor import Predictor

    predictor = Predictor.from_model(loaded, batch_size=batch_size)
    try:
        return predictor.logits(frame["path"].tolist(), tta=tta, progress=progress)
    finally:
        predictor.close()


def calibrate(
    run: Run,
    index: DermoscopyIndex,
    target_sensitivity: float = 0.90,
    require_lower_ci: bool = False,
    tta: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Fit the temperature and choose the melanoma threshold on the validation split; save and return them."""
    val = select(index, run.splits, "val")
    logits = predict_logits(run.loaded, val, tta=tta, progress=progress)
    point = lock_point(logits, val["label"].to_numpy(), target_sensitivity, require_lower_ci, tta)
    write_operating_point(run.path, point)
    return point


def lock_point(
    logits: np.ndarray,
    y: np.ndarray,
    target_sensitivity: float = 0.90,
    require_lower_ci: bool = False,
    tta: bool = False,
) -> dict[str, Any]:
    """The operating point locked on validation ``logits`` (N, K) and labels ``y`` (N,): the temperature, then the
    melanoma threshold for ``target_sensitivity`` on the calibrated probabilities (``operating_point.json``)."""
    temperature = fit_temperature(logits, y)
    probs = apply_temperature(logits, temperature)
    op = choose_threshold(
        (y == MELANOMA_INDEX).astype(int),
        probs[:, MELANOMA_INDEX],
        target_sensitivity=target_sensitivity,
        require_lower_ci=require_lower_ci,
    )
    point = {
        "temperature": temperature,
        "threshold": op.threshold,
        "target_sensitivity": target_sensitivity,
        "criterion": op.criterion,
        "risk_bands": op.risk_bands.to_dict(),
        "selected_on": "val",
        "tta": tta,
        # In-sample: validation also chose the checkpoint and fitted the temperature and this threshold.
        "validation": {**op.to_dict(), "in_sample": True},
    }
    return point


def prediction_frame(frame: pd.DataFrame, probs: np.ndarray, threshold: float | None) -> pd.DataFrame:
    """Per-image table: ids, truth, calibrated probabilities, decision at the threshold, and all metadata."""
    out = frame.copy()
    for k, code in enumerate(CLASSES):
        out[code] = probs[:, k]
    out["pred"] = decide(probs, threshold)
    out["p_melanoma"] = probs[:, MELANOMA_INDEX]
    mask_dir = Path(frame["path"].iat[0]).parent.parent / "masks" if len(frame) else None
    if mask_dir is not None and mask_dir.is_dir() and "mask_path" not in out.columns:
        masks = out["image_id"].map(lambda i: str(mask_dir / f"{i}_segmentation.png"))
        out["mask_path"] = masks.where(masks.map(lambda p: Path(p).exists()), None)
    return out


def _read_for(run: Run, data: str | Path | None, progress: bool) -> DermoscopyIndex:
    """``data`` when given, else every folder the run was trained on (with official val/test folders and the
    run's own metadata file)."""
    from dermascan.training.config import TrainConfig, read_run_data

    return read_run_data(run.config or TrainConfig(), data=data, progress=progress)


def split_predictions(
    run: Run, index: DermoscopyIndex, split: str = "test", tta: bool | None = None, progress: bool = False
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Calibrated per-image predictions of a run on a split, decided at its locked operating point.

    Calibrates first (on the run's validation split) when the run has no ``operating_point.json``.
    Predicts with the point's own view setting (``tta``, when ``None``): a threshold fitted on flip-averaged
    logits holds only for flip-averaged logits; a ``tta`` that differs from the point's is refused.

    Returns:
        ``(frame, operating_point)``; the frame is :func:`prediction_frame`'s.
    """
    point = run.operating_point()
    if point is None:
        train_data = run.config.data if run.config else None
        same = train_data and Path(train_data).resolve() == Path(index.root).resolve()
        point = calibrate(run, index if same else _read_for(run, None, False), tta=bool(tta), progress=progress)
    check_locked(point, run.path, tta=tta)
    tta = bool(point.get("tta", False))
    frame = select(index, run.splits if split != "all" else None, split)
    probs = apply_temperature(predict_logits(run.loaded, frame, tta=tta, progress=progress), point["temperature"])
    return prediction_frame(frame, probs, point["threshold"]), point


def is_synthetic(index: DermoscopyIndex) -> bool:
    return bool(len(index.frame)) and index.frame["image_id"].astype(str).str.startswith("SYN_").all()


def audit_errors(
    run_dir: str | Path,
    out_dir: str | Path,
    data: str | Path | None = None,
    split: str = "test",
    heatmap_fn: Callable[[str], Any] | None = None,
    index: DermoscopyIndex | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Error analysis of a run at its operating point (``errors.json``, ``gallery.png``, ``errors.html``)."""
    from dermascan.evaluation.errors import analyze_errors

    run = load_run(run_dir)
    index = index or _read_for(run, data, progress)
    frame, point = split_predictions(run, index, split, progress=progress)
    return analyze_errors(frame, point["threshold"], out_dir, heatmap_fn=heatmap_fn)


def audit_fairness(
    run_dir: str | Path,
    out_dir: str | Path,
    data: str | Path | None = None,
    split: str = "test",
    index: DermoscopyIndex | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Fairness audit of a run on a split; the per-group threshold mitigation is fitted on validation."""
    from dermascan.evaluation.fairness import fairness_audit

    run = load_run(run_dir)
    index = index or _read_for(run, data, progress)
    frame, point = split_predictions(run, index, split, progress=progress)
    calibration = None
    if split != "val" and run.splits is not None and set(run.splits["image_id"]) <= set(index.frame["image_id"]):
        calibration, _ = split_predictions(run, index, "val", progress=progress)
    return fairness_audit(
        frame,
        point["threshold"],
        out_dir,
        calibration=calibration,
        target_sensitivity=point["target_sensitivity"],
        criterion=point.get("criterion", "point"),
        synthetic=is_synthetic(index),
    )


def evaluate(
    run_dir: str | Path,
    out_dir: str | Path,
    data: str | Path | None = None,
    split: str = "test",
    tta: bool = False,
    target_sensitivity: float | None = None,
    require_lower_ci: bool | None = None,
    recalibrate: bool = False,
    n_boot: int = 1000,
    index: DermoscopyIndex | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate a run on a split; write metrics.json, predictions.csv, plots and report.html to ``out_dir``.

    Args:
        run_dir: the run folder.
        out_dir: where the evaluation goes.
        data: dataset folder; defaults to the one the run was trained on.
        split: ``test``, ``val``, ``train`` or ``all`` (every image of ``data``: a separate test set).
        tta: flip test-time augmentation; must match the locked point's unless ``recalibrate``.
        target_sensitivity: melanoma sensitivity the threshold is chosen for on validation (``None``: 0.90
            when choosing, the locked one otherwise); a value that differs from the locked one is refused
            unless ``recalibrate``.
        require_lower_ci: the lower 95% Wilson bound on validation, not the point, must reach the target
            (``None``: not asked, the locked criterion or ``point``); refused when it differs from the locked
            criterion, unless ``recalibrate``.
        recalibrate: choose the temperature and threshold again even if the run has them.
        n_boot: bootstrap resamples for AUROC and specificity-at-sensitivity intervals.
        index: an already-read dataset (saves reading it twice).

    Returns:
        The metrics dict written to ``metrics.json``.

    Raises:
        OperatingPointMismatchError: the run's locked point was fitted with another ``tta``, target or criterion.
    """
    run = load_run(run_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_data = run.config.data if run.config else None
    if index is None or (data is not None and Path(data) != Path(index.root)):
        index = _read_for(run, data, progress)
    point = run.operating_point()
    if point is not None and not recalibrate:
        check_locked(point, run.path, tta=tta, target_sensitivity=target_sensitivity, require_lower_ci=require_lower_ci)
    else:
        cal_index = index if data is None or Path(data) == Path(train_data or "") else _read_for(run, None, False)
        target = DEFAULT_TARGET_SENSITIVITY if target_sensitivity is None else target_sensitivity
        point = calibrate(run, cal_index, target, bool(require_lower_ci), tta=tta, progress=progress)
    frame = select(index, run.splits if split != "all" else None, split)
    logits = predict_logits(run.loaded, frame, tta=tta, progress=progress)
    y = frame["label"].to_numpy()
    raw = apply_temperature(logits, 1.0)
    probs = apply_temperature(logits, point["temperature"])
    threshold = point["threshold"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined figures are None in the report and flagged in the page
        at_threshold = melanoma_report(y, probs, threshold=threshold, n_boot=n_boot)
        at_argmax = melanoma_report(y, probs, threshold=None, n_boot=n_boot)
    cfg = run.config.to_dict() if run.config else {}
    at_argmax.pop("threshold_free")  # no decision enters it: the same figures as at the threshold, kept once
    metrics: dict[str, Any] = {
        **at_threshold,
        "argmax": at_argmax,
        "in_sample": in_sample(split),
        "split": split,
        "run": {
            "path": str(run.path),
            "arch": run.loaded.arch,
            "loss": cfg.get("loss"),
            "class_weighting": run.loaded.hparams.get("class_weighting"),
            "image_size": cfg.get("image_size"),
            "seed": cfg.get("seed"),
            "data": str(index.root),
            "tta": tta,
        },
        "calibration": {
            "temperature": point["temperature"],
            "ece_before": expected_calibration_error(y, raw),
            "ece_after": expected_calibration_error(y, probs),
        },
        "operating_point": {**point, "validation": {**point["validation"], "in_sample": True}},
        "files": {
            "predictions.csv": "ISIC 2018 Task 3 submission (image + 7 probabilities)",
            "decisions.csv": "DermaScan's decision of each image at the locked threshold",
            "note": SUBMISSION_NOTE,
        },
    }
    _io.write_json(out / "metrics.json", metrics)
    images = frame["image_id"].to_numpy()
    _io.write_csv(out / "predictions.csv", submission_table(images, probs), float_format="%.6f")
    _io.write_csv(out / "decisions.csv", decision_table(images, probs, threshold))
    _io.write_csv(out / "predictions_detail.csv", prediction_frame(frame, probs, threshold), float_format="%.6f")
    _plots(out, y, raw, probs, threshold, point, n_boot)
    write_report(out, metrics)
    return metrics


def _plots(
    out: Path, y: np.ndarray, raw: np.ndarray, probs: np.ndarray, threshold: float, point: dict, n_boot: int
) -> None:
    is_mel = (y == MELANOMA_INDEX).astype(int)
    pred = decide(probs, threshold)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plots.plot_confusion_matrix(
            y, pred, out / "confusion_matrix.png", title=f"Confusion matrix at the melanoma threshold {threshold:.3f}"
        )
        if 0 < is_mel.sum() < len(is_mel):
            plots.plot_roc(
                is_mel,
                probs[:, MELANOMA_INDEX],
                out / "roc.png",
                threshold=threshold,
                target_sensitivity=point["target_sensitivity"],
            )
        plots.plot_reliability(y, raw, out / "reliability.png", probs_after=probs, temperature=point["temperature"])
        plots.plot_per_class_f1(y, pred, out / "per_class_f1.png", n_boot=min(n_boot, 300))
