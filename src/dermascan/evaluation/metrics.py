"""Classification metrics, written once: numpy arrays in, numbers out. No torch import.

Every figure DermaScan reports (training logs, ``metrics.json``, plots, the fairness audit, production
monitoring, promotion gates) comes from the functions below, so each formula exists in one place.
Where scikit-learn computes the figure (confusion matrix, per-class precision/recall/F1, accuracy, balanced
accuracy, the ROC curve and its area), these functions call it and add what it lacks: validation with
messages that name the bad value, and NaN plus an :class:`UndefinedMetricWarning` for degenerate input (no
melanoma in a subgroup, a class never predicted, a single-class batch), never a crash and never a silent 0
or 0.5 (MONAI's convention). Written here by hand only what scikit-learn has not: specificity at a target
sensitivity, the melanoma counts and rates, and the calibration errors.

Confidence intervals live in :mod:`dermascan.evaluation.intervals`, the report in
:mod:`dermascan.evaluation.report`, input checks in :mod:`dermascan.evaluation._validate`.

Conventions, as in scikit-learn: ``*_score`` is higher-is-better, ``*_loss`` / ``*_error`` lower-is-better.
Binary metrics treat melanoma one-vs-rest: ``y_true`` / ``y_pred`` hold 1 for melanoma and 0 for any other
class, and a score is higher for "more melanoma".
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from sklearn import metrics as sk

from dermascan.evaluation._validate import (
    UndefinedMetricWarning,
    check_binary,
    check_binary_scores,
    check_labels,
    check_probs,
    check_same_length,
    check_scores,
    check_target,
    class_name,
    ratio,
    warn_undefined,
)
from dermascan.taxonomy import NUM_CLASSES

__all__ = [
    "BinaryCounts",
    "ReliabilityCurve",
    "UndefinedMetricWarning",
    "accuracy_score",
    "balanced_accuracy_score",
    "binary_counts",
    "binary_expected_calibration_error",
    "confusion_matrix",
    "expected_calibration_error",
    "f1_from_counts",
    "npv_score",
    "per_class_precision_recall_f1",
    "ppv_score",
    "reliability_curve",
    "roc_auc_score",
    "roc_curve",
    "sensitivity_score",
    "specificity_at_sensitivity",
    "specificity_score",
]


class BinaryCounts(NamedTuple):
    """The four cells of a binary (melanoma vs rest) confusion matrix."""

    tp: int
    fp: int
    tn: int
    fn: int


class ReliabilityCurve(NamedTuple):
    """Per-bin calibration statistics (bins are ``(lo, hi]``, the first also holds 0).

    Attributes:
        confidence: mean predicted probability in each bin (NaN for an empty bin), shape (n_bins,).
        accuracy: observed frequency of the event in each bin (NaN for an empty bin), shape (n_bins,).
        count: number of cases in each bin, shape (n_bins,).
        edges: bin edges, shape (n_bins + 1,).
    """

    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray
    edges: np.ndarray


def _labels_pair(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    t = check_labels(y_true, "y_true", num_classes)
    p = check_labels(y_pred, "y_pred", num_classes)
    check_same_length(t, p, "y_true", "y_pred")
    return t, p


# --------------------------------------------------------------------------------------------------------
# Multiclass metrics
# --------------------------------------------------------------------------------------------------------


def confusion_matrix(
    y_true: ArrayLike, y_pred: ArrayLike, num_classes: int = NUM_CLASSES, normalize: str | None = None
) -> np.ndarray:
    """Confusion matrix with true classes in rows and predicted classes in columns.

    Args:
        y_true: true class indices, shape (N,).
        y_pred: predicted class indices, shape (N,).
        num_classes: K; every class gets a row and a column, present or not.
        normalize: ``None`` for counts (int64), or ``"true"`` to divide each row by its support, so the
            diagonal is per-class recall; a class absent from ``y_true`` gets a NaN row and a warning
            (scikit-learn would write a silent row of zeros, so the division is done here).

    Returns:
        Array of shape (K, K).
    """
    if normalize not in (None, "true"):
        raise ValueError(f"normalize must be None or 'true', got {normalize!r}")
    t, p = _labels_pair(y_true, y_pred, num_classes)
    cm = sk.confusion_matrix(t, p, labels=np.arange(num_classes)).astype(np.int64)
    if normalize is None:
        return cm
    support = cm.sum(axis=1, keepdims=True)
    if (support == 0).any():
        absent = [class_name(c, num_classes) for c in np.flatnonzero(support[:, 0] == 0)]
        warn_undefined(f"row-normalised confusion matrix: no true cases of {', '.join(absent)}; rows set to NaN")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, cm / np.maximum(support, 1), np.nan)


def f1_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """``2TP / (2TP + FP + FN)`` elementwise (NaN where nothing is present or predicted).

    The F1 of (weighted) counts: the bootstrap of :func:`~dermascan.evaluation.bootstrap.per_class_f1_ci`
    evaluates it on whole batches of resampled counts, which scikit-learn cannot.
    """
    denominator = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), np.nan)


def per_class_precision_recall_f1(
    y_true: ArrayLike, y_pred: ArrayLike, num_classes: int = NUM_CLASSES
) -> dict[str, np.ndarray]:
    """Precision, recall and F1 of each class (one-vs-rest), by scikit-learn's ``precision_recall_fscore_support``.

    Undefined values are NaN, with a warning, never a silent 0: precision of a class that is never
    predicted, recall of a class absent from ``y_true``. F1 is ``2TP / (2TP + FP + FN)``: it is 0 for a class
    that is present but never predicted (a real failure) and NaN only for a class neither present nor
    predicted (``zero_division=np.nan``).

    Args:
        y_true: true class indices, shape (N,).
        y_pred: predicted class indices, shape (N,).
        num_classes: K.

    Returns:
        ``{"precision", "recall", "f1"}`` float arrays and ``"support"`` (true cases per class, int), each (K,).
    """
    t, p = _labels_pair(y_true, y_pred, num_classes)
    labels = np.arange(num_classes)
    precision, recall, f1, support = sk.precision_recall_fscore_support(
        t, p, labels=labels, zero_division=np.nan
    )  # fmt: skip
    predicted = np.bincount(p, minlength=num_classes)
    if (predicted == 0).any():
        never = [class_name(c, num_classes) for c in np.flatnonzero(predicted == 0)]
        warn_undefined(f"precision is undefined for classes never predicted ({', '.join(never)}); set to NaN")
    if (support == 0).any():
        absent = [class_name(c, num_classes) for c in np.flatnonzero(support == 0)]
        warn_undefined(f"recall is undefined for classes absent from y_true ({', '.join(absent)}); set to NaN")
    return {"precision": precision.astype(np.float64), "recall": recall.astype(np.float64),
            "f1": f1.astype(np.float64), "support": support.astype(np.int64)}  # fmt: skip


def accuracy_score(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int = NUM_CLASSES) -> float:
    """Fraction of cases whose predicted class is the true class.

    Accuracy hides failure on imbalanced data (all-nevus scores ~67% on HAM10000): report it next to
    :func:`balanced_accuracy_score`.
    """
    t, p = _labels_pair(y_true, y_pred, num_classes)
    return float(sk.accuracy_score(t, p))


def balanced_accuracy_score(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int = NUM_CLASSES) -> float:
    """Mean per-class recall over the classes present in ``y_true`` (the ISIC 2018 headline metric).

    Classes absent from ``y_true`` are left out of the mean (as ISIC and scikit-learn do), so no warning is
    raised for them; predictions of an absent class still count as errors for the true class.
    """
    t, p = _labels_pair(y_true, y_pred, num_classes)
    with warnings.catch_warnings():
        # scikit-learn warns when y_pred holds a class absent from y_true; that is expected here (see above).
        warnings.simplefilter("ignore", UserWarning)
        return float(sk.balanced_accuracy_score(t, p))


# --------------------------------------------------------------------------------------------------------
# Binary (melanoma vs rest) metrics
# --------------------------------------------------------------------------------------------------------


def binary_counts(y_true: ArrayLike, y_pred: ArrayLike) -> BinaryCounts:
    """TP, FP, TN, FN of binary labels (1 = melanoma)."""
    t = check_binary(y_true, "y_true")
    p = check_binary(y_pred, "y_pred")
    check_same_length(t, p, "y_true", "y_pred")
    tn, fp, fn, tp = (int(v) for v in sk.confusion_matrix(t, p, labels=[0, 1]).ravel())
    return BinaryCounts(tp=tp, fp=fp, tn=tn, fn=fn)


def sensitivity_score(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """TP / (TP + FN): the fraction of melanomas called melanoma. NaN with a warning without positives."""
    c = binary_counts(y_true, y_pred)
    return ratio(c.tp, c.tp + c.fn, "sensitivity (no positive cases in y_true)")


def specificity_score(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """TN / (TN + FP): the fraction of non-melanomas called non-melanoma. NaN with a warning without negatives."""
    c = binary_counts(y_true, y_pred)
    return ratio(c.tn, c.tn + c.fp, "specificity (no negative cases in y_true)")


def ppv_score(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """TP / (TP + FP), positive predictive value. NaN with a warning when nothing is called positive."""
    c = binary_counts(y_true, y_pred)
    return ratio(c.tp, c.tp + c.fp, "PPV (no case predicted positive)")


def npv_score(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """TN / (TN + FN), negative predictive value. NaN with a warning when nothing is called negative."""
    c = binary_counts(y_true, y_pred)
    return ratio(c.tn, c.tn + c.fn, "NPV (no case predicted negative)")


def roc_auc_score(y_true: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve (scikit-learn's): the probability that a random melanoma outscores a random
    non-melanoma, tied scores counting one half.

    With only one class present the area is undefined: NaN and a warning (never a silent 0.5).
    """
    t, s = check_binary_scores(y_true, scores)
    n_pos = int(t.sum())
    n_neg = len(t) - n_pos
    if n_pos == 0 or n_neg == 0:
        warn_undefined(f"AUROC is undefined with only one class in y_true ({n_pos} positives, {n_neg} negatives)")
        return math.nan
    return float(sk.roc_auc_score(t, s))


