"""The percentile bootstrap of any metric, written once.

Stratified by default (each class resampled from its own cases, so every resample keeps the number of
melanomas and AUROC stays defined); :func:`scipy.stats.bootstrap` cannot stratify, so the stratified
resampling is written here, and runs AUROC, specificity-at-sensitivity, balanced accuracy and per-class F1 on
whole chunks of resamples at once. The unstratified bootstrap is SciPy's.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from dermascan.evaluation._validate import (
    UndefinedMetricWarning,
    as_1d,
    check_confidence,
    check_labels,
    check_same_length,
    warn_undefined,
)
from dermascan.evaluation.intervals import Estimate
from dermascan.evaluation.metrics import (
    balanced_accuracy_score,
    confusion_matrix,
    f1_from_counts,
    min_hits,
    roc_auc_score,
    specificity_at_sensitivity,
)
from dermascan.taxonomy import NUM_CLASSES

__all__ = ["bootstrap_ci", "per_class_f1_ci"]

# Bootstrap resamples are drawn and evaluated in chunks of about this many (row, case) cells, so memory
# stays bounded for large test sets; the chunking is fixed, so a seed always gives the same resamples.
_BOOTSTRAP_CELLS = 2_000_000


def _percentile_interval(values: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    alpha = 1.0 - confidence
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: their interval is NaN, as it should be
        lo, hi = np.nanquantile(values, [alpha / 2.0, 1.0 - alpha / 2.0], axis=0)
    return lo, hi


def _resample_chunks(y: np.ndarray, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """Yield (rows, N) index arrays, ``n_boot`` rows in all; every row keeps each class count of ``y``."""
    rng = np.random.default_rng(seed)
    n = len(y)
    strata = [np.flatnonzero(y == v) for v in np.unique(y)]
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
    first = np.argmax(found >= min_hits(n_pos, target), axis=1)  # (R,)
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


def _unstratified(metric_fn: Callable[..., Any], y: np.ndarray, s: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """SciPy's bootstrap of ``metric_fn`` over resampled cases (pairs of label and score kept together)."""

    def statistic(idx: np.ndarray) -> float:
        return _scalar(metric_fn(y[idx], s[idx]))

    with warnings.catch_warnings():
        # An undefined resample is counted and reported once by the caller, not warned n_boot times; SciPy's
        # own interval (which a NaN resample would spoil) is not used, only its resamples.
        warnings.simplefilter("ignore")
        res = stats.bootstrap((np.arange(len(y)),), statistic, n_resamples=n_boot, vectorized=False,
                              method="percentile", rng=np.random.default_rng(seed))  # fmt: skip
    return np.asarray(res.bootstrap_distribution, dtype=np.float64)


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
    ``roc_auc_score``, ``specificity_at_sensitivity`` and ``balanced_accuracy_score`` of
    :mod:`~dermascan.evaluation.metrics` (also wrapped in ``functools.partial`` with keyword arguments) run
    vectorised over all resamples; any other metric runs once per resample.

    Args:
        metric_fn: ``metric_fn(y_true, scores)`` returning a float (or a tuple whose first element is the
            metric, as ``specificity_at_sensitivity`` returns).
        y_true: labels, shape (N,); the strata when ``stratified``.
        scores: scores, predicted labels or probabilities, with N rows.
        n_boot: number of resamples.
        confidence: coverage of the interval.
        seed: seed of the resampling; the same seed gives the same interval.
        stratified: resample within each class of ``y_true`` (else :func:`scipy.stats.bootstrap` resamples
            the cases).

    Returns:
        An :class:`Estimate` with the value on the full data and ``n = N``. When the value itself is
        undefined (NaN, warned by the metric), the interval is NaN too. Resamples where the metric is
        undefined (possible without stratification) are left out, with one warning.
    """
    check_confidence(confidence)
    if not (isinstance(n_boot, int | np.integer) and n_boot >= 1):
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    y = as_1d(y_true, "y_true")
    s = np.asarray(scores)
    check_same_length(y, s, "y_true", "scores")
    value = _scalar(metric_fn(y_true, scores))  # also validates the inputs, in the metric's own terms
    if math.isnan(value):
        return Estimate(value=math.nan, lo=math.nan, hi=math.nan, n=len(y))

    if not stratified:
        boot = _unstratified(metric_fn, y, s, n_boot, seed)
    else:
        fn, kwargs = metric_fn, {}
        if isinstance(metric_fn, functools.partial) and not metric_fn.args:
            fn, kwargs = metric_fn.func, dict(metric_fn.keywords)
        batched = _BATCHED.get(fn)
        values = []
        for idx in _resample_chunks(y, n_boot, seed):
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
        warn_undefined(f"bootstrap: the metric was undefined in {undefined} of {n_boot} resamples; left out")
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
    check_confidence(confidence)
    cm = confusion_matrix(y_true, y_pred, num_classes)
    t = check_labels(y_true, "y_true", num_classes)
    p = check_labels(y_pred, "y_pred", num_classes)
    tp = np.diag(cm)
    value = f1_from_counts(tp, cm.sum(axis=0) - tp, cm.sum(axis=1) - tp)
    onehot_t, onehot_p = np.eye(num_classes)[t], np.eye(num_classes)[p]  # (N, K)
    boot = []
    for idx in _resample_chunks(t, n_boot, seed):
        w = _weights(idx, len(t))  # (R, N)
        tp_b = w @ (onehot_t * onehot_p)  # (R, K)
        boot.append(f1_from_counts(tp_b, w @ onehot_p - tp_b, w @ onehot_t - tp_b))
    lo, hi = _percentile_interval(np.concatenate(boot), confidence)
    support = cm.sum(axis=1)
    return [Estimate(float(value[c]), float(lo[c]), float(hi[c]), int(support[c])) for c in range(num_classes)]
