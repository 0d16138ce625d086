"""The decision policy (dermascan.decision): a numpy-only leaf that every consumer applies the same way."""

from __future__ import annotations

import numpy as np
import pytest

from dermascan.decision import DecisionPolicy, RiskBands, apply_temperature, decide


def test_policy_round_trips_through_a_dict_with_tta() -> None:
    policy = DecisionPolicy(
        temperature=1.3,
        threshold=0.2,
        risk_bands=RiskBands(0.05, 0.2),
        criterion="lower_ci",
        target_sensitivity=0.9,
        tta=True,
    )
    assert DecisionPolicy.from_dict(policy.to_dict()) == policy
    # an operating_point.json written before the tta field existed reads as single-view
    assert DecisionPolicy.from_dict({"temperature": 1.0, "threshold": 0.3}).tta is False


def test_policy_applies_temperature_then_threshold() -> None:
    logits = np.array([[0.0, 1.0, 0, 0, 0, 0, 0], [2.0, 0.0, 0, 0, 0, 0, 0]])
    policy = DecisionPolicy(temperature=2.0, threshold=0.12)
    probs = policy.probabilities(logits)
    np.testing.assert_allclose(probs, apply_temperature(logits, 2.0))
    assert probs[0, 0] < probs[0, 1] and probs[0, 0] >= 0.12  # melanoma is not the argmax, but crosses the line
    assert policy.decide(probs).tolist() == [0, 0]
    assert decide(probs, None).tolist() == [1, 0]


@pytest.mark.parametrize("fitted_tta", [True, False])
def test_check_views_refuses_a_mismatch_and_names_the_fix(fitted_tta: bool) -> None:
    policy = DecisionPolicy(threshold=0.3, tta=fitted_tta)
    policy.check_views(fitted_tta, "evaluate")  # the same view setting is fine
    with pytest.raises(ValueError, match="--recalibrate"):
        policy.check_views(not fitted_tta, "evaluate")
    DecisionPolicy().check_views(True, "evaluate")  # uncalibrated: nothing was fitted, nothing to mismatch


def test_bad_policy_values_are_named() -> None:
    with pytest.raises(ValueError, match="temperature"):
        DecisionPolicy(temperature=0.0)
    with pytest.raises(ValueError, match="criterion"):
        DecisionPolicy(threshold=0.3, criterion="median")
