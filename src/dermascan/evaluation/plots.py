"""Evaluation figures. Each function calls the metrics in :mod:`dermascan.evaluation.metrics` and draws
their output; nothing is recomputed here, so a figure always agrees with ``metrics.json``.

Figures are drawn with matplotlib's object API on the Agg canvas, never through ``pyplot``: no global
backend or figure state, so plotting is safe in a server thread and in headless CI. Each function writes
a PNG atomically (a temporary file in the target folder, then ``os.replace``) and returns its path, so a
reader never sees a half-written image.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from dermascan.evaluation.bootstrap import per_class_f1_ci
from dermascan.evaluation.metrics import (
    binary_expected_calibration_error,
    confusion_matrix,
    expected_calibration_error,
    reliability_curve,
    roc_auc_score,
    roc_curve,
    sensitivity_score,
    specificity_at_sensitivity,
    specificity_score,
)
from dermascan.taxonomy import CLASSES

__all__ = ["plot_confusion_matrix", "plot_per_class_f1", "plot_reliability", "plot_roc"]

_DPI = 120


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)  # attaches the Agg canvas to the figure
    return fig


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            fig.savefig(handle, format="png")
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a report folder is read by others
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def plot_confusion_matrix(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    path: str | os.PathLike[str],
    class_names: Sequence[str] = CLASSES,
    title: str = "Confusion matrix",
) -> Path:
    """Heat maps of the confusion matrix: counts (left) and row-normalised, i.e. recall (right).

    Rows are true classes, columns predicted classes.
    """
    k = len(class_names)
    counts = confusion_matrix(y_true, y_pred, k)
    rates = confusion_matrix(y_true, y_pred, k, normalize="true")
    fig = _new_figure(2 * (1.2 + 0.6 * k), 1.2 + 0.6 * k)
    fig.suptitle(title)
    axes = fig.subplots(1, 2)
    panels = ((counts, "counts", "{:d}"), (rates, "row-normalised (recall)", "{:.2f}"))
    for ax, (matrix, label, fmt) in zip(axes, panels, strict=True):
        shown = np.ma.masked_invalid(matrix.astype(np.float64))  # an absent class shows as blank
        image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if matrix is rates else max(1, counts.max()))
        fig.colorbar(image, ax=ax, shrink=0.8)
        high = 0.5 * (1 if matrix is rates else max(1, counts.max()))
        for (r, c), v in np.ndenumerate(matrix):
            if np.isfinite(v):
                ax.text(c, r, fmt.format(int(v) if matrix is counts else v), ha="center", va="center",
                        fontsize=8, color="white" if v > high else "black")  # fmt: skip
        ax.set_xticks(range(k), class_names, rotation=45, ha="right")
        ax.set_yticks(range(k), class_names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(label)
    return _save(fig, path)


def plot_roc(
    y_true_binary: ArrayLike,
    scores: ArrayLike,
    path: str | os.PathLike[str],
    threshold: float | None = None,
    target_sensitivity: float = 0.90,
    title: str = "Melanoma ROC",
) -> Path:
    """Melanoma-vs-rest ROC curve with AUROC, the target-sensitivity line and the operating point.

    Args:
        y_true_binary: 1 for melanoma, 0 otherwise, shape (N,).
        scores: p(melanoma), shape (N,).
        path: where to write the PNG.
        threshold: the locked operating threshold, marked on the curve (``score >= threshold`` is melanoma).
        target_sensitivity: drawn as a horizontal line, with the best specificity that reaches it.
        title: figure title.
    """
    fpr, tpr, _ = roc_curve(y_true_binary, scores)
    auroc = roc_auc_score(y_true_binary, scores)
    spec_at_target, t_at_target = specificity_at_sensitivity(y_true_binary, scores, target_sensitivity)
    fig = _new_figure(5.0, 5.0)
    ax = fig.subplots()
    ax.plot(fpr, tpr, color="C0", lw=2, label=f"ROC (AUROC {auroc:.3f})")
    ax.plot([0, 1], [0, 1], color="0.6", ls=":", lw=1, label="chance")
    ax.axhline(target_sensitivity, color="C3", ls="--", lw=1, label=f"{target_sensitivity:.0%} sensitivity")
    if np.isfinite(spec_at_target):
        ax.plot(1 - spec_at_target, target_sensitivity, "o", mfc="none", color="C3", ms=8,
                label=f"best at target: spec {spec_at_target:.3f} (t={t_at_target:.3g})")  # fmt: skip
    if threshold is not None:
        called = (np.asarray(scores, dtype=np.float64) >= threshold).astype(np.int64)
        sens = sensitivity_score(y_true_binary, called)
        spec = specificity_score(y_true_binary, called)
        ax.plot(1 - spec, sens, "*", color="C2", ms=14,
                label=f"operating point t={threshold:.3g}: sens {sens:.3f}, spec {spec:.3f}")  # fmt: skip
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel("1 - specificity (false positive rate)")
    ax.set_ylabel("sensitivity (true positive rate)")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=7)
    return _save(fig, path)


def plot_reliability(
    y_true: ArrayLike,
    probs_before: ArrayLike,
    path: str | os.PathLike[str],
    probs_after: ArrayLike | None = None,
    temperature: float | None = None,
    n_bins: int = 15,
    title: str = "Reliability diagram",
) -> Path:
    """Reliability diagram before (and after) temperature scaling, with the ECE of each and bin counts.

    Args:
        y_true: class indices for (N, K) probabilities (top-label), or binary labels for (N,) p(melanoma).
        probs_before: uncalibrated probabilities, (N, K) or (N,).
        path: where to write the PNG.
        probs_after: calibrated probabilities of the same shape, or ``None``.
        temperature: the fitted temperature, shown in the legend.
        n_bins: number of equal-width confidence bins.
        title: figure title.
    """
    ece_fn = expected_calibration_error if np.ndim(probs_before) == 2 else binary_expected_calibration_error
    series = [("before", probs_before, "C3")]
    if probs_after is not None:
        after = "after" if temperature is None else f"after (T={temperature:.2f})"
        series.append((after, probs_after, "C0"))
    fig = _new_figure(5.0, 6.0)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    top.plot([0, 1], [0, 1], color="0.6", ls=":", lw=1, label="perfect calibration")
    width = 1.0 / n_bins / (len(series) + 0.5)
    for i, (label, probs, color) in enumerate(series):
        curve = reliability_curve(y_true, probs, n_bins)
        ece = ece_fn(y_true, probs, n_bins)
        filled = curve.count > 0
        top.plot(curve.confidence[filled], curve.accuracy[filled], "o-", color=color, ms=4,
                 label=f"{label}: ECE {ece:.3f}")  # fmt: skip
        left = curve.edges[:-1] + i * width
        bottom.bar(left, curve.count, width=width, align="edge", color=color, alpha=0.7)
    binary = np.ndim(probs_before) == 1
    top.set_ylabel("observed melanoma frequency" if binary else "accuracy")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_title(title)
    top.legend(loc="upper left", fontsize=8)
    bottom.set_xlabel("predicted p(melanoma)" if binary else "confidence (top-label probability)")
    bottom.set_ylabel("cases")
    return _save(fig, path)


def plot_per_class_f1(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    path: str | os.PathLike[str],
    class_names: Sequence[str] = CLASSES,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    title: str = "Per-class F1",
) -> Path:
    """Bars of per-class F1 with stratified bootstrap confidence intervals as error bars."""
    estimates = per_class_f1_ci(y_true, y_pred, len(class_names), n_boot=n_boot, confidence=confidence, seed=seed)
    value = np.array([e.value for e in estimates])
    # A percentile interval need not contain the point estimate, and matplotlib refuses negative error bars.
    below = np.nan_to_num(np.maximum(value - np.array([e.lo for e in estimates]), 0.0))
    above = np.nan_to_num(np.maximum(np.array([e.hi for e in estimates]) - value, 0.0))
    fig = _new_figure(1.5 + 0.7 * len(class_names), 4.0)
    ax = fig.subplots()
    x = np.arange(len(class_names))
    ax.bar(x, np.nan_to_num(value), color="C0", yerr=np.vstack([below, above]), capsize=4)
    for xi, e in zip(x, estimates, strict=True):
        ax.text(xi, 0.02, "n/a" if np.isnan(e.value) else f"n={e.n}", ha="center", va="bottom", fontsize=7,
                color="white" if np.nan_to_num(e.value) > 0.1 else "black")  # fmt: skip
    ax.set_xticks(x, class_names)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("F1")
    ax.set_title(f"{title} ({confidence:.0%} bootstrap CI)")
    return _save(fig, path)
