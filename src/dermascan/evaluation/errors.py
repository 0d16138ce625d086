"""Error analysis (brief section 3.7): which melanomas the model misses at its operating point, and where
errors concentrate (lesion size, imaging nuisances, dermoscope).

Everything is computed from the evaluation's ``predictions`` frame, one row per image, with
``image_id, label, MEL, NV, BCC, AKIEC, BKL, DF, VASC`` (calibrated probabilities), ``pred`` (the class
decided at the operating threshold by :func:`dermascan.evaluation.operating_point.decide`), ``path`` and
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

import html
import math
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage

from dermascan import _html, _io
from dermascan.data.schema import NUISANCE_FLAGS  # the binary nuisance columns audited as present vs absent
from dermascan.evaluation.metrics import (
    BinaryCounts,
    Estimate,
    UndefinedMetricWarning,
    _jsonable,
    binary_counts,
    wilson_estimate,
)
from dermascan.evaluation.operating_point import decide
from dermascan.evaluation.plots import _new_figure, _save
from dermascan.taxonomy import CLASSES, MELANOMA_INDEX, class_index

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

#: Diameter cuts in mm: small < 6 (the ABCD rule's "D"), medium 6-10, large > 10.
SIZE_BINS_MM: tuple[float, float] = (6.0, 10.0)
SIZE_GROUPS: tuple[str, ...] = ("small", "medium", "large")
NUISANCE_NAMES: dict[str, str] = {
    "hair": "hair", "ruler": "ruler marks", "ink": "ink marks", "bubbles": "gel bubbles",
    "vignette": "dark corners (vignette)", "blur": "blur",
}  # fmt: skip

CONFIDENT_DEFINITION = (
    "most confidently missed = lowest p(MEL) among true melanomas with p(MEL) < threshold "
    "(ties: higher probability of the predicted class first)"
)
# Columns of the predictions frame that are not metadata of the image.
_CORE_COLUMNS = frozenset({"image_id", "label", "dx", "pred", "path", "mask_path", *CLASSES})
# Images and masks are read at most this large: area fractions barely change and memory stays small.
_MAX_SIDE = 256

HeatmapFn = Callable[[str], Any]


# --------------------------------------------------------------------------------------------------------
# Input validation (shared with the fairness audit)
# --------------------------------------------------------------------------------------------------------


def _check_threshold(threshold: float) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, int | float | np.number):
        raise ValueError(f"threshold must be a number in [0, 1], got {threshold!r}")
    if not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
        raise ValueError(f"threshold must be in [0, 1] (p(MEL) >= threshold is melanoma), got {threshold!r}")
    return float(threshold)


def check_predictions(predictions: pd.DataFrame, threshold: float, *, check_pred: bool = True) -> pd.DataFrame:
    """Validate an evaluation predictions frame and return a copy ready for the audits.

    Checks that the 7 probability columns and ``label`` (or ``dx``, mapped to indices) exist and are valid.
    ``pred`` is filled with :func:`~dermascan.evaluation.operating_point.decide` when absent; when present
    and ``check_pred``, its melanoma calls must match ``p(MEL) >= threshold`` (a frame decided at another
    threshold would make every figure here wrong).

    Args:
        predictions: one row per image (see the module docstring).
        threshold: the melanoma operating threshold.
        check_pred: check ``pred`` against the threshold.

    Returns:
        A copy with ``label`` and ``pred`` as int64 and a fresh ``RangeIndex``.

    Raises:
        ValueError: a missing column, a probability out of range, a bad label, or ``pred`` decided at
            another threshold; the message names the bad value and the fix.
    """
    if not isinstance(predictions, pd.DataFrame):
        raise ValueError(f"predictions must be a pandas DataFrame, got {type(predictions).__name__}")
    threshold = _check_threshold(threshold)
    missing = [c for c in CLASSES if c not in predictions.columns]
    if missing:
        raise ValueError(
            f"predictions lack the probability column(s) {missing}; expected one column per class "
            f"({', '.join(CLASSES)}), as written by `dermascan evaluate`"
        )
    if len(predictions) == 0:
        raise ValueError("predictions is empty: need at least one image")
    frame = predictions.reset_index(drop=True).copy()
    if "label" not in frame.columns:
        if "dx" not in frame.columns:
            raise ValueError("predictions need a 'label' column (true class index) or a 'dx' column (class code)")
        frame["label"] = [class_index(str(d)) for d in frame["dx"]]
    labels = pd.to_numeric(frame["label"], errors="coerce")
    bad = labels.isna() | (labels < 0) | (labels >= len(CLASSES)) | (labels != labels.round())
    if bad.any():
        i = int(np.argmax(bad.to_numpy()))
        raise ValueError(
            f"label must be a class index 0..{len(CLASSES) - 1}; found {frame['label'].iloc[i]!r} at row {i}"
        )
    frame["label"] = labels.astype(np.int64)
    probs = frame[list(CLASSES)].to_numpy(dtype=np.float64)  # (N, K)
    off = ~np.isfinite(probs) | (probs < 0) | (probs > 1)
    if off.any():
        r, c = np.unravel_index(int(np.argmax(off)), probs.shape)
        raise ValueError(f"probability {CLASSES[c]} is {probs[r, c]!r} at row {r}: must lie in [0, 1]")
    decided = decide(probs, threshold)
    if "pred" not in frame.columns:
        frame["pred"] = decided
    else:
        pred = pd.to_numeric(frame["pred"], errors="coerce")
        if pred.isna().any() or ((pred < 0) | (pred >= len(CLASSES))).any():
            raise ValueError("pred must hold class indices 0..6 (the class decided at the threshold)")
        frame["pred"] = pred.astype(np.int64)
        if check_pred:
            called = frame["pred"].to_numpy() == MELANOMA_INDEX
            wrong = called != (probs[:, MELANOMA_INDEX] >= threshold)
            if wrong.any():
                i = int(np.argmax(wrong))
                raise ValueError(
                    f"pred disagrees with threshold {threshold:g} on {int(wrong.sum())} row(s), first at row {i} "
                    f"(p(MEL)={probs[i, MELANOMA_INDEX]:.6g}, pred={CLASSES[frame['pred'].iloc[i]]}); decide pred "
                    f"with dermascan.evaluation.operating_point.decide(probs, threshold) or pass that threshold"
                )
    return frame


# --------------------------------------------------------------------------------------------------------
# Missed melanomas
# --------------------------------------------------------------------------------------------------------


def melanoma_false_negatives(predictions: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """All true melanomas with ``p(MEL) < threshold``, most confidently missed (lowest p(MEL)) first.

    Returns:
        The matching rows of ``predictions`` (original index kept) plus ``predicted`` (the class code
        decided for it), ``p_predicted`` (that class's probability) and ``p_melanoma``.
    """
    threshold = _check_threshold(threshold)
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
# Lesion size
# --------------------------------------------------------------------------------------------------------


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold: the cut that maximises the between-class variance of ``values``' histogram.

    Returns:
        The threshold (values ``<=`` it form the darker class); NaN when all values are equal.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    lo, hi = float(v.min()), float(v.max())
    if not hi > lo:
        return math.nan
    hist, edges = np.histogram(v, bins=bins, range=(lo, hi))
    centres = 0.5 * (edges[:-1] + edges[1:])
    w0 = np.cumsum(hist).astype(np.float64)  # (bins,) weight at or below each cut
    w1 = w0[-1] - w0
    m = np.cumsum(hist * centres)
    with np.errstate(invalid="ignore", divide="ignore"):
        mu0 = m / w0
        mu1 = (m[-1] - m) / w1
        between = w0 * w1 * (mu0 - mu1) ** 2
    return float(centres[int(np.nanargmax(between[:-1]))])


def _as_rgb(image: Any) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise ValueError(f"expected an RGB image (H, W, 3), got an array of shape {arr.shape}")
    return arr[..., :3]


def estimate_lesion_fraction(image: Any) -> float:
    """Estimate the lesion's fraction of the image area from the image alone.

    Grey image, Gaussian smoothing (so hair and texture do not split the lesion), Otsu threshold, then the
    largest dark connected region with its holes filled. Dark regions touching the border (dermoscope
    vignette corners) are passed over for an inner region at least a quarter their size, since a lesion
    is normally centred. A rough proxy: pale lesions, dense hair or dark skin can fool it.

    Args:
        image: RGB image, a (H, W, 3) array or a PIL image.

    Returns:
        Area fraction in [0, 1]; NaN for a uniform image (nothing to segment).
    """
    rgb = _as_rgb(image).astype(np.float64)
    grey = rgb @ np.array([0.299, 0.587, 0.114])  # (H, W) luma
    h, w = grey.shape
    smooth = ndimage.gaussian_filter(grey, sigma=max(1.0, min(h, w) / 64.0))
    t = otsu_threshold(smooth)
    if math.isnan(t):
        return math.nan
    labels, n = ndimage.label(smooth <= t)
    if n == 0:
        return 0.0
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]  # (n,) pixels per region
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    touches = np.isin(np.arange(1, n + 1), border)
    best = int(np.argmax(sizes))
    inner = np.where(touches, 0, sizes)
    if touches[best] and inner.max() >= 0.25 * sizes[best]:
        best = int(np.argmax(inner))
    region = ndimage.binary_fill_holes(labels == best + 1)
    return float(region.mean())


def _resolve(path: Any, image_root: str | os.PathLike[str] | None) -> Path | None:
    if path is None or (isinstance(path, float) and math.isnan(path)) or str(path) == "":
        return None
    p = Path(str(path))
    return p if p.is_absolute() or image_root is None else Path(image_root) / p


def _load_image(path: Path | None, mode: str = "RGB", resample: int = Image.BILINEAR) -> np.ndarray | None:
    if path is None:
        return None
    try:
        with Image.open(path) as img:
            img.draft(mode, (_MAX_SIDE, _MAX_SIDE))  # JPEG decodes at reduced scale; a no-op for PNG
            img = img.convert(mode)
            img.thumbnail((_MAX_SIDE, _MAX_SIDE), resample)
            return np.asarray(img)
    except (OSError, ValueError):
        return None  # a missing or unreadable file is counted as "unknown", not a crash


def mask_area_fraction(path: str | os.PathLike[str]) -> float:
    """Lesion fraction of the image area in a binary mask PNG (0 background, 255 lesion); NaN if unreadable."""
    mask = _load_image(Path(path), mode="L", resample=Image.NEAREST)
    return math.nan if mask is None else float(np.mean(mask > 127))


def _tertiles(fraction: np.ndarray) -> tuple[np.ndarray, list[float]]:
    known = fraction[np.isfinite(fraction)]
    if known.size == 0:
        return np.full(len(fraction), None, dtype=object), []
    edges = [float(e) for e in np.quantile(known, [1.0 / 3.0, 2.0 / 3.0])]
    groups = np.where(fraction <= edges[0], "small", np.where(fraction <= edges[1], "medium", "large"))
    return np.where(np.isfinite(fraction), groups, None), edges


def lesion_size_groups(
    predictions: pd.DataFrame, image_root: str | os.PathLike[str] | None = None
) -> tuple[pd.Series, dict[str, Any]]:
    """Size group (``small`` / ``medium`` / ``large``, ``None`` when unknown) of each row, and how it was found.

    The source is the first of ``diameter_mm``, ``mask_path`` and the image at ``path`` that the frame has
    (see the module docstring for the bins).

    Args:
        predictions: the predictions frame.
        image_root: folder that relative ``path`` / ``mask_path`` values are relative to (default: as given).

    Returns:
        ``(groups, info)``: a Series aligned with ``predictions``, and ``{"source", "bins", "edges",
        "n_unknown"}`` (``source`` is ``None``, with a ``reason``, when no source exists).
    """
    cols = predictions.columns
    if "diameter_mm" in cols and predictions["diameter_mm"].notna().any():
        d = pd.to_numeric(predictions["diameter_mm"], errors="coerce").to_numpy(dtype=np.float64)
        small, large = SIZE_BINS_MM
        groups = np.where(d < small, "small", np.where(d <= large, "medium", "large"))
        groups = np.where(np.isfinite(d), groups, None)
        info: dict[str, Any] = {
            "source": "diameter_mm", "unit": "mm", "edges": list(SIZE_BINS_MM),
            "bins": {"small": f"< {small:g} mm", "medium": f"{small:g}-{large:g} mm", "large": f"> {large:g} mm"},
        }  # fmt: skip
    elif "mask_path" in cols and predictions["mask_path"].notna().any():
        fraction = np.array([mask_area_fraction(p) if (p := _resolve(v, image_root)) else math.nan
                             for v in predictions["mask_path"]])  # fmt: skip
        groups, edges = _tertiles(fraction)
        info = {"source": "mask", "unit": "fraction of image area", "edges": edges, "bins": _tertile_bins(edges)}
    elif "path" in cols:
        fraction = []
        for v in predictions["path"]:
            rgb = _load_image(_resolve(v, image_root))
            fraction.append(math.nan if rgb is None else estimate_lesion_fraction(rgb))
        groups, edges = _tertiles(np.array(fraction, dtype=np.float64))
        info = {"source": "image", "unit": "fraction of image area (Otsu estimate)", "edges": edges,
                "bins": _tertile_bins(edges)}  # fmt: skip
    else:
        groups = np.full(len(predictions), None, dtype=object)
        info = {"source": None, "reason": "no diameter_mm, mask_path or path column: lesion size is unknown"}
    series = pd.Series(groups, index=predictions.index, dtype=object)
    info["n_unknown"] = int(series.isna().sum())
    return series, info


def _tertile_bins(edges: list[float]) -> dict[str, str]:
    if not edges:
        return {}
    return {"small": f"<= {edges[0]:.3f}", "medium": f"{edges[0]:.3f}-{edges[1]:.3f}", "large": f"> {edges[1]:.3f}"}


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
    out = {}
    for name in names:
        rows = known & (groups.astype(str).to_numpy() == name)
        n = int(rows.sum())
        mel_true = (label[rows] == MELANOMA_INDEX).astype(np.int64)
        mel_pred = (pred[rows] == MELANOMA_INDEX).astype(np.int64)
        n_err = int(np.sum(label[rows] != pred[rows]))
        with warnings.catch_warnings():
            # An empty group or one without melanoma is labelled "too_small" below; its NaN needs no warning.
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            c = binary_counts(mel_true, mel_pred) if n else BinaryCounts(0, 0, 0, 0)
            err = wilson_estimate(n_err, n, confidence, what=f"error rate of {name}")
            sens = wilson_estimate(c.tp, c.tp + c.fn, confidence, what=f"sensitivity of {name}")
            spec = wilson_estimate(c.tn, c.tn + c.fp, confidence, what=f"specificity of {name}")
        out[name] = {
            "n": n,
            "n_melanoma": c.tp + c.fn,
            "n_non_melanoma": c.tn + c.fp,
            "n_errors": n_err,
            "status": "ok" if n >= min_group_size else "too_small",
            "error_rate": _judged(err, n >= min_group_size),
            "sensitivity": _judged(sens, c.tp + c.fn >= min_melanomas),
            "specificity": _judged(spec, c.tn + c.fp >= min_group_size),
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


def _ci(d: dict[str, Any]) -> str:
    return f"{d['value']:.2f} ({d['lo']:.2f}-{d['hi']:.2f})"


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
                f"{factor}: {name} {_ci(w)} {describe(worst)} vs {_ci(b)} {describe(best)}; the {confidence:.0%} "
                f"intervals do not overlap, so {consequence} {describe(worst)}."
            )
    return found


# --------------------------------------------------------------------------------------------------------
# Gallery
# --------------------------------------------------------------------------------------------------------


def _heatmap(heatmap_fn: HeatmapFn, path: Path | None) -> tuple[np.ndarray | None, str | None]:
    if path is None:
        return None, "no image path"
    try:
        return _as_rgb(heatmap_fn(str(path))), None
    except Exception as err:  # an optional picture must not sink the whole analysis
        return None, f"{type(err).__name__}: {err}"


def _plot_gallery(
    cases: pd.DataFrame,
    path: Path,
    threshold: float,
    heatmap_fn: HeatmapFn | None,
    image_root: str | os.PathLike[str] | None,
) -> dict[str, str]:
    """Draw the missed melanomas (image, and heat map when given); return heat-map errors by image id."""
    errors: dict[str, str] = {}
    panels = 2 if heatmap_fn is not None else 1
    per_row = 3 if heatmap_fn is not None else 5
    k = len(cases)
    if k == 0:
        fig = _new_figure(5.0, 1.5)
        ax = fig.subplots()
        ax.text(0.5, 0.5, f"No missed melanoma at threshold {threshold:.3g}", ha="center", va="center")
        ax.set_axis_off()
        _save(fig, path)
        return errors
    n_rows = math.ceil(k / per_row)
    n_cols = min(k, per_row) * panels
    fig = _new_figure(2.3 * n_cols, 2.7 * n_rows)
    fig.suptitle(f"Most confidently missed melanomas (lowest p(MEL); threshold {threshold:.3g})")
    axes = np.atleast_2d(fig.subplots(n_rows, n_cols, squeeze=False))  # (rows, cols)
    for ax in axes.ravel():
        ax.set_axis_off()
    for i, (_, row) in enumerate(cases.iterrows()):
        r, c = divmod(i, per_row)
        image_path = _resolve(row.get("path"), image_root)
        rgb = _load_image(image_path)
        ax = axes[r, c * panels]
        if rgb is None:
            ax.text(0.5, 0.5, "image not found", ha="center", va="center", fontsize=8)
        else:
            ax.imshow(rgb)
        ax.set_title(
            f"{row.get('image_id', row.name)}\npred {row['predicted']} {row['p_predicted']:.2f} | "
            f"p(MEL) {row['p_melanoma']:.3f}",
            fontsize=7,
        )
        if heatmap_fn is not None:
            overlay, error = _heatmap(heatmap_fn, image_path)
            hax = axes[r, c * panels + 1]
            if overlay is None:
                errors[str(row.get("image_id", row.name))] = str(error)
                hax.text(0.5, 0.5, "heat map unavailable", ha="center", va="center", fontsize=8)
            else:
                hax.imshow(overlay)
            hax.set_title("heat map", fontsize=7)
    _save(fig, path)
    return errors


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
    heatmap_errors = _plot_gallery(top, out / "gallery.png", threshold, heatmap_fn, image_root)

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
                + (f", unknown {unknown}" if unknown else "") + f" (of {len(fn)})."
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
            + (f" (sensitivity {_ci(sens)})." if sens["value"] is not None else ".")]  # fmt: skip
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

    result = _jsonable({
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
    })
    _io.write_json(out / "errors.json", result)
    _write_html(result, out / "errors.html")
    return result


# --------------------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------------------


def _cell(d: dict[str, Any]) -> str:
    if d["value"] is None:
        return "—"
    text = _ci(d)
    return text if d["status"] == "ok" else f"{text} (too small to judge)"


def _group_rows(label: str, groups: dict[str, dict[str, Any]]) -> list[list[Any]]:
    return [
        [label, g, v["n"], v["n_melanoma"], _cell(v["error_rate"]), _cell(v["sensitivity"]), _cell(v["specificity"])]
        for g, v in groups.items()
    ]


_GROUP_HEADER = ("factor", "group", "images", "melanomas", "error rate", "sensitivity", "specificity")


def _write_html(result: dict[str, Any], path: Path) -> None:
    items = "".join(f"<li>{html.escape(s)}</li>" for s in result["findings"])
    sections = [_html.Section("Findings", f"<ul>{items}</ul>")]

    fns = result["false_negatives"]
    meta_keys = sorted({k for f in fns for k in f["metadata"]})
    rows = [[f["image_id"], f["predicted"], f["p_predicted"], f["p_melanoma"],
             *(f["metadata"].get(k) for k in meta_keys)] for f in fns]  # fmt: skip
    body = _html.paragraph(
        f"{result['n_false_negatives']} melanoma(s) with p(MEL) below the threshold {result['threshold']:.3g}, "
        f"most confidently missed first ({result['confident_definition']})."
    )
    sections.append(_html.Section("Missed melanomas", body + _html.table(
        ["image", "predicted", "p(predicted)", "p(MEL)", *meta_keys], rows)))  # fmt: skip
    gallery = _html.image(result["gallery"]["path"], "most confidently missed melanomas")
    if result["gallery"]["heatmap_errors"]:
        gallery += _html.paragraph(f"Heat maps unavailable for {len(result['gallery']['heatmap_errors'])} image(s).")
    sections.append(_html.Section(f"Top {len(result['top_k'])} most confidently missed", gallery))

    size = result["by_size"]
    if size["groups"]:
        note = _html.paragraph(
            f"Size source: {size['source']} ({size.get('unit', '')}); bins: "
            + ", ".join(f"{g} {b}" for g, b in size["bins"].items())
            + f"; {size['n_unknown']} image(s) of unknown size."
        )
        sections.append(_html.Section("By lesion size", note + _html.table(_GROUP_HEADER,
                                                                           _group_rows("size", size["groups"]))))
    else:
        sections.append(_html.Section("By lesion size", _html.paragraph(result["skipped"].get("size", ""))))
    nuisance_rows = [
        r for flag, v in result["by_nuisance"].items() for r in _group_rows(NUISANCE_NAMES[flag], v["groups"])
    ]
    if nuisance_rows:
        sections.append(_html.Section("By nuisance", _html.paragraph(
            "Specificity matters most here: a shortcut (e.g. ink marks learned as a sign of melanoma) shows as "
            "lower specificity among benign lesions with the nuisance.") + _html.table(_GROUP_HEADER, nuisance_rows)))
    if result["by_dermoscope"] is not None:
        sections.append(_html.Section("By dermoscope", _html.table(
            _GROUP_HEADER, _group_rows("dermoscope", result["by_dermoscope"]["groups"]))))  # fmt: skip
    if result["skipped"]:
        sections.append(_html.Section("Not analysed", _html.table(
            ["analysis", "reason"], sorted(result["skipped"].items()))))  # fmt: skip
    _html.write_page(
        path,
        "DermaScan error analysis",
        sections,
        subtitle=f"{result['n']} images, {result['n_melanoma']} melanomas, threshold {result['threshold']:.3g}; "
        f"intervals are 95% Wilson",
    )
