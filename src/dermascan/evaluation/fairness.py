"""Fairness audit (brief section 3.9): melanoma detection by skin type, age group, sex and body site, the
gaps between groups, and a measured mitigation (per-group thresholds).

Input: the evaluation's ``predictions`` frame (see :mod:`dermascan.evaluation.errors`), with whichever of
``fitzpatrick`` (1-6, shown I-VI), ``age``, ``sex`` and ``localization`` the dataset records. HAM10000
has no Fitzpatrick type: the audit says so (``missing_attributes`` and the summary) and audits the rest.
Rows without a value for an attribute (``NaN``, ``"unknown"``) are left out of that attribute's groups and
counted in ``n_unknown``. Every figure comes from :mod:`dermascan.evaluation.intervals`; the statistics live in
:mod:`dermascan.evaluation.fairness_stats`, the summary, plots and HTML in :mod:`dermascan.evaluation.fairness_report`.

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
* **Significant** means the group finds fewer melanomas than all other recorded melanomas of the attribute
  together, by a two-sided Fisher exact test on (found, missed) x (group, rest) whose p-value, Holm-corrected
  across the attribute's judged groups (``p_adjusted``), is below ``1 - confidence``. Fisher's test is exact
  at the small counts subgroups have; testing against the rest (not against the best group, itself picked
  as the maximum) with Holm's correction keeps the chance that any group of an attribute is called
  significant by chance at most ``1 - confidence``, however many groups there are.
* **Mitigation**: per-group thresholds, each chosen on a calibration set (the validation split) with
  :func:`~dermascan.evaluation.operating_point.choose_threshold` to reach ``target_sensitivity`` in that
  group by the same criterion as the global threshold (``point`` or ``lower_ci``, from the run's operating
  point); groups with fewer than ``min_melanomas`` melanomas there (or too few for the lower bound to reach
  the target) keep the global threshold. Measured on
  the audited (test) frame: the largest gap before and after, and the specificity it costs. Using it in
  practice needs the attribute (e.g. skin type) recorded for every patient.

``fairness.json`` (NaN written as ``null``)::

    {"threshold": 0.3, "n": 1500, "n_melanoma": 170, "confidence": 0.95,
     "settings": {"min_group_size": 20, "min_melanomas": 10, "gap_points": 5.0, "n_boot": 300,
                  "significance": "two-sided Fisher exact test ...", "target_sensitivity": 0.9,
                  "criterion": "point"},
     "overall": {"sensitivity": {value, lo, hi, n}, "specificity": {...}, "auroc": {...}},
     "attributes": {
        "fitzpatrick": {"label": "skin type (Fitzpatrick)", "n_unknown": 0, "best_group": "I",
                        "max_gap_points": 31.0, "n_tested": 6, "flagged": ["V", "VI"],
                        "groups": {"I": {"n": 300, "n_melanoma": 40, "sensitivity": {value, lo, hi, n},
                                         "specificity": {...}, "auroc": {...}, "gap_points": 0.0,
                                         "flag": false, "significant": false, "p_value": 0.4,
                                         "p_adjusted": 1.0, "rest_sensitivity": 0.82,
                                         "status": "ok" | "too_small"}, ...}},
        "age": {...}, "sex": {...}, "localization": {...}},
     "missing_attributes": ["fitzpatrick"],
     "notes": ["Fitzpatrick skin type is not recorded ..."],
     "mitigation": {"status": "done" | "skipped", "reason": ..., "target_sensitivity": 0.9, "criterion": "point",
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

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dermascan import _io
from dermascan.decision import CRITERIA, decide
from dermascan.evaluation._json import jsonable
from dermascan.evaluation._validate import UndefinedMetricWarning, check_predictions, check_target
from dermascan.evaluation.bootstrap import bootstrap_ci
from dermascan.evaluation.fairness_report import plot_attribute, summary, upper_first, write_html
from dermascan.evaluation.fairness_stats import (
    AGE_GROUPS,
    ATTRIBUTES,
    FITZPATRICK_GROUPS,
    LABELS,
    SIGNIFICANCE,
    attribute_groups,
    audit_attribute,
    audit_frame,
    group_order,
    melanoma_arrays,
    present_attributes,
)
from dermascan.evaluation.intervals import binary_rates, wilson_interval
from dermascan.evaluation.metrics import roc_auc_score
from dermascan.evaluation.operating_point import choose_threshold
from dermascan.taxonomy import CLASSES

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


# --------------------------------------------------------------------------------------------------------
# Mitigation: per-group thresholds
# --------------------------------------------------------------------------------------------------------


def mitigate_thresholds(
    calibration_predictions: pd.DataFrame,
    attribute: str,
    target_sensitivity: float = 0.9,
    *,
    min_melanomas: int = 10,
    require_lower_ci: bool = False,
) -> dict[str, float]:
    """Per-group melanoma thresholds, each reaching ``target_sensitivity`` in its group on the calibration set.

    Each threshold is the largest one that reaches the target in the group's melanomas
    (:func:`~dermascan.evaluation.operating_point.choose_threshold`), so it costs the least specificity,
    by the criterion of the global threshold: pass ``require_lower_ci`` when the run's operating point was
    chosen with ``lower_ci``, or each group would get a laxer rule than the global one.

    Args:
        calibration_predictions: predictions on the calibration (validation) split, same columns as the
            audited frame; never the test split, or the measured effect is optimistic.
        attribute: the attribute whose groups get their own thresholds (e.g. ``"fitzpatrick"``).
        target_sensitivity: sensitivity each group should reach.
        min_melanomas: groups with fewer melanomas get no threshold of their own (they keep the global
            one in :func:`apply_group_thresholds`): a threshold fitted on a handful of melanomas is noise.
        require_lower_ci: the lower Wilson bound of the group's sensitivity, not the point, must reach the
            target; a group with too few melanomas for that keeps the global threshold.

    Returns:
        ``{group: threshold}`` for the groups with enough melanomas.
    """
    check_target(target_sensitivity)
    frame = check_predictions(calibration_predictions, 0.5, check_pred=False)
    groups = attribute_groups(frame, attribute).to_numpy(dtype=object)
    y_mel, p_mel = melanoma_arrays(frame)
    out = {}
    for name in group_order(attribute, pd.Series(groups)):
        rows = groups == name
        if int(y_mel[rows].sum()) < min_melanomas:
            continue
        if require_lower_ci and wilson_interval(int(y_mel[rows].sum()), int(y_mel[rows].sum()))[0] < target_sensitivity:
            continue  # even finding every melanoma, the lower bound stays below the target: no threshold reaches it
        out[name] = choose_threshold(y_mel[rows], p_mel[rows], target_sensitivity, require_lower_ci).threshold
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
    rates = binary_rates(y_mel, called.astype(np.int64), confidence, warn=False)
    return {"sensitivity": rates.sensitivity, "specificity": rates.specificity}


def _mitigate(
    frame: pd.DataFrame,
    calibration: pd.DataFrame,
    threshold: float,
    before: dict[str, dict[str, Any]],
    target_sensitivity: float,
    require_lower_ci: bool,
    kw: dict[str, Any],
) -> dict[str, Any]:
    y_mel, p_mel = melanoma_arrays(frame)
    called_before = p_mel >= threshold
    out = {}
    for attribute, audit in before.items():
        if attribute not in calibration.columns or not attribute_groups(calibration, attribute).notna().any():
            out[attribute] = {"status": "skipped", "reason": f"the calibration set has no {attribute!r} values"}
            continue
        thresholds = mitigate_thresholds(calibration, attribute, target_sensitivity, min_melanomas=kw["min_melanomas"],
                                         require_lower_ci=require_lower_ci)  # fmt: skip
        row_t = group_threshold_array(frame, attribute, thresholds, threshold)
        called = p_mel >= row_t
        groups = attribute_groups(frame, attribute)
        after = audit_attribute(y_mel, p_mel, called, groups, group_order(attribute, groups), auroc=False, **kw)
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
    criterion: str = "point",
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
        criterion: how the global threshold reached its target (``point`` or ``lower_ci``, the run's operating
            point's ``criterion``); the per-group thresholds use the same one.
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
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA} (the operating point's), got {criterion!r}")
    frame = check_predictions(predictions, threshold, check_pred=False)
    threshold = float(threshold)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kw = {"min_group_size": min_group_size, "min_melanomas": min_melanomas, "gap_points": gap_points,
          "confidence": confidence}  # fmt: skip

    y_mel, p_mel = melanoma_arrays(frame)
    called = p_mel >= threshold
    overall = _overall(y_mel, called, confidence)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # a frame without melanoma: AUROC is null
        overall["auroc"] = bootstrap_ci(roc_auc_score, y_mel, p_mel, n_boot=n_boot, confidence=confidence, seed=seed)
    present, missing = present_attributes(frame, attributes)
    audited = audit_frame(frame, called, present, n_boot=n_boot, seed=seed, **kw)
    notes = []
    if "fitzpatrick" in missing:
        notes.append(
            "Fitzpatrick skin type is not recorded in this dataset (as in HAM10000): skin-tone fairness cannot be "
            "audited here. Audit on a dataset that records it (e.g. DDI, Fitzpatrick17k) before clinical use."
        )
    notes += [f"{upper_first(LABELS.get(a, a))} is not recorded: not audited." for a in missing if a != "fitzpatrick"]

    if calibration is None:
        mitigation: dict[str, Any] = {
            "status": "skipped",
            "criterion": criterion,
            "reason": "no calibration (validation) predictions were given, so per-group thresholds could not be "
            "fitted without touching the test set.",
        }
    else:
        cal = check_predictions(calibration, threshold, check_pred=False)
        mitigation = {"status": "done", "target_sensitivity": target_sensitivity, "criterion": criterion,
                      "attributes": _mitigate(frame, cal, threshold, audited, target_sensitivity,
                                              criterion == "lower_ci", kw)}  # fmt: skip

    compared = None
    if comparison:
        models: dict[str, Any] = {"this model": {"threshold": threshold, "attributes": audited}}
        for name, value in comparison.items():
            other, t = value if isinstance(value, tuple) else (value, threshold)
            other = check_predictions(other, t, check_pred=False)
            have, _ = present_attributes(other, present)
            _, other_p = melanoma_arrays(other)
            audit = audit_frame(other, other_p >= t, have, n_boot=n_boot, seed=seed, **kw)
            models[str(name)] = {"threshold": float(t), "attributes": audit}
        compared = {"models": models}

    plots = {}
    for attribute, audit in audited.items():
        after = None
        if mitigation["status"] == "done" and mitigation["attributes"][attribute]["status"] == "done":
            after = mitigation["attributes"][attribute]["after"]
        name = f"fairness_{attribute}.png"
        plot_attribute(attribute, audit, after, gap_points, out / name)
        plots[attribute] = name

    sentences = summary(overall, len(frame), threshold, audited, missing, mitigation, compared, gap_points, synthetic)
    every_model = [audited] + ([m["attributes"] for m in compared["models"].values()] if compared else [])
    for audits in every_model:
        for audit in audits.values():
            for g in audit["groups"].values():
                g.pop("counts", None)  # BinaryCounts were for the tests of significance only
    result = jsonable({
        "threshold": threshold,
        "n": len(frame),
        "n_melanoma": int(y_mel.sum()),
        "confidence": confidence,
        "settings": {"min_group_size": min_group_size, "min_melanomas": min_melanomas, "gap_points": gap_points,
                     "n_boot": n_boot, "significance": SIGNIFICANCE, "target_sensitivity": target_sensitivity,
                     "criterion": criterion},
        "overall": overall,
        "attributes": audited,
        "missing_attributes": missing,
        "notes": notes,
        "mitigation": mitigation,
        "comparison": compared,
        "plots": plots,
        "summary": sentences,
    })  # fmt: skip
    _io.write_json(out / "fairness.json", result)
    write_html(result, out / "fairness.html")
    return result
