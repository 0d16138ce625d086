"""Confidence intervals, written once: Wilson intervals of proportions (and the melanoma rates of a group,
built on them) and the percentile bootstrap of any metric.

Wilson intervals are the closed-form score interval (:func:`wilson_bounds`, vectorised; equal to SciPy's
``binomtest(...).proportion_ci(method="wilson")``). The
bootstrap is stratified by default (each class resampled from its own cases, so every resample keeps the
number of melanomas and AUROC stays defined); :func:`scipy.stats.bootstrap` cannot stratify, so the
stratified resampling is written here, and runs AUROC, specificity-at-sensitivity, balanced accuracy and
per-class F1 on whole chunks of resamples at once. The unstratified bootstrap is SciPy's.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from dermascan.evaluation._json import json_float
from dermascan.evaluation._validate import (
    UndefinedMetricWarning,
    as_1d,
    check_confidence,
    check_labels,
    check_same_length,
    warn_undefined,
)
from dermascan.evaluation.metrics import (
    BinaryCounts,
    balanced_accuracy_score,
    binary_counts,
    confusion_matrix,
    f1_from_counts,
    min_hits,
    roc_auc_score,
    specificity_at_sensitivity,
)
from dermascan.taxonomy import NUM_CLASSES

__all__ = [
    "BinaryRates",
    "Estimate",
    "binary_rates",
    "bootstrap_ci",
    "group_rates",
    "paired_difference_bounds",
    "paired_difference_interval",
    "per_class_f1_ci",
    "wilson_bounds",
    "wilson_estimate",
    "wilson_interval",
]

# Bootstrap resamples are drawn and evaluated in chunks of about this many (row, case) cells, so memory
# stays bounded for large test sets; the chunking is fixed, so a seed always gives the same resamples.
_BOOTSTRAP_CELLS = 2_000_000


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
        return {"value": json_float(self.value), "lo": json_float(self.lo), "hi": json_float(self.hi),
                "n": int(self.n)}  # fmt: skip


# --------------------------------------------------------------------------------------------------------
# Proportions: Wilson intervals
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
    check_confidence(confidence)
    if int(n) != n or int(successes) != successes or n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need integers 0 <= successes <= n, got successes={successes!r}, n={n!r}")
    if n == 0:
        warn_undefined(f"{what} is undefined for n = 0 trials; value and Wilson interval set to NaN")
        return math.nan, math.nan
    lo, hi = wilson_bounds(np.array([successes]), np.array([n]), confidence)
    return float(lo[0]), float(hi[0])


def wilson_bounds(successes: ArrayLike, n: ArrayLike, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """The Wilson score interval of many proportions at once (the formula behind :func:`wilson_interval`).

    For simulations that need thousands of intervals; inputs are trusted (integers, ``0 <= successes <= n``), and
    ``n == 0`` gives NaN without a warning.

    Returns:
        ``(lo, hi)`` arrays; exactly 0 at ``successes == 0`` and 1 at ``successes == n``.
    """
    k, m = np.asarray(successes, np.float64), np.asarray(n, np.float64)
    z = stats.norm.ppf(0.5 + confidence / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / m
        centre = (p + z * z / (2 * m)) / (1 + z * z / m)
        half = z / (1 + z * z / m) * np.sqrt(p * (1 - p) / m + z * z / (4 * m * m))
    # At 0/n and n/n the interval touches the boundary exactly; do not let rounding leave 0.9999999999999999.
    lo = np.where(k == 0, 0.0, np.maximum(0.0, centre - half))
    hi = np.where(k == m, 1.0, np.minimum(1.0, centre + half))
    return np.where(m > 0, lo, np.nan), np.where(m > 0, hi, np.nan)


def wilson_estimate(successes: int, n: int, confidence: float = 0.95, *, what: str = "proportion") -> Estimate:
    """A proportion ``successes / n`` with its Wilson interval; NaN (with a warning naming ``what``) when ``n == 0``."""
    lo, hi = wilson_interval(successes, n, confidence, what=what)
    value = math.nan if n == 0 else successes / n
    return Estimate(value=value, lo=lo, hi=hi, n=int(n))


def paired_difference_interval(
    both: int, first_only: int, second_only: int, neither: int, confidence: float = 0.95
) -> Estimate:
    """Difference of two paired proportions (first minus second) with Newcombe's hybrid score interval.

    The two proportions are measured on the same cases (two models on the same images), so their errors are
    correlated and an unpaired interval would be too wide. Newcombe (1998, method 10) combines the Wilson
    interval of each proportion with the phi correlation of the 2x2 table; it keeps its coverage near the
    nominal level down to small tables, unlike the Wald interval.

    Args:
        both: cases where both are a success (e.g. both models right).
        first_only: cases where only the first is.
        second_only: cases where only the second is.
        neither: cases where neither is.
        confidence: coverage of the interval.

    Returns:
        ``value`` = p_first - p_second, its interval and ``n`` = the number of cases; NaN (with a warning) for none.
    """
    check_confidence(confidence)
    cells = (both, first_only, second_only, neither)
    if any(int(x) != x or x < 0 for x in cells):
        raise ValueError(f"need four non-negative counts, got {cells}")
    n = int(sum(cells))
    if n == 0:
        warn_undefined("a paired difference is undefined for 0 cases; value and interval set to NaN")
        return Estimate(math.nan, math.nan, math.nan, 0)
    d, lo, hi = paired_difference_bounds(*(np.array([x]) for x in cells), confidence=confidence)
    return Estimate(value=float(d[0]), lo=float(lo[0]), hi=float(hi[0]), n=n)


def paired_difference_bounds(
    both: ArrayLike, first_only: ArrayLike, second_only: ArrayLike, neither: ArrayLike, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`paired_difference_interval` on arrays of tables at once: ``(difference, lo, hi)`` arrays (NaN where
    a table is empty). Inputs are trusted, as in :func:`wilson_bounds`."""
    a, b, c, d = (np.asarray(x, np.float64) for x in (both, first_only, second_only, neither))
    n = a + b + c + d
    l1, u1 = wilson_bounds(a + b, n, confidence)
    l2, u2 = wilson_bounds(a + c, n, confidence)
    with np.errstate(invalid="ignore", divide="ignore"):
        p1, p2 = (a + b) / n, (a + c) / n
        margins = (a + b) * (c + d) * (a + c) * (b + d)
        phi = np.where(margins > 0, (a * d - b * c) / np.sqrt(np.where(margins > 0, margins, 1.0)), 0.0)
        diff = p1 - p2
        lo = diff - np.sqrt(np.maximum(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
        hi = diff + np.sqrt(np.maximum(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return diff, np.maximum(-1.0, lo), np.minimum(1.0, hi)


@dataclass(frozen=True)
class BinaryRates:
    """Melanoma-vs-rest counts at a decision and the four rates, each with its Wilson interval."""

    counts: BinaryCounts
    sensitivity: Estimate
    specificity: Estimate
    ppv: Estimate
    npv: Estimate

    @property
    def n_pos(self) -> int:
        return self.counts.tp + self.counts.fn

    @property
    def n_neg(self) -> int:
        return self.counts.tn + self.counts.fp


def binary_rates(
    y_true: ArrayLike, y_pred: ArrayLike, confidence: float = 0.95, *, label: str = "melanoma", warn: bool = True
) -> BinaryRates:
    """Counts, sensitivity, specificity, PPV and NPV (Wilson intervals) of binary melanoma calls.

    The one place these four proportions are computed: the report, the error analysis and the fairness
    audit all call it (directly or through :func:`group_rates`).

    Args:
        y_true: 1 = melanoma, 0 = any other class, shape (N,); may be empty (every rate is then NaN).
        y_pred: 1 = called melanoma, shape (N,).
        confidence: coverage of the intervals.
        label: what the rates are of, named in the warnings of undefined rates.
        warn: warn :class:`UndefinedMetricWarning` for an undefined rate (NaN) or stay silent, for callers
            that judge small groups themselves.
    """
    c = binary_counts(y_true, y_pred) if len(y_true) else BinaryCounts(0, 0, 0, 0)
    with warnings.catch_warnings():
        if not warn:
            warnings.simplefilter("ignore", UndefinedMetricWarning)
        return BinaryRates(
            counts=c,
            sensitivity=wilson_estimate(c.tp, c.tp + c.fn, confidence, what=f"{label} sensitivity (no melanoma)"),
            specificity=wilson_estimate(c.tn, c.tn + c.fp, confidence, what=f"{label} specificity (no negatives)"),
            ppv=wilson_estimate(c.tp, c.tp + c.fp, confidence, what=f"{label} PPV (nothing called melanoma)"),
            npv=wilson_estimate(c.tn, c.tn + c.fn, confidence, what=f"{label} NPV (everything called melanoma)"),
        )


def _known(groups: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(groups, dtype=object)
    known = np.array([g is not None and not (isinstance(g, float) and math.isnan(g)) for g in labels], dtype=bool)
    names = np.array([str(g) if k else "" for g, k in zip(labels, known, strict=True)], dtype=object)
    return known, names


def group_rates(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    groups: ArrayLike,
    order: Sequence[str] | None = None,
    confidence: float = 0.95,
) -> dict[str, BinaryRates]:
    """:func:`binary_rates` of each group, silently NaN where a group lacks melanomas or non-melanomas.

    Args:
        y_true: 1 = melanoma, shape (N,).
        y_pred: 1 = called melanoma, shape (N,).
        groups: the group of each case (``None``/NaN: not recorded, left out), shape (N,).
        order: groups to report, in this order (default: sorted names present); an absent group gets
            zero counts.
        confidence: coverage of the intervals.
    """
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    known, names = _known(groups)
    if not len(t) == len(p) == len(names):
        raise ValueError(f"y_true, y_pred and groups must have one value per case, got {len(t)}, {len(p)}, "
                         f"{len(names)}")  # fmt: skip
    order = list(order) if order is not None else sorted(set(names[known]))
    out = {}
    for name in order:
        rows = known & (names == str(name))
        out[name] = binary_rates(t[rows], p[rows], confidence, label=f"{name}: melanoma", warn=False)
    return out


# --------------------------------------------------------------------------------------------------------
# The bootstrap
# --------------------------------------------------------------------------------------------------------


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