def roc_curve(
    y_true: ArrayLike, scores: ArrayLike, drop_intermediate: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve by :func:`sklearn.metrics.roc_curve`, with DermaScan's validation and warnings.

    A case is called positive when ``score >= threshold``. The first point is (0, 0) at threshold ``inf``.

    Args:
        y_true: binary labels, shape (N,).
        scores: scores, higher means more likely melanoma, shape (N,).
        drop_intermediate: drop thresholds whose point lies on a straight segment (a lighter curve for
            plotting; keep them all to search operating points).

    Returns:
        ``(fpr, tpr, thresholds)``, each decreasing in threshold. ``fpr`` (no negatives) or ``tpr``
        (no positives) is NaN, with a warning, when undefined.
    """
    t, s = check_binary_scores(y_true, scores)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn's own warnings; ours, naming the cause, follow
        fpr, tpr, thresholds = sk.roc_curve(t, s, pos_label=1, drop_intermediate=drop_intermediate)
    if t.all():
        warn_undefined("ROC false positive rate is undefined without negative cases; fpr set to NaN")
        fpr = np.full_like(tpr, np.nan, dtype=np.float64)
    if not t.any():
        warn_undefined("ROC true positive rate is undefined without positive cases; tpr set to NaN")
        tpr = np.full_like(fpr, np.nan, dtype=np.float64)
    return fpr.astype(np.float64), tpr.astype(np.float64), thresholds.astype(np.float64)


def min_hits(n_pos: int, target: float) -> int:
    """Smallest ``k`` with ``k / n_pos >= target``.

    Decided with the very division the ROC curve uses, so that float rounding (0.9 * 10 = 9.000000000000002)
    cannot disagree between code paths (threshold choice, bootstrap, specificity at a sensitivity).
    """
    return int(np.argmax(np.arange(n_pos + 1) / n_pos >= target))


def specificity_at_sensitivity(y_true: ArrayLike, scores: ArrayLike, target: float = 0.90) -> tuple[float, float]:
    """Best specificity among thresholds whose sensitivity reaches ``target``, and that threshold.

    The threshold is the largest observed score ``t`` such that calling ``score >= t`` melanoma finds at
    least ``target`` of the melanomas; specificity only falls as the threshold falls, so it is the best one.
    This is the "specificity at 95% sensitivity" that commercial devices publish. It picks its threshold
    on the data it is given, so it describes the ROC curve, not a threshold to use on new cases.

    Returns:
        ``(specificity, threshold)``; ``(nan, nan)`` with a warning when either class is missing.
    """
    check_target(target)
    t, s = check_binary_scores(y_true, scores)
    n_pos = int(t.sum())
    if n_pos == 0 or n_pos == len(t):
        warn_undefined(
            f"specificity at {target:.0%} sensitivity is undefined with only one class in y_true "
            f"({n_pos} positives, {len(t) - n_pos} negatives)"
        )
        return math.nan, math.nan
    fpr, tpr, thresholds = roc_curve(t, s, drop_intermediate=False)
    i = int(np.argmax(tpr >= target))  # tpr is non-decreasing and reaches 1, so a hit exists
    return float(1.0 - fpr[i]), float(thresholds[i])


# --------------------------------------------------------------------------------------------------------
# Calibration error (scikit-learn's calibration_curve drops empty bins and has no ECE: written here)
# --------------------------------------------------------------------------------------------------------


def _binned(confidence: np.ndarray, hit: np.ndarray, n_bins: int) -> ReliabilityCurve:
    if not (isinstance(n_bins, int | np.integer) and n_bins >= 1):
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Bins are (lo, hi], the usual ECE convention; a confidence of exactly 0 goes to the first bin.
    bins = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(bins, weights=confidence, minlength=n_bins) / count
        mean_hit = np.bincount(bins, weights=hit.astype(np.float64), minlength=n_bins) / count
    return ReliabilityCurve(confidence=mean_conf, accuracy=mean_hit, count=count, edges=edges)


def _ece(curve: ReliabilityCurve) -> float:
    filled = curve.count > 0
    weights = curve.count[filled] / curve.count.sum()
    return float(np.sum(weights * np.abs(curve.accuracy[filled] - curve.confidence[filled])))


def reliability_curve(y_true: ArrayLike, probs: ArrayLike, n_bins: int = 15) -> ReliabilityCurve:
    """Binned calibration statistics for a reliability diagram.

    Args:
        y_true: for (N, K) ``probs``, true class indices; for (N,) ``probs``, binary labels.
        probs: either an (N, K) probability matrix (top-label: confidence is the largest probability and
            accuracy whether that class is right) or (N,) probabilities of melanoma (binary: accuracy is
            the observed melanoma frequency).
        n_bins: number of equal-width bins on [0, 1].
    """
    confidence, hit = _confidence_and_hit(y_true, probs)
    return _binned(confidence, hit, n_bins)


def _confidence_and_hit(y_true: ArrayLike, probs: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    if np.ndim(probs) == 1:
        t = check_binary(y_true, "y_true")
        p = check_scores(probs, "probs")
        check_same_length(t, p, "y_true", "probs")
        bad = (p < 0) | (p > 1)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"probs has {p[i]} at index {i}: probabilities must lie in [0, 1]")
        return p, t == 1
    p = check_probs(probs, "probs")
    t = check_labels(y_true, "y_true", p.shape[1])
    check_same_length(t, p, "y_true", "probs")
    return p.max(axis=1), p.argmax(axis=1) == t


def expected_calibration_error(y_true: ArrayLike, probs: ArrayLike, n_bins: int = 15) -> float:
    """Top-label expected calibration error (Guo et al. 2017) of an (N, K) probability matrix.

    ``sum_b (n_b / N) |accuracy_b - confidence_b|`` over equal-width confidence bins.
    """
    if np.ndim(probs) != 2:
        raise ValueError(
            f"probs must be 2-D (cases, classes), got shape {np.shape(probs)}; "
            f"use binary_expected_calibration_error for p(melanoma)"
        )
    return _ece(reliability_curve(y_true, probs, n_bins))


def binary_expected_calibration_error(y_true: ArrayLike, p_melanoma: ArrayLike, n_bins: int = 15) -> float:
    """Expected calibration error of the melanoma probability: bins of p(melanoma) vs melanoma frequency."""
    if np.ndim(p_melanoma) != 1:
        raise ValueError(f"p_melanoma must be 1-D, got shape {np.shape(p_melanoma)}")
    return _ece(reliability_curve(y_true, p_melanoma, n_bins))
