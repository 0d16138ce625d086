"""Drift and quality figures against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from dermascan.monitoring import drift
from dermascan.monitoring.embedding import embeddings_of, mmd_test
from dermascan.monitoring.quality import NOT_ENOUGH, cbpe, confirmed_labels, confirmed_quality
from dermascan.monitoring.reference import feature_reference


def test_psi_against_a_hand_computed_value() -> None:
    # (0.50 - 0.25) ln(0.50 / 0.25) + (0.25 - 0.25) ln 1 + (0.25 - 0.50) ln(0.25 / 0.50) = 0.5 ln 2
    assert drift.psi([0.25, 0.25, 0.5], [0.5, 0.25, 0.25]) == pytest.approx(0.5 * math.log(2), abs=1e-12)
    assert drift.psi([1, 1, 2], [20, 10, 10]) == pytest.approx(0.5 * math.log(2), abs=1e-12)  # counts normalise
    assert drift.psi([0.3, 0.7], [0.3, 0.7]) == 0.0
    # an empty bin is floored at 1e-4: (1e-4 - 0.5) ln(1e-4 / 0.5) + (1 - 0.5) ln(1 / 0.5), with 1 - 0 kept at 1
    assert drift.psi([0.5, 0.5], [0.0, 1.0]) == pytest.approx(
        (1e-4 - 0.5) * math.log(1e-4 / 0.5) + 0.5 * math.log(2), rel=1e-9
    )
    with pytest.raises(ValueError, match="same bins"):
        drift.psi([0.5, 0.5], [1.0])


def test_psi_levels_are_the_briefs() -> None:
    assert [drift.psi_level(v) for v in (0.05, 0.1, 0.2, 0.26, math.nan)] == [
        "ok",
        "warning",
        "warning",
        "alert",
        "none",
    ]


def test_feature_psi_sees_a_shift_and_not_a_resample() -> None:
    rng = np.random.default_rng(0)
    ref = feature_reference(rng.normal(0.5, 0.1, 5000))
    assert drift.feature_psi(ref, rng.normal(0.5, 0.1, 2000)) < 0.02
    assert drift.feature_psi(ref, rng.normal(0.62, 0.1, 2000)) > drift.PSI_ALERT
    assert drift.out_of_range_share(ref, [0.5, 2.0, -1.0, 0.5]) == 0.5


def test_flag_rate_sd_is_the_binomial_sd_at_the_window_size() -> None:
    assert drift.flag_rate_sd(0.2, 100) == pytest.approx(0.04)  # sqrt(0.2 * 0.8 / 100)
    assert drift.flag_rate_sd(0.2, 400) == pytest.approx(0.02)
    # with the reference's own sampling error: sqrt(0.16 / 100 + 0.16 / 400)
    assert drift.flag_rate_sd(0.2, 100, n_reference=400) == pytest.approx(math.sqrt(0.0016 + 0.0004))
    r = drift.flag_rate_drift([1] * 30 + [0] * 70, reference=0.2)
    assert (r.rate, r.n) == (0.3, 100) and r.z == pytest.approx(2.5) and r.alert
    assert not drift.flag_rate_drift([1] * 27 + [0] * 73, reference=0.2).alert  # z = 1.75


def test_the_design_effect_counts_a_lesion_once() -> None:
    assert drift.design_effect(["a", "b", "c", "d"]) == 1.0  # one image per lesion
    assert drift.design_effect(["a", "a", "b", None]) == pytest.approx((4 + 1 + 1) / 4)  # sum m^2 / n
    assert drift.design_effect([None, None]) == 1.0  # no lesion ids: independent images
    # 100 images in 50 lesions of 2: the SD of the rate is sqrt(2) times the independent one
    clustered = drift.flag_rate_drift([1] * 30 + [0] * 70, reference=0.2, clusters=[i // 2 for i in range(100)])
    assert clustered.design_effect == 2.0 and clustered.sd == pytest.approx(0.04 * math.sqrt(2))
    assert clustered.z == pytest.approx(2.5 / math.sqrt(2)) and not clustered.alert  # 30 of 100, 15 of 50 lesions
    with pytest.raises(ValueError, match="design effect"):
        drift.flag_rate_sd(0.2, 100, design_effect=0.5)


def test_disagreement_counts_other_as_not_melanoma() -> None:
    assert drift.disagreement_rate(["MEL", "NV", "NV", "BCC"], ["MEL", "OTHER", "MEL", "NV"]) == 0.5
    assert math.isnan(drift.disagreement_rate([], []))


def test_cbpe_is_the_expected_confusion_matrix() -> None:
    e = cbpe([0.9, 0.6, 0.1, 0.3], [True, True, False, False])
    assert (e.tp, e.fp, e.fn, e.tn) == pytest.approx((1.5, 0.5, 0.4, 1.6))
    assert e.sensitivity == pytest.approx(1.5 / 1.9) and e.specificity == pytest.approx(1.6 / 2.1)


def test_confirmed_labels_prefer_histopathology_and_keep_the_source() -> None:
    t = pd.Timestamp("2026-11-01", tz="UTC")
    fb = pd.DataFrame(
        [
            ("a", t, "NV", None),
            ("a", t + pd.Timedelta(days=20), None, "MEL"),  # the biopsy, weeks later
            ("b", t, "BKL", None),
            ("c", t, None, "NOBIOPSY"),
            ("c", t + pd.Timedelta(days=1), "NV", None),
        ],
        columns=["prediction_id", "created_at", "clinician_label", "histopathology_label"],
    )
    now = confirmed_labels(fb).set_index("prediction_id")
    assert now.loc["a"].tolist() == ["MEL", "histopathology"]
    assert now.loc["b"].tolist() == ["BKL", "clinician"] and now.loc["c"].tolist() == ["NV", "clinician"]
    before = confirmed_labels(fb, as_of=t + pd.Timedelta(days=2)).set_index("prediction_id")
    assert before.loc["a"].tolist() == ["NV", "clinician"]


def test_quality_needs_enough_melanomas_and_alerts_below_088() -> None:
    few = confirmed_quality([1] * 5 + [0] * 50, [1] * 5 + [0] * 50, [0.9] * 5 + [0.1] * 50, ["clinician"] * 55)
    assert few.state == NOT_ENOUGH and few.sensitivity is None and few.n_melanoma == 5
    y = np.array([1] * 40 + [0] * 60)
    flags = np.array([1] * 34 + [0] * 6 + [1] * 10 + [0] * 50)  # 34 / 40 = 0.85
    q = confirmed_quality(y, flags, np.where(flags, 0.8, 0.2), ["histopathology"] * 100)
    assert q.state == "alert" and q.sensitivity.value == pytest.approx(0.85)
    assert q.sensitivity.lo < 0.85 < q.sensitivity.hi and q.specificity.value == pytest.approx(50 / 60)
    assert q.auroc is not None and q.auroc.lo <= q.auroc.value <= q.auroc.hi
    assert confirmed_quality(y, y, y.astype(float), ["clinician"] * 100).state == "ok"


def test_mmd_separates_shifted_samples_only() -> None:
    rng = np.random.default_rng(1)
    ref = rng.normal(0, 1, (150, 7))
    assert mmd_test(ref, rng.normal(0, 1, (100, 7)), permutations=100).p_value > 0.05
    shifted = mmd_test(ref, rng.normal(0.6, 1, (100, 7)), permutations=100)
    assert shifted.p_value < 0.02 and shifted.mmd2 > 0


def test_embeddings_are_the_centred_logits_over_t() -> None:
    logits = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    t = 1.7
    p = np.exp(logits / t) / np.exp(logits / t).sum(axis=1, keepdims=True)
    centred = (logits - logits.mean(axis=1, keepdims=True)) / t
    assert np.allclose(embeddings_of(p), centred)


def test_psi_chance_is_the_chi_square_tail_at_the_effective_size() -> None:
    from scipy import stats

    # 60 window images against 540 reference images in 4 equal bins: effective size 54
    expected, counts = [0.25] * 4, [24, 12, 12, 12]
    pearson = sum((c / 60 - 0.25) ** 2 / 0.25 for c in counts)  # 0.12
    assert drift.psi_chance(expected, counts, 540) == pytest.approx(stats.chi2.sf(54 * pearson, 3))
    value = drift.psi(expected, counts)  # 0.116
    assert drift.psi_level(value, drift.psi_chance(expected, counts, 540)) == "warning"
    strong = [40, 10, 5, 5]
    assert drift.psi(expected, strong) > 0.25
    assert drift.psi_level(drift.psi(expected, strong), drift.psi_chance(expected, strong, 540)) == "alert"
    # what 30 images in 10 bins often show: PSI above 0.25, and a warning only
    few = [6, 5, 1, 4, 2, 3, 1, 3, 4, 1]
    assert drift.psi([0.1] * 10, few) > 0.25
    assert drift.psi_level(drift.psi([0.1] * 10, few), drift.psi_chance([0.1] * 10, few, 300)) == "warning"


def test_an_empty_bin_is_not_called_a_shift() -> None:
    # 60 images of the reference distribution, one of ten bins empty by chance (0.9^60 = 0.2% a bin): PSI's
    # floored log makes that 0.7, the Pearson sum a few images short; no alert
    counts = [9, 9, 4, 6, 6, 7, 8, 5, 6, 0]
    value = drift.psi([0.1] * 10, counts)
    assert value > 0.6
    chance = drift.psi_chance([0.1] * 10, counts, 1000)
    assert chance > 0.01 and drift.psi_level(value, chance) == "warning"
    # a real shift still alerts: half the images in one bin
    shifted = [30, 4, 4, 4, 4, 4, 4, 3, 3, 0]
    assert drift.psi_level(drift.psi([0.1] * 10, shifted), drift.psi_chance([0.1] * 10, shifted, 1000)) == "alert"


def test_concept_drift_needs_more_disagreement_than_the_model_expects() -> None:
    rng = np.random.default_rng(0)
    n = 400
    primary = np.array(["NV"] * n)
    # a weak but calibrated model: p(NV) = 0.65 and 35% of the labels are something else
    labels = np.where(rng.random(n) < 0.35, "BKL", "NV")
    weak = drift.concept_drift(primary, labels, np.full(n, 0.65))
    assert weak.disagreement > 0.3 and abs(weak.expected - 0.35) < 1e-9
    assert abs(weak.z) < 2 and not weak.alert  # above the brief's 20%, but what the model itself says
    # the same labels against a model that claims 95%: the probabilities no longer mean what they did
    drifted = drift.concept_drift(primary, labels, np.full(n, 0.95))
    assert drifted.z > 10 and drifted.alert
    # a small excess over the expectation is not drift, however many cases make it significant
    many = np.where(rng.random(4000) < 0.33, "BKL", "NV")  # 4,000 cases, 3 points above a p(NV) of 0.70
    slight = drift.concept_drift(np.array(["NV"] * 4000), many, np.full(4000, 0.70))
    assert 0 < slight.disagreement - slight.expected < drift.CONCEPT_MARGIN and slight.z > 2 and not slight.alert
    # a confident model that is right: below 20%, no alert whatever z says
    good = drift.concept_drift(primary, np.where(rng.random(n) < 0.1, "BKL", "NV"), np.full(n, 0.99))
    assert good.disagreement < 0.2 and good.z > 2 and not good.alert


def test_concept_drift_leaves_other_out_of_the_expectation() -> None:
    c = drift.concept_drift(["NV", "MEL", "NV", "NV"], ["OTHER", "OTHER", "NV", "BCC"], [0.9, 0.9, 0.8, 0.8])
    assert c.disagreement == 0.5  # the MEL called on an OTHER disagrees; the NV on an OTHER agrees
    assert abs(c.expected - 0.2) < 1e-9  # the two seven-class cases only
    empty = drift.concept_drift([], [], [])
    assert math.isnan(empty.disagreement) and not empty.alert
