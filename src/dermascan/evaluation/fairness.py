"""Fairness audit (brief section 3.9): melanoma detection by skin type, age group, sex and body site, the
gaps between groups, and a measured mitigation (per-group thresholds).

Input: the evaluation's ``predictions`` frame (see :mod:`dermascan.evaluation.errors`), with whichever of
``fitzpatrick`` (1-6, shown I-VI), ``age``, ``sex`` and ``localization`` the dataset records. HAM10000
has no Fitzpatrick type: the audit says so (``missing_attributes`` and the summary) and audits the rest.
Rows without a value for an attribute (``NaN``, ``"unknown"``) are left out of that attribute's groups and
counted in ``n_unknown``. Every figure comes from :mod:`dermascan.evaluation.metrics`.

Definitions:

* A case is called melanoma when ``p(MEL) >= threshold`` (the rule of
  :func:`~dermascan.decision.decide`); with per-group thresholds, its group's threshold.
* Per group: melanoma **sensitivity** and **specificity** with Wilson intervals, **AUROC** of p(MEL) with a
  stratified bootstrap interval (``n_boot`` resamples).
* A group is ``"too_small"`` ("too small to judge") when it has fewer than ``min_group_size`` images or
  fewer than ``min_melanomas`` melanomas; its figures are shown, but it is never the best group, never
  flagged and never called significant.
* The **best group** is the judged group with the highest sensitivity (ties: more melanomas). A group's
  **gap** is ``(best sensitivity - its sensitivity) * 100`` percentage points; it is **flagged** when the
  gap exceeds ``gap_points`` (5 by default, the brief's "concerning" level).
* **Significant** means a two-sided Fisher exact test on the 2x2 table (found, missed) x (group, best group)
  gives ``p < 1 - confidence``. Fisher's test is exact at the small counts subgroups have, where a z-test's
  normal approximation fails. Caveat: the best group is picked as the maximum and several groups are
  tested, so an isolated ``p`` just under 0.05 may be chance.
* **Mitigation**: per-group thresholds, each chosen on a calibration set (the validation split) with
  :func:`~dermascan.evaluation.operating_point.choose_threshold` to reach ``target_sensitivity`` in that
  group; groups with fewer than ``min_melanomas`` melanomas there keep the global threshold. Measured on
  the audited (test) frame: the largest gap before and after, and the specificity it costs. Using it in
  practice needs the attribute (e.g. skin type) recorded for every patient.

``fairness.json`` (NaN written as ``null``)::

    {"threshold": 0.3, "n": 1500, "n_melanoma": 170, "confidence": 0.95,
     "settings": {"min_group_size": 20, "min_melanomas": 10, "gap_points": 5.0, "n_boot": 300,
                  "significance": "two-sided Fisher exact test ...", "target_sensitivity": 0.9},
     "overall": {"sensitivity": {value, lo, hi, n}, "specificity": {...}, "auroc": {...}},
     "attributes": {
        "fitzpatrick": {"label": "skin type (Fitzpatrick)", "n_unknown": 0, "best_group": "I",
                        "max_gap_points": 31.0, "flagged": ["V", "VI"],
                        "groups": {"I": {"n": 300, "n_melanoma": 40, "sensitivity": {value, lo, hi, n},
                                         "specificity": {...}, "auroc": {...}, "gap_points": 0.0,
                                         "flag": false, "significant": false, "p_value": null,
                                         "status": "ok" | "too_small"}, ...}},
        "age": {...}, "sex": {...}, "localization": {...}},
     "missing_attributes": ["fitzpatrick"],
     "notes": ["Fitzpatrick skin type is not recorded ..."],
     "mitigation": {"status": "done" | "skipped", "reason": ..., "target_sensitivity": 0.9,
        "attributes": {"fitzpatrick": {"thresholds": {"I": 0.31, ...}, "default_threshold": 0.3,
                       "groups_using_default": ["VI"],
                       "before": {"max_gap_points": 31.0, "flagged": ["V"], "overall": {sensitivity, specificity}},
                       "after": {"max_gap_points": 4.0, "flagged": [], "overall": {...},
                                 "groups": {"I": {"threshold": 0.31, "sensitivity": ..., "specificity": ...,
                                                  "gap_points": ..., "flag": ..., "significant": ...,
                                                  "status": ...}}},
                       "specificity_cost_points": 6.5}}},
     "comparison": {"models": {"this model": {"threshold": 0.3, "attributes": {...}}, "other": {...}}} | null,
     "plots": {"fitzpatrick": "fairness_fitzpatrick.png", ...},
     "summary": ["On 1500 test images ...", ...]}
"""

