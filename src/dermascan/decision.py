"""The decision policy: how a model's logits become DermaScan's clinical answer. A leaf module (numpy only).

logits -> ``softmax(logits / T)`` (temperature scaling, fitted on validation) -> :func:`decide` at the locked
melanoma threshold -> :func:`risk_band`. The Predictor, the HTTP service, evaluation and export all use
these functions, so a threshold means the same thing everywhere. Nothing here imports torch, scipy or the
evaluation package: a serving process needs this module and nothing heavier.

How the threshold and temperature are *chosen* lives in :mod:`dermascan.evaluation.operating_point` and
:mod:`dermascan.evaluation.calibration`; this module only applies them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from dermascan.taxonomy import MELANOMA_INDEX

__all__ = [
    "CRITERIA",
    "DecisionPolicy",
    "RiskBands",
    "UncalibratedWarning",
    "apply_temperature",
    "decide",
    "log_softmax",
    "risk_band",
    "softmax",
]

#: How a threshold is chosen for its target sensitivity: the observed value, or the lower Wilson bound.
CRITERIA = ("point", "lower_ci")


class UncalibratedWarning(UserWarning):
    """The model has no operating point: temperature 1 and the argmax decide, not a validated threshold."""


# ------------------------------------------------------------------------------------------ temperature


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


def check_temperature(temperature: float) -> float:
    """``temperature`` as a float, or a ValueError naming the bad value."""
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
    return softmax(_check_logits(logits) / check_temperature(temperature))


# ------------------------------------------------------------------------------------------ the decision


def _check_scores(probs: ArrayLike) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"probs must be 2-D (cases, classes) with at least 2 classes, got shape {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError("probs must be finite (found NaN or infinity)")
    return p


def decide(probs: ArrayLike, threshold: float | None, melanoma_index: int = MELANOMA_INDEX) -> np.ndarray:
    """Turn class probabilities into one predicted class per case: the decision rule of DermaScan.

    With a threshold, the threshold alone decides the melanoma call:

    - ``p(melanoma) >= threshold``: melanoma, even when another class has a larger probability (a
      screening tool must not let a confident nevus hide a 30% melanoma);
    - otherwise the argmax over all classes, except that melanoma is excluded: if melanoma has the
      largest probability but stays below the threshold, the case gets the most probable other class.

    So a case is called melanoma exactly when ``p(melanoma) >= threshold``, and the sensitivity and
    specificity of the 7-class decision equal those of the binary rule used to choose the threshold.
    With ``threshold=None`` the rule is the plain argmax.

    Args:
        probs: class probabilities (or any scores on the threshold's scale), shape (N, K).
        threshold: melanoma threshold on ``probs[:, melanoma_index]``, or ``None`` for argmax.
        melanoma_index: column of melanoma.

    Returns:
        Predicted class indices, int64, shape (N,).
    """
    p = _check_scores(probs)
    if not 0 <= melanoma_index < p.shape[1]:
        raise ValueError(f"melanoma_index {melanoma_index} is outside 0..{p.shape[1] - 1}")
    if threshold is None:
        return p.argmax(axis=1).astype(np.int64)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float | np.number) or math.isnan(threshold):
        raise ValueError(f"threshold must be a number or None (argmax), got {threshold!r}")
    others = p.copy()
    others[:, melanoma_index] = -np.inf
    other_best = others.argmax(axis=1)  # (N,) the most probable class that is not melanoma
    return np.where(p[:, melanoma_index] >= threshold, melanoma_index, other_best).astype(np.int64)


@dataclass(frozen=True)
class RiskBands:
    """Edges that map a calibrated melanoma probability to a risk band.

    Attributes:
        moderate: ``p >= moderate`` is at least "moderate" risk.
        high: ``p >= high`` is "high" risk; by default the operating threshold, so every case the
            decision rule calls melanoma is high risk and no high-risk case is called something else.
    """

    moderate: float
    high: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.moderate <= self.high <= 1.0:
            raise ValueError(
                f"risk band edges must satisfy 0 <= moderate <= high <= 1, got moderate={self.moderate!r}, "
                f"high={self.high!r}"
            )

    @classmethod
    def from_threshold(cls, threshold: float, moderate_fraction: float = 1.0 / 3.0) -> RiskBands:
        """Default bands: high from the operating threshold, moderate from ``threshold * moderate_fraction``.

        A third of the threshold keeps "moderate" for cases well below the melanoma call that still deserve
        a closer look (with a 0.3 threshold: low < 0.1 <= moderate < 0.3 <= high).
        """
        return cls(moderate=float(threshold) * moderate_fraction, high=float(threshold))

    def to_dict(self) -> dict[str, float]:
        """JSON-ready dict, as stored in a model bundle's manifest."""
        return {"moderate": self.moderate, "high": self.high}


def risk_band(p_mel: float | ArrayLike, bands: RiskBands) -> str | np.ndarray:
    """Map a calibrated melanoma probability to ``"low"``, ``"moderate"`` or ``"high"``.

    The probability must be on the scale the threshold was chosen on (after temperature scaling when the
    model is calibrated). Edges are inclusive: ``p >= bands.high`` is high, ``p >= bands.moderate`` moderate.

    Returns:
        A string for a scalar input, an array of strings for an array input.
    """
    p = np.asarray(p_mel, dtype=np.float64)
    bad = ~np.isfinite(p) | (p < 0) | (p > 1)
    if bad.any():
        raise ValueError(f"melanoma probability must be in [0, 1], got {p[bad].ravel()[0]!r}")
    band = np.where(p >= bands.high, "high", np.where(p >= bands.moderate, "moderate", "low"))
    return str(band) if band.ndim == 0 else band


# ------------------------------------------------------------------------------------------ the policy


@dataclass(frozen=True)
class DecisionPolicy:
    """How logits become the clinical output: calibration, the melanoma threshold and the risk bands.

    Attributes:
        temperature: temperature-scaling factor ``T``; probabilities are ``softmax(logits / T)``.
        threshold: call melanoma when ``p(melanoma) >= threshold`` (locked on validation data). ``None``
            for an uncalibrated model: the argmax decides and the flag means "argmax is melanoma".
        risk_bands: edges of the low/moderate/high melanoma risk bands; ``None`` without a threshold
            (no validated scale to put bands on), and then ``risk_band`` is ``None`` in every result.
        target_sensitivity: the melanoma sensitivity the threshold was chosen for.
        criterion: ``point`` or ``lower_ci`` (see :data:`CRITERIA`).
        tta: whether the temperature and threshold were fitted on flip-averaged (test-time augmented)
            logits. A threshold fitted on averaged logits does not hold for single-view logits, so every
            consumer checks this against how it predicts (:meth:`check_views`).
    """

    temperature: float = 1.0
    threshold: float | None = None
    risk_bands: RiskBands | None = None
    target_sensitivity: float | None = None
    criterion: str | None = None
    tta: bool = False

    def __post_init__(self) -> None:
        check_temperature(self.temperature)
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1] or None, got {self.threshold!r}")
        if self.criterion is not None and self.criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {CRITERIA}, got {self.criterion!r}")

    @property
    def calibrated(self) -> bool:
        """Whether a validated operating point exists (a threshold chosen on validation data)."""
        return self.threshold is not None

    def probabilities(self, logits: ArrayLike) -> np.ndarray:
        """Calibrated probabilities (N, K) of logits (N, K)."""
        return apply_temperature(logits, self.temperature)

    def decide(self, probs: ArrayLike, melanoma_index: int = MELANOMA_INDEX) -> np.ndarray:
        """Class indices (N,) by :func:`decide` at this policy's threshold."""
        return decide(probs, self.threshold, melanoma_index)

    def check_views(self, tta: bool, where: str) -> None:
        """Refuse to apply this policy to logits made with another view setting than it was fitted on.

        Args:
            tta: whether the consumer averages flipped views.
            where: what is about to predict (named in the message).

        Raises:
            ValueError: the settings differ, with the fix.
        """
        if self.calibrated and bool(tta) != self.tta:
            fitted = "flip-averaged (--tta)" if self.tta else "single-view"
            used = "flip-averaged" if tta else "single-view"
            fix = (
                "re-run `dermascan evaluate --recalibrate` without --tta (bundles and the Predictor are single-view)"
                if self.tta
                else "pass no --tta, or re-run `dermascan evaluate --recalibrate --tta` to lock a TTA threshold"
            )
            raise ValueError(
                f"the locked operating point was fitted on {fitted} logits but {where} predicts {used}: "
                f"its threshold would not mean the same sensitivity; {fix}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "threshold": self.threshold,
            "risk_bands": self.risk_bands.to_dict() if self.risk_bands is not None else None,
            "target_sensitivity": self.target_sensitivity,
            "criterion": self.criterion,
            "tta": self.tta,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DecisionPolicy:
        """From a manifest's policy or a run's ``operating_point.json`` (extra keys are ignored)."""
        threshold = d.get("threshold")
        bands = d.get("risk_bands")
        if bands is not None:
            bands = RiskBands(float(bands["moderate"]), float(bands["high"]))
        elif threshold is not None:
            bands = RiskBands.from_threshold(float(threshold))
        return cls(
            temperature=float(d.get("temperature", 1.0)),
            threshold=None if threshold is None else float(threshold),
            risk_bands=bands,
            target_sensitivity=d.get("target_sensitivity"),
            criterion=d.get("criterion"),
            tta=bool(d.get("tta", False)),
        )
