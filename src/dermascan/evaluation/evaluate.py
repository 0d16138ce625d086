"""Evaluate a trained run: calibrate and lock the operating point on validation, then measure on test.

Steps, in order (brief 3.6 and the clinical bar of section 1):

1. Logits for the validation split; temperature scaling fitted on them (:mod:`calibration`).
2. The melanoma threshold chosen on the calibrated validation probabilities for the target sensitivity,
   written to ``RUN/operating_point.json`` together with the temperature and risk bands. It is locked:
   evaluating again reuses it unless ``recalibrate=True``.
3. The evaluated split (``test`` by default) scored at argmax and at the locked threshold, with
   confidence intervals, into ``metrics.json``, ``predictions.csv`` (ISIC 2018 Task 3 submission format),
   plots and ``report.html``.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dermascan import _html, _io
from dermascan.data.readers import DatasetError, DermoscopyIndex, read_dataset
from dermascan.decision import apply_temperature, decide
from dermascan.evaluation import plots
from dermascan.evaluation.calibration import fit_temperature
from dermascan.evaluation.metrics import expected_calibration_error, melanoma_report
from dermascan.evaluation.operating_point import choose_threshold
from dermascan.models import LoadedModel
from dermascan.runs import Run, load_run, write_operating_point
from dermascan.taxonomy import CLASSES, MELANOMA_INDEX

log = logging.getLogger(__name__)

SPLIT_CHOICES = ("test", "val", "train", "all")


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


def predict_logits(loaded: LoadedModel, frame: pd.DataFrame, batch_size: int = 64, tta: bool = False,
                   progress: bool = False) -> np.ndarray:
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


def calibrate(run: Run, index: DermoscopyIndex, target_sensitivity: float = 0.90, require_lower_ci: bool = False,
              tta: bool = False, progress: bool = False) -> dict[str, Any]:
    """Fit the temperature and choose the melanoma threshold on the validation split; save and return them."""
    val = select(index, run.splits, "val")
    logits = predict_logits(run.loaded, val, tta=tta, progress=progress)
    y = val["label"].to_numpy()
    temperature = fit_temperature(logits, y)
    probs = apply_temperature(logits, temperature)
    op = choose_threshold((y == MELANOMA_INDEX).astype(int), probs[:, MELANOMA_INDEX],
                          target_sensitivity=target_sensitivity, require_lower_ci=require_lower_ci)
    point = {
        "temperature": temperature,
        "threshold": op.threshold,
        "target_sensitivity": target_sensitivity,
        "criterion": op.criterion,
        "risk_bands": op.risk_bands.to_dict(),
        "selected_on": "val",
        "tta": tta,
        "validation": op.to_dict(),
    }
    write_operating_point(run.path, point)
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
    """``data`` when given, else every folder the run was trained on (with official val/test folders)."""
    from dermascan.data.readers import read_datasets
    from dermascan.training.config import data_folders

    return read_dataset(data, progress=progress) if data else read_datasets(data_folders(run.config), progress=progress)


def split_predictions(run: Run, index: DermoscopyIndex, split: str = "test", tta: bool = False,
                      progress: bool = False) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Calibrated per-image predictions of a run on a split, decided at its locked operating point.

    Calibrates first (on the run's validation split) when the run has no ``operating_point.json``.

    Returns:
        ``(frame, operating_point)``; the frame is :func:`prediction_frame`'s.
    """
    point = run.operating_point()
    if point is None:
        train_data = run.config.data if run.config else None
        same = train_data and Path(train_data).resolve() == Path(index.root).resolve()
        point = calibrate(run, index if same else _read_for(run, None, False), tta=tta, progress=progress)
    frame = select(index, run.splits if split != "all" else None, split)
    probs = apply_temperature(predict_logits(run.loaded, frame, tta=tta, progress=progress), point["temperature"])
    return prediction_frame(frame, probs, point["threshold"]), point


def is_synthetic(index: DermoscopyIndex) -> bool:
    return bool(len(index.frame)) and index.frame["image_id"].astype(str).str.startswith("SYN_").all()