from __future__ import annotations

import html
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from dermascan import _html, _io
from dermascan.decision import decide
from dermascan.evaluation._json import jsonable as _jsonable
from dermascan.evaluation.errors import check_predictions
from dermascan.evaluation.intervals import bootstrap_ci, wilson_estimate
from dermascan.evaluation.metrics import BinaryCounts, UndefinedMetricWarning, binary_counts, roc_auc_score
from dermascan.evaluation.operating_point import choose_threshold
from dermascan.evaluation.plots import _new_figure, _save
from dermascan.taxonomy import CLASSES, MELANOMA_INDEX

__all__ = [
    "AGE_GROUPS",
    "ATTRIBUTES",
    "FITZPATRICK_GROUPS",
    "apply_group_thresholds",
    "attribute_groups",
    "fairness_audit",
    "group_threshold_array",
    "mitigate_thresholds",
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
    "two-sided Fisher exact test on (melanomas found, missed) x (group, best group); significant when "
    "p < 1 - confidence"
)
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


def _order(attribute: str, groups: pd.Series) -> list[str]:
    present = {g for g in groups if pd.notna(g)}
    fixed = {"fitzpatrick": FITZPATRICK_GROUPS, "age": AGE_GROUPS}.get(attribute)
    if fixed is not None:
        return [g for g in fixed if g in present]
    return sorted(present)


def _display(attribute: str, group: str) -> str:
    if attribute == "fitzpatrick":
        return f"skin type {group}"
    if attribute == "age":
        return f"age {group}"
    if attribute == "localization":
        return f"body site '{group}'"
    return group


# --------------------------------------------------------------------------------------------------------
# Per-group figures and gaps
# --------------------------------------------------------------------------------------------------------


def _counts(y_mel: np.ndarray, called: np.ndarray) -> BinaryCounts:
    return binary_counts(y_mel, called.astype(np.int64)) if len(y_mel) else BinaryCounts(0, 0, 0, 0)


