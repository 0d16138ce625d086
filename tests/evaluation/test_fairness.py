"""Fairness audit: flagged gaps, missing attributes, degenerate groups, mitigation and the written files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dermascan.evaluation import fairness, fairness_report, fairness_stats
from dermascan.taxonomy import CLASSES, MELANOMA_INDEX

THRESHOLD = 0.3
N_BOOT = 50  # the AUROC intervals only need to exist here; their coverage is tested with the metrics


def make_frame(seed: int, per_type: int = 150, dark_miss: float = 0.5, with_fitzpatrick: bool = True) -> pd.DataFrame:
    """Predictions where melanomas on Fitzpatrick V-VI are missed with probability ``dark_miss`` (I-IV: 5%)."""
    rng = np.random.default_rng(seed)
    fitz = np.repeat(np.arange(1, 7), per_type)
    n = len(fitz)
    labels = np.where(rng.random(n) < 0.35, MELANOMA_INDEX, rng.integers(1, len(CLASSES), n))
    miss = np.where(fitz >= 5, dark_miss, 0.05)
    u = rng.random(n)
    mel = labels == MELANOMA_INDEX
    high, low = rng.uniform(0.35, 0.95, n), rng.uniform(0.01, 0.28, n)
    p_mel = np.where(mel, np.where(u < miss, low, high), np.where(u < 0.08, high, low))
    probs = np.zeros((n, len(CLASSES)))
    probs[:, MELANOMA_INDEX] = p_mel
    main = np.where(mel, CLASSES.index("NV"), labels)
    probs[np.arange(n), main] = 1 - p_mel
    frame = pd.DataFrame(probs, columns=CLASSES)
    frame.insert(0, "image_id", [f"ISIC_{seed}_{i:06d}" for i in range(n)])
    frame["label"] = labels
    frame["age"] = rng.choice([25.0, 40.0, 50.0, 65.0, 80.0, np.nan], n)
    frame["sex"] = rng.choice(["male", "female", "unknown"], n)
    frame["localization"] = rng.choice(["back", "trunk", "face"], n)
    if with_fitzpatrick:
        frame["fitzpatrick"] = fitz
    return frame


def load_strict(path) -> dict:
    def no_constant(name: str) -> None:
        raise ValueError(f"non-strict JSON constant {name}")

    return json.loads(path.read_text(), parse_constant=no_constant)


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    out = tmp_path_factory.mktemp("fairness")
    test, calibration = make_frame(seed=0), make_frame(seed=1)
    fair_model = make_frame(seed=0, dark_miss=0.05)
    result = fairness.fairness_audit(
        test, THRESHOLD, out, calibration=calibration, comparison={"reweighted": fair_model}, n_boot=N_BOOT,
        synthetic=True,
    )  # fmt: skip
    return out, result


def test_dark_skin_gap_is_flagged_and_significant(audited):
    _, result = audited
    fitz = result["attributes"]["fitzpatrick"]
    assert list(fitz["groups"]) == ["I", "II", "III", "IV", "V", "VI"]
    assert fitz["best_group"] in {"I", "II", "III", "IV"}
    for name in ("V", "VI"):
        g = fitz["groups"][name]
        assert g["status"] == "ok" and g["flag"] and g["significant"]
        assert g["gap_points"] > 20 and g["p_value"] < 0.05
        assert g["sensitivity"]["hi"] < fitz["groups"][fitz["best_group"]]["sensitivity"]["value"]
        assert set(g["auroc"]) == {"value", "lo", "hi", "n"}
    assert set(fitz["flagged"]) >= {"V", "VI"}
    assert not fitz["groups"][fitz["best_group"]]["flag"]
    assert any(s.startswith("Skin type V:") and "statistically significant" in s for s in result["summary"])


def test_audit_files_and_strict_json(audited):
    out, result = audited
    assert load_strict(out / "fairness.json") == result
    json.dumps(result, allow_nan=False)
    for attribute in ("fitzpatrick", "age", "sex", "localization"):
        assert (out / result["plots"][attribute]).read_bytes().startswith(b"\x89PNG")
    page = (out / "fairness.html").read_text()
    assert page.index("Summary") < page.index("By skin type")
    assert "synthetic images" in page
    assert result["missing_attributes"] == []


def test_age_and_sex_groups_leave_unknowns_out(audited):
    _, result = audited
    age = result["attributes"]["age"]
    assert list(age["groups"]) == ["<30", "30-44", "45-59", "60-74", "75+"] and age["n_unknown"] > 0
    assert set(result["attributes"]["sex"]["groups"]) == {"female", "male"}


def test_mitigation_reduces_the_gap_on_held_out_data(audited):
    _, result = audited
    m = result["mitigation"]
    assert m["status"] == "done"
    fitz = m["attributes"]["fitzpatrick"]
    assert fitz["after"]["max_gap_points"] < fitz["before"]["max_gap_points"] / 2
    assert fitz["thresholds"]["V"] < fitz["thresholds"]["I"]  # darker skin needs a lower threshold
    assert fitz["specificity_cost_points"] > 0  # the price, reported
    assert fitz["after"]["groups"]["V"]["threshold"] == fitz["thresholds"]["V"]
    line = next(s for s in result["summary"] if s.startswith("Mitigation for skin type"))
    before, after = round(fitz["before"]["max_gap_points"]), round(fitz["after"]["max_gap_points"])
    assert f"narrowed the largest detection gap on the test set from {before} to {after} points" in line


def test_comparison_shows_other_models_gaps(audited):
    _, result = audited
    models = result["comparison"]["models"]
    assert list(models) == ["this model", "reweighted"]
    gap = {name: m["attributes"]["fitzpatrick"]["max_gap_points"] for name, m in models.items()}
    assert gap["reweighted"] < gap["this model"]


def test_missing_fitzpatrick_is_reported_and_the_rest_audited(tmp_path):
    frame = make_frame(seed=2, per_type=40, with_fitzpatrick=False)
    result = fairness.fairness_audit(frame, THRESHOLD, tmp_path, n_boot=N_BOOT)
    assert result["missing_attributes"] == ["fitzpatrick"]
    assert set(result["attributes"]) == {"age", "sex", "localization"}
    assert "not recorded" in result["notes"][0] and "not recorded" in result["summary"][1]
    assert "Fitzpatrick skin type is not recorded" in (tmp_path / "fairness.html").read_text()
    assert result["mitigation"]["status"] == "skipped"
    assert any(s.startswith("Mitigation not measured") for s in result["summary"])
    assert result["comparison"] is None


def test_a_group_without_melanoma_is_too_small_and_does_not_crash(tmp_path):
    frame = make_frame(seed=3, per_type=40)
    benign = frame.index[frame["label"] != MELANOMA_INDEX][:30]
    frame.loc[benign, "localization"] = "ear"
    frame.loc[frame.index[:3], "fitzpatrick"] = np.nan  # unrecorded rows are left out, not a crash
    result = fairness.fairness_audit(frame, THRESHOLD, tmp_path, n_boot=N_BOOT, calibration=frame)
    ear = result["attributes"]["localization"]["groups"]["ear"]
    assert ear["n_melanoma"] == 0 and ear["status"] == "too_small"
    assert ear["sensitivity"]["value"] is None and ear["auroc"]["value"] is None
    assert ear["flag"] is False and ear["significant"] is False and ear["gap_points"] is None
    assert result["attributes"]["fitzpatrick"]["n_unknown"] == 3
    assert "ear" in result["mitigation"]["attributes"]["localization"]["groups_using_default"]
    assert any("Too few cases to judge" in s and "'ear'" in s for s in result["summary"])
    json.dumps(result, allow_nan=False)


def test_mitigate_and_apply_group_thresholds():
    calibration = make_frame(seed=4, per_type=60)
    thresholds = fairness.mitigate_thresholds(calibration, "fitzpatrick", target_sensitivity=0.9)
    assert set(thresholds) == set(fairness.FITZPATRICK_GROUPS)
    for name, t in thresholds.items():
        rows = (fairness.attribute_groups(calibration, "fitzpatrick") == name) & (calibration["label"] == 0)
        assert (calibration.loc[rows, "MEL"] >= t).mean() >= 0.9

    test = make_frame(seed=5, per_type=10)
    test.loc[0, "fitzpatrick"] = np.nan
    decided = fairness.apply_group_thresholds(test, "fitzpatrick", {"V": 0.1}, default_threshold=THRESHOLD)
    is_v = fairness.attribute_groups(test, "fitzpatrick") == "V"
    assert (decided.loc[is_v, "threshold"] == 0.1).all() and (decided.loc[~is_v, "threshold"] == THRESHOLD).all()
    assert ((decided["pred"] == MELANOMA_INDEX) == (decided["MEL"] >= decided["threshold"])).all()
    assert "threshold" not in test.columns  # the input is not modified


def test_attribute_groups_bins_and_validation():
    frame = pd.DataFrame({"age": [0, 29.9, 30, 44, 45, 60, 74.5, 75, 90, None],
                          "fitzpatrick": [1, 2.0, "III", "iv", 5, 6, None, "unknown", 1, 2]})  # fmt: skip
    assert list(fairness.attribute_groups(frame, "age")) == [
        "<30", "<30", "30-44", "30-44", "45-59", "60-74", "60-74", "75+", "75+", None,
    ]  # fmt: skip
    assert list(fairness.attribute_groups(frame, "fitzpatrick")) == [
        "I", "II", "III", "IV", "V", "VI", None, None, "I", "II",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="skin type 1-6"):
        fairness.attribute_groups(pd.DataFrame({"fitzpatrick": [7]}), "fitzpatrick")
    with pytest.raises(ValueError, match="no 'fitzpatrick' column"):
        fairness.attribute_groups(pd.DataFrame({"age": [1]}), "fitzpatrick")


# ---------------------------------------------------------------------------------------------------------
# Significance corrected for the number of groups, and the mitigation's criterion (issue 11)
# ---------------------------------------------------------------------------------------------------------


def test_fisher_against_the_rest_is_scipys_fisher_exact():
    from scipy import stats

    rng = np.random.default_rng(0)
    for _ in range(200):
        n, rest = int(rng.integers(1, 60)), int(rng.integers(1, 300))
        a, c = int(rng.integers(0, n + 1)), int(rng.integers(0, rest + 1))
        p = fairness_stats.fisher_vs_rest([a], [n], a + c, n + rest)[0]
        assert p == pytest.approx(stats.fisher_exact([[a, n - a], [c, rest - c]]).pvalue, abs=1e-12)


def test_holm_adjustment_by_hand():
    adjusted = fairness_stats.holm_adjust([0.01, 0.04, 0.03, np.nan])
    # m = 3 tests: 3 x 0.01, then max(0.03, 2 x 0.03), then max(0.06, 1 x 0.04); the untested one stays NaN.
    np.testing.assert_allclose(adjusted[:3], [0.03, 0.06, 0.06])
    assert np.isnan(adjusted[3])


@pytest.mark.parametrize("k", [4, 8, 15])
def test_family_wise_false_alarms_stay_at_alpha_when_every_group_is_equal(k):
    """Equal true sensitivity 0.85, 30 melanomas per group: how often is any group called significant?"""
    audits, n, alpha = 400, 30, 0.05
    found = np.random.default_rng(k).binomial(n, 0.85, size=(audits, k))  # (audits, groups)
    melanomas = np.full(k, n)
    _, _, significant = fairness_stats.significance_vs_rest(found, melanomas, found.sum(1, keepdims=True), n * k,
                                                            alpha)  # fmt: skip
    rate = significant.any(axis=1).mean()
    assert rate <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / audits)  # at most alpha, up to simulation noise
    # The rule it replaces (each group against the best group, uncorrected) calls far more at 8 and 15 groups.
    best = found.max(axis=1, keepdims=True)
    p_vs_best = fairness_stats.fisher_vs_rest(found, melanomas, found + best, 2 * n)
    old_rate = ((p_vs_best < alpha) & (found < best)).any(axis=1).mean()
    if k >= 8:
        assert old_rate > 2 * alpha and old_rate > 2 * rate


def _equal_sites_frame(found: list[int], per_group: int = 30) -> pd.DataFrame:
    """Body sites with ``per_group`` melanomas each (``found[i]`` of them with a high p(MEL)) and as many benign."""
    rows = []
    for i, hits in enumerate(found):
        for j in range(2 * per_group):
            mel = j < per_group
            p = 0.9 if mel and j < hits else 0.1
            rows.append({"MEL": p, "NV": 1 - p, "label": 0 if mel else 1, "localization": f"site{i:02d}"})
    frame = pd.DataFrame(rows)
    for code in CLASSES[2:]:
        frame[code] = 0.0
    return frame


def test_a_gap_among_many_groups_is_judged_against_the_rest_with_holm(tmp_path):
    from scipy import stats

    # 15 sites: one finds 30 of 30, one 21 of 30, the others 26. Against the best group uncorrected, 21/30 vs 30/30
    # gives Fisher p ~ 0.002 ("significant"); against the rest (368 of 420 found) with 15 tests it is not.
    frame = _equal_sites_frame([30, 21] + [26] * 13)
    result = fairness.fairness_audit(frame, THRESHOLD, tmp_path, attributes=("localization",), n_boot=N_BOOT)
    sites = result["attributes"]["localization"]
    worst = sites["groups"]["site01"]
    assert sites["n_tested"] == 15 and worst["flag"] and not worst["significant"]
    assert worst["p_value"] == pytest.approx(stats.fisher_exact([[21, 9], [368, 52]]).pvalue)
    assert worst["p_adjusted"] > 0.05 and worst["rest_sensitivity"] == pytest.approx(368 / 420)
    assert not any(g["significant"] for g in sites["groups"].values())
    assert any("Holm-corrected over 15" in s and "treat these gaps as a warning" in s for s in result["summary"])
    assert "Holm" in result["settings"]["significance"]


def test_mitigation_thresholds_use_the_global_criterion(tmp_path):
    from dermascan.evaluation.operating_point import choose_threshold

    calibration = make_frame(seed=4, per_type=200)
    point = fairness.mitigate_thresholds(calibration, "fitzpatrick", 0.9)
    strict = fairness.mitigate_thresholds(calibration, "fitzpatrick", 0.9, require_lower_ci=True)
    groups = fairness.attribute_groups(calibration, "fitzpatrick")
    assert set(strict) == set(point)
    for name, t in strict.items():
        rows = (groups == name).to_numpy()
        y = (calibration["label"].to_numpy()[rows] == MELANOMA_INDEX).astype(int)
        assert t == choose_threshold(y, calibration["MEL"].to_numpy()[rows], 0.9, require_lower_ci=True).threshold
        assert t <= point[name]
    assert any(strict[g] < point[g] for g in strict)
    result = fairness.fairness_audit(make_frame(seed=0), THRESHOLD, tmp_path, calibration=calibration,
                                     criterion="lower_ci", n_boot=N_BOOT)  # fmt: skip
    assert result["mitigation"]["criterion"] == "lower_ci"
    assert result["mitigation"]["attributes"]["fitzpatrick"]["thresholds"] == strict


@pytest.mark.parametrize(
    ("before", "after", "words"),
    [
        (14.2, 4.0, "narrowed the largest detection gap on the test set from 14 to 4 points"),
        (14.2, 13.8, "left the largest detection gap on the test set at 14 points"),
        (7.0, 9.0, "widened the largest detection gap on the test set from 7 to 9 points"),
        (7.0, None, "unmeasurable"),
    ],
)
def test_the_mitigation_sentence_says_which_way_the_gap_moved(before, after, words):
    # "changed the gap from 14 to 14 points" read as a change; the real-data audit printed exactly that.
    assert words in fairness_report._gap_change(before, after)
