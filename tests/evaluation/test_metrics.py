"""Metrics against scikit-learn, against hand-computed cases, on degenerate input, and one invariance suite."""

from __future__ import annotations

import functools
import json
import math
import warnings

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn import calibration as skcal
from sklearn import metrics as sk

from dermascan.evaluation import bootstrap as BS
from dermascan.evaluation import intervals as CI
from dermascan.evaluation import metrics as M
from dermascan.evaluation import report as R
from dermascan.evaluation.metrics import UndefinedMetricWarning
from dermascan.taxonomy import CLASSES, NUM_CLASSES

SEEDS = [0, 1, 2, 3]
K = NUM_CLASSES


def _multiclass(seed: int, n: int = 200, skip_pred: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, K, n)
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, K, n))
    if skip_pred is not None:  # a class the model never predicts
        y_pred[y_pred == skip_pred] = (skip_pred + 1) % K
    return y_true, y_pred


def _binary_scores(seed: int, n: int = 300, decimals: int | None = 1) -> tuple[np.ndarray, np.ndarray]:
    """Binary labels and scores; rounding the scores makes many ties."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    s = 1 / (1 + np.exp(-(rng.normal(size=n) + 1.2 * y)))
    return y, (np.round(s, decimals) if decimals is not None else s)


def _probs(seed: int, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, n)
    logits = rng.normal(size=(n, K))
    logits[np.arange(n), y] += 1.5
    p = np.exp(logits)
    return y, p / p.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------------------------------------------------
# Against scikit-learn
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_confusion_matrix_matches_sklearn(seed):
    y_true, y_pred = _multiclass(seed)
    np.testing.assert_array_equal(
        M.confusion_matrix(y_true, y_pred), sk.confusion_matrix(y_true, y_pred, labels=range(K))
    )
    np.testing.assert_allclose(
        M.confusion_matrix(y_true, y_pred, normalize="true"),
        sk.confusion_matrix(y_true, y_pred, labels=range(K), normalize="true"),
    )


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("skip_pred", [None, 6])
def test_per_class_precision_recall_f1_matches_sklearn(seed, skip_pred):
    y_true, y_pred = _multiclass(seed, skip_pred=skip_pred)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = M.per_class_precision_recall_f1(y_true, y_pred)
        p, r, f, s = sk.precision_recall_fscore_support(y_true, y_pred, labels=range(K), zero_division=np.nan)
    np.testing.assert_allclose(ours["precision"], p, equal_nan=True)
    np.testing.assert_allclose(ours["recall"], r, equal_nan=True)
    np.testing.assert_allclose(ours["f1"], f, equal_nan=True)
    np.testing.assert_array_equal(ours["support"], s)


@pytest.mark.parametrize("seed", SEEDS)
def test_accuracy_and_balanced_accuracy_match_sklearn(seed):
    y_true, y_pred = _multiclass(seed)
    y_true[y_true == 5] = 4  # a class absent from y_true is left out of the balanced mean
    assert M.accuracy_score(y_true, y_pred) == pytest.approx(sk.accuracy_score(y_true, y_pred))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn: "y_pred contains classes not in y_true"
        expected = sk.balanced_accuracy_score(y_true, y_pred)
    assert M.balanced_accuracy_score(y_true, y_pred) == pytest.approx(expected)


@pytest.mark.parametrize("seed", SEEDS)
def test_binary_label_metrics_match_sklearn(seed):
    y, s = _binary_scores(seed)
    pred = (s >= 0.5).astype(int)
    assert M.sensitivity_score(y, pred) == pytest.approx(sk.recall_score(y, pred))
    assert M.specificity_score(y, pred) == pytest.approx(sk.recall_score(y, pred, pos_label=0))
    assert M.ppv_score(y, pred) == pytest.approx(sk.precision_score(y, pred))
    assert M.npv_score(y, pred) == pytest.approx(sk.precision_score(y, pred, pos_label=0))
    tn, fp, fn, tp = sk.confusion_matrix(y, pred).ravel()
    assert M.binary_counts(y, pred) == (tp, fp, tn, fn)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("decimals", [None, 1])
def test_roc_auc_matches_sklearn_with_ties(seed, decimals):
    y, s = _binary_scores(seed, decimals=decimals)
    assert M.roc_auc_score(y, s) == pytest.approx(sk.roc_auc_score(y, s), abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("drop_intermediate", [True, False])
def test_roc_curve_matches_sklearn(seed, drop_intermediate):
    y, s = _binary_scores(seed, decimals=2)
    ours = M.roc_curve(y, s, drop_intermediate=drop_intermediate)
    theirs = sk.roc_curve(y, s, drop_intermediate=drop_intermediate)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("target", [0.5, 0.9, 0.95, 1.0])
def test_specificity_at_sensitivity_is_the_best_reachable(seed, target):
    y, s = _binary_scores(seed, decimals=2)
    spec, threshold = M.specificity_at_sensitivity(y, s, target)
    fpr, tpr, thresholds = sk.roc_curve(y, s, drop_intermediate=False)
    ok = tpr >= target
    assert spec == pytest.approx(1 - fpr[ok].min())
    assert threshold == thresholds[ok].max()
    called = (s >= threshold).astype(int)  # the returned threshold reproduces both figures
    assert M.sensitivity_score(y, called) >= target
    assert M.specificity_score(y, called) == pytest.approx(spec)


@pytest.mark.parametrize("seed", SEEDS)
def test_binary_reliability_curve_matches_sklearn_calibration_curve(seed):
    rng = np.random.default_rng(seed)
    p = rng.random(500)
    y = (rng.random(500) < p).astype(int)
    curve = M.reliability_curve(y, p, n_bins=10)
    prob_true, prob_pred = skcal.calibration_curve(y, p, n_bins=10)
    filled = curve.count > 0
    np.testing.assert_allclose(curve.accuracy[filled], prob_true)
    np.testing.assert_allclose(curve.confidence[filled], prob_pred)


# ---------------------------------------------------------------------------------------------------------
# Hand-computed cases
# ---------------------------------------------------------------------------------------------------------


def test_sensitivity_nine_of_ten():
    y_true = [1] * 10 + [0] * 5
    y_pred = [1] * 9 + [0] + [0] * 4 + [1]
    assert M.sensitivity_score(y_true, y_pred) == pytest.approx(0.9)
    assert M.specificity_score(y_true, y_pred) == pytest.approx(0.8)
    assert M.ppv_score(y_true, y_pred) == pytest.approx(0.9)
    assert M.npv_score(y_true, y_pred) == pytest.approx(0.8)


def test_wilson_interval_known_values():
    lo, hi = CI.wilson_interval(9, 10)
    assert (round(lo, 3), round(hi, 3)) == (0.596, 0.982)
    assert CI.wilson_interval(10, 10)[1] == 1.0
    assert CI.wilson_interval(0, 10)[0] == 0.0


@pytest.mark.parametrize(("k", "n", "confidence"), [(0, 7, 0.95), (3, 7, 0.9), (45, 50, 0.99), (200, 1000, 0.95)])
def test_wilson_interval_matches_scipy(k, n, confidence):
    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    np.testing.assert_allclose(CI.wilson_interval(k, n, confidence), (ci.low, ci.high), atol=1e-12)


def test_auroc_hand_case_with_a_tie():
    # pairs (pos, neg): (0.8 > 0.3) (0.8 > 0.5) (0.5 = 0.5) (0.5 > 0.3) -> 3.5 / 4
    assert M.roc_auc_score([1, 1, 0, 0], [0.8, 0.5, 0.5, 0.3]) == pytest.approx(0.875)


def test_top_label_ece_hand_case():
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.4, 0.6]])
    y = [0, 1, 1, 1]  # conf 0.9: 1 of 2 right (|0.5 - 0.9|); conf 0.6: 2 of 2 right (|1 - 0.6|)
    assert M.expected_calibration_error(y, probs, n_bins=10) == pytest.approx(0.4)
    curve = M.reliability_curve(y, probs, n_bins=10)
    assert curve.count.sum() == 4
    assert curve.count[8] == 2  # 0.9 falls in (0.8, 0.9]
    assert M.expected_calibration_error([0, 0], [[1.0, 0.0], [1.0, 0.0]]) == 0.0


def test_binary_ece_hand_case():
    p = np.array([0.2, 0.2, 0.2, 0.2, 0.2])
    assert M.binary_expected_calibration_error([1, 0, 0, 0, 0], p) == pytest.approx(0.0)
    assert M.binary_expected_calibration_error([1, 1, 0, 0, 0], p) == pytest.approx(0.2)


def test_confusion_matrix_hand_case():
    cm = M.confusion_matrix([0, 0, 1, 2], [0, 1, 1, 0], num_classes=3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 1, 0], [1, 0, 0]])


def test_estimate_to_dict_writes_nan_as_none():
    d = CI.Estimate(math.nan, math.nan, math.nan, 0).to_dict()
    assert d == {"value": None, "lo": None, "hi": None, "n": 0}
    json.dumps(d, allow_nan=False)


# ---------------------------------------------------------------------------------------------------------
# Degenerate input: NaN and a warning, never a crash or a silent 0 / 0.5
# ---------------------------------------------------------------------------------------------------------


def test_no_positives_gives_nan_and_warns():
    y = [0, 0, 0, 0]
    with pytest.warns(UndefinedMetricWarning, match="sensitivity"):
        assert math.isnan(M.sensitivity_score(y, [0, 1, 0, 0]))
    with pytest.warns(UndefinedMetricWarning, match="AUROC"):
        assert math.isnan(M.roc_auc_score(y, [0.1, 0.2, 0.3, 0.4]))
    with pytest.warns(UndefinedMetricWarning, match="only one class"):
        assert all(math.isnan(v) for v in M.specificity_at_sensitivity(y, [0.1, 0.2, 0.3, 0.4]))
    with pytest.warns(UndefinedMetricWarning, match="true positive rate"):
        assert np.isnan(M.roc_curve(y, [0.1, 0.2, 0.3, 0.4])[1]).all()


def test_no_negatives_and_nothing_predicted():
    with pytest.warns(UndefinedMetricWarning, match="specificity"):
        assert math.isnan(M.specificity_score([1, 1], [1, 0]))
    with pytest.warns(UndefinedMetricWarning, match="PPV"):
        assert math.isnan(M.ppv_score([1, 0], [0, 0]))
    with pytest.warns(UndefinedMetricWarning, match="NPV"):
        assert math.isnan(M.npv_score([1, 0], [1, 1]))


def test_never_predicted_class_precision_is_nan_and_warns():
    with pytest.warns(UndefinedMetricWarning) as record:
        prf = M.per_class_precision_recall_f1([0, 6, 1], [0, 0, 1])
    messages = [str(w.message) for w in record]
    assert any("never predicted (BCC, AKIEC, BKL, DF, VASC)" in m for m in messages), messages
    assert any("absent from y_true (BCC, AKIEC, BKL, DF)" in m for m in messages), messages
    assert math.isnan(prf["precision"][6])
    assert prf["f1"][6] == 0.0  # present and never found: a real failure, not undefined
    assert math.isnan(prf["f1"][5])  # neither present nor predicted


def test_wilson_with_no_trials_warns():
    with pytest.warns(UndefinedMetricWarning, match="n = 0"):
        assert all(math.isnan(v) for v in CI.wilson_interval(0, 0))
    with pytest.warns(UndefinedMetricWarning):
        assert math.isnan(CI.wilson_estimate(0, 0).value)


@pytest.mark.parametrize(("k", "n"), [(11, 10), (-1, 10), (1.5, 10), (1, -1)])
def test_wilson_rejects_impossible_counts(k, n):
    with pytest.raises(ValueError, match="successes"):
        CI.wilson_interval(k, n)


# ---------------------------------------------------------------------------------------------------------
# One invariance suite over every binary metric (as scikit-learn's metrics/tests/test_common.py)
# ---------------------------------------------------------------------------------------------------------

BINARY_LABEL_METRICS = {
    "sensitivity_score": M.sensitivity_score,
    "specificity_score": M.specificity_score,
    "ppv_score": M.ppv_score,
    "npv_score": M.npv_score,
}
BINARY_SCORE_METRICS = {
    "roc_auc_score": M.roc_auc_score,
    "specificity_at_90_sensitivity": lambda y, s: M.specificity_at_sensitivity(y, s, 0.9)[0],
    "specificity_at_95_sensitivity": lambda y, s: M.specificity_at_sensitivity(y, s, 0.95)[0],
    "binary_expected_calibration_error": M.binary_expected_calibration_error,
}
ALL_BINARY = {**BINARY_LABEL_METRICS, **BINARY_SCORE_METRICS}


def _second_input(name: str, s: np.ndarray) -> np.ndarray:
    return (s >= 0.5).astype(int) if name in BINARY_LABEL_METRICS else s


@pytest.mark.parametrize("name", sorted(ALL_BINARY))
def test_binary_metric_is_permutation_invariant(name):
    fn = ALL_BINARY[name]
    y, s = _binary_scores(0, n=120)
    x = _second_input(name, s)
    perm = np.random.default_rng(1).permutation(len(y))
    assert fn(y[perm], x[perm]) == pytest.approx(fn(y, x))


@pytest.mark.parametrize("name", sorted(ALL_BINARY))
def test_binary_metric_accepts_lists_and_bools(name):
    fn = ALL_BINARY[name]
    y, s = _binary_scores(2, n=60)
    x = _second_input(name, s)
    assert fn(y.astype(bool).tolist(), x.tolist()) == pytest.approx(fn(y, x))


@pytest.mark.parametrize("name", sorted(ALL_BINARY))
def test_binary_metric_rejects_bad_input_naming_the_value(name):
    fn = ALL_BINARY[name]
    y, s = _binary_scores(3, n=20)
    x = _second_input(name, s)
    with pytest.raises(ValueError, match="20 cases but .* has 19"):
        fn(y, x[:-1])
    y_bad = y.copy()
    y_bad[4] = 2
    with pytest.raises(ValueError, match="found 2 at index 4"):
        fn(y_bad, x)
    with pytest.raises(ValueError, match="empty"):
        fn([], [])
    with pytest.raises(ValueError, match="1-D"):
        fn(y[:, None], x[:, None])
    if name in BINARY_SCORE_METRICS:
        s_bad = s.copy()
        s_bad[7] = np.nan
        with pytest.raises(ValueError, match="nan at index 7"):
            fn(y, s_bad)


@pytest.mark.parametrize("name", sorted(set(BINARY_SCORE_METRICS) - {"binary_expected_calibration_error"}))
def test_score_metric_undefined_with_one_class(name):
    fn = BINARY_SCORE_METRICS[name]  # (calibration of p(melanoma) stays defined on a single class)
    with pytest.warns(UndefinedMetricWarning):
        assert math.isnan(fn([0, 0, 0], [0.1, 0.5, 0.9]))


MULTICLASS_METRICS = {
    "accuracy_score": M.accuracy_score,
    "balanced_accuracy_score": M.balanced_accuracy_score,
    "confusion_matrix": M.confusion_matrix,
    "per_class_precision_recall_f1": M.per_class_precision_recall_f1,
}


@pytest.mark.parametrize("name", sorted(MULTICLASS_METRICS))
def test_multiclass_metric_rejects_bad_labels(name):
    fn = MULTICLASS_METRICS[name]
    with pytest.raises(ValueError, match="label 7 at index 1, outside 0..6"):
        fn([0, 7, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="label -1 at index 0"):
        fn([0, 1, 1], [-1, 1, 1])
    with pytest.raises(ValueError, match="class_index"):
        fn(["MEL", "NV"], [0, 1])
    with pytest.raises(ValueError, match=r"0\.5 at index 1"):
        fn([0, 0.5], [0, 1])
    with pytest.raises(ValueError, match="3 cases but y_pred has 2"):
        fn([0, 1, 2], [0, 1])


@pytest.mark.parametrize("name", sorted(MULTICLASS_METRICS))
def test_multiclass_metric_is_permutation_invariant(name):
    fn = MULTICLASS_METRICS[name]
    y_true, y_pred = _multiclass(5, n=80)
    perm = np.random.default_rng(0).permutation(80)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        a, b = fn(y_true, y_pred), fn(y_true[perm], y_pred[perm])
    if isinstance(a, dict):
        for key in a:
            np.testing.assert_allclose(a[key], b[key], equal_nan=True)
    else:
        np.testing.assert_allclose(a, b)


def test_probability_checks_name_the_bad_entry():
    y, p = _probs(0, n=10)
    bad = p.copy()
    bad[3, 2] = 1.2
    with pytest.raises(ValueError, match="1.2 at row 3, column 2"):
        M.expected_calibration_error(y, bad)
    with pytest.raises(ValueError, match="row 0 sums to"):
        M.expected_calibration_error(y, p * 2 / 3)
    with pytest.raises(ValueError, match="2-D"):
        M.expected_calibration_error(y, p[:, 0])


# ---------------------------------------------------------------------------------------------------------
# Bootstrap
# ---------------------------------------------------------------------------------------------------------


def test_bootstrap_ci_contains_point_and_is_reproducible():
    y, s = _binary_scores(0, n=400, decimals=None)
    a = BS.bootstrap_ci(M.roc_auc_score, y, s, n_boot=300, seed=3)
    assert a.lo <= a.value <= a.hi
    assert a.n == 400
    assert BS.bootstrap_ci(M.roc_auc_score, y, s, n_boot=300, seed=3) == a
    assert BS.bootstrap_ci(M.roc_auc_score, y, s, n_boot=300, seed=4) != a


def test_bootstrap_ci_narrows_with_more_data():
    small = BS.bootstrap_ci(M.roc_auc_score, *_binary_scores(0, n=150, decimals=None), n_boot=300)
    large = BS.bootstrap_ci(M.roc_auc_score, *_binary_scores(0, n=2000, decimals=None), n_boot=300)
    assert large.hi - large.lo < 0.6 * (small.hi - small.lo)


@pytest.mark.parametrize(
    "metric",
    [
        M.roc_auc_score,
        functools.partial(M.specificity_at_sensitivity, target=0.9),
        functools.partial(M.specificity_at_sensitivity, target=0.95),
        M.specificity_at_sensitivity,
        M.balanced_accuracy_score,
    ],
    ids=["auroc", "spec@90", "spec@95", "spec@default", "balanced_accuracy"],
)
def test_vectorised_bootstrap_equals_the_loop(metric):
    if metric is M.balanced_accuracy_score:
        y, x = _multiclass(1, n=150)
    else:
        y, x = _binary_scores(1, n=150, decimals=2)
    fast = BS.bootstrap_ci(metric, y, x, n_boot=200, seed=7)
    slow = BS.bootstrap_ci(lambda a, b: metric(a, b), y, x, n_boot=200, seed=7)  # a lambda is never batched
    assert fast.value == slow.value
    assert fast.lo == pytest.approx(slow.lo, abs=1e-12)
    assert fast.hi == pytest.approx(slow.hi, abs=1e-12)


def test_stratified_bootstrap_keeps_the_positive_count():
    y, s = _binary_scores(0, n=100)
    seen = []

    def spy(y_b, s_b):
        seen.append(int(np.sum(y_b)))
        return float(np.mean(s_b))

    BS.bootstrap_ci(spy, y, s, n_boot=20)
    assert set(seen) == {int(y.sum())}


def test_unstratified_bootstrap_skips_undefined_resamples_with_one_warning():
    y = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    s = np.linspace(1, 0, 10)
    with pytest.warns(UndefinedMetricWarning, match="undefined in .* of 200 resamples") as record:
        est = BS.bootstrap_ci(M.roc_auc_score, y, s, n_boot=200, stratified=False)
    assert len(record) == 1
    assert est.value == 1.0 and est.hi == 1.0


def test_bootstrap_of_an_undefined_metric_is_nan():
    with pytest.warns(UndefinedMetricWarning):
        est = BS.bootstrap_ci(M.roc_auc_score, [0, 0, 0], [0.1, 0.2, 0.3])
    assert all(math.isnan(v) for v in (est.value, est.lo, est.hi))


def test_bootstrap_is_fast_enough_for_reports():
    # Correctness of the fast path is tested above; here only that 1000 x 2000 runs (timings belong in
    # benchmarks/, so no wall-clock assertion).
    y, s = _binary_scores(0, n=2000, decimals=None)
    est = BS.bootstrap_ci(M.roc_auc_score, y, s, n_boot=1000)
    assert est.lo < est.value < est.hi


def test_per_class_f1_ci():
    y_true, y_pred = _multiclass(0, n=300)
    estimates = BS.per_class_f1_ci(y_true, y_pred, n_boot=200)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        f1 = M.per_class_precision_recall_f1(y_true, y_pred)["f1"]
    np.testing.assert_allclose([e.value for e in estimates], f1)
    assert all(e.lo <= e.hi for e in estimates)
    assert [e.n for e in estimates] == np.bincount(y_true, minlength=K).tolist()


# ---------------------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------------------


def test_melanoma_report_structure_and_json():
    y, p = _probs(0, n=300)
    report = R.melanoma_report(y, p, n_boot=100)
    json.dumps(report, allow_nan=False)
    assert report["n"] == 300
    assert report["decision"] == "argmax"
    assert report["melanoma"]["threshold"] is None
    assert set(report["per_class"]) == set(CLASSES)
    for code in CLASSES:
        assert set(report["per_class"][code]) >= {"precision", "recall", "f1"}
        assert set(report["per_class"][code]["recall"]) == {"value", "lo", "hi", "n"}
    for key in ("sensitivity", "specificity", "ppv", "npv", "auroc"):
        est = report["melanoma"][key]
        assert est["lo"] <= est["value"] <= est["hi"], key
    # Specificity at a sensitivity picks its threshold on these data: reported apart, with no threshold to use.
    free = report["threshold_free"]
    assert "evaluated split itself" in free["note"]
    for target in (90, 95):
        est = free[f"specificity_at_{target}_sensitivity"]
        assert est["lo"] <= est["value"] <= est["hi"] and set(est) == {"value", "lo", "hi", "n"}
        assert est["value"] == pytest.approx(M.specificity_at_sensitivity(y == 0, p[:, 0], target / 100)[0])
        assert f"specificity_at_{target}_sensitivity" not in report["melanoma"]
    assert report["accuracy"]["value"] == pytest.approx(M.accuracy_score(y, p.argmax(1)))
    assert report["balanced_accuracy"]["value"] == pytest.approx(M.balanced_accuracy_score(y, p.argmax(1)))
    assert report["melanoma"]["auroc"]["value"] == pytest.approx(sk.roc_auc_score(y == 0, p[:, 0]))
    assert np.array(report["confusion_matrix"]).sum() == 300
    assert report["ece"] == pytest.approx(M.expected_calibration_error(y, p))


def test_melanoma_report_at_a_threshold_uses_the_binary_rule():
    y, p = _probs(1, n=300)
    threshold = 0.15
    report = R.melanoma_report(y, p, threshold=threshold, n_boot=50)
    called = (p[:, 0] >= threshold).astype(int)
    assert report["decision"] == "threshold"
    assert report["melanoma"]["threshold"] == threshold
    assert report["melanoma"]["sensitivity"]["value"] == pytest.approx(M.sensitivity_score(y == 0, called))
    assert report["melanoma"]["specificity"]["value"] == pytest.approx(M.specificity_score(y == 0, called))
    assert report["per_class"]["MEL"]["recall"] == report["melanoma"]["sensitivity"]


def test_melanoma_report_on_a_subgroup_without_melanoma():
    y, p = _probs(2, n=60)
    keep = y != 0
    with pytest.warns(UndefinedMetricWarning):
        report = R.melanoma_report(y[keep], p[keep], threshold=0.2, n_boot=50)
    json.dumps(report, allow_nan=False)
    mel = report["melanoma"]
    assert mel["n_pos"] == 0
    assert mel["sensitivity"]["value"] is None
    assert mel["auroc"] == {"value": None, "lo": None, "hi": None, "n": int(keep.sum())}
    assert report["threshold_free"]["specificity_at_90_sensitivity"]["value"] is None
    assert mel["specificity"]["value"] is not None
    assert report["per_class"]["MEL"]["recall"]["value"] is None


def test_melanoma_report_validates_inputs():
    y, p = _probs(0, n=20)
    with pytest.raises(ValueError, match="sums to"):
        R.melanoma_report(y, p * 0.9, n_boot=10)
    with pytest.raises(ValueError, match="20 cases but probs has 19"):
        R.melanoma_report(y, p[:-1], n_boot=10)
    with pytest.raises(ValueError, match="class_names"):
        R.melanoma_report(y, p, class_names=("A", "B"), n_boot=10)