def _group_stats(
    y_mel: np.ndarray,
    p_mel: np.ndarray,
    called: np.ndarray,
    auroc: bool,
    confidence: float,
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    c = _counts(y_mel, called)
    with warnings.catch_warnings():
        # A group without melanoma (or without non-melanoma) is labelled "too_small"; its NaN needs no warning.
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        out: dict[str, Any] = {
            "n": len(y_mel),
            "n_melanoma": c.tp + c.fn,
            "counts": c._asdict(),
            "sensitivity": wilson_estimate(c.tp, c.tp + c.fn, confidence),
            "specificity": wilson_estimate(c.tn, c.tn + c.fp, confidence),
        }
        if auroc:
            out["auroc"] = (
                bootstrap_ci(roc_auc_score, y_mel, p_mel, n_boot=n_boot, confidence=confidence, seed=seed)
                if 0 < c.tp + c.fn < len(y_mel)
                else wilson_estimate(0, 0)  # NaN: undefined with one class
            )
    return out


def _fisher_p(group: BinaryCounts, best: BinaryCounts) -> float:
    return float(stats.fisher_exact([[group.tp, group.fn], [best.tp, best.fn]], alternative="two-sided")[1])


def _audit_attribute(
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
    table: dict[str, dict[str, Any]] = {}
    for name in order:
        rows = labels == name
        stats_ = _group_stats(y_mel[rows], p_mel[rows], called[rows], auroc, confidence, n_boot, seed)
        ok = stats_["n"] >= min_group_size and stats_["n_melanoma"] >= min_melanomas
        stats_["status"] = "ok" if ok else "too_small"
        table[name] = stats_
    judged = [g for g in order if table[g]["status"] == "ok"]
    best = max(judged, key=lambda g: (table[g]["sensitivity"].value, table[g]["n_melanoma"]), default=None)
    alpha = 1.0 - confidence
    for name, g in table.items():
        g["gap_points"] = g["flag"] = g["significant"] = g["p_value"] = None
        if best is None or g["status"] != "ok":
            g["flag"] = g["significant"] = False
            continue
        g["gap_points"] = 100.0 * (table[best]["sensitivity"].value - g["sensitivity"].value)
        # Rounded so float noise (65% - 60% = 5.000000000000004) does not flag a gap of exactly gap_points.
        g["flag"] = bool(round(g["gap_points"], 9) > gap_points)
        if name == best:
            g["significant"] = False
        else:
            counts = BinaryCounts(**g["counts"])
            g["p_value"] = _fisher_p(counts, BinaryCounts(**table[best]["counts"]))
            g["significant"] = bool(g["p_value"] < alpha and g["gap_points"] > 0)
    gaps = [table[g]["gap_points"] for g in judged]
    return {
        "n_unknown": int(np.sum(pd.isna(groups.to_numpy(dtype=object)))),
        "best_group": best,
        "max_gap_points": max(gaps) if len(gaps) >= 2 else None,
        "flagged": [g for g in order if table[g]["flag"]],
        "groups": table,
    }


def _arrays(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    y_mel = (frame["label"].to_numpy() == MELANOMA_INDEX).astype(np.int64)
    p_mel = frame[CLASSES[MELANOMA_INDEX]].to_numpy(dtype=np.float64)
    return y_mel, p_mel


def _audit_frame(
    frame: pd.DataFrame, called: np.ndarray, attributes: Sequence[str], **kw: Any
) -> dict[str, dict[str, Any]]:
    y_mel, p_mel = _arrays(frame)
    out = {}
    for attribute in attributes:
        groups = attribute_groups(frame, attribute)
        audit = _audit_attribute(y_mel, p_mel, called, groups, _order(attribute, groups), **kw)
        out[attribute] = {"label": LABELS.get(attribute, attribute), **audit}
    return out


def _present(frame: pd.DataFrame, attributes: Sequence[str]) -> tuple[list[str], list[str]]:
    have, missing = [], []
    for a in attributes:
        ok = a in frame.columns and attribute_groups(frame, a).notna().any()
        (have if ok else missing).append(a)
    return have, missing


# --------------------------------------------------------------------------------------------------------
# Mitigation: per-group thresholds
# --------------------------------------------------------------------------------------------------------


def mitigate_thresholds(
    calibration_predictions: pd.DataFrame,
    attribute: str,
    target_sensitivity: float = 0.9,
    *,
    min_melanomas: int = 10,
) -> dict[str, float]:
    """Per-group melanoma thresholds, each reaching ``target_sensitivity`` in its group on the calibration set.

    Each threshold is the largest one that finds ``target_sensitivity`` of the group's melanomas
    (:func:`~dermascan.evaluation.operating_point.choose_threshold`), so it costs the least specificity.

    Args:
        calibration_predictions: predictions on the calibration (validation) split, same columns as the
            audited frame; never the test split, or the measured effect is optimistic.
        attribute: the attribute whose groups get their own thresholds (e.g. ``"fitzpatrick"``).
        target_sensitivity: sensitivity each group should reach.
        min_melanomas: groups with fewer melanomas get no threshold of their own (they keep the global
            one in :func:`apply_group_thresholds`): a threshold fitted on a handful of melanomas is noise.

    Returns:
        ``{group: threshold}`` for the groups with enough melanomas.
    """
    frame = check_predictions(calibration_predictions, 0.5, check_pred=False)
    groups = attribute_groups(frame, attribute).to_numpy(dtype=object)
    y_mel, p_mel = _arrays(frame)
    out = {}
    for name in _order(attribute, pd.Series(groups)):
        rows = groups == name
        if int(y_mel[rows].sum()) >= min_melanomas:
            out[name] = choose_threshold(y_mel[rows], p_mel[rows], target_sensitivity).threshold
    return out


def group_threshold_array(
    predictions: pd.DataFrame, attribute: str, group_thresholds: Mapping[str, float], default_threshold: float
) -> np.ndarray:
    """Each row's melanoma threshold: its group's, or ``default_threshold`` (no own threshold, no group)."""
    groups = attribute_groups(predictions, attribute).to_numpy(dtype=object)
    return np.array([group_thresholds.get(g, default_threshold) if pd.notna(g) else default_threshold
                     for g in groups], dtype=np.float64)  # fmt: skip


def apply_group_thresholds(
    predictions: pd.DataFrame, attribute: str, group_thresholds: Mapping[str, float], default_threshold: float
) -> pd.DataFrame:
    """Re-decide every case with its group's threshold.

    Args:
        predictions: the frame to re-decide (e.g. the test split).
        attribute: the attribute the thresholds are keyed by.
        group_thresholds: ``{group: threshold}`` from :func:`mitigate_thresholds`.
        default_threshold: threshold of rows whose group has none (or whose attribute is not recorded).

    Returns:
        A copy with ``threshold`` (each row's) and ``pred`` re-decided by
        :func:`~dermascan.decision.decide` with that threshold.
    """
    out = predictions.copy()
    thresholds = group_threshold_array(out, attribute, group_thresholds, default_threshold)
    probs = out[list(CLASSES)].to_numpy(dtype=np.float64)  # (N, K)
    pred = np.empty(len(out), dtype=np.int64)
    for t in np.unique(thresholds):
        rows = thresholds == t
        pred[rows] = decide(probs[rows], float(t))  # the one decision rule, once per distinct threshold
    out["threshold"] = thresholds
    out["pred"] = pred
    return out


def _overall(y_mel: np.ndarray, called: np.ndarray, confidence: float) -> dict[str, Any]:
    c = _counts(y_mel, called)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        return {"sensitivity": wilson_estimate(c.tp, c.tp + c.fn, confidence),
                "specificity": wilson_estimate(c.tn, c.tn + c.fp, confidence)}  # fmt: skip


def _mitigate(
    frame: pd.DataFrame,
    calibration: pd.DataFrame,
    threshold: float,
    before: dict[str, dict[str, Any]],
    target_sensitivity: float,
    kw: dict[str, Any],
) -> dict[str, Any]:
    y_mel, p_mel = _arrays(frame)
    called_before = p_mel >= threshold
    out = {}
    for attribute, audit in before.items():
        if attribute not in calibration.columns or not attribute_groups(calibration, attribute).notna().any():
            out[attribute] = {"status": "skipped", "reason": f"the calibration set has no {attribute!r} values"}
            continue
        thresholds = mitigate_thresholds(calibration, attribute, target_sensitivity,
                                         min_melanomas=kw["min_melanomas"])  # fmt: skip
        row_t = group_threshold_array(frame, attribute, thresholds, threshold)
        called = p_mel >= row_t
        groups = attribute_groups(frame, attribute)
        after = _audit_attribute(y_mel, p_mel, called, groups, _order(attribute, groups), auroc=False, **kw)
        for name, g in after["groups"].items():
            g["threshold"] = thresholds.get(name, threshold)
            del g["counts"]
        spec_before = _overall(y_mel, called_before, kw["confidence"])
        spec_after = _overall(y_mel, called, kw["confidence"])
        cost = None
        if spec_before["specificity"].n:
            cost = 100.0 * (spec_before["specificity"].value - spec_after["specificity"].value)
        out[attribute] = {
            "status": "done",
            "thresholds": thresholds,
            "default_threshold": threshold,
            "groups_using_default": [g for g in after["groups"] if g not in thresholds],
            "before": {"max_gap_points": audit["max_gap_points"], "flagged": audit["flagged"], "overall": spec_before},
            "after": {"max_gap_points": after["max_gap_points"], "flagged": after["flagged"], "overall": spec_after,
                      "best_group": after["best_group"], "groups": after["groups"]},
            "specificity_cost_points": cost,
        }  # fmt: skip
    return out


# --------------------------------------------------------------------------------------------------------
# Plain-language summary
# --------------------------------------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.0f}%"


def _pct_ci(e: Any) -> str:
    return f"{_pct(e.value)} (95% CI {_pct(e.lo)}-{_pct(e.hi)})"


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def _p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _summary(
    overall: dict[str, Any],
    n: int,
    threshold: float,
    attributes: dict[str, dict[str, Any]],
    missing: list[str],
    mitigation: dict[str, Any],
    comparison: dict[str, Any] | None,
    gap_points: float,
    synthetic: bool,
) -> list[str]:
    s = [
        f"On {n} test images ({overall['sensitivity'].n} melanomas), at the locked melanoma threshold of "
        f"{threshold:.3g}, the model finds {_pct_ci(overall['sensitivity'])} of melanomas and correctly clears "
        f"{_pct_ci(overall['specificity'])} of non-melanoma lesions."
    ]
    if "fitzpatrick" in missing:
        s.append(
            "Skin type (Fitzpatrick) is not recorded in these data, so we cannot tell whether the model detects "
            "melanoma as well on darker skin (types IV-VI); this must be checked on data that records skin type "
            "before the model is used for patients with darker skin."
        )
    other_missing = [LABELS.get(a, a) for a in missing if a != "fitzpatrick"]
    if other_missing:
        s.append(f"Not recorded, so not audited: {', '.join(other_missing)}.")
    too_small: list[str] = []
    for attribute, audit in attributes.items():
        label = audit["label"]
        groups = audit["groups"]
        too_small += [f"{_display(attribute, g)} ({v['n_melanoma']} melanomas)" for g, v in groups.items()
                      if v["status"] == "too_small"]  # fmt: skip
        best = audit["best_group"]
        if best is None:
            s.append(f"By {label}: too few melanomas in every group to judge.")
            continue
        if not audit["flagged"]:
            s.append(
                f"By {label}: no group's melanoma detection is more than {gap_points:g} points below the best "
                f"group ({_display(attribute, best)}, {_pct(groups[best]['sensitivity'].value)})."
            )
            continue
        best_text = f"{_display(attribute, best)} ({_pct(groups[best]['sensitivity'].value)})"
        for name in (g for g in audit["flagged"] if groups[g]["significant"]):
            g = groups[name]
            s.append(
                f"{_upper_first(_display(attribute, name))}: the model finds {_pct_ci(g['sensitivity'])} of "
                f"melanomas, {g['gap_points']:.0f} points below {best_text}; this gap is statistically significant "
                f"(Fisher exact test, {_p_text(g['p_value'])})."
            )
        weak = [g for g in audit["flagged"] if not groups[g]["significant"]]
        if weak:
            # One sentence for the gaps the numbers cannot confirm: a warning, not a list of alarms.
            listed = ", ".join(
                f"{_display(attribute, g)} {_pct(groups[g]['sensitivity'].value)} ({_p_text(groups[g]['p_value'])})"
                for g in weak
            )
            s.append(
                f"By {label}, {len(weak)} group(s) are more than {gap_points:g} points below {best_text}, but these "
                f"gaps are not statistically significant with these numbers, so treat them as a warning: {listed}."
            )
    if too_small:
        s.append(f"Too few cases to judge: {', '.join(too_small)}.")

    if mitigation["status"] == "skipped":
        s.append(f"Mitigation not measured: {mitigation['reason']}")
    else:
        target = _pct(mitigation["target_sensitivity"])
        for attribute, m in mitigation["attributes"].items():
            if m["status"] != "done" or not m["before"]["flagged"]:
                continue
            before, after = m["before"]["max_gap_points"], m["after"]["max_gap_points"]
            spec_b, spec_a = m["before"]["overall"]["specificity"], m["after"]["overall"]["specificity"]
            s.append(
                f"Mitigation for {LABELS.get(attribute, attribute)}: a separate threshold per group, chosen on the "
                f"validation set to find {target} of melanomas in each group, changed the largest detection gap "
                f"on the test set from {before:.0f} to "
                + ("an unmeasurable gap" if after is None else f"{after:.0f} points")
                + f"; overall specificity went from {_pct(spec_b.value)} to {_pct(spec_a.value)}"
                + (f" ({m['specificity_cost_points']:.1f} points more false alarms among non-melanomas)."
                   if m["specificity_cost_points"] is not None and m["specificity_cost_points"] > 0 else ".")
                + (" Groups too small to fit their own threshold kept the global one: "
                   + ", ".join(_display(attribute, g) for g in m["groups_using_default"]) + "."
                   if m["groups_using_default"] else "")
            )  # fmt: skip
        if not any(m["status"] == "done" and m["before"]["flagged"] for m in mitigation["attributes"].values()):
            s.append(
                f"No gap above {gap_points:g} points, so no mitigation is needed; per-group thresholds were still "
                f"measured (see the mitigation table)."
            )
        s.append(
            "Per-group thresholds require the group (e.g. skin type) to be recorded for every patient when the "
            "model is used, and they trade specificity (more referrals) for equal detection."
        )
    if comparison is not None:
        for attribute in attributes:
            parts = []
            for name, model in comparison["models"].items():
                gap = model["attributes"].get(attribute, {}).get("max_gap_points")
                parts.append(f"{name} {'n/a' if gap is None else f'{gap:.0f} points'}")
            s.append(f"Largest {LABELS.get(attribute, attribute)} gap by model: {', '.join(parts)}.")
    s.append(
        "Caveats: several groups are compared at once, so an isolated significant result may be chance; small "
        "groups have wide intervals; a gap shows where the model underperforms, not why (the case mix, e.g. "
        "earlier or thinner melanomas, can differ between groups)."
    )
    if synthetic:
        s.append(
            "These figures come from synthetic images: they check that the audit works, not how the model "
            "would behave on real patients."
        )
    return s


# --------------------------------------------------------------------------------------------------------
# Plots and HTML
# --------------------------------------------------------------------------------------------------------


def _plot_attribute(
    attribute: str, audit: dict[str, Any], after: dict[str, Any] | None, gap_points: float, path: Path
) -> Path:
    """Sensitivity and specificity by group with their intervals; after-mitigation points beside them."""
    names = list(audit["groups"])
    x = np.arange(len(names))
    fig = _new_figure(max(4.0, 1.0 + 0.7 * len(names)) * 2, 3.6)
    fig.suptitle(f"Melanoma detection by {LABELS.get(attribute, attribute)}")
    axes = fig.subplots(1, 2)
    for ax, metric in zip(axes, ("sensitivity", "specificity"), strict=True):
        labelled: set[str] = set()  # one legend entry per series, whichever group is drawn first

        def once(text: str, labelled: set[str] = labelled) -> str | None:
            if text in labelled:
                return None
            labelled.add(text)
            return text

        for i, name in enumerate(names):
            g = audit["groups"][name]
            e = g[metric]
            if math.isnan(e.value):
                continue
            color = "0.6" if g["status"] == "too_small" else ("C3" if g["flag"] and metric == "sensitivity" else "C0")
            ax.errorbar(i - 0.1, e.value, yerr=[[e.value - e.lo], [e.hi - e.value]], fmt="o", color=color,
                        capsize=3, label=once("at the global threshold"))  # fmt: skip
            if after is not None:
                a = after["groups"][name][metric]
                if not math.isnan(a.value):
                    ax.errorbar(i + 0.1, a.value, yerr=[[a.value - a.lo], [a.hi - a.value]], fmt="s", color="C2",
                                capsize=3, label=once("per-group thresholds"))  # fmt: skip
        if metric == "sensitivity" and audit["best_group"] is not None:
            best = audit["groups"][audit["best_group"]]["sensitivity"].value
            ax.axhline(best - gap_points / 100.0, color="C3", ls="--", lw=1, label=f"best - {gap_points:g} points")
        tilt = len(names) > 6  # long lists (body sites) need slanted labels
        ax.set_xticks(x, names, rotation=30 if tilt else 0, ha="right" if tilt else "center")
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} (grey: too small to judge; red: flagged)" if metric == "sensitivity" else metric,
                     fontsize=8)  # fmt: skip
        ax.legend(fontsize=7, loc="lower left")
    return _save(fig, path)


def _est(d: dict[str, Any] | None) -> str:
    if d is None or d.get("value") is None:
        return "—"
    return f"{d['value']:.3f} ({d['lo']:.3f}-{d['hi']:.3f})"


def _status(g: dict[str, Any]) -> str:
    if g["status"] == "too_small":
        return "too small to judge"
    if g["flag"]:
        return "FLAGGED, significant" if g["significant"] else "flagged, not significant"
    return "ok"


def _write_html(result: dict[str, Any], path: Path) -> None:
    items = "".join(f"<li>{html.escape(s)}</li>" for s in result["summary"])
    sections = [_html.Section("Summary", f'<div class="note"><ul>{items}</ul></div>')]
    if result["notes"]:
        sections.append(_html.Section("Not audited", "".join(_html.paragraph(n, "flag") for n in result["notes"])))
    for attribute, audit in result["attributes"].items():
        rows = [
            [g, v["n"], v["n_melanoma"], _est(v["sensitivity"]), _est(v["specificity"]), _est(v["auroc"]),
             v["gap_points"], "" if v["p_value"] is None else f"{v['p_value']:.4f}", _status(v)]
            for g, v in audit["groups"].items()
        ]  # fmt: skip
        body = _html.paragraph(
            f"Best group: {audit['best_group'] or 'none judged'}; rows without a value: {audit['n_unknown']}."
        )
        body += _html.table(["group", "images", "melanomas", "sensitivity", "specificity", "AUROC",
                             "gap (points)", "Fisher p", "status"], rows)  # fmt: skip
        if attribute in result["plots"]:
            body += _html.image(result["plots"][attribute], f"detection by {audit['label']}")
        sections.append(_html.Section(f"By {audit['label']}", body))

    mitigation = result["mitigation"]
    if mitigation["status"] == "skipped":
        sections.append(_html.Section("Mitigation: per-group thresholds", _html.paragraph(mitigation["reason"])))
    else:
        rows = []
        for attribute, m in mitigation["attributes"].items():
            if m["status"] != "done":
                rows.append([LABELS.get(attribute, attribute), m["reason"], "", "", "", "", ""])
                continue
            for g, v in m["after"]["groups"].items():
                before = result["attributes"][attribute]["groups"][g]
                rows.append([LABELS.get(attribute, attribute), g, v["threshold"], _est(before["sensitivity"]),
                             _est(v["sensitivity"]), _est(before["specificity"]), _est(v["specificity"])])  # fmt: skip
        overview = [
            [LABELS.get(a, a), m["before"]["max_gap_points"], m["after"]["max_gap_points"],
             _est(m["before"]["overall"]["specificity"]), _est(m["after"]["overall"]["specificity"]),
             m["specificity_cost_points"]]
            for a, m in mitigation["attributes"].items() if m["status"] == "done"
        ]  # fmt: skip
        body = _html.paragraph(
            f"Thresholds chosen per group on the calibration (validation) set for "
            f"{mitigation['target_sensitivity']:.0%} sensitivity; figures measured on the audited (test) set."
        )
        body += _html.table(["attribute", "largest gap before", "after", "specificity before", "after",
                             "specificity cost (points)"], overview)  # fmt: skip
        body += _html.table(["attribute", "group", "threshold", "sensitivity before", "after",
                             "specificity before", "after"], rows)  # fmt: skip
        sections.append(_html.Section("Mitigation: per-group thresholds", body))

    if result["comparison"] is not None:
        models = list(result["comparison"]["models"])
        rows = [[LABELS.get(a, a), *(result["comparison"]["models"][m]["attributes"].get(a, {}).get("max_gap_points")
                                    for m in models)] for a in result["attributes"]]  # fmt: skip
        sections.append(_html.Section("Models compared: largest sensitivity gap (points)",
                                      _html.table(["attribute", *models], rows)))  # fmt: skip
    s = result["settings"]
    sections.append(_html.Section("Method", _html.paragraph(
        f"Sensitivity and specificity carry Wilson intervals, AUROC a stratified bootstrap interval "
        f"({s['n_boot']} resamples). A group is too small to judge below {s['min_group_size']} images or "
        f"{s['min_melanomas']} melanomas. Gap = best group's sensitivity minus the group's, in percentage points; "
        f"flagged above {s['gap_points']:g}. Significance: {s['significance']}.")))  # fmt: skip
    _html.write_page(path, "DermaScan fairness audit", sections,
                     subtitle=f"{result['n']} images, {result['n_melanoma']} melanomas, "
                     f"threshold {result['threshold']:.3g}")  # fmt: skip


# --------------------------------------------------------------------------------------------------------
# The audit
# --------------------------------------------------------------------------------------------------------


def fairness_audit(
    predictions: pd.DataFrame,
    threshold: float,
    out_dir: str | os.PathLike[str],
    min_group_size: int = 20,
    min_melanomas: int = 10,
    gap_points: float = 5.0,
    *,
    calibration: pd.DataFrame | None = None,
    comparison: Mapping[str, pd.DataFrame | tuple[pd.DataFrame, float]] | None = None,
    target_sensitivity: float = 0.9,
    attributes: Sequence[str] = ATTRIBUTES,
    n_boot: int = 300,
    confidence: float = 0.95,
    seed: int = 0,
    synthetic: bool = False,
) -> dict[str, Any]:
    """Audit melanoma detection across groups; write ``fairness.json``, one PNG per attribute and ``fairness.html``.

    Args:
        predictions: the audited (test) predictions, one row per image (see the module docstring).
        threshold: the locked melanoma operating threshold.
        out_dir: output folder (created).
        min_group_size: fewest images for a group to be judged.
        min_melanomas: fewest melanomas for a group to be judged (and to get its own mitigation threshold).
        gap_points: a group is flagged when its sensitivity is more than this many percentage points below
            the best group's.
        calibration: predictions on the validation split; when given, per-group thresholds are fitted on it
            and measured on ``predictions``. Without it the mitigation is skipped, with the reason.
        comparison: other models' predictions on the same images (a frame, audited at ``threshold``, or a
            ``(frame, threshold)`` pair), shown side by side (e.g. a group-reweighted model).
        target_sensitivity: per-group sensitivity the mitigation aims for.
        attributes: attributes to audit when present.
        n_boot: bootstrap resamples of each AUROC interval.
        confidence: coverage of every interval (and ``1 - confidence`` is the significance level).
        seed: bootstrap seed.
        synthetic: the data are synthetic; the summary says the figures test the pipeline, not the model.

    Returns:
        The dict written to ``fairness.json`` (strict JSON: NaN is ``None``).
    """
    if not 0.0 <= gap_points <= 100.0:
        raise ValueError(f"gap_points is in percentage points (0-100), e.g. 5.0; got {gap_points!r}")
    for name, value in (("min_group_size", min_group_size), ("min_melanomas", min_melanomas)):
        if not (isinstance(value, int | np.integer) and value >= 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    frame = check_predictions(predictions, threshold, check_pred=False)
    threshold = float(threshold)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kw = {"min_group_size": min_group_size, "min_melanomas": min_melanomas, "gap_points": gap_points,
          "confidence": confidence}  # fmt: skip

    y_mel, p_mel = _arrays(frame)
    called = p_mel >= threshold
    overall = _overall(y_mel, called, confidence)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # a frame without melanoma: AUROC is null
        overall["auroc"] = bootstrap_ci(roc_auc_score, y_mel, p_mel, n_boot=n_boot, confidence=confidence, seed=seed)
    present, missing = _present(frame, attributes)
    audited = _audit_frame(frame, called, present, n_boot=n_boot, seed=seed, **kw)
    notes = []
    if "fitzpatrick" in missing:
        notes.append(
            "Fitzpatrick skin type is not recorded in this dataset (as in HAM10000): skin-tone fairness cannot be "
            "audited here. Audit on a dataset that records it (e.g. DDI, Fitzpatrick17k) before clinical use."
        )
    notes += [f"{_upper_first(LABELS.get(a, a))} is not recorded: not audited." for a in missing if a != "fitzpatrick"]

    if calibration is None:
        mitigation: dict[str, Any] = {
            "status": "skipped",
            "reason": "no calibration (validation) predictions were given, so per-group thresholds could not be "
            "fitted without touching the test set.",
        }
    else:
        cal = check_predictions(calibration, threshold, check_pred=False)
        mitigation = {"status": "done", "target_sensitivity": target_sensitivity,
                      "attributes": _mitigate(frame, cal, threshold, audited, target_sensitivity, kw)}  # fmt: skip

    compared = None
    if comparison:
        models: dict[str, Any] = {"this model": {"threshold": threshold, "attributes": audited}}
        for name, value in comparison.items():
            other, t = value if isinstance(value, tuple) else (value, threshold)
            other = check_predictions(other, t, check_pred=False)
            have, _ = _present(other, present)
            _, other_p = _arrays(other)
            audit = _audit_frame(other, other_p >= t, have, n_boot=n_boot, seed=seed, **kw)
            models[str(name)] = {"threshold": float(t), "attributes": audit}
        compared = {"models": models}

    plots = {}
    for attribute, audit in audited.items():
        after = None
        if mitigation["status"] == "done" and mitigation["attributes"][attribute]["status"] == "done":
            after = mitigation["attributes"][attribute]["after"]
        name = f"fairness_{attribute}.png"
        _plot_attribute(attribute, audit, after, gap_points, out / name)
        plots[attribute] = name

    summary = _summary(overall, len(frame), threshold, audited, missing, mitigation, compared, gap_points, synthetic)
    every_model = [audited] + ([m["attributes"] for m in compared["models"].values()] if compared else [])
    for audits in every_model:
        for audit in audits.values():
            for g in audit["groups"].values():
                g.pop("counts", None)  # BinaryCounts were for the tests of significance only
    result = _jsonable({
        "threshold": threshold,
        "n": len(frame),
        "n_melanoma": int(y_mel.sum()),
        "confidence": confidence,
        "settings": {"min_group_size": min_group_size, "min_melanomas": min_melanomas, "gap_points": gap_points,
                     "n_boot": n_boot, "significance": SIGNIFICANCE, "target_sensitivity": target_sensitivity},
        "overall": overall,
        "attributes": audited,
        "missing_attributes": missing,
        "notes": notes,
        "mitigation": mitigation,
        "comparison": compared,
        "plots": plots,
        "summary": summary,
    })  # fmt: skip
    _io.write_json(out / "fairness.json", result)
    _write_html(result, out / "fairness.html")
    return result