def audit_errors(run_dir: str | Path, out_dir: str | Path, data: str | Path | None = None, split: str = "test",
                 heatmap_fn: Callable[[str], Any] | None = None, index: DermoscopyIndex | None = None,
                 progress: bool = True) -> dict[str, Any]:
    """Error analysis of a run at its operating point (``errors.json``, ``gallery.png``, ``errors.html``)."""
    from dermascan.evaluation.errors import analyze_errors

    run = load_run(run_dir)
    index = index or _read_for(run, data, progress)
    frame, point = split_predictions(run, index, split, progress=progress)
    return analyze_errors(frame, point["threshold"], out_dir, heatmap_fn=heatmap_fn)


def audit_fairness(run_dir: str | Path, out_dir: str | Path, data: str | Path | None = None, split: str = "test",
                   index: DermoscopyIndex | None = None, progress: bool = True) -> dict[str, Any]:
    """Fairness audit of a run on a split; the per-group threshold mitigation is fitted on validation."""
    from dermascan.evaluation.fairness import fairness_audit

    run = load_run(run_dir)
    index = index or _read_for(run, data, progress)
    frame, point = split_predictions(run, index, split, progress=progress)
    calibration = None
    if split != "val" and run.splits is not None and set(run.splits["image_id"]) <= set(index.frame["image_id"]):
        calibration, _ = split_predictions(run, index, "val", progress=progress)
    return fairness_audit(frame, point["threshold"], out_dir, calibration=calibration,
                          target_sensitivity=point["target_sensitivity"], synthetic=is_synthetic(index))


