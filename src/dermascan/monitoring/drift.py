"""Drift figures of one window against the training reference: input drift (PSI of each image feature),
prediction drift (melanoma-flag rate against its standard deviation; the class mix by PSI) and concept drift
(disagreement with the confirmed labels). Pure functions of arrays; the monitor windows the store and calls them.

Thresholds are the brief's (section 4.5): PSI > 0.25 an alert (retrain), 0.10-0.25 a warning; a flag rate more
than 2 standard deviations from the reference; disagreement with confirmed labels above 20%.

Concept drift also needs the disagreement to exceed what the calibrated model itself expects on the same cases
(the sum of ``1 - p(primary class)``) by :data:`CONCEPT_MARGIN` and by :data:`CONCEPT_Z` standard deviations: a
model below 80% seven-class accuracy disagrees with more than 20% of the labels from its first day, and an alert
that is always on tells the operator nothing new. What it does flag is a change of P(label | image), which is
what concept drift is: the probabilities no longer mean what they meant on validation. The margin because the
confirmed cases are not a random sample (biopsies go to the doubtful lesions, where one temperature calibrates
less well) and a 30-day window holds thousands of them: on steady simulated traffic the disagreement ran 2-4
points above the expectation, which z alone would call drift.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from dermascan.monitoring.reference import FeatureReference, bin_counts

PSI_WARNING = 0.10
PSI_ALERT = 0.25
FLAG_RATE_SDS = 2.0
MAX_DISAGREEMENT = 0.20
CONCEPT_Z = 2.0
CONCEPT_MARGIN = 0.05
#: Shares of empty bins are floored at this before the log (PSI is infinite otherwise), on both sides.
PSI_FLOOR = 1e-4
#: A PSI alert also needs its chance under no drift (:func:`psi_chance`) below this.
PSI_CHANCE = 1e-4


def psi(expected: ArrayLike, actual: ArrayLike, floor: float = PSI_FLOOR) -> float:
    """Population Stability Index ``sum_i (a_i - e_i) ln(a_i / e_i)`` of two distributions over the same bins.

    Args:
        expected: reference shares (or counts) per bin.
        actual: observed shares (or counts) per bin; both are normalised to sum to 1.
        floor: shares below it are raised to it (an empty bin would make the index infinite).

    Raises:
        ValueError: different numbers of bins, a negative value, or an empty distribution.
    """
    e, a = np.asarray(expected, np.float64), np.asarray(actual, np.float64)
    if e.shape != a.shape or e.ndim != 1:
        raise ValueError(f"PSI needs two 1-D distributions over the same bins, got shapes {e.shape} and {a.shape}")
    if (e < 0).any() or (a < 0).any() or e.sum() <= 0 or a.sum() <= 0:
        raise ValueError("PSI needs non-negative shares that do not sum to zero")
    e, a = np.maximum(e / e.sum(), floor), np.maximum(a / a.sum(), floor)
    return float(np.sum((a - e) * np.log(a / e)))


def psi_level(value: float, chance: float = 0.0) -> str:
    """``ok`` / ``warning`` (0.10-0.25) / ``alert`` (> 0.25, and ``chance`` below :data:`PSI_CHANCE`: a PSI
    above 0.25 that a window this small often shows by chance is a warning); ``none`` for NaN (no data)."""
    if math.isnan(value):
        return "none"
    if value > PSI_ALERT:
        return "alert" if not chance >= PSI_CHANCE else "warning"
    return "warning" if value >= PSI_WARNING else "ok"


def feature_psi(reference: FeatureReference, values: ArrayLike) -> float:
    """PSI of a window's values of one feature in the reference's quantile bins; NaN without finite values."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan
    return psi(reference.expected, bin_counts(v, reference.edges))


