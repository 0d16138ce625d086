"""Temperature scaling (Guo et al. 2017): one scalar T > 0 divides the logits so probabilities match frequencies.

Deep networks trained with cross-entropy are usually over-confident (T > 1 fixes that). Temperature
scaling keeps the argmax, so accuracy is unchanged; it moves p(melanoma), so fit T on validation data
before choosing the operating threshold, and apply the same T wherever that threshold is used.
numpy/scipy only: no torch import. The calibration error itself lives in
:func:`dermascan.evaluation.metrics.expected_calibration_error`.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize

from dermascan.evaluation.metrics import _check_labels, _check_same_length

__all__ = ["apply_temperature", "fit_temperature", "log_softmax", "softmax"]

# T is searched on log T within these bounds: far beyond any useful temperature on either side, and
# bounded so that a degenerate set (e.g. perfectly separable logits) cannot drive T to 0 or infinity.
_T_BOUNDS = (0.01, 100.0)


def _check_logits(logits: ArrayLike) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2:
        raise ValueError(f"logits must be 2-D (cases, classes), got shape {z.shape}")
    if z.shape[0] == 0:
        raise ValueError("logits is empty: need at least one case")
    if z.shape[1] < 2:
        raise ValueError(f"logits must have at least 2 class columns, got shape {z.shape}")
    bad = ~np.isfinite(z)
    if bad.any():
        r, c = np.unravel_index(int(np.argmax(bad)), z.shape)
        raise ValueError(f"logits must be finite; found {z[r, c]} at row {r}, column {c}")
    return z


def _check_temperature(temperature: float) -> float:
    if not (isinstance(temperature, int | float | np.number) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    return float(temperature)


def log_softmax(logits: ArrayLike, axis: int = -1) -> np.ndarray:
    """Numerically stable log-softmax (the row maximum is subtracted before exponentiating)."""
    z = np.asarray(logits, dtype=np.float64)
    shifted = z - z.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def softmax(logits: ArrayLike, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax: rows of non-negative probabilities that sum to 1."""
    return np.exp(log_softmax(logits, axis=axis))


def apply_temperature(logits: ArrayLike, temperature: float) -> np.ndarray:
    """Calibrated probabilities ``softmax(logits / T)``, shape (N, K)."""
    return softmax(_check_logits(logits) / _check_temperature(temperature))


def _nll(log_t: float, logits: np.ndarray, y: np.ndarray) -> float:
    log_p = log_softmax(logits / math.exp(log_t))  # (N, K)
    return float(-np.mean(log_p[np.arange(len(y)), y]))


def fit_temperature(logits: ArrayLike, y_true: ArrayLike) -> float:
    """Fit the temperature that minimises the negative log-likelihood of ``y_true``.

    The search runs on log T (bounded, Brent's method), so T stays positive and the steps are
    scale-free.

    Args:
        logits: uncalibrated logits on a held-out (validation) set, shape (N, K).
        y_true: true class indices, shape (N,).

    Returns:
        T > 0; divide logits by it (:func:`apply_temperature`).
    """
    z = _check_logits(logits)
    y = _check_labels(y_true, "y_true", z.shape[1])
    _check_same_length(y, z, "y_true", "logits")
    result = optimize.minimize_scalar(
        _nll, bounds=(math.log(_T_BOUNDS[0]), math.log(_T_BOUNDS[1])), args=(z, y), method="bounded",
        options={"xatol": 1e-6},
    )  # fmt: skip
    return float(math.exp(result.x))
