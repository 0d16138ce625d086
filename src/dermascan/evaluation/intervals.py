"""Confidence intervals of proportions, written once: Wilson intervals (and the melanoma rates of a group, built
on them) and Newcombe's interval of a paired difference. The bootstrap of any metric is
:mod:`dermascan.evaluation.bootstrap`.

Wilson intervals are the closed-form score interval (:func:`wilson_bounds`, vectorised; equal to SciPy's
``binomtest(...).proportion_ci(method="wilson")``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from dermascan.evaluation._json import json_float
from dermascan.evaluation._validate import (
    UndefinedMetricWarning,
    check_confidence,
    warn_undefined,
)
from dermascan.evaluation.metrics import (
    BinaryCounts,
    binary_counts,
)

__all__ = [
    "BinaryRates",
    "Estimate",
    "binary_rates",
    "group_rates",
    "paired_difference_bounds",
    "paired_difference_interval",
    "wilson_bounds",
    "wilson_estimate",
    "wilson_interval",
]


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
