"""Input checks of the evaluation package, written once: each public metric validates its inputs here, at the
top, with a message that names the bad value (as scikit-learn's ``check_*`` helpers do); degenerate input
warns :class:`UndefinedMetricWarning` through :func:`warn_undefined`.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from dermascan.decision import decide
from dermascan.taxonomy import CLASSES, MELANOMA_INDEX, NUM_CLASSES, class_index

# Rows of a probability matrix may be float32 softmax outputs: allow their rounding, catch real mistakes.
_ROW_SUM_ATOL = 1e-3


class UndefinedMetricWarning(UserWarning):
    """A metric is undefined on this input (e.g. sensitivity without positives) and was set to NaN."""


def warn_undefined(message: str) -> None:
    # stacklevel 3 points at the caller of the public metric, not at this helper.
    warnings.warn(message, UndefinedMetricWarning, stacklevel=3)


def as_1d(values: ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per case), got an array of shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty: need at least one case")
    return arr


def check_labels(values: ArrayLike, name: str, num_classes: int, *, binary: bool = False) -> np.ndarray:
    """Return ``values`` as int64 class indices in ``0..num_classes-1``, or raise naming the bad value."""
    arr = as_1d(values, name)
    if arr.dtype == bool:
        arr = arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating):
            not_int = ~np.isfinite(arr) | (arr != np.round(arr))
            if not_int.any():
                i = int(np.argmax(not_int))
                raise ValueError(f"{name} must hold integer class indices; found {arr[i].item()!r} at index {i}")
        else:
            raise ValueError(
                f"{name} must hold integer class indices, got dtype {arr.dtype} (first value {arr[0].item()!r}); "
                f"map class codes to indices with dermascan.taxonomy.class_index"
            )
        arr = arr.astype(np.int64)
    arr = arr.astype(np.int64, copy=False)
    bad = (arr < 0) | (arr >= num_classes)
    if bad.any():
        i = int(np.argmax(bad))
        if binary:
            raise ValueError(f"{name} must be binary (1 = melanoma, 0 = any other class); found {arr[i]} at index {i}")
        raise ValueError(
            f"{name} has label {arr[i]} at index {i}, outside 0..{num_classes - 1} (num_classes={num_classes})"
        )
    return arr


def check_binary(values: ArrayLike, name: str) -> np.ndarray:
    return check_labels(values, name, 2, binary=True)


def check_scores(values: ArrayLike, name: str) -> np.ndarray:
    arr = as_1d(values, name)
    try:
        arr = arr.astype(np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be numeric scores, got dtype {arr.dtype}") from err
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{name} must be finite; found {arr[i]} at index {i}")
    return arr


def check_probs(values: ArrayLike, name: str, *, require_normalised: bool = True) -> np.ndarray:
    """Return an (N, K) float64 probability matrix, or raise naming the bad entry."""
    arr = np.asarray(values)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (cases, classes), got an array of shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: need at least one case")
    if arr.shape[1] < 2:
        raise ValueError(f"{name} must have at least 2 class columns, got shape {arr.shape}")
    arr = arr.astype(np.float64)
    bad = ~np.isfinite(arr) | (arr < 0.0) | (arr > 1.0)
    if bad.any():
        r, c = np.unravel_index(int(np.argmax(bad)), arr.shape)
        raise ValueError(f"{name} has {arr[r, c]} at row {r}, column {c}: probabilities must lie in [0, 1]")
    if require_normalised:
        sums = arr.sum(axis=1)
        off = np.abs(sums - 1.0) > _ROW_SUM_ATOL
        if off.any():
            r = int(np.argmax(off))
            raise ValueError(
                f"{name} row {r} sums to {sums[r]:.6g}, expected 1: pass probabilities "
                f"(softmax of the logits, e.g. dermascan.evaluation.calibration.apply_temperature), not logits"
            )
    return arr


def check_same_length(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if len(a) != len(b):
        raise ValueError(f"{name_a} has {len(a)} cases but {name_b} has {len(b)}: they must match")


def check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), e.g. 0.95; got {confidence!r}")


def class_name(index: int, num_classes: int) -> str:
    return CLASSES[index] if num_classes == NUM_CLASSES else str(index)


def ratio(numerator: float, denominator: float, what: str) -> float:
    """``numerator / denominator``, or NaN with a warning that names what is undefined."""
    if denominator == 0:
        warn_undefined(f"{what} is undefined (denominator is 0); set to NaN")
        return math.nan
    return float(numerator) / float(denominator)


def check_target(target: float) -> None:
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target sensitivity must be in (0, 1], e.g. 0.90; got {target!r}")


def check_binary_scores(y_true: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Binary labels and finite scores of the same length, as (int64, float64) arrays."""
    t = check_binary(y_true, "y_true")
    s = check_scores(scores, "scores")
    check_same_length(t, s, "y_true", "scores")
    return t, s


# --------------------------------------------------------------------------------------------------------
# The predictions frame of the audits (error analysis, fairness)
# --------------------------------------------------------------------------------------------------------


def check_threshold(threshold: float) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, int | float | np.number):
        raise ValueError(f"threshold must be a number in [0, 1], got {threshold!r}")
    if not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
        raise ValueError(f"threshold must be in [0, 1] (p(MEL) >= threshold is melanoma), got {threshold!r}")
    return float(threshold)


def check_predictions(predictions: pd.DataFrame, threshold: float, *, check_pred: bool = True) -> pd.DataFrame:
    """Validate an evaluation predictions frame and return a copy ready for the audits.

    Checks that the 7 probability columns and ``label`` (or ``dx``, mapped to indices) exist and are valid.
    ``pred`` is filled with :func:`~dermascan.decision.decide` when absent; when present
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
    threshold = check_threshold(threshold)
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
                    f"with dermascan.decision.decide(probs, threshold) or pass that threshold"
                )
    return frame
