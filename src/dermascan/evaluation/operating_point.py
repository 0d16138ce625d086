"""The melanoma operating point: how a threshold is chosen, how it turns probabilities into a diagnosis,
and how the melanoma probability maps to a risk band.

The operating point is a clinical decision: choose it on validation data for the target sensitivity
(:func:`choose_threshold`), lock it into the model bundle, and report specificity at it on test data with
confidence intervals (:func:`dermascan.evaluation.report.melanoma_report`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from dermascan.decision import CRITERIA, RiskBands
from dermascan.evaluation._validate import check_binary_scores, check_confidence, check_target
from dermascan.evaluation.intervals import Estimate, wilson_estimate, wilson_interval
from dermascan.evaluation.metrics import min_hits

__all__ = ["OperatingPoint", "choose_threshold"]


@dataclass(frozen=True)
class OperatingPoint:
    """A melanoma threshold and what it achieved on the data it was chosen on.

    Attributes:
        threshold: call melanoma when ``p(melanoma) >= threshold`` (see :func:`decide`).
        target_sensitivity: the sensitivity the threshold was chosen to reach.
        sensitivity: sensitivity achieved on the fitting set, with its Wilson interval.
        specificity: specificity achieved on the fitting set, with its Wilson interval.
        n_pos: melanomas in the fitting set.
        n_neg: non-melanomas in the fitting set.
        criterion: ``"point"`` (the observed sensitivity reaches the target) or ``"lower_ci"`` (the lower
            Wilson bound of the sensitivity reaches it).
        confidence: coverage of the intervals (and of the lower bound for ``"lower_ci"``).
    """

    threshold: float
    target_sensitivity: float
    sensitivity: Estimate
    specificity: Estimate
    n_pos: int
    n_neg: int
    criterion: str
    confidence: float = 0.95

    def __post_init__(self) -> None:
        if self.criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {CRITERIA}, got {self.criterion!r}")

    @property
    def risk_bands(self) -> RiskBands:
        """The default risk bands derived from this threshold."""
        return RiskBands.from_threshold(self.threshold)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN as ``None``), as stored in the model bundle's manifest."""
        return {
            "threshold": self.threshold,
            "target_sensitivity": self.target_sensitivity,
            "sensitivity": self.sensitivity.to_dict(),
            "specificity": self.specificity.to_dict(),
            "n_pos": self.n_pos,
            "n_neg": self.n_neg,
            "criterion": self.criterion,
            "confidence": self.confidence,
            "risk_bands": self.risk_bands.to_dict(),
        }


def _positives_needed(target: float, confidence: float) -> int:
    # With every melanoma found, the Wilson lower bound is n / (n + z^2): solve n / (n + z^2) >= target.
    z = float(stats.norm.ppf(0.5 + confidence / 2.0))
    return math.ceil(target * z * z / (1.0 - target)) if target < 1.0 else -1


def choose_threshold(
    y_true_binary: ArrayLike,
    scores: ArrayLike,
    target_sensitivity: float = 0.90,
    require_lower_ci: bool = False,
    confidence: float = 0.95,
) -> OperatingPoint:
    """Choose the melanoma threshold on validation data: the largest one that reaches the target sensitivity.

    Candidates are the observed melanoma scores; calling ``score >= t`` melanoma, sensitivity only rises
    and specificity only falls as ``t`` falls, so the largest threshold that reaches the target has the
    best specificity. With ``require_lower_ci`` the lower Wilson bound of the sensitivity, not the point
    estimate, must reach the target: a stricter rule that accounts for a small validation set.

    The threshold is an observed score, so ``p >= threshold`` reproduces the fitting-set counts exactly.

    Raises:
        ValueError: no melanoma in ``y_true_binary``; or, with ``require_lower_ci``, too few melanomas for
            the lower bound to reach the target even when all are found. We raise rather than fall back to
            a weaker threshold: a clinical operating point that silently misses its criterion is worse than
            none. The message says how many melanomas are needed.
    """
    check_target(target_sensitivity)
    check_confidence(confidence)
    y, s = check_binary_scores(y_true_binary, scores)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0:
        raise ValueError(
            f"cannot choose a melanoma threshold: y_true_binary has no melanoma among {len(y)} cases; "
            f"use a validation split that contains melanomas"
        )
    # found[k - 1] = melanomas found at the k-th highest melanoma score (ties share the larger count).
    s_pos = np.sort(s[y == 1])[::-1]
    found = np.searchsorted(-s_pos, -s_pos, side="right")
    if require_lower_ci:
        # The Wilson lower bound rises with the number found: binary-search the fewest melanomas that lift it
        # to the target (log2(n_pos) interval evaluations).
        best = wilson_interval(n_pos, n_pos, confidence)[0]
        if best < target_sensitivity:
            needed = _positives_needed(target_sensitivity, confidence)
            raise ValueError(
                f"the lower {confidence:.0%} Wilson bound of the sensitivity cannot reach "
                f"{target_sensitivity:.0%} with {n_pos} melanomas (finding all gives {best:.3f}); "
                + (f"need at least {needed} melanomas, " if needed > 0 else "a target of 100% is never reached, ")
                + "or use require_lower_ci=False"
            )
        lo_k, hi_k = 0, n_pos
        while lo_k < hi_k:
            mid = (lo_k + hi_k) // 2
            if wilson_interval(mid, n_pos, confidence)[0] >= target_sensitivity:
                hi_k = mid
            else:
                lo_k = mid + 1
        min_found = lo_k
    else:
        min_found = min_hits(n_pos, target_sensitivity)
    reaches = found >= min_found
    threshold = float(s_pos[int(np.argmax(reaches))])
    called = s >= threshold
    tp = int(np.sum(called & (y == 1)))
    tn = int(np.sum(~called & (y == 0)))
    return OperatingPoint(
        threshold=threshold,
        target_sensitivity=float(target_sensitivity),
        sensitivity=wilson_estimate(tp, n_pos, confidence),
        specificity=wilson_estimate(tn, n_neg, confidence, what="specificity (no non-melanoma in the fitting set)"),
        n_pos=n_pos,
        n_neg=n_neg,
        criterion="lower_ci" if require_lower_ci else "point",
        confidence=float(confidence),
    )
