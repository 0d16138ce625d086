"""Classification metrics, written once: numpy arrays in, numbers out. No torch import.

Every figure DermaScan reports (training logs, ``metrics.json``, plots, the fairness audit, production
monitoring, promotion gates) comes from the functions below, so each formula exists in one place.

Conventions, as in scikit-learn: ``*_score`` is higher-is-better, ``*_loss`` / ``*_error`` lower-is-better.
Public functions validate their inputs once, at the top, with messages that name the bad value.
Degenerate input (no melanoma in a subgroup, a class never predicted, a single-class batch) gives NaN and
an :class:`UndefinedMetricWarning`, never a crash and never a silent 0 or 0.5.

Binary metrics treat melanoma one-vs-rest: ``y_true`` / ``y_pred`` hold 1 for melanoma and 0 for any other
class, and a score is higher for "more melanoma".
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from dermascan.decision import decide
from dermascan.taxonomy import CLASSES, MELANOMA_INDEX, NUM_CLASSES

__all__ = [
    "BinaryCounts",
    "Estimate",
    "ReliabilityCurve",
    "UndefinedMetricWarning",
    "accuracy_score",
    "balanced_accuracy_score",
    "binary_counts",
    "binary_expected_calibration_error",
    "bootstrap_ci",
    "confusion_matrix",
    "expected_calibration_error",
    "melanoma_report",
    "npv_score",
    "per_class_f1_ci",
    "per_class_precision_recall_f1",
    "ppv_score",
    "reliability_curve",
    "roc_auc_score",
    "roc_curve",
    "sensitivity_score",
    "specificity_at_sensitivity",
    "specificity_score",
    "wilson_estimate",
    "wilson_interval",
]

# Rows of a probability matrix may be float32 softmax outputs: allow their rounding, catch real mistakes.
_ROW_SUM_ATOL = 1e-3
# Bootstrap resamples are drawn and evaluated in chunks of about this many (row, case) cells, so memory
# stays bounded for large test sets; the chunking is fixed, so a seed always gives the same resamples.
_BOOTSTRAP_CELLS = 2_000_000


class UndefinedMetricWarning(UserWarning):
    """A metric is undefined on this input (e.g. sensitivity without positives) and was set to NaN."""


def _warn_undefined(message: str) -> None:
    # stacklevel 3 points at the caller of the public metric, not at this helper.
    warnings.warn(message, UndefinedMetricWarning, stacklevel=3)


# --------------------------------------------------------------------------------------------------------
# Input validation (once, at the top of each public function)
# --------------------------------------------------------------------------------------------------------


def _as_1d(values: ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per case), got an array of shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty: need at least one case")
    return arr


def _check_labels(values: ArrayLike, name: str, num_classes: int, *, binary: bool = False) -> np.ndarray:
    """Return ``values`` as int64 class indices in ``0..num_classes-1``, or raise naming the bad value."""
    arr = _as_1d(values, name)
    if arr.dtype == bool:
        arr = arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating):
            not_int = ~np.isfinite(arr) | (arr != np.round(arr))
            if not_int.any():
                i = int(np.argmax(not_int))
                raise ValueError(f"{name} must hold integer class indices; found {arr[i].item()!r} at index {i}")
        else:
            raise ValueError(
                f"{name} must hold integer class indices, got dtype {arr.dtype} (first value {arr[0].item()!r}); "
                f"map class codes to indices with dermascan.taxonomy.class_index"
            )
        arr = arr.astype(np.int64)
    arr = arr.astype(np.int64, copy=False)
    bad = (arr < 0) | (arr >= num_classes)
    if bad.any():
        i = int(np.argmax(bad))
        if binary:
            raise ValueError(f"{name} must be binary (1 = melanoma, 0 = any other class); found {arr[i]} at index {i}")
        raise ValueError(
            f"{name} has label {arr[i]} at index {i}, outside 0..{num_classes - 1} (num_classes={num_classes})"
        )
    return arr


def _check_binary(values: ArrayLike, name: str) -> np.ndarray:
    return _check_labels(values, name, 2, binary=True)


def _check_scores(values: ArrayLike, name: str) -> np.ndarray:
    arr = _as_1d(values, name)
    try:
        arr = arr.astype(np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be numeric scores, got dtype {arr.dtype}") from err
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{name} must be finite; found {arr[i]} at index {i}")
    return arr


def _check_probs(values: ArrayLike, name: str, *, require_normalised: bool = True) -> np.ndarray:
    """Return an (N, K) float64 probability matrix, or raise naming the bad entry."""
    arr = np.asarray(values)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (cases, classes), got an array of shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: need at least one case")
    if arr.shape[1] < 2:
        raise ValueError(f"{name} must have at least 2 class columns, got shape {arr.shape}")
    arr = arr.astype(np.float64)
    bad = ~np.isfinite(arr) | (arr < 0.0) | (arr > 1.0)
    if bad.any():
        r, c = np.unravel_index(int(np.argmax(bad)), arr.shape)
        raise ValueError(f"{name} has {arr[r, c]} at row {r}, column {c}: probabilities must lie in [0, 1]")
    if require_normalised:
        sums = arr.sum(axis=1)
        off = np.abs(sums - 1.0) > _ROW_SUM_ATOL
        if off.any():
            r = int(np.argmax(off))
            raise ValueError(
                f"{name} row {r} sums to {sums[r]:.6g}, expected 1: pass probabilities "
                f"(softmax of the logits, e.g. dermascan.evaluation.calibration.apply_temperature), not logits"
            )
    return arr


def _check_same_length(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if len(a) != len(b):
        raise ValueError(f"{name_a} has {len(a)} cases but {name_b} has {len(b)}: they must match")


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), e.g. 0.95; got {confidence!r}")


def _class_name(index: int, num_classes: int) -> str:
    return CLASSES[index] if num_classes == NUM_CLASSES else str(index)


def _ratio(numerator: float, denominator: float, what: str) -> float:
    """``numerator / denominator``, or NaN with a warning that names what is undefined."""
    if denominator == 0:
        _warn_undefined(f"{what} is undefined (denominator is 0); set to NaN")
        return math.nan
    return float(numerator) / float(denominator)


# --------------------------------------------------------------------------------------------------------
# Result types
# --------------------------------------------------------------------------------------------------------


def _json_float(value: float) -> float | None:
    # NaN becomes None (JSON null): strict JSON has no NaN, and browsers' JSON.parse rejects it.
    return None if value is None or math.isnan(value) else float(value)


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its confidence interval.

    Attributes:
        value: the point estimate on the full data (NaN when undefined).
        lo: lower bound of the confidence interval (NaN when undefined).
        hi: upper bound of the confidence interval (NaN when undefined).
        n: how many cases the estimate rests on: the denominator of a proportion (e.g. the number of
            melanomas for sensitivity) or the number of cases resampled for a bootstrap interval.
    """

    value: float
    lo: float
    hi: float
    n: int

    def to_dict(self) -> dict[str, float | int | None]:
        """JSON-ready dict ``{value, lo, hi, n}``; NaN is written as ``None`` (JSON ``null``)."""
        return {"value": _json_float(self.value), "lo": _json_float(self.lo), "hi": _json_float(self.hi),
                "n": int(self.n)}  # fmt: skip


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
            diagonal is per-class recall; a class absent from ``y_true`` gets a NaN row and a warning.

    Returns:
        Array of shape (K, K).
    """
    if normalize not in (None, "true"):
        raise ValueError(f"normalize must be None or 'true', got {normalize!r}")
    t = _check_labels(y_true, "y_true", num_classes)
    p = _check_labels(y_pred, "y_pred", num_classes)
    _check_same_length(t, p, "y_true", "y_pred")
    cm = np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)
    if normalize is None:
        return cm
    support = cm.sum(axis=1, keepdims=True)
    if (support == 0).any():
        absent = [_class_name(c, num_classes) for c in np.flatnonzero(support[:, 0] == 0)]
        _warn_undefined(f"row-normalised confusion matrix: no true cases of {', '.join(absent)}; rows set to NaN")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, cm / np.maximum(support, 1), np.nan)


def _f1_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    # 2TP / (2TP + FP + FN): equal to the harmonic mean of precision and recall when both are defined, and
    # still defined (= 0) for a class that is present but never predicted, as in scikit-learn >= 1.3.
    denominator = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), np.nan)


def per_class_precision_recall_f1(
    y_true: ArrayLike, y_pred: ArrayLike, num_classes: int = NUM_CLASSES
) -> dict[str, np.ndarray]:
    """Precision, recall and F1 of each class (one-vs-rest).

    Undefined values are NaN, with a warning, never a silent 0: precision of a class that is never
    predicted, recall of a class absent from ``y_true``. F1 is ``2TP / (2TP + FP + FN)``: it is 0 for a class
    that is present but never predicted (a real failure) and NaN only for a class neither present nor
    predicted. This matches scikit-learn's ``precision_recall_fscore_support(..., zero_division=np.nan)``.

    Args:
        y_true: true class indices, shape (N,).
        y_pred: predicted class indices, shape (N,).
        num_classes: K.

    Returns:
        ``{"precision", "recall", "f1"}`` float arrays and ``"support"`` (true cases per class, int), each (K,).
    """
    cm = confusion_matrix(y_true, y_pred, num_classes)
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), np.nan)
        recall = np.where(support > 0, tp / np.maximum(support, 1), np.nan)
    if (predicted == 0).any():
        never = [_class_name(c, num_classes) for c in np.flatnonzero(predicted == 0)]
        _warn_undefined(f"precision is undefined for classes never predicted ({', '.join(never)}); set to NaN")
    if (support == 0).any():
        absent = [_class_name(c, num_classes) for c in np.flatnonzero(support == 0)]
        _warn_undefined(f"recall is undefined for classes absent from y_true ({', '.join(absent)}); set to NaN")
    f1 = _f1_from_counts(tp, predicted - tp, support - tp)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def accuracy_score(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int = NUM_CLASSES) -> float:
    """Fraction of cases whose predicted class is the true class.

    Accuracy hides failure on imbalanced data (all-nevus scores ~67% on HAM10000): report it next to
    :func:`balanced_accuracy_score`.
    """
    t = _check_labels(y_true, "y_true", num_classes)
    p = _check_labels(y_pred, "y_pred", num_classes)
    _check_same_length(t, p, "y_true", "y_pred")
    return float(np.mean(t == p))


def balanced_accuracy_score(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int = NUM_CLASSES) -> float:
    """Mean per-class recall over the classes present in ``y_true`` (the ISIC 2018 headline metric).

    Classes absent from ``y_true`` are left out of the mean (as ISIC and scikit-learn do), so no warning is
    raised for them; predictions of an absent class still count as errors for the true class.
    """
    t = _check_labels(y_true, "y_true", num_classes)
    p = _check_labels(y_pred, "y_pred", num_classes)
    _check_same_length(t, p, "y_true", "y_pred")
    support = np.bincount(t, minlength=num_classes)
    hits = np.bincount(t[t == p], minlength=num_classes)
    present = support > 0
    return float(np.mean(hits[present] / support[present]))


# --------------------------------------------------------------------------------------------------------
# Binary (melanoma vs rest) metrics
# --------------------------------------------------------------------------------------------------------


def binary_counts(y_true: ArrayLike, y_pred: ArrayLike) -> BinaryCounts:
    """TP, FP, TN, FN of binary labels (1 = melanoma)."""
    t = _check_binary(y_true, "y_true")
    p = _check_binary(y_pred, "y_pred")
    _check_same_length(t, p, "y_true", "y_pred")
    tp = int(np.sum((t == 1) & (p == 1)))
    fp = int(np.sum((t == 0) & (p == 1)))
    tn = int(np.sum((t == 0) & (p == 0)))
    return BinaryCounts(tp=tp, fp=fp, tn=tn, fn=len(t) - tp - fp - tn)


def sensitivity_score(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """TP / (TP + FN): the fraction of melanomas called melanoma. NaN with a warning without positives."""
    c = binary_counts(y_true, y_pred)
    return _ratio(c.tp, c.tp + c.fn, "sensitivity (no positive cases in y_true)")


def specificity_score(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """TN / (TN + FP): the fraction of non-melanomas called non-melanoma. NaN with a warning without negatives."""
    c = binary_counts(y_true, y_pred)
    return _ratio(c.tn, c.tn + c.fp, "specificity (no negative cases in y_true)")


def ppv_score(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """TP / (TP + FP), positive predictive value. NaN with a warning when nothing is called positive."""
    c = binary_counts(y_true, y_pred)
    return _ratio(c.tp, c.tp + c.fp, "PPV (no case predicted positive)")


def npv_score(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """TN / (TN + FN), negative predictive value. NaN with a warning when nothing is called negative."""
    c = binary_counts(y_true, y_pred)
    return _ratio(c.tn, c.tn + c.fn, "NPV (no case predicted negative)")


def _check_binary_scores(y_true: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    t = _check_binary(y_true, "y_true")
    s = _check_scores(scores, "scores")
    _check_same_length(t, s, "y_true", "scores")
    return t, s


def roc_auc_score(y_true: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve: the probability that a random melanoma outscores a random non-melanoma.

    Computed from ranks (Mann-Whitney U); tied scores count one half, as scikit-learn's trapezoidal area does.
    With only one class present the area is undefined: NaN and a warning (never a silent 0.5).
    """
    t, s = _check_binary_scores(y_true, scores)
    n_pos = int(t.sum())
    n_neg = len(t) - n_pos
    if n_pos == 0 or n_neg == 0:
        _warn_undefined(f"AUROC is undefined with only one class in y_true ({n_pos} positives, {n_neg} negatives)")
        return math.nan
    ranks = stats.rankdata(s)  # average ranks: ties share their mean rank
    return float((ranks[t == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_curve(
    y_true: ArrayLike, scores: ArrayLike, drop_intermediate: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve, point for point as :func:`sklearn.metrics.roc_curve`.

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
    t, s = _check_binary_scores(y_true, scores)
    order = np.argsort(s, kind="mergesort")[::-1]
    s_sorted, t_sorted = s[order], t[order]
    # The last index of each run of equal scores is where a threshold takes effect.
    distinct = np.flatnonzero(np.diff(s_sorted))
    threshold_idx = np.r_[distinct, len(s_sorted) - 1]
    tps = np.cumsum(t_sorted)[threshold_idx].astype(np.float64)
    fps = 1 + threshold_idx - tps
    thresholds = s_sorted[threshold_idx]
    if drop_intermediate and len(fps) > 2:
        keep = np.flatnonzero(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])
        fps, tps, thresholds = fps[keep], tps[keep], thresholds[keep]
    tps, fps, thresholds = np.r_[0.0, tps], np.r_[0.0, fps], np.r_[np.inf, thresholds]
    if fps[-1] == 0:
        _warn_undefined("ROC false positive rate is undefined without negative cases; fpr set to NaN")
        fpr = np.full_like(fps, np.nan)
    else:
        fpr = fps / fps[-1]
    if tps[-1] == 0:
        _warn_undefined("ROC true positive rate is undefined without positive cases; tpr set to NaN")
        tpr = np.full_like(tps, np.nan)
    else:
        tpr = tps / tps[-1]
    return fpr, tpr, thresholds


def _min_hits(n_pos: int, target: float) -> int:
    # Smallest k with k / n_pos >= target, decided with the very division roc_curve uses, so that float
    # rounding (0.9 * 10 = 9.000000000000002) cannot disagree between code paths.
    return int(np.argmax(np.arange(n_pos + 1) / n_pos >= target))


def _check_target(target: float) -> None:
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target sensitivity must be in (0, 1], e.g. 0.90; got {target!r}")


def specificity_at_sensitivity(y_true: ArrayLike, scores: ArrayLike, target: float = 0.90) -> tuple[float, float]:
    """Best specificity among thresholds whose sensitivity reaches ``target``, and that threshold.

    The threshold is the largest observed score ``t`` such that calling ``score >= t`` melanoma finds at
    least ``target`` of the melanomas; specificity only falls as the threshold falls, so it is the best one.
    This is the "specificity at 95% sensitivity" that commercial devices publish.

    Returns:
        ``(specificity, threshold)``; ``(nan, nan)`` with a warning when either class is missing.
    """
    _check_target(target)
    t, s = _check_binary_scores(y_true, scores)
    n_pos = int(t.sum())
    if n_pos == 0 or n_pos == len(t):
        _warn_undefined(
            f"specificity at {target:.0%} sensitivity is undefined with only one class in y_true "
            f"({n_pos} positives, {len(t) - n_pos} negatives)"
        )
        return math.nan, math.nan
    fpr, tpr, thresholds = roc_curve(t, s, drop_intermediate=False)
    i = int(np.argmax(tpr >= target))  # tpr is non-decreasing and reaches 1, so a hit exists
    return float(1.0 - fpr[i]), float(thresholds[i])


# --------------------------------------------------------------------------------------------------------
# Calibration error
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
        t = _check_binary(y_true, "y_true")
        p = _check_scores(probs, "probs")
        _check_same_length(t, p, "y_true", "probs")
        bad = (p < 0) | (p > 1)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"probs has {p[i]} at index {i}: probabilities must lie in [0, 1]")
        return p, t == 1
    p = _check_probs(probs, "probs")
    t = _check_labels(y_true, "y_true", p.shape[1])
    _check_same_length(t, p, "y_true", "probs")
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


# --------------------------------------------------------------------------------------------------------
# Confidence intervals
# --------------------------------------------------------------------------------------------------------


def wilson_interval(
    successes: int, n: int, confidence: float = 0.95, *, what: str = "proportion"
) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (good down to small n and proportions near 0 or 1).

    Args:
        successes: number of successes (e.g. melanomas found).
        n: number of trials (e.g. melanomas).
        confidence: coverage of the interval.
        what: name of the proportion, used in the warning when it is undefined.

    Returns:
        ``(lo, hi)``; ``(nan, nan)`` with a warning when ``n == 0``.
    """
    _check_confidence(confidence)
    if int(n) != n or int(successes) != successes or n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need integers 0 <= successes <= n, got successes={successes!r}, n={n!r}")
    if n == 0:
        _warn_undefined(f"{what} is undefined for n = 0 trials; value and Wilson interval set to NaN")
        return math.nan, math.nan
    z = float(stats.norm.ppf(0.5 + confidence / 2.0))
    p = successes / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # At 0/n and n/n the interval touches the boundary exactly; do not let rounding leave 0.9999999999999999.
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return lo, hi


def wilson_estimate(successes: int, n: int, confidence: float = 0.95, *, what: str = "proportion") -> Estimate:
    """A proportion ``successes / n`` with its Wilson interval; NaN (with a warning naming ``what``) when ``n == 0``."""
    lo, hi = wilson_interval(successes, n, confidence, what=what)
    value = math.nan if n == 0 else successes / n
    return Estimate(value=value, lo=lo, hi=hi, n=int(n))


def _percentile_interval(values: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    alpha = 1.0 - confidence
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: their interval is NaN, as it should be
        lo, hi = np.nanquantile(values, [alpha / 2.0, 1.0 - alpha / 2.0], axis=0)
    return lo, hi


def _resample_chunks(y: np.ndarray, n_boot: int, seed: int, stratified: bool) -> Iterator[np.ndarray]:
    """Yield (rows, N) index arrays, ``n_boot`` rows in all; a stratified row keeps every class count."""
    rng = np.random.default_rng(seed)
    n = len(y)
    strata = [np.flatnonzero(y == v) for v in np.unique(y)] if stratified else [np.arange(n)]
    rows_per_chunk = max(1, _BOOTSTRAP_CELLS // n)
    for start in range(0, n_boot, rows_per_chunk):
        rows = min(rows_per_chunk, n_boot - start)
        yield np.concatenate([s[rng.integers(0, len(s), size=(rows, len(s)))] for s in strata], axis=1)


def _weights(idx: np.ndarray, n: int) -> np.ndarray:
    # How often each case is drawn in each resample: a resample is a weighting of the original cases.
    rows = idx.shape[0]
    flat = (np.arange(rows)[:, None] * n + idx).ravel()
    return np.bincount(flat, minlength=rows * n).reshape(rows, n).astype(np.float64)  # (R, N)


def _batched_auc(y: np.ndarray, s: np.ndarray, w: np.ndarray) -> np.ndarray:
    pos = y == 1
    s_pos, s_neg = s[pos], s[~pos]
    w_pos, w_neg = w[:, pos], w[:, ~pos]  # (R, P), (R, Q)
    order = np.argsort(s_neg, kind="mergesort")
    s_neg_sorted = s_neg[order]
    cum = np.zeros((w.shape[0], len(s_neg) + 1))
    np.cumsum(w_neg[:, order], axis=1, out=cum[:, 1:])  # (R, Q + 1): weight of negatives below each cut
    below = cum[:, np.searchsorted(s_neg_sorted, s_pos, side="left")]  # (R, P)
    tied = cum[:, np.searchsorted(s_neg_sorted, s_pos, side="right")] - below
    return (w_pos * (below + 0.5 * tied)).sum(axis=1) / (w_pos.sum(axis=1) * w_neg.sum(axis=1))


def _batched_specificity_at_sensitivity(
    y: np.ndarray, s: np.ndarray, w: np.ndarray, target: float = 0.90
) -> np.ndarray:
    pos = y == 1
    s_pos, s_neg = s[pos], s[~pos]
    w_pos, w_neg = w[:, pos], w[:, ~pos]
    n_pos, n_neg = len(s_pos), len(s_neg)  # a stratified resample keeps both counts
    order_pos = np.argsort(-s_pos, kind="mergesort")
    found = np.cumsum(w_pos[:, order_pos], axis=1)  # (R, P): melanomas found as the threshold falls
    first = np.argmax(found >= _min_hits(n_pos, target), axis=1)  # (R,)
    threshold = s_pos[order_pos][first]  # (R,): the largest threshold reaching the target
    order_neg = np.argsort(s_neg, kind="mergesort")
    cum = np.zeros((w.shape[0], n_neg + 1))
    np.cumsum(w_neg[:, order_neg], axis=1, out=cum[:, 1:])
    cut = np.searchsorted(s_neg[order_neg], threshold, side="left")  # negatives below the threshold
    false_pos = n_neg - np.take_along_axis(cum, cut[:, None], axis=1)[:, 0]
    return 1.0 - false_pos / n_neg


def _batched_balanced_accuracy(
    y: np.ndarray, pred: np.ndarray, w: np.ndarray, num_classes: int = NUM_CLASSES
) -> np.ndarray:
    onehot = np.eye(num_classes)[y]  # (N, K)
    support = w @ onehot  # (R, K)
    hits = w @ (onehot * (y == pred.astype(np.int64))[:, None])
    present = support[0] > 0  # a stratified resample keeps the class supports
    return np.mean(hits[:, present] / support[:, present], axis=1)


# Metrics whose stratified bootstrap runs on a whole chunk of resamples at once (same resamples, same
# numbers as the per-resample loop; a test checks it). Keyed by the public function.
_BATCHED: dict[Callable[..., Any], Callable[..., np.ndarray]] = {
    roc_auc_score: _batched_auc,
    specificity_at_sensitivity: _batched_specificity_at_sensitivity,
    balanced_accuracy_score: _batched_balanced_accuracy,
}


def _scalar(value: Any) -> float:
    # specificity_at_sensitivity returns (specificity, threshold): the interval is for the first element.
    return float(value[0] if isinstance(value, tuple) else value)


def bootstrap_ci(
    metric_fn: Callable[[np.ndarray, np.ndarray], Any],
    y_true: ArrayLike,
    scores: ArrayLike,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    stratified: bool = True,
) -> Estimate:
    """Percentile bootstrap confidence interval of ``metric_fn(y_true, scores)``.

    Stratified resampling draws each class from its own cases, so every resample keeps the number of
    melanomas (and of each class): AUROC and specificity-at-sensitivity stay defined in every resample.
    :func:`roc_auc_score`, :func:`specificity_at_sensitivity` and :func:`balanced_accuracy_score` (also
    wrapped in ``functools.partial`` with keyword arguments) run vectorised over all resamples; any
    other metric runs once per resample.

    Args:
        metric_fn: ``metric_fn(y_true, scores)`` returning a float (or a tuple whose first element is the
            metric, as :func:`specificity_at_sensitivity` returns).
        y_true: labels, shape (N,); the strata when ``stratified``.
        scores: scores, predicted labels or probabilities, with N rows.
        n_boot: number of resamples.
        confidence: coverage of the interval.
        seed: seed of the resampling; the same seed gives the same interval.
        stratified: resample within each class of ``y_true``.

    Returns:
        An :class:`Estimate` with the value on the full data and ``n = N``. When the value itself is
        undefined (NaN, warned by the metric), the interval is NaN too. Resamples where the metric is
        undefined (possible without stratification) are left out, with one warning.
    """
    _check_confidence(confidence)
    if not (isinstance(n_boot, int | np.integer) and n_boot >= 1):
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    y = _as_1d(y_true, "y_true")
    s = np.asarray(scores)
    _check_same_length(y, s, "y_true", "scores")
    value = _scalar(metric_fn(y_true, scores))  # also validates the inputs, in the metric's own terms
    if math.isnan(value):
        return Estimate(value=math.nan, lo=math.nan, hi=math.nan, n=len(y))

    fn, kwargs = metric_fn, {}
    if isinstance(metric_fn, functools.partial) and not metric_fn.args:
        fn, kwargs = metric_fn.func, dict(metric_fn.keywords)
    batched = _BATCHED.get(fn) if stratified else None
    values = []
    for idx in _resample_chunks(y, n_boot, seed, stratified):
        if batched is not None:
            y_int = y.astype(np.int64)
            values.append(batched(y_int, s.astype(np.float64), _weights(idx, len(y)), **kwargs))
            continue
        with warnings.catch_warnings():
            # An undefined resample is counted and reported once below, not warned 1000 times.
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            values.append(np.array([_scalar(metric_fn(y[row], s[row])) for row in idx]))
    boot = np.concatenate(values)
    undefined = int(np.isnan(boot).sum())
    if undefined:
        _warn_undefined(f"bootstrap: the metric was undefined in {undefined} of {n_boot} resamples; left out")
    lo, hi = _percentile_interval(boot, confidence)
    return Estimate(value=value, lo=float(lo), hi=float(hi), n=len(y))


def per_class_f1_ci(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    num_classes: int = NUM_CLASSES,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> list[Estimate]:
    """F1 of each class with a stratified percentile bootstrap interval, all classes in one pass.

    Returns:
        One :class:`Estimate` per class (``n`` = the class support); NaN for a class neither present nor
        predicted.
    """
    _check_confidence(confidence)
    cm = confusion_matrix(y_true, y_pred, num_classes)
    t = _check_labels(y_true, "y_true", num_classes)
    p = _check_labels(y_pred, "y_pred", num_classes)
    tp = np.diag(cm)
    value = _f1_from_counts(tp, cm.sum(axis=0) - tp, cm.sum(axis=1) - tp)
    onehot_t, onehot_p = np.eye(num_classes)[t], np.eye(num_classes)[p]  # (N, K)
    boot = []
    for idx in _resample_chunks(t, n_boot, seed, stratified=True):
        w = _weights(idx, len(t))  # (R, N)
        tp_b = w @ (onehot_t * onehot_p)  # (R, K)
        boot.append(_f1_from_counts(tp_b, w @ onehot_p - tp_b, w @ onehot_t - tp_b))
    lo, hi = _percentile_interval(np.concatenate(boot), confidence)
    support = cm.sum(axis=1)
    return [Estimate(float(value[c]), float(lo[c]), float(hi[c]), int(support[c])) for c in range(num_classes)]


# --------------------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------------------


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, Estimate):
        return obj.to_dict()
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return _json_float(float(obj))
    return obj


def melanoma_report(
    y_true: ArrayLike,
    probs: ArrayLike,
    threshold: float | None = None,
    melanoma_index: int = MELANOMA_INDEX,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    n_bins: int = 15,
    class_names: Sequence[str] = CLASSES,
) -> dict[str, Any]:
    """The full evaluation report: the one place where a report dict is assembled.

    Predicted labels come from :func:`dermascan.decision.decide` with ``threshold``
    (plain argmax when ``None``); accuracy, balanced accuracy, per-class figures, the confusion matrix and
    the melanoma sensitivity/specificity/PPV/NPV are computed on those labels. AUROC, specificity at 90%
    and 95% sensitivity, and the ECEs are computed from the probabilities.

    Proportions carry Wilson intervals; AUROC, balanced accuracy and specificity-at-sensitivity carry
    stratified bootstrap intervals (``n_boot`` resamples, ``seed``). An interval is a dict
    ``{"value", "lo", "hi", "n"}``.

    Undefined values (e.g. a subgroup without melanoma) are ``None`` in the dict, each with an
    :class:`UndefinedMetricWarning`: the result is strict JSON (``json.dumps(report, allow_nan=False)``
    works) and never shows a silent 0 or 0.5.

    Args:
        y_true: true class indices, shape (N,).
        probs: class probabilities (rows sum to 1), shape (N, K), columns in ``class_names`` order.
        threshold: melanoma operating threshold on ``probs[:, melanoma_index]``, or ``None`` for argmax.
        melanoma_index: column of melanoma.
        n_boot: bootstrap resamples per bootstrapped metric.
        seed: bootstrap seed.
        confidence: coverage of every interval.
        n_bins: bins of the calibration errors.
        class_names: class codes, one per column (the taxonomy order by default).

    Returns:
        A JSON-serialisable dict; see the keys in the code below and the example in the tests.
    """

    p = _check_probs(probs, "probs")
    num_classes = p.shape[1]
    y = _check_labels(y_true, "y_true", num_classes)
    _check_same_length(y, p, "y_true", "probs")
    if len(class_names) != num_classes:
        raise ValueError(f"class_names has {len(class_names)} names but probs has {num_classes} columns")
    if not 0 <= melanoma_index < num_classes:
        raise ValueError(f"melanoma_index {melanoma_index} is outside 0..{num_classes - 1}")

    y_pred = decide(p, threshold, melanoma_index)
    cm = confusion_matrix(y, y_pred, num_classes)
    prf = per_class_precision_recall_f1(y, y_pred, num_classes)
    boot = {"n_boot": n_boot, "confidence": confidence, "seed": seed}

    per_class = {}
    for c, name in enumerate(class_names):
        per_class[name] = {
            "precision": prf["precision"][c],
            "recall": wilson_estimate(int(cm[c, c]), int(cm[c].sum()), confidence, what=f"recall of {name}"),
            "f1": prf["f1"][c],
            "support": int(cm[c].sum()),
        }

    mel_true = (y == melanoma_index).astype(np.int64)
    mel_pred = (y_pred == melanoma_index).astype(np.int64)
    p_mel = p[:, melanoma_index]
    c = binary_counts(mel_true, mel_pred)
    melanoma: dict[str, Any] = {
        "threshold": None if threshold is None else float(threshold),
        "n_pos": c.tp + c.fn,
        "n_neg": c.tn + c.fp,
        "prevalence": (c.tp + c.fn) / len(y),
        "counts": c._asdict(),
        "sensitivity": wilson_estimate(c.tp, c.tp + c.fn, confidence, what="melanoma sensitivity (no melanoma)"),
        "specificity": wilson_estimate(c.tn, c.tn + c.fp, confidence, what="melanoma specificity (no negatives)"),
        "ppv": wilson_estimate(c.tp, c.tp + c.fp, confidence, what="melanoma PPV (nothing called melanoma)"),
        "npv": wilson_estimate(c.tn, c.tn + c.fn, confidence, what="melanoma NPV (everything called melanoma)"),
        "auroc": bootstrap_ci(roc_auc_score, mel_true, p_mel, **boot),
        "ece": binary_expected_calibration_error(mel_true, p_mel, n_bins),
    }
    for target in (0.90, 0.95):
        fn = functools.partial(specificity_at_sensitivity, target=target)
        estimate = bootstrap_ci(fn, mel_true, p_mel, **boot).to_dict()
        # The threshold that reaches the target on these data (the estimate's value recomputes the same).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)  # already warned by bootstrap_ci
            estimate["threshold"] = specificity_at_sensitivity(mel_true, p_mel, target)[1]
        melanoma[f"specificity_at_{round(target * 100)}_sensitivity"] = estimate

    report = {
        "n": len(y),
        "classes": list(class_names),
        "decision": "argmax" if threshold is None else "threshold",
        "confidence": confidence,
        "n_boot": n_boot,
        "accuracy": wilson_estimate(int(np.trace(cm)), len(y), confidence),
        "balanced_accuracy": bootstrap_ci(
            functools.partial(balanced_accuracy_score, num_classes=num_classes), y, y_pred, **boot
        ),
        "per_class": per_class,
        "confusion_matrix": cm,
        "ece": expected_calibration_error(y, p, n_bins),
        "melanoma": melanoma,
    }
    return _jsonable(report)
