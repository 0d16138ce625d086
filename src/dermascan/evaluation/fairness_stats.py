"""Fairness statistics: the groups of each audited attribute, each group's melanoma detection with its
intervals, the gap to the best group, and whether a group detects melanoma significantly worse than the others.

Significance, corrected for the number of groups: each judged group's (melanomas found, missed) is tested
against all other recorded melanomas of the attribute together (two-sided Fisher exact test), and the
p-values of one attribute are Holm-corrected across the judged groups. So with equal true sensitivity in
every group, the chance that *any* group of an attribute is called significant stays at most
``1 - confidence`` (a test simulates it), however many groups (15 body sites) there are. Testing against
the best group instead would not hold that: the best group is picked as the maximum.

The per-group rates come from :func:`dermascan.evaluation.intervals.group_rates`; the report that words and
draws these figures is :mod:`dermascan.evaluation.fairness_report`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

from dermascan.evaluation.bootstrap import bootstrap_ci
from dermascan.evaluation.intervals import Estimate, group_rates
from dermascan.evaluation.metrics import roc_auc_score
from dermascan.taxonomy import CLASSES, MELANOMA_INDEX

__all__ = [
    "AGE_GROUPS",
    "ATTRIBUTES",
    "FITZPATRICK_GROUPS",
    "LABELS",
    "SIGNIFICANCE",
    "attribute_groups",
    "audit_attribute",
    "audit_frame",
    "display",
    "fisher_vs_rest",
    "group_order",
    "holm_adjust",
    "melanoma_arrays",
    "present_attributes",
    "significance_vs_rest",
]

#: Attributes audited when the metadata has them, in report order.
ATTRIBUTES: tuple[str, ...] = ("fitzpatrick", "age", "sex", "localization")
FITZPATRICK_GROUPS: tuple[str, ...] = ("I", "II", "III", "IV", "V", "VI")
#: Age groups: lower edges 30, 45, 60, 75 (years); each group includes its lower edge.
AGE_EDGES: tuple[float, ...] = (30.0, 45.0, 60.0, 75.0)
AGE_GROUPS: tuple[str, ...] = ("<30", "30-44", "45-59", "60-74", "75+")
LABELS: dict[str, str] = {
    "fitzpatrick": "skin type (Fitzpatrick)", "age": "age group", "sex": "sex", "localization": "body site",
}  # fmt: skip
SIGNIFICANCE = (
    "two-sided Fisher exact test of each judged group's (melanomas found, missed) against all other recorded "
    "melanomas of the attribute together, p-values Holm-corrected across the attribute's judged groups; "
    "significant when the corrected p < 1 - confidence and the group finds fewer melanomas than the rest"
)
# Relative tolerance under which two tables are equally likely (scipy.stats.fisher_exact's rule).
_FISHER_RTOL = 1e-14
# Values that mean "not recorded" in HAM10000-style metadata.
_UNKNOWN = frozenset({"", "unknown", "nan", "none", "na", "n/a"})


# --------------------------------------------------------------------------------------------------------
# Groups
# --------------------------------------------------------------------------------------------------------


def _fitzpatrick_label(value: Any) -> str | None:
    if pd.isna(value):
        return None
    text = str(value).strip()
    if text.lower() in _UNKNOWN:
        return None
    if text.upper() in FITZPATRICK_GROUPS:
        return text.upper()
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if number != round(number) or not 1 <= number <= 6:
        raise ValueError(f"fitzpatrick must be a skin type 1-6 (or I-VI), got {value!r}")
    return FITZPATRICK_GROUPS[int(number) - 1]


def _age_label(value: Any) -> str | None:
    age = pd.to_numeric(value, errors="coerce")
    if pd.isna(age):
        return None
    if age < 0:
        raise ValueError(f"age must be non-negative (years), got {value!r}")
    return AGE_GROUPS[int(np.searchsorted(AGE_EDGES, float(age), side="right"))]


def _text_label(value: Any) -> str | None:
    if pd.isna(value):
        return None
    text = str(value).strip().lower()
    return None if text in _UNKNOWN else text


def attribute_groups(predictions: pd.DataFrame, attribute: str) -> pd.Series:
    """The group of each row for ``attribute`` (``None`` when not recorded).

    Fitzpatrick types become roman numerals I-VI, ages the groups of :data:`AGE_GROUPS`; sex and body site
    are lower-cased, with ``"unknown"`` treated as not recorded.

    Raises:
        ValueError: ``attribute`` is not a column, or a Fitzpatrick type / age is out of range.
    """
    if attribute not in predictions.columns:
        raise ValueError(f"no {attribute!r} column in the predictions; columns are {list(predictions.columns)}")
    convert = {"fitzpatrick": _fitzpatrick_label, "age": _age_label}.get(attribute, _text_label)
    # Built from a list so "not recorded" stays None (Series.map would turn it into NaN).
    return pd.Series([convert(v) for v in predictions[attribute]], index=predictions.index, dtype=object)


def group_order(attribute: str, groups: pd.Series) -> list[str]:
    present = {g for g in groups if pd.notna(g)}
    fixed = {"fitzpatrick": FITZPATRICK_GROUPS, "age": AGE_GROUPS}.get(attribute)
    if fixed is not None:
        return [g for g in fixed if g in present]
    return sorted(present)


def display(attribute: str, group: str) -> str:
    if attribute == "fitzpatrick":
        return f"skin type {group}"
    if attribute == "age":
        return f"age {group}"
    if attribute == "localization":
        return f"body site '{group}'"
    return group


def present_attributes(frame: pd.DataFrame, attributes: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(audited, missing)``: which of ``attributes`` the frame records for at least one row."""
    have, missing = [], []
    for a in attributes:
        ok = a in frame.columns and attribute_groups(frame, a).notna().any()
        (have if ok else missing).append(a)
    return have, missing


