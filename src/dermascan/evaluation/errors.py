"""Error analysis (brief section 3.7): which melanomas the model misses at its operating point, and where
errors concentrate (lesion size, imaging nuisances, dermoscope).

Everything is computed from the evaluation's ``predictions`` frame, one row per image, with
``image_id, label, MEL, NV, BCC, AKIEC, BKL, DF, VASC`` (calibrated probabilities), ``pred`` (the class
decided at the operating threshold by :func:`dermascan.decision.decide`), ``path`` and
whatever metadata the dataset has (``diameter_mm``, ``mask_path``, ``hair``, ``ruler``, ``ink``,
``bubbles``, ``vignette``, ``blur``, ``dermoscope``, ...). Proportions and their Wilson intervals come from
:mod:`dermascan.evaluation.metrics`; nothing is recomputed here.

Definitions, so that every figure in ``errors.json`` can be read without the code:

* A **missed melanoma** (false negative) is a true melanoma with ``p(MEL) < threshold``: exactly the cases
  the decision rule does not call melanoma.
* The **most confidently missed** melanomas are those with the **lowest p(MEL)**: the ones the threshold
  would have to fall furthest to catch. (The probability of the predicted class is shown beside it, but
  it is not the ranking: a missed melanoma split between two benign classes is still confidently missed.)
  Ties are broken by the higher probability of the predicted class.
* **Lesion size** comes from the first source available, recorded as ``by_size.source``:

  1. ``diameter_mm`` (clinical diameter): small < 6 mm, medium 6-10 mm, large > 10 mm. The 6 mm cut is
     the "D" of the ABCD rule: small melanomas are the ones clinicians (and models) miss most.
  2. ``mask_path`` (binary lesion mask, ISIC Task 1 style): the lesion's fraction of the image area, cut
     at its tertiles in these data (sizes relative to this dataset, not absolute).
  3. the image itself: Otsu threshold on a smoothed grey image, largest dark region (holes filled), its
     fraction of the image area, cut at tertiles. A rough proxy (dark corners, hair and pale lesions
     fool it), used only when neither diameter nor mask exists.

* **Error rate** is ``1 - accuracy`` of ``pred`` over the 7 classes; **sensitivity** and **specificity** are
  melanoma vs rest at the threshold. Each carries a Wilson interval and a ``status``: ``"too_small"``
  ("too small to judge") when its denominator is below ``min_group_size`` cases (error rate, specificity)
  or ``min_melanomas`` melanomas (sensitivity). Such figures are shown but never used for a finding.
* A **finding** is stated only when two groups' 95% Wilson intervals do not overlap: a conservative rule,
  so a finding is a difference the numbers show, not a hunch. Counts (e.g. how many missed melanomas are
  small) are stated as counts.

``errors.json`` (NaN written as ``null``)::

    {"threshold": 0.3, "n": 1500, "n_melanoma": 170, "confidence": 0.95,
     "confident_definition": "lowest p(MEL) ...",
     "overall": {"error_rate": {value, lo, hi, n, status}, "sensitivity": {...}, "specificity": {...}},
     "n_false_negatives": 12,
     "false_negatives": [{"image_id": "ISIC_0000001", "predicted": "NV", "p_predicted": 0.81,
                          "p_melanoma": 0.04, "metadata": {"age": 60.0, "ink": 0, ...}}, ...],
     "top_k": ["ISIC_0000001", ...],
     "gallery": {"path": "gallery.png", "heatmaps": false, "heatmap_errors": {}},
     "by_size": {"source": "diameter_mm" | "mask" | "image" | null, "bins": {"small": "< 6 mm", ...},
                 "edges": [6.0, 10.0], "n_unknown": 0, "missed_by_size": {"small": 7, ...},
                 "groups": {"small": GROUP, "medium": GROUP, "large": GROUP}},
     "by_nuisance": {"ink": {"groups": {"present": GROUP, "absent": GROUP}, "n_unknown": 0}, ...},
     "by_dermoscope": {"groups": {"dermlite": GROUP, ...}, "n_unknown": 0} | null,
     "skipped": {"blur": "no 'blur' column in the metadata", ...},
     "findings": ["ink marks: specificity 0.62 (0.55-0.69) with vs 0.88 (0.85-0.91) without ...", ...]}

    GROUP = {"n", "n_melanoma", "n_non_melanoma", "n_errors", "status": "ok" | "too_small",
             "error_rate": {value, lo, hi, n, status}, "sensitivity": {...}, "specificity": {...}}
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dermascan import _io
from dermascan.data.schema import NUISANCE_FLAGS  # the binary nuisance columns audited as present vs absent
from dermascan.decision import decide
from dermascan.evaluation._json import jsonable
from dermascan.evaluation._validate import UndefinedMetricWarning, check_predictions, check_threshold
from dermascan.evaluation.errors_report import NUISANCE_NAMES, ci_text, plot_gallery, write_html
from dermascan.evaluation.intervals import Estimate, group_rates, wilson_estimate
from dermascan.evaluation.lesion_size import (
    SIZE_BINS_MM,
    SIZE_GROUPS,
    estimate_lesion_fraction,
    lesion_size_groups,
    mask_area_fraction,
    otsu_threshold,
)
from dermascan.taxonomy import CLASSES, MELANOMA_INDEX

__all__ = [
    "NUISANCE_FLAGS",
    "SIZE_BINS_MM",
    "analyze_errors",
    "check_predictions",
    "estimate_lesion_fraction",
    "group_figures",
    "lesion_size_groups",
    "mask_area_fraction",
    "melanoma_false_negatives",
    "otsu_threshold",
]


CONFIDENT_DEFINITION = (
    "most confidently missed = lowest p(MEL) among true melanomas with p(MEL) < threshold "
    "(ties: higher probability of the predicted class first)"
)
# Columns of the predictions frame that are not metadata of the image.
_CORE_COLUMNS = frozenset({"image_id", "label", "dx", "pred", "path", "mask_path", *CLASSES})

HeatmapFn = Callable[[str], Any]


# --------------------------------------------------------------------------------------------------------
# Missed melanomas
# --------------------------------------------------------------------------------------------------------


def melanoma_false_negatives(predictions: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """All true melanomas with ``p(MEL) < threshold``, most confidently missed (lowest p(MEL)) first.

    Returns:
        The matching rows of ``predictions`` (original index kept) plus ``predicted`` (the class code
        decided for it), ``p_predicted`` (that class's probability) and ``p_melanoma``.
    """
    threshold = check_threshold(threshold)
    probs = predictions[list(CLASSES)].to_numpy(dtype=np.float64)
    p_mel = probs[:, MELANOMA_INDEX]
    is_fn = (pd.to_numeric(predictions["label"]).to_numpy() == MELANOMA_INDEX) & (p_mel < threshold)
    fn = predictions.loc[is_fn].copy()
    # The decision rule gives the class shown, so the row agrees with the threshold even without `pred`.
    predicted = decide(probs[is_fn], threshold) if is_fn.any() else np.zeros(0, dtype=np.int64)
    fn["predicted"] = [CLASSES[i] for i in predicted]
    fn["p_predicted"] = probs[is_fn][np.arange(len(predicted)), predicted]
    fn["p_melanoma"] = p_mel[is_fn]
    return fn.sort_values(["p_melanoma", "p_predicted"], ascending=[True, False], kind="mergesort")


def _metadata(row: pd.Series) -> dict[str, Any]:
    out = {}
    for key, value in row.items():
        if key in _CORE_COLUMNS or key in ("predicted", "p_predicted", "p_melanoma"):
            continue
        if (isinstance(value, float) and math.isnan(value)) or value is pd.NA or value is pd.NaT:
            value = None
        out[str(key)] = value.item() if isinstance(value, np.generic) else value
    return out


# --------------------------------------------------------------------------------------------------------
# Per-group figures
# --------------------------------------------------------------------------------------------------------


def _judged(estimate: Estimate, enough: bool) -> dict[str, Any]:
    out = estimate.to_dict()
    out["status"] = "ok" if enough and estimate.n > 0 else "too_small"
    return out


def group_figures(
    frame: pd.DataFrame,
    groups: pd.Series,
    order: Sequence[str] | None = None,
    min_group_size: int = 10,
    min_melanomas: int = 5,
    confidence: float = 0.95,
) -> dict[str, dict[str, Any]]:
    """Error rate, melanoma sensitivity and specificity (Wilson intervals) of each group.

    Args:
        frame: a frame checked by :func:`check_predictions`.
        groups: group of each row (aligned with ``frame``); ``None``/NaN rows are left out.
        order: groups to report, in this order (default: sorted group names present).
        min_group_size: fewest cases for the error rate and specificity (non-melanomas) to be judged.
        min_melanomas: fewest melanomas for the sensitivity to be judged.
        confidence: coverage of the intervals.

    Returns:
        ``{group: GROUP}`` as described in the module docstring.
    """
    known = groups.notna().to_numpy()
    names = list(order) if order is not None else sorted({str(g) for g in groups[known]})
    label = frame["label"].to_numpy()
    pred = frame["pred"].to_numpy()
    keys = np.where(known, groups.astype(str).to_numpy(), None)
    rates = group_rates(label == MELANOMA_INDEX, pred == MELANOMA_INDEX, keys, names, confidence)
    out = {}
    for name in names:
        rows = known & (keys == name)
        n = int(rows.sum())
        n_err = int(np.sum(label[rows] != pred[rows]))
        with warnings.catch_warnings():
            # An empty group is labelled "too_small" below; its NaN needs no warning.
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            err = wilson_estimate(n_err, n, confidence, what=f"error rate of {name}")
        r = rates[name]
        out[name] = {
            "n": n,
            "n_melanoma": r.n_pos,
            "n_non_melanoma": r.n_neg,
            "n_errors": n_err,
            "status": "ok" if n >= min_group_size else "too_small",
            "error_rate": _judged(err, n >= min_group_size),
            "sensitivity": _judged(r.sensitivity, r.n_pos >= min_melanomas),
            "specificity": _judged(r.specificity, r.n_neg >= min_group_size),
        }
    return out


def _flag_groups(values: pd.Series) -> pd.Series:
    """0/1 (also booleans, "yes"/"no", "true"/"false") to "present"/"absent"; anything else is unknown."""
    words = {"1": "present", "1.0": "present", "true": "present", "yes": "present",
             "0": "absent", "0.0": "absent", "false": "absent", "no": "absent"}  # fmt: skip
    return values.map(lambda v: None if pd.isna(v) else words.get(str(v).strip().lower())).astype(object)


# --------------------------------------------------------------------------------------------------------
# Findings
# --------------------------------------------------------------------------------------------------------

_METRIC_TEXT = {
    "sensitivity": ("sensitivity", "more melanomas are missed"),
    "specificity": ("specificity", "more benign lesions are flagged as melanoma (false positives)"),
    "error_rate": ("error rate", "more lesions are misclassified"),
}


def _compare(
    factor: str, groups: dict[str, dict[str, Any]], describe: Callable[[str], str], confidence: float
) -> list[str]:
    """Sentences for the metrics whose worst and best judged groups have non-overlapping Wilson intervals."""
    found = []
    for metric, (name, consequence) in _METRIC_TEXT.items():
        judged = {g: v[metric] for g, v in groups.items() if v[metric]["status"] == "ok"}
        if len(judged) < 2:
            continue
        higher_is_worse = metric == "error_rate"
        ranked = sorted(judged, key=lambda g: judged[g]["value"], reverse=higher_is_worse)
        worst, best = ranked[0], ranked[-1]
        w, b = judged[worst], judged[best]
        separated = w["lo"] > b["hi"] if higher_is_worse else w["hi"] < b["lo"]
        if separated:
            found.append(
                f"{factor}: {name} {ci_text(w)} {describe(worst)} vs {ci_text(b)} {describe(best)}; the "
                f"{confidence:.0%} intervals do not overlap, so {consequence} {describe(worst)}."
            )
    return found


# --------------------------------------------------------------------------------------------------------
# The analysis
# --------------------------------------------------------------------------------------------------------


def analyze_errors(
    predictions: pd.DataFrame,
    threshold: float,
    out_dir: str | os.PathLike[str],
    heatmap_fn: HeatmapFn | None = None,
    top_k: int = 10,
    *,
    image_root: str | os.PathLike[str] | None = None,
    min_group_size: int = 10,
    min_melanomas: int = 5,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Analyse the errors at the operating point; write ``errors.json``, ``gallery.png`` and ``errors.html``.

    Args:
        predictions: one row per image (see the module docstring).
        threshold: the melanoma operating threshold (``p(MEL) >= threshold`` is melanoma).
        out_dir: folder for the three files (created).
        heatmap_fn: optional ``path -> overlay`` (RGB uint8 (H, W, 3) array or PIL image) shown beside each
            missed melanoma in the gallery; a failure is recorded, not raised.
        top_k: how many of the most confidently missed melanomas the gallery shows.
        image_root: folder that relative ``path`` / ``mask_path`` values are relative to.
        min_group_size: fewest cases (non-melanomas for specificity) for a group's figure to be judged.
        min_melanomas: fewest melanomas for a group's sensitivity to be judged.
        confidence: coverage of the Wilson intervals.

    Returns:
        The dict written to ``errors.json`` (strict JSON: NaN is ``None``).
    """
    if not (isinstance(top_k, int | np.integer) and top_k >= 0):
        raise ValueError(f"top_k must be a non-negative integer, got {top_k!r}")
    frame = check_predictions(predictions, threshold)
    threshold = float(threshold)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    everyone = pd.Series(["all"] * len(frame), index=frame.index, dtype=object)
    overall = group_figures(frame, everyone, ["all"], 0, 1, confidence)["all"]
    fn = melanoma_false_negatives(frame, threshold)
    false_negatives = [
        {"image_id": str(row.get("image_id", idx)), "predicted": row["predicted"], "p_predicted": row["p_predicted"],
         "p_melanoma": row["p_melanoma"], "metadata": _metadata(row)}
        for idx, row in fn.iterrows()
    ]  # fmt: skip
    top = fn.head(top_k)
    heatmap_errors = plot_gallery(top, out / "gallery.png", threshold, heatmap_fn, image_root)

    kw = {"min_group_size": min_group_size, "min_melanomas": min_melanomas, "confidence": confidence}
    compared: list[str] = []  # differences between groups, each backed by non-overlapping intervals
    facts: list[str] = []  # counts, stated as counts
    skipped: dict[str, str] = {}

    # Lesion size.
    size, size_info = lesion_size_groups(frame, image_root)
    by_size: dict[str, Any] = dict(size_info)
    if size_info["source"] is None or size.notna().sum() == 0:
        skipped["size"] = size_info.get("reason", "lesion size could not be measured for any image")
        by_size["groups"] = {}
    else:
        by_size["groups"] = group_figures(frame, size, SIZE_GROUPS, **kw)
        bins = size_info["bins"]
        compared += _compare("Lesion size", by_size["groups"], lambda g: f"for {g} lesions ({bins.get(g, '')})",
                             confidence)  # fmt: skip
        missed = size.loc[fn.index].value_counts().to_dict()
        by_size["missed_by_size"] = {g: int(missed.get(g, 0)) for g in SIZE_GROUPS}
        if len(fn):
            counts = ", ".join(f"{g} {by_size['missed_by_size'][g]}" for g in SIZE_GROUPS)
            unknown = len(fn) - sum(by_size["missed_by_size"].values())
            facts.append(
                f"Missed melanomas by lesion size ({size_info['source']}): {counts}"
                + (f", unknown {unknown}" if unknown else "")
                + f" (of {len(fn)})."
            )

    # Nuisances.
    by_nuisance: dict[str, Any] = {}
    for flag in NUISANCE_FLAGS:
        if flag not in frame.columns:
            skipped[flag] = f"no '{flag}' column in the metadata"
            continue
        groups = _flag_groups(frame[flag])
        by_nuisance[flag] = {"groups": group_figures(frame, groups, ("present", "absent"), **kw),
                             "n_unknown": int(groups.isna().sum())}  # fmt: skip
        compared += _compare(NUISANCE_NAMES[flag].capitalize(), by_nuisance[flag]["groups"],
                             lambda g: "with" if g == "present" else "without", confidence)  # fmt: skip

    # Dermoscope.
    by_dermoscope = None
    if "dermoscope" in frame.columns and frame["dermoscope"].notna().any():
        groups = frame["dermoscope"].map(lambda v: None if pd.isna(v) else str(v)).astype(object)
        by_dermoscope = {"groups": group_figures(frame, groups, **kw), "n_unknown": int(groups.isna().sum())}
        compared += _compare("Dermoscope", by_dermoscope["groups"], lambda g: f"with {g}", confidence)
    else:
        skipped["dermoscope"] = "no 'dermoscope' column in the metadata"

    sens = overall["sensitivity"]
    head = [f"{len(fn)} of {overall['n_melanoma']} melanomas missed at threshold {threshold:.3g}"
            + (f" (sensitivity {ci_text(sens)})." if sens["value"] is not None else ".")]  # fmt: skip
    if len(fn):
        commonest = fn["predicted"].value_counts()
        head.append(
            f"Missed melanomas were most often called {commonest.index[0]} ({int(commonest.iloc[0])} of {len(fn)})."
        )
    if not compared:
        compared.append(
            f"No group (lesion size, nuisance, dermoscope) differs clearly from another: every pair of "
            f"{confidence:.0%} intervals that could be judged overlaps. Small groups limit what can be seen."
        )

    result = jsonable(
        {
            "threshold": threshold,
            "n": len(frame),
            "n_melanoma": overall["n_melanoma"],
            "confidence": confidence,
            "confident_definition": CONFIDENT_DEFINITION,
            "overall": {k: overall[k] for k in ("error_rate", "sensitivity", "specificity")},
            "n_false_negatives": len(fn),
            "false_negatives": false_negatives,
            "top_k": [str(r.get("image_id", i)) for i, r in top.iterrows()],
            "gallery": {"path": "gallery.png", "heatmaps": heatmap_fn is not None, "heatmap_errors": heatmap_errors},
            "by_size": by_size,
            "by_nuisance": by_nuisance,
            "by_dermoscope": by_dermoscope,
            "skipped": skipped,
            "findings": head + facts + compared,
        }
    )
    _io.write_json(out / "errors.json", result)
    write_html(result, out / "errors.html")
    return result