def psi_chance(expected: ArrayLike, counts: ArrayLike, n_reference: int) -> float:
    """The chance of a shift at least this large between two samples of one distribution (p-value): the
    Pearson statistic of the window's ``counts`` against the reference shares ``expected``, at the effective
    sample size, ``n m / (n + m) * sum_i (a_i - e_i)^2 / e_i ~ chi2(bins - 1)``.

    The brief's 0.25 rule assumes large windows: on 60 images in 4 bins, PSI > 0.25 happens by chance in about
    one test in 1,500, and a monitor runs one test per feature, clinic and window. The monitor alerts when PSI
    exceeds 0.25 *and* this chance is below :data:`PSI_CHANCE` (a real shift, a new dermoscope, gives PSI of 1-3
    and a chance of 1e-20).

    For close distributions PSI itself is that sum, but not for an empty bin: PSI floors its share at
    :data:`PSI_FLOOR`, and one of ten bins empty in 60 images (one feature-window in 50 under no drift) gives PSI
    0.7, which the chi-square tail of ``PSI * n m / (n + m)`` called a 1-in-500,000 event. The Pearson sum counts
    that bin as what it is, 6 images short of 6.
    """
    from scipy import stats

    e, c = np.asarray(expected, np.float64), np.asarray(counts, np.float64)
    n = float(c.sum())
    if n < 1 or n_reference < 1 or e.size < 2 or e.shape != c.shape:
        return math.nan
    e = np.maximum(e / e.sum(), PSI_FLOOR)
    effective = n * n_reference / (n + n_reference)
    statistic = effective * float(np.sum((c / n - e) ** 2 / e))
    return float(stats.chi2.sf(statistic, e.size - 1))


def out_of_range_share(reference: FeatureReference, values: ArrayLike) -> float:
    """Share of a window's values outside the training 0.5-99.5 percentile range (the per-image quality flag)."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    return float(np.mean((v < reference.low) | (v > reference.high))) if v.size else math.nan


@dataclass(frozen=True)
class RateDrift:
    """The melanoma-flag rate of a window against the reference.

    Attributes:
        rate: the window's flag rate.
        reference: the reference flag rate (held-out images).
        n: predictions in the window.
        sd: standard deviation of the difference (see :func:`flag_rate_sd`).
        z: ``(rate - reference) / sd``.
        alert: ``|z| > 2``.
        design_effect: the window's (1: independent images).
    """

    rate: float
    reference: float
    n: int
    sd: float
    z: float
    alert: bool
    design_effect: float = 1.0


def flag_rate_sd(reference: float, n: int, n_reference: int | None = None, design_effect: float = 1.0) -> float:
    """Standard deviation of a window's flag rate under the reference rate ``p``: ``sqrt(deff p (1 - p) / n)``, the
    binomial SD at the window's own size, widened by the window's design effect ``deff`` (see
    :func:`design_effect`: several images of one lesion are one case, not several).

    With ``n_reference`` the reference's own sampling variance ``p (1 - p) / n_reference`` is added (the SD of
    the difference of two independent rates): a reference measured on a few hundred held-out images is
    itself uncertain, and ignoring that raises false alarms on every window. ``p`` is kept inside
    ``[0.5 / n_reference, 1 - 0.5 / n_reference]`` so a reference that flagged nothing still has a spread.
    """
    if n < 1:
        raise ValueError(f"a flag rate needs a window of at least 1 prediction, got n={n}")
    if design_effect < 1:
        raise ValueError(f"a design effect is at least 1, got {design_effect}")
    p = float(reference)
    if n_reference:
        p = min(max(p, 0.5 / n_reference), 1 - 0.5 / n_reference)
    var = design_effect * p * (1 - p) / n + (p * (1 - p) / n_reference if n_reference else 0.0)
    return math.sqrt(var)


def design_effect(clusters: ArrayLike) -> float:
    """``sum(m_c^2) / sum(m_c)`` over the window's clusters (``m_c`` images of lesion ``c``): the factor a clustered
    sample's variance exceeds an independent one's when the images of a lesion share their answer (as they
    nearly do: same lesion, same flag). Images without a lesion id (``None``/NaN) are their own cluster. 1 when
    every lesion has one image.

    Measured on the steady simulation (lesions of 1-3 images, 100 images a day): the daily flag rates varied
    1.7x the binomial variance, and the design effect was 1.6.
    """
    labels = list(np.asarray(clusters, object))
    if not labels:
        return 1.0
    counts = Counter(c for c in labels if not _missing(c))
    singles = len(labels) - sum(counts.values())
    return float((sum(m * m for m in counts.values()) + singles) / len(labels))


def _missing(label: object) -> bool:
    return label is None or (isinstance(label, float) and math.isnan(label))


def flag_rate_drift(
    flags: ArrayLike,
    reference: float,
    n_reference: int | None = None,
    sds: float = FLAG_RATE_SDS,
    clusters: ArrayLike | None = None,
) -> RateDrift:
    """The window's flag rate against the reference rate (alert beyond ``sds`` standard deviations).

    ``clusters``: the lesion of each prediction (see :func:`design_effect`); ``None``: every image independent.
    """
    f = np.asarray(flags, bool)
    n = int(f.size)
    rate = float(f.mean())
    deff = design_effect(clusters) if clusters is not None else 1.0
    sd = flag_rate_sd(reference, n, n_reference, deff)
    z = (rate - reference) / sd if sd > 0 else (0.0 if rate == reference else math.inf)
    return RateDrift(rate, float(reference), n, sd, float(z), bool(abs(z) > sds), deff)


def class_mix_psi(reference_mix: dict[str, float], primary: ArrayLike) -> float:
    """PSI of the window's predicted class mix against the reference's, over the reference's classes."""
    classes = list(reference_mix)
    p = np.asarray(primary)
    counts = np.array([(p == c).sum() for c in classes], np.float64)
    return psi([reference_mix[c] for c in classes], counts) if counts.sum() else math.nan


