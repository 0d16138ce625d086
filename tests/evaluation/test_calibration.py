"""Temperature scaling: a stable softmax, and a fitted temperature that undoes over-confidence."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special

from dermascan.evaluation.calibration import apply_temperature, fit_temperature, log_softmax, softmax
from dermascan.evaluation.metrics import expected_calibration_error

K = 7


def _calibrated(seed: int, n: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels drawn from softmax(logits): calibrated by construction (T = 1)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=1.5, size=(n, K))
    p = special.softmax(logits, axis=1)
    y = (p.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)  # one categorical draw per row
    return logits, y


def test_softmax_matches_scipy_and_is_stable():
    z = np.random.default_rng(0).normal(size=(5, K))
    np.testing.assert_allclose(softmax(z), special.softmax(z, axis=1))
    np.testing.assert_allclose(log_softmax(z), special.log_softmax(z, axis=1))
    huge = np.array([[1000.0, 0.0, -1000.0]])
    p = softmax(huge)
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert np.isfinite(log_softmax(huge)).all()


@pytest.mark.parametrize("seed", [0, 1])
def test_overconfident_logits_fit_a_temperature_near_three(seed):
    logits, y = _calibrated(seed)
    overconfident = 3.0 * logits
    temperature = fit_temperature(overconfident, y)
    assert temperature == pytest.approx(3.0, rel=0.1)
    before = expected_calibration_error(y, softmax(overconfident))
    after = expected_calibration_error(y, apply_temperature(overconfident, temperature))
    assert after < 0.5 * before


def test_calibrated_logits_fit_a_temperature_near_one():
    logits, y = _calibrated(2)
    assert fit_temperature(logits, y) == pytest.approx(1.0, abs=0.1)


def test_underconfident_logits_fit_a_temperature_below_one():
    logits, y = _calibrated(3)
    assert fit_temperature(logits / 2.0, y) == pytest.approx(0.5, rel=0.1)


def test_temperature_keeps_the_argmax():
    logits, _ = _calibrated(0, n=50)
    np.testing.assert_array_equal(apply_temperature(logits, 2.5).argmax(1), logits.argmax(1))
    np.testing.assert_allclose(apply_temperature(logits, 1.0), softmax(logits))


def test_bad_inputs_raise():
    logits, y = _calibrated(0, n=10)
    with pytest.raises(ValueError, match="temperature"):
        apply_temperature(logits, 0.0)
    with pytest.raises(ValueError, match="temperature"):
        apply_temperature(logits, float("nan"))
    bad = logits.copy()
    bad[2, 3] = np.inf
    with pytest.raises(ValueError, match="inf at row 2, column 3"):
        fit_temperature(bad, y)
    with pytest.raises(ValueError, match="10 cases but logits has 9"):
        fit_temperature(logits[:9], y)
    with pytest.raises(ValueError, match="label 7"):
        fit_temperature(logits, np.r_[y[:9], 7])
    with pytest.raises(ValueError, match="2-D"):
        fit_temperature(logits[0], y[:1])
