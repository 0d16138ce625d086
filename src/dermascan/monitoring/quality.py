"""Model quality on the cases whose truth is known, and the estimate before it is.

* :func:`confirmed_labels`: each prediction's label as known at a moment: the latest histopathology result
  first (the reference standard), the clinician's diagnosis where there is no biopsy, the source kept.
* :func:`confirmed_quality`: melanoma sensitivity and specificity at the locked threshold with Wilson 95%
  intervals and AUROC with a bootstrap interval, all from :mod:`dermascan.evaluation`; below ``min_melanomas``
  confirmed melanomas the state is "not enough confirmed melanomas", not a figure.
* :func:`cbpe`: confidence-based performance estimation (the method of NannyML's CBPE): with calibrated
  probabilities, the expected confusion matrix at the locked threshold is ``E[TP] = sum of p over flagged``,
  ``E[FN] = sum of p over unflagged``, ``E[FP] = sum of (1 - p) over flagged``, ``E[TN]`` likewise; available
  the day the images arrive, weeks before histopathology. It trusts the calibration: a model that is wrong *and*
  confident (concept drift, a changed population the calibration never saw) fools it, which only the
  confirmed figure can show.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from dermascan.evaluation._validate import UndefinedMetricWarning
from dermascan.evaluation.bootstrap import bootstrap_ci
from dermascan.evaluation.intervals import Estimate, binary_rates
from dermascan.evaluation.metrics import roc_auc_score
from dermascan.store.feedback import CONFIRMING

SENSITIVITY_ALERT = 0.88
MIN_MELANOMAS = 20
NOT_ENOUGH = "not enough confirmed melanomas"


def confirmed_labels(feedback: pd.DataFrame, as_of: pd.Timestamp | None = None) -> pd.DataFrame:
    """The confirmed label of each prediction as known at ``as_of`` (all feedback when ``None``).

    The rule of :func:`dermascan.store.feedback.confirmed_labels` (histopathology first, the latest of each kind,
    labels of :data:`~dermascan.store.feedback.CONFIRMING`), on feedback already read for many windows at once.

    Args:
        feedback: rows with ``prediction_id``, ``created_at``, ``clinician_label``, ``histopathology_label``
            (appended rows: the latest of each kind wins).
        as_of: only feedback created at or before this moment counts.

    Returns:
        One row per confirmed prediction: ``prediction_id``, ``label`` (an outcome code), ``source``
        (``histopathology`` or ``clinician``).
    """
    f = feedback if as_of is None else feedback[feedback["created_at"] <= as_of]
    f = f.sort_values(["created_at"], kind="stable")
    out = []
    for source, column in (("histopathology", "histopathology_label"), ("clinician", "clinician_label")):
        known = f[f[column].isin(CONFIRMING)]  # the store's one rule of what confirms a case
        latest = known.groupby("prediction_id", sort=False)[column].last()
        out.append(pd.DataFrame({"prediction_id": latest.index, "label": latest.to_numpy(), "source": source}))
    both = pd.concat(out, ignore_index=True)
    # histopathology rows come first: keep the first label of each prediction
    return both.drop_duplicates("prediction_id", keep="first").reset_index(drop=True)


@dataclass(frozen=True)
class Quality:
    """Quality on confirmed cases.

    Attributes:
        state: ``ok``, ``alert`` (sensitivity below :data:`SENSITIVITY_ALERT`) or :data:`NOT_ENOUGH`.
        n: confirmed cases; ``n_melanoma`` of them melanomas.
        sources: confirmed cases by label source.
        sensitivity, specificity: Wilson 95% estimates at the locked threshold (``None`` when not enough).
        auroc: bootstrap 95% estimate of p(melanoma)'s AUROC (``None`` when not enough).
    """

    state: str
    n: int
    n_melanoma: int
    sources: dict[str, int]
    sensitivity: Estimate | None
    specificity: Estimate | None
    auroc: Estimate | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "n": self.n,
            "n_melanoma": self.n_melanoma,
            "sources": self.sources,
            **{k: None if v is None else v.to_dict() for k, v in
               (("sensitivity", self.sensitivity), ("specificity", self.specificity), ("auroc", self.auroc))},
        }  # fmt: skip


def confirmed_quality(
    is_melanoma: ArrayLike,
    flags: ArrayLike,
    p_melanoma: ArrayLike,
    sources: ArrayLike,
    min_melanomas: int = MIN_MELANOMAS,
    alert_below: float = SENSITIVITY_ALERT,
    n_boot: int = 200,
    seed: int = 0,
) -> Quality:
    """Sensitivity, specificity and AUROC of the confirmed cases (see the module docstring).

    Args:
        is_melanoma: 1 where the confirmed label is melanoma.
        flags: the model's melanoma flags at its locked threshold.
        p_melanoma: the model's calibrated p(melanoma) (the AUROC's score).
        sources: label source per case.
        min_melanomas: fewer confirmed melanomas than this give the state :data:`NOT_ENOUGH`.
        alert_below: sensitivity (point estimate) below which the state is ``alert`` (the brief's 0.88).
        n_boot: bootstrap resamples of the AUROC interval.
        seed: bootstrap seed.
    """
    y = np.asarray(is_melanoma, np.int64)
    src = pd.Series(np.asarray(sources, object)).value_counts().to_dict()
    n_mel = int(y.sum())
    if n_mel < min_melanomas:
        return Quality(NOT_ENOUGH, len(y), n_mel, src, None, None, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # no negatives: specificity NaN, said by the value
        rates = binary_rates(y, np.asarray(flags, np.int64), warn=False)
        auroc = bootstrap_ci(roc_auc_score, y, np.asarray(p_melanoma, np.float64), n_boot=n_boot, seed=seed)
    state = "alert" if rates.sensitivity.value < alert_below else "ok"
    return Quality(state, len(y), n_mel, src, rates.sensitivity, rates.specificity, auroc)


@dataclass(frozen=True)
class Estimated:
    """Confidence-based performance estimation of one window (expected counts, not observed ones)."""

    tp: float
    fn: float
    fp: float
    tn: float

    @property
    def sensitivity(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn > 0 else math.nan

    @property
    def specificity(self) -> float:
        return self.tn / (self.tn + self.fp) if self.tn + self.fp > 0 else math.nan

    def to_dict(self) -> dict[str, float | None]:
        def clean(v: float) -> float | None:
            return None if math.isnan(v) else round(v, 6)

        return {
            "expected_tp": round(self.tp, 3),
            "expected_fn": round(self.fn, 3),
            "expected_fp": round(self.fp, 3),
            "expected_tn": round(self.tn, 3),
            "sensitivity": clean(self.sensitivity),
            "specificity": clean(self.specificity),
        }


def cbpe(p_melanoma: ArrayLike, flags: ArrayLike) -> Estimated:
    """The expected melanoma confusion matrix at the locked threshold from calibrated ``p(melanoma)``."""
    p = np.clip(np.asarray(p_melanoma, np.float64), 0.0, 1.0)
    f = np.asarray(flags, bool)
    if p.shape != f.shape:
        raise ValueError(f"p_melanoma and flags must have one value per case, got {p.shape} and {f.shape}")
    return Estimated(
        tp=float(p[f].sum()), fn=float(p[~f].sum()), fp=float((1 - p[f]).sum()), tn=float((1 - p[~f]).sum())
    )


__all__ = [
    "MIN_MELANOMAS",
    "NOT_ENOUGH",
    "SENSITIVITY_ALERT",
    "Estimated",
    "Quality",
    "cbpe",
    "confirmed_labels",
    "confirmed_quality",
]