def evaluate(run_dir: str | Path, out_dir: str | Path, data: str | Path | None = None, split: str = "test",
             tta: bool = False, target_sensitivity: float = 0.90, require_lower_ci: bool = False,
             recalibrate: bool = False, n_boot: int = 1000, index: DermoscopyIndex | None = None,
             progress: bool = True) -> dict[str, Any]:
    """Evaluate a run on a split; write metrics.json, predictions.csv, plots and report.html to ``out_dir``.

    Args:
        run_dir: the run folder.
        out_dir: where the evaluation goes.
        data: dataset folder; defaults to the one the run was trained on.
        split: ``test``, ``val``, ``train`` or ``all`` (every image of ``data``: a separate test set).
        tta: flip test-time augmentation.
        target_sensitivity: melanoma sensitivity the threshold is chosen for on validation.
        require_lower_ci: the lower 95% Wilson bound on validation, not the point, must reach the target.
        recalibrate: choose the temperature and threshold again even if the run has them.
        n_boot: bootstrap resamples for AUROC and specificity-at-sensitivity intervals.
        index: an already-read dataset (saves reading it twice).

    Returns:
        The metrics dict written to ``metrics.json``.
    """
    run = load_run(run_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_data = run.config.data if run.config else None
    if index is None or (data is not None and Path(data) != Path(index.root)):
        index = _read_for(run, data, progress)
    point = run.operating_point()
    if point is None or recalibrate:
        cal_index = index if data is None or Path(data) == Path(train_data or "") else _read_for(run, None, False)
        point = calibrate(run, cal_index, target_sensitivity, require_lower_ci, tta=tta, progress=progress)
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
    metrics: dict[str, Any] = {
        **at_threshold,
        "argmax": at_argmax,
        "split": split,
        "run": {"path": str(run.path), "arch": run.loaded.arch, "loss": cfg.get("loss"),
                "class_weighting": run.loaded.hparams.get("class_weighting"), "image_size": cfg.get("image_size"),
                "seed": cfg.get("seed"), "data": str(index.root), "tta": tta},
        "calibration": {"temperature": point["temperature"], "ece_before": expected_calibration_error(y, raw),
                        "ece_after": expected_calibration_error(y, probs)},
        "operating_point": point,
    }
    _io.write_json(out / "metrics.json", metrics)
    table = frame[["image_id"]].rename(columns={"image_id": "image"})
    for k, code in enumerate(CLASSES):
        table[code] = probs[:, k]
    _io.write_csv(out / "predictions.csv", table, float_format="%.6f")
    _io.write_csv(out / "predictions_detail.csv", prediction_frame(frame, probs, threshold), float_format="%.6f")
    _plots(out, y, raw, probs, threshold, point, n_boot)
    write_report(out, metrics)
    return metrics


def _plots(out: Path, y: np.ndarray, raw: np.ndarray, probs: np.ndarray, threshold: float, point: dict,
           n_boot: int) -> None:
    is_mel = (y == MELANOMA_INDEX).astype(int)
    pred = decide(probs, threshold)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plots.plot_confusion_matrix(y, pred, out / "confusion_matrix.png",
                                    title=f"Confusion matrix at the melanoma threshold {threshold:.3f}")
        if 0 < is_mel.sum() < len(is_mel):
            plots.plot_roc(is_mel, probs[:, MELANOMA_INDEX], out / "roc.png", threshold=threshold,
                           target_sensitivity=point["target_sensitivity"])
        plots.plot_reliability(y, raw, out / "reliability.png", probs_after=probs, temperature=point["temperature"])
        plots.plot_per_class_f1(y, pred, out / "per_class_f1.png", n_boot=min(n_boot, 300))


def _fmt(est: dict | None) -> str:
    if not est or est.get("value") is None:
        return "—"
    lo, hi = est.get("lo"), est.get("hi")
    ci = f" ({lo:.3f}–{hi:.3f})" if lo is not None and hi is not None else ""
    return f"{est['value']:.3f}{ci}"


def headline_rows(m: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(figure, at threshold, at argmax) rows for a report or a console table."""
    a, t = m["argmax"], m
    keys = [("melanoma sensitivity", "sensitivity"), ("melanoma specificity", "specificity"),
            ("melanoma PPV", "ppv"), ("melanoma NPV", "npv"), ("melanoma AUROC", "auroc"),
            ("specificity at 90% sensitivity", "specificity_at_90_sensitivity"),
            ("specificity at 95% sensitivity", "specificity_at_95_sensitivity")]
    rows = [(label, _fmt(t["melanoma"].get(k)), _fmt(a["melanoma"].get(k))) for label, k in keys]
    rows += [("accuracy", _fmt(t["accuracy"]), _fmt(a["accuracy"])),
             ("balanced accuracy", _fmt(t["balanced_accuracy"]), _fmt(a["balanced_accuracy"]))]
    return rows


def write_report(out: Path, m: dict[str, Any]) -> Path:
    sec, h = _html.Section, _html
    op = m["operating_point"]
    sens = m["melanoma"]["sensitivity"]
    spec = m["melanoma"]["specificity"]
    bar = (sens.get("value") or 0) >= 0.90 and (spec.get("value") or 0) >= 0.85
    verdict = (f'<p class="{"ok" if bar else "flag"}">Clinical bar (sensitivity ≥ 0.90 with specificity ≥ 0.85): '
               f'{"met" if bar else "not met"} at the locked threshold.</p>')
    per_class = [(c, m["per_class"][c]["precision"], _fmt(m["per_class"][c]["recall"]), m["per_class"][c]["f1"],
                  m["per_class"][c]["support"]) for c in CLASSES]
    sections = [
        sec("Headline", verdict + h.table(["figure (95% CI)", f"at threshold {op['threshold']:.4f}", "at argmax"],
                                          headline_rows(m))
            + h.paragraph(f"Split: {m['split']} ({m['n']} images, {m['melanoma']['n_pos']} melanomas). "
                          f"Threshold chosen on the validation split for {op['target_sensitivity']:.0%} sensitivity "
                          f"({op['criterion']} criterion) and applied unchanged here."
                          + (" Evaluating on the validation split itself is optimistic." if m["split"] == "val"
                             else ""))),
        sec("Melanoma ROC", h.image("roc.png", "ROC curve")),
        sec("Confusion matrix", h.image("confusion_matrix.png", "confusion matrix")),
        sec("Per class", h.table(["class", "precision", "recall (95% CI)", "F1", "support"], per_class)
            + h.image("per_class_f1.png", "per-class F1")),
        sec("Calibration", h.paragraph(
            f"Temperature {m['calibration']['temperature']:.3f} fitted on validation; top-label ECE "
            f"{m['calibration']['ece_before']:.3f} before, {m['calibration']['ece_after']:.3f} after.")
            + h.image("reliability.png", "reliability diagram")),
    ]
    run = m["run"]
    return _html.write_page(out / "report.html", f"Evaluation: {Path(run['path']).name}", sections,
                            subtitle=f"{run['arch']}, loss {run['loss']} ({run['class_weighting']}), "
                            f"data {run['data']}")


# --- comparison ---------------------------------------------------------------------------------------------

COMPARE_FIELDS = ("sensitivity", "specificity", "auroc", "specificity_at_90_sensitivity")


def comparison_rows(evals: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (evaluation, decision): the brief's side-by-side table (baseline vs improved, CNN vs ViT)."""
    rows = []
    for name, m in evals.items():
        for decision, rep in (("argmax", m["argmax"]), ("threshold", m)):
            row = {"model": name, "arch": m["run"]["arch"], "loss": m["run"]["loss"],
                   "weighting": m["run"]["class_weighting"], "decision": decision,
                   "threshold": m["melanoma"]["threshold"] if decision == "threshold" else None}
            for f in COMPARE_FIELDS:
                est = rep["melanoma"].get(f) or {}
                row[f] = est.get("value")
                row[f"{f}_lo"], row[f"{f}_hi"] = est.get("lo"), est.get("hi")
            for f in ("balanced_accuracy", "accuracy"):
                row[f] = rep[f]["value"]
                row[f"{f}_lo"], row[f"{f}_hi"] = rep[f]["lo"], rep[f]["hi"]
            rows.append(row)
    return rows


def compare(eval_dirs: list[str | Path], out_dir: str | Path | None = None) -> pd.DataFrame:
    """Read several evaluation folders and write ``comparison.csv``/``.json``/``.html`` side by side."""
    evals = {}
    for d in eval_dirs:
        path = Path(d) / "metrics.json"
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: run `dermascan evaluate --out {d}` first")
        evals[Path(d).name] = json.loads(path.read_text())
    table = pd.DataFrame(comparison_rows(evals))
    if out_dir is not None:
        out = Path(out_dir)
        _io.write_csv(out / "comparison.csv", table, float_format="%.4f")
        _io.write_json(out / "comparison.json", table.replace({np.nan: None}).to_dict(orient="records"))
        shown = [(r["model"], r["arch"], r["loss"], r["decision"],
                  *(_fmt({"value": r[f], "lo": r[f + "_lo"], "hi": r[f + "_hi"]})
                    for f in ("sensitivity", "specificity", "auroc", "balanced_accuracy")))
                 for r in table.to_dict(orient="records")]
        _html.write_page(out / "comparison.html", "Model comparison", [_html.Section("Side by side", _html.table(
            ["model", "arch", "loss", "decision", "sensitivity", "specificity", "AUROC", "balanced acc."], shown))])
    return table


def format_table(table: pd.DataFrame) -> str:
    """A fixed-width console table of a comparison."""
    def f(v: Any) -> str:
        return "  —  " if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.3f}"

    head = (f"{'model':<28} {'decision':<9} {'sens':>5} {'(95% CI)':<13} {'spec':>5} {'(95% CI)':<13} "
            f"{'AUROC':>5} {'bal.acc':>7}")
    lines = [head, "-" * len(head)]
    for r in table.to_dict(orient="records"):
        lines.append(f"{r['model'][:28]:<28} {r['decision']:<9} {f(r['sensitivity'])} "
                     f"{'(' + f(r['sensitivity_lo']) + '-' + f(r['sensitivity_hi']) + ')':<13} {f(r['specificity'])} "
                     f"{'(' + f(r['specificity_lo']) + '-' + f(r['specificity_hi']) + ')':<13} {f(r['auroc'])} "
                     f"{f(r['balanced_accuracy']):>7}")
    return "\n".join(lines)
