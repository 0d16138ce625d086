"""The decision rule, the choice of the melanoma threshold, and the risk bands."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dermascan.decision import RiskBands, decide, risk_band
from dermascan.evaluation import intervals as CI
from dermascan.evaluation import metrics as M
from dermascan.evaluation.operating_point import OperatingPoint, choose_threshold
from dermascan.taxonomy import CLASSES, NUM_CLASSES

MEL, NV, BCC = (CLASSES.index(c) for c in ("MEL", "NV", "BCC"))


def _row(**probs: float) -> list[float]:
    row = [0.0] * NUM_CLASSES
    for code, value in probs.items():
        row[CLASSES.index(code)] = value
    return row


def _scores(seed: int, n: int = 600) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.25).astype(int)
    return y, 1 / (1 + np.exp(-(rng.normal(size=n) + 1.5 * y - 1)))


def _probs(seed: int, n: int = 200) -> np.ndarray:
    p = np.random.default_rng(seed).dirichlet(np.ones(NUM_CLASSES), size=n)
    return p


# ---------------------------------------------------------------------------------------------------------
# decide
# ---------------------------------------------------------------------------------------------------------


def test_threshold_calls_melanoma_even_when_another_class_is_larger():
    probs = np.array([_row(MEL=0.3, NV=0.7)])
    assert decide(probs, threshold=0.2)[0] == MEL
    assert decide(probs, threshold=None)[0] == NV


def test_melanoma_argmax_below_threshold_takes_the_next_class():
    probs = np.array([_row(MEL=0.5, NV=0.2, BCC=0.3)])
    assert decide(probs, threshold=0.6)[0] == BCC
    assert decide(probs, threshold=None)[0] == MEL


def test_threshold_is_inclusive():
    assert decide(np.array([_row(MEL=0.25, NV=0.75)]), threshold=0.25)[0] == MEL


@pytest.mark.parametrize("threshold", [0.05, 0.2, 0.5, 0.9])
def test_decide_calls_melanoma_exactly_when_p_reaches_threshold(threshold):
    p = _probs(0)
    called = decide(p, threshold) == MEL
    np.testing.assert_array_equal(called, p[:, MEL] >= threshold)
    not_mel = ~called
    others = p.copy()
    others[:, MEL] = -1
    np.testing.assert_array_equal(decide(p, threshold)[not_mel], others[not_mel].argmax(axis=1))


def test_decide_with_another_melanoma_column():
    p = np.array([[0.6, 0.1, 0.3], [0.2, 0.7, 0.1]])
    np.testing.assert_array_equal(decide(p, 0.3, melanoma_index=2), [2, 1])


@pytest.mark.parametrize("bad", [float("nan"), "0.5", True])
def test_decide_rejects_a_bad_threshold(bad):
    with pytest.raises(ValueError, match="threshold"):
        decide(_probs(0, n=3), bad)


def test_decide_rejects_bad_probabilities():
    with pytest.raises(ValueError, match="2-D"):
        decide(np.array([0.1, 0.9]), 0.5)
    with pytest.raises(ValueError, match="melanoma_index 9"):
        decide(_probs(0, n=3), 0.5, melanoma_index=9)


# ---------------------------------------------------------------------------------------------------------
# choose_threshold
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("target", [0.8, 0.9, 0.95])
def test_threshold_from_one_half_reaches_the_target_on_that_half(seed, target):
    y, s = _scores(seed)
    fit, held_out = slice(0, 300), slice(300, 600)
    op = choose_threshold(y[fit], s[fit], target)
    called = (s[fit] >= op.threshold).astype(int)
    assert M.sensitivity_score(y[fit], called) >= target
    assert op.sensitivity.value == pytest.approx(M.sensitivity_score(y[fit], called))
    assert op.specificity.value == pytest.approx(M.specificity_score(y[fit], called))
    assert (op.n_pos, op.n_neg) == (int(y[fit].sum()), 300 - int(y[fit].sum()))
    # The locked threshold carries to new data of the same kind unchanged (no refit on the held-out half):
    # there its sensitivity is the target up to binomial noise (within 3 standard errors).
    held = M.sensitivity_score(y[held_out], (s[held_out] >= op.threshold).astype(int))
    n_held = int(y[held_out].sum())
    assert abs(held - target) < 3 * np.sqrt(target * (1 - target) / n_held)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_threshold_is_the_largest_reaching_the_target(seed):
    y, s = _scores(seed)
    op = choose_threshold(y, s, 0.9)
    spec, threshold = M.specificity_at_sensitivity(y, s, 0.9)
    assert op.threshold == threshold
    assert op.specificity.value == pytest.approx(spec)
    higher = np.unique(s[s > op.threshold])
    if len(higher):
        assert M.sensitivity_score(y, (s >= higher[0]).astype(int)) < 0.9


def test_lower_ci_criterion_is_stricter():
    y, s = _scores(0, n=2000)
    point = choose_threshold(y, s, 0.9)
    strict = choose_threshold(y, s, 0.9, require_lower_ci=True)
    assert strict.criterion == "lower_ci" and point.criterion == "point"
    assert strict.threshold <= point.threshold
    assert strict.sensitivity.lo >= 0.9
    higher = np.unique(s[(y == 1) & (s > strict.threshold)])  # the next melanoma score up misses the criterion
    found = int(np.sum((y == 1) & (s >= higher[0])))
    assert CI.wilson_interval(found, strict.n_pos)[0] < 0.9
    assert strict.sensitivity.value >= point.sensitivity.value


def test_lower_ci_unreachable_with_few_melanomas_raises():
    y = np.array([1] * 20 + [0] * 30)
    s = np.r_[np.linspace(0.5, 1, 20), np.linspace(0, 0.6, 30)]
    with pytest.raises(ValueError, match="need at least 35 melanomas"):
        choose_threshold(y, s, 0.9, require_lower_ci=True)


def test_no_melanoma_raises():
    with pytest.raises(ValueError, match="no melanoma"):
        choose_threshold([0, 0, 0], [0.1, 0.2, 0.3])


@pytest.mark.parametrize("target", [0.0, 1.5, -0.1])
def test_bad_target_raises(target):
    with pytest.raises(ValueError, match="target sensitivity"):
        choose_threshold([0, 1], [0.1, 0.9], target)


def test_hand_case():
    # Melanoma scores 0.9, 0.8, 0.7, 0.4 (4 melanomas); 75% needs 3 found -> threshold 0.7.
    y = [1, 1, 1, 1, 0, 0, 0, 0]
    s = [0.9, 0.8, 0.7, 0.4, 0.75, 0.5, 0.3, 0.1]
    op = choose_threshold(y, s, 0.75)
    assert op.threshold == 0.7
    assert op.sensitivity.value == 0.75
    assert op.specificity.value == 0.75  # 0.75 is the only negative at or above 0.7


def test_tied_melanoma_scores():
    # 0.9 finds one melanoma of three (33%); the tied 0.5 finds all three at once.
    assert choose_threshold([1, 1, 1, 0], [0.5, 0.5, 0.9, 0.2], 0.3).threshold == 0.9
    op = choose_threshold([1, 1, 1, 0], [0.5, 0.5, 0.9, 0.2], 0.5)
    assert op.threshold == 0.5
    assert op.sensitivity.value == 1.0


def test_operating_point_to_dict_is_json():
    y, s = _scores(0)
    op = choose_threshold(y, s, 0.9)
    d = op.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["risk_bands"] == {"moderate": pytest.approx(op.threshold / 3), "high": op.threshold}
    with pytest.raises(ValueError, match="criterion"):
        OperatingPoint(0.5, 0.9, op.sensitivity, op.specificity, 1, 1, "best")


# ---------------------------------------------------------------------------------------------------------
# risk_band
# ---------------------------------------------------------------------------------------------------------


def test_risk_bands_from_threshold():
    bands = RiskBands.from_threshold(0.3)
    assert bands.high == 0.3 and bands.moderate == pytest.approx(0.1)
    assert risk_band(0.05, bands) == "low"
    assert risk_band(0.1, bands) == "moderate"
    assert risk_band(0.29, bands) == "moderate"
    assert risk_band(0.3, bands) == "high"
    np.testing.assert_array_equal(risk_band([0.0, 0.2, 1.0], bands), ["low", "moderate", "high"])


def test_high_band_agrees_with_the_melanoma_call():
    p = _probs(3)
    threshold = 0.25
    high = risk_band(p[:, MEL], RiskBands.from_threshold(threshold)) == "high"
    np.testing.assert_array_equal(high, decide(p, threshold) == MEL)


def test_risk_band_validation():
    with pytest.raises(ValueError, match="moderate <= high"):
        RiskBands(moderate=0.5, high=0.2)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        risk_band(1.5, RiskBands(0.1, 0.3))
