"""The shadow A/B decision: its statistics, verdicts on constructed tables and on a store, its simulated
false-promotion rate and power."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from dermascan.cli import app
from dermascan.evaluation.intervals import paired_difference_bounds, paired_difference_interval
from dermascan.lifecycle.abtest import (
    CONTINUE,
    KEEP,
    PROMOTE,
    ABSettings,
    NoShadowDataError,
    PairedCounts,
    decide,
    mcnemar_one_sided_p,
    run_abtest,
)
from dermascan.lifecycle.abtest_sim import Scenario, operating_characteristics, paired_cells, write_shadow_period

runner = CliRunner()
OTHERS_OK = PairedCounts(both=3400, champion_only=150, challenger_only=160, neither=290)  # specificity +0.25 points


@pytest.mark.parametrize(("b", "c"), [(0, 0), (5, 0), (25, 10), (10, 25), (60, 41)])
def test_mcnemar_is_the_exact_binomial_test(b: int, c: int) -> None:
    expected = 1.0 if b + c == 0 else stats.binomtest(b, b + c, 0.5, alternative="greater").pvalue
    assert float(mcnemar_one_sided_p(b, c)) == pytest.approx(expected, rel=1e-12)


def test_the_paired_difference_interval_covers_its_level() -> None:
    rng = np.random.default_rng(0)
    cells = paired_cells(0.75, 0.73, 0.5)  # true difference +0.02
    tables = rng.multinomial(400, cells, size=4000)
    diff, lo, hi = paired_difference_bounds(tables[:, 0], tables[:, 1], tables[:, 2], tables[:, 3])
    coverage = ((lo <= 0.02) & (hi >= 0.02)).mean()
    assert 0.935 <= coverage <= 0.965
    one = paired_difference_interval(*tables[0])
    assert (one.value, one.lo, one.hi) == pytest.approx((diff[0], lo[0], hi[0]))
    assert one.lo < one.value < one.hi


def test_verdicts_on_constructed_cases() -> None:
    better = PairedCounts(both=430, champion_only=10, challenger_only=25, neither=35)  # 500 melanomas, +3 points
    d = decide(better, OTHERS_OK, days=20)
    assert d.verdict == PROMOTE and d.p_value < 0.05 and d.specificity["non_inferior"]
    worse = PairedCounts(both=430, champion_only=25, challenger_only=10, neither=35)
    assert decide(worse, OTHERS_OK, days=20).verdict == KEEP
    # better sensitivity, but specificity 4 points worse: not non-inferior
    spec_worse = PairedCounts(both=3300, champion_only=250, challenger_only=90, neither=360)
    d = decide(better, spec_worse, days=20)
    assert d.verdict == KEEP and d.specificity["difference"]["hi"] < 0 and not d.specificity["non_inferior"]
    # not enough data: 40 melanomas on day 5, even with a large apparent gain
    few = PairedCounts(both=30, champion_only=0, challenger_only=8, neither=2)
    d = decide(few, OTHERS_OK, days=5)
    assert d.verdict == CONTINUE and "stop rule not met" in d.reasons[0] and d.p_value < 0.05
    # the 30 days end the test with what there is
    assert decide(few, OTHERS_OK, days=30).verdict == PROMOTE
    assert decide(PairedCounts(), PairedCounts(), days=31).verdict == KEEP  # nothing confirmed: no evidence


def test_simulated_false_promotion_rate_and_power() -> None:
    oc = operating_characteristics(repeats=20000, seed=3)
    false_promotion, power = oc["false_promotion"], oc["power"]
    assert false_promotion["rate"]["hi"] <= 0.05  # the test's level holds, with the simulation's own margin
    assert false_promotion["sensitivity_significant"] <= 0.05
    assert power["rate"]["value"] > 0.5 > false_promotion["rate"]["value"] * 10
    # more correlated models: fewer, more telling discordant pairs, more power; a false promotion still rare
    tight = operating_characteristics(repeats=5000, seed=4, correlation=0.8)
    assert tight["power"]["rate"]["value"] > power["rate"]["value"]
    assert tight["false_promotion"]["rate"]["hi"] <= 0.06


def test_a_short_shadow_period_continues_and_a_full_one_decides(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    start = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    scenario = Scenario(challenger_sensitivity=0.99, correlation=0.2, melanomas=60, others_per_melanoma=3)
    written = write_shadow_period(url, scenario, days=6, start=start, seed=1)
    assert written == {"cases": 240, "melanomas": 60}
    report = run_abtest(url, tmp_path / "ab", now=start + dt.timedelta(days=6))
    assert report["verdict"] == CONTINUE
    assert report["cases"]["confirmed"] == 240 and report["stop_rule"]["melanomas"] == 60
    assert set(report["cases"]["label_sources"]) == {"histopathology", "clinician"}
    assert json.loads((tmp_path / "ab" / "abtest.json").read_text())["verdict"] == CONTINUE
    assert (tmp_path / "ab" / "abtest.png").stat().st_size > 0 and "CONTINUE" in (
        tmp_path / "ab/abtest.html"
    ).read_text()
    # with a 50-melanoma stop rule it decides: better sensitivity, but 180 non-melanomas cannot show a specificity
    # within 2 points
    decided = run_abtest(url, None, ABSettings(min_melanomas=50), now=start + dt.timedelta(days=6))
    assert decided["verdict"] == KEEP and decided["sensitivity"]["significant"], decided["reasons"]
    assert not decided["specificity"]["non_inferior"]
    # a challenger that answers the non-melanomas as the champion does, and finds more melanomas: promoted
    same_other = Scenario(
        challenger_sensitivity=0.99, correlation=0.2, specificity_correlation=1.0, melanomas=60, others_per_melanoma=3
    )
    other_url = f"sqlite:///{tmp_path / 'other.db'}"
    write_shadow_period(other_url, same_other, days=6, start=start, seed=1, challenger="v3")
    args = ["abtest", "--db", other_url, "--min-melanomas", "50", "--out", str(tmp_path / "cli")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0 and result.output.startswith("PROMOTE: v3 against champion-v1"), result.output


def test_no_shadow_data_is_a_clear_error(tmp_path: Path) -> None:
    from dermascan.store import db

    url = f"sqlite:///{tmp_path / 'empty.db'}"
    db.upgrade(db.make_engine(url))
    with pytest.raises(NoShadowDataError, match="--shadow-share"):
        run_abtest(url)
    result = runner.invoke(app, ["abtest", "--db", url])
    assert result.exit_code == 2 and "no shadow predictions" in result.output
