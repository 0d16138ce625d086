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

from dermascan.decision import _check_logits, apply_temperature, log_softmax, softmax
from dermascan.evaluation._validate import check_labels, check_same_length

__all__ = ["apply_temperature", "fit_temperature", "log_softmax", "softmax"]

# T is searched on log T within these bounds: far beyond any useful temperature on either side, and
# bounded so that a degenerate set (e.g. perfectly separable logits) cannot drive T to 0 or infinity.
_T_BOUNDS = (0.01, 100.0)


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
    y = check_labels(y_true, "y_true", z.shape[1])
    check_same_length(y, z, "y_true", "logits")
    result = optimize.minimize_scalar(
        _nll, bounds=(math.log(_T_BOUNDS[0]), math.log(_T_BOUNDS[1])), args=(z, y), method="bounded",
        options={"xatol": 1e-6},
    )  # fmt: skip
    return float(math.exp(result.x))