def melanoma_arrays(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``(y_mel, p_mel)``: 1 for a true melanoma, and p(MEL), of each row of a checked predictions frame."""
    y_mel = (frame["label"].to_numpy() == MELANOMA_INDEX).astype(np.int64)
    p_mel = frame[CLASSES[MELANOMA_INDEX]].to_numpy(dtype=np.float64)
    return y_mel, p_mel


# --------------------------------------------------------------------------------------------------------
# Significance against the rest, corrected for the number of groups
# --------------------------------------------------------------------------------------------------------


def fisher_vs_rest(found: ArrayLike, melanomas: ArrayLike, found_total: ArrayLike, melanomas_total: ArrayLike
                   ) -> np.ndarray:  # fmt: skip
    """Two-sided Fisher exact p-value of each group's (found, missed) against the rest's, over the last axis.

    The same test as :func:`scipy.stats.fisher_exact` (the p-value sums the hypergeometric probabilities of
    every table no more likely than the observed one), evaluated on SciPy's hypergeometric pmf for whole
    arrays of tables at once: ``fisher_exact`` takes one table per call, and the false-alarm simulation of
    the audit tests thousands.

    Args:
        found: melanomas found in each group, shape (..., G).
        melanomas: melanomas in each group, shape (..., G).
        found_total: melanomas found in all groups together, broadcastable to (..., G).
        melanomas_total: melanomas in all groups together, broadcastable to (..., G).

    Returns:
        p-values, shape (..., G).
    """
    a = np.asarray(found, dtype=np.int64)
    n_group = np.broadcast_to(np.asarray(melanomas, dtype=np.int64), a.shape)
    n_found = np.broadcast_to(np.asarray(found_total, dtype=np.int64), a.shape)
    total = np.broadcast_to(np.asarray(melanomas_total, dtype=np.int64), a.shape)
    # Tables with the margins fixed: the group's found count x follows Hypergeom(total, n_group, n_found).
    x = np.arange(int(n_group.max(initial=0)) + 1)  # (S,) every count a group can have found
    pmf = stats.hypergeom.pmf(x, total[..., None], n_group[..., None], n_found[..., None])  # (..., G, S)
    observed = stats.hypergeom.pmf(a, total, n_group, n_found)[..., None]  # (..., G, 1)
    p = np.where(pmf <= observed * (1.0 + _FISHER_RTOL), pmf, 0.0).sum(axis=-1)
    return np.minimum(p, 1.0)


def holm_adjust(p_values: ArrayLike) -> np.ndarray:
    """Holm's step-down adjustment over the last axis; NaN entries (untested groups) are left out and stay NaN.

    The adjusted p-values control the family-wise error rate: rejecting where adjusted ``p < alpha`` calls
    any true null significant with probability at most ``alpha``, under any dependence between the tests.
    """
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p, axis=-1, kind="stable")  # NaN sorts last
    ranked = np.take_along_axis(p, order, axis=-1)
    m = np.isfinite(p).sum(axis=-1, keepdims=True)  # tests in each family
    factors = m - np.arange(p.shape[-1])  # m, m - 1, ... for the smallest, next smallest, ...
    adjusted = np.maximum.accumulate(np.minimum(1.0, ranked * factors), axis=-1)
    out = np.empty_like(adjusted)
    np.put_along_axis(out, order, adjusted, axis=-1)
    return out


def significance_vs_rest(
    found: ArrayLike, melanomas: ArrayLike, found_total: ArrayLike, melanomas_total: ArrayLike, alpha: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which groups find significantly fewer melanomas than the rest, Holm-corrected across the groups.

    Arrays as in :func:`fisher_vs_rest` (the last axis holds one attribute's judged groups; leading axes,
    e.g. simulated audits, are independent families). A group is untested (NaN) when the rest has no melanoma.

    Returns:
        ``(p, p_adjusted, significant)``, each (..., G): Fisher p against the rest, Holm-adjusted p, and
        ``p_adjusted < alpha`` with the group's sensitivity below the rest's.
    """
    a = np.asarray(found, dtype=np.int64)
    n = np.asarray(melanomas, dtype=np.int64)
    rest_found = np.asarray(found_total, dtype=np.int64) - a
    rest = np.asarray(melanomas_total, dtype=np.int64) - n
    p = np.where(rest > 0, fisher_vs_rest(a, n, found_total, melanomas_total), np.nan)
    adjusted = holm_adjust(p)
    below = a * rest < rest_found * n  # found / n < rest_found / rest, without dividing by zero
    return p, adjusted, (adjusted < alpha) & below


# --------------------------------------------------------------------------------------------------------
# Per-group figures, gaps and significance of one attribute
# --------------------------------------------------------------------------------------------------------


def audit_attribute(
    y_mel: np.ndarray,
    p_mel: np.ndarray,
    called: np.ndarray,
    groups: pd.Series,
    order: Sequence[str],
    *,
    min_group_size: int,
    min_melanomas: int,
    gap_points: float,
    confidence: float,
    auroc: bool = True,
    n_boot: int = 300,
    seed: int = 0,
) -> dict[str, Any]:
    """Figures, gaps, flags and significance of each group of one attribute."""
    labels = groups.to_numpy(dtype=object)
    rates = group_rates(y_mel, called.astype(np.int64), labels, order, confidence)
    table: dict[str, dict[str, Any]] = {}
    for name in order:
        r = rates[name]
        g: dict[str, Any] = {"n": r.n_pos + r.n_neg, "n_melanoma": r.n_pos, "counts": r.counts._asdict(),
                             "sensitivity": r.sensitivity, "specificity": r.specificity}  # fmt: skip
        if auroc:
            rows = labels == name
            g["auroc"] = (
                bootstrap_ci(roc_auc_score, y_mel[rows], p_mel[rows], n_boot=n_boot, confidence=confidence, seed=seed)
                if 0 < r.n_pos < g["n"]
                else Estimate(math.nan, math.nan, math.nan, 0)  # undefined with one class: the group is too small
            )
        g["status"] = "ok" if g["n"] >= min_group_size and r.n_pos >= min_melanomas else "too_small"
        table[name] = g
    judged = [g for g in order if table[g]["status"] == "ok"]
    best = max(judged, key=lambda g: (table[g]["sensitivity"].value, table[g]["n_melanoma"]), default=None)
    found_total = sum(table[g]["counts"]["tp"] for g in order)
    melanomas_total = sum(table[g]["n_melanoma"] for g in order)
    p, adjusted, significant = significance_vs_rest(
        [table[g]["counts"]["tp"] for g in judged], [table[g]["n_melanoma"] for g in judged], found_total,
        melanomas_total, 1.0 - confidence,
    )  # fmt: skip
    tested = dict(zip(judged, zip(p, adjusted, significant, strict=True), strict=True))
    for name, g in table.items():
        g["gap_points"] = g["p_value"] = g["p_adjusted"] = g["rest_sensitivity"] = None
        g["flag"] = g["significant"] = False
        if best is None or g["status"] != "ok":
            continue
        g["gap_points"] = 100.0 * (table[best]["sensitivity"].value - g["sensitivity"].value)
        # Rounded so float noise (65% - 60% = 5.000000000000004) does not flag a gap of exactly gap_points.
        g["flag"] = bool(round(g["gap_points"], 9) > gap_points)
        rest = melanomas_total - g["n_melanoma"]
        if rest:
            g["rest_sensitivity"] = (found_total - g["counts"]["tp"]) / rest
            g["p_value"], g["p_adjusted"] = float(tested[name][0]), float(tested[name][1])
            g["significant"] = bool(tested[name][2])
    gaps = [table[g]["gap_points"] for g in judged]
    return {
        "n_unknown": int(np.sum(pd.isna(labels))),
        "best_group": best,
        "max_gap_points": max(gaps) if len(gaps) >= 2 else None,
        "n_tested": int(np.isfinite(p).sum()),
        "flagged": [g for g in order if table[g]["flag"]],
        "groups": table,
    }


def audit_frame(
    frame: pd.DataFrame, called: np.ndarray, attributes: Sequence[str], **kw: Any
) -> dict[str, dict[str, Any]]:
    """:func:`audit_attribute` of each of ``attributes`` of a checked predictions frame."""
    y_mel, p_mel = melanoma_arrays(frame)
    out = {}
    for attribute in attributes:
        groups = attribute_groups(frame, attribute)
        audit = audit_attribute(y_mel, p_mel, called, groups, group_order(attribute, groups), **kw)
        out[attribute] = {"label": LABELS.get(attribute, attribute), **audit}
    return out