def disagreement_rate(predicted: ArrayLike, confirmed: ArrayLike) -> float:
    """Share of confirmed cases whose label differs from the model's primary class (NaN without any).

    ``confirmed`` holds outcome codes: a class code, or ``OTHER`` (a diagnosis outside the seven classes, which
    disagrees with every prediction but a non-melanoma one is counted as agreeing: for screening, "other" means
    "not melanoma", and the model cannot name it).
    """
    pred, conf = np.asarray(predicted), np.asarray(confirmed)
    if conf.size == 0:
        return math.nan
    other = conf == "OTHER"
    disagree = np.where(other, pred == "MEL", pred != conf)
    return float(disagree.mean())


@dataclass(frozen=True)
class ConceptDrift:
    """Disagreement with the confirmed labels against what the model expects on the same cases.

    Attributes:
        disagreement: share of the confirmed cases whose label differs from the primary class (NaN: none).
        expected: the share the calibrated model expects on its seven-class cases (``1 - p(primary)``).
        z: (disagreements - expected disagreements) / their standard deviation, on the seven-class cases.
        alert: ``disagreement > max_disagreement``, ``disagreement - expected > margin`` and ``z > z_alert``.
    """

    disagreement: float
    expected: float
    z: float
    alert: bool


def concept_drift(
    predicted: ArrayLike,
    confirmed: ArrayLike,
    confidence: ArrayLike,
    max_disagreement: float = MAX_DISAGREEMENT,
    z_alert: float = CONCEPT_Z,
    margin: float = CONCEPT_MARGIN,
) -> ConceptDrift:
    """Concept drift of confirmed cases (see the module docstring).

    Args:
        predicted: the model's primary class codes, (N,).
        confirmed: outcome codes (a class code or ``OTHER``), (N,).
        confidence: the calibrated probability of each primary class, (N,).
        max_disagreement: the brief's bar (20%).
        z_alert: standard deviations above the expected disagreement.
        margin: the least excess over the expected disagreement that alerts.
    """
    pred, conf = np.asarray(predicted), np.asarray(confirmed)
    p_wrong = 1.0 - np.asarray(confidence, np.float64)  # (N,) P(label != primary) if calibrated
    observed = disagreement_rate(pred, conf)
    if conf.size == 0:
        return ConceptDrift(math.nan, math.nan, math.nan, False)
    # OTHER (a diagnosis outside the seven classes) has no calibrated expectation: the test leaves it out
    seven = conf != "OTHER"
    k = float((pred[seven] != conf[seven]).sum())
    mean = float(p_wrong[seven].sum())
    sd = math.sqrt(float((p_wrong[seven] * (1.0 - p_wrong[seven])).sum()))
    z = (k - mean) / sd if sd > 0 else (math.inf if k > mean else 0.0)
    expected = mean / int(seven.sum()) if seven.any() else math.nan
    alert = observed > max_disagreement and observed - expected > margin and z > z_alert
    return ConceptDrift(observed, expected, z, bool(alert))


__all__ = [
    "CONCEPT_MARGIN",
    "CONCEPT_Z",
    "FLAG_RATE_SDS",
    "MAX_DISAGREEMENT",
    "PSI_ALERT",
    "PSI_CHANCE",
    "PSI_WARNING",
    "ConceptDrift",
    "RateDrift",
    "class_mix_psi",
    "concept_drift",
    "design_effect",
    "disagreement_rate",
    "feature_psi",
    "flag_rate_drift",
    "flag_rate_sd",
    "out_of_range_share",
    "psi",
    "psi_chance",
    "psi_level",
]
