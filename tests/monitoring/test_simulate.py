"""Each traffic scenario at test size, with its expected outcome; `dermascan simulate` and `dermascan monitor`
(non-zero exit when an alert fires)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dermascan.cli import app
from dermascan.monitoring.monitor import MonitorConfig
from dermascan.monitoring.simulate import SimulationConfig, SimulationError, simulate
from dermascan.testing import MONITOR_PRIORS as TRAINING_PRIORS

pytestmark = pytest.mark.slow
#: 8 days of 100 images; the change from day 5. Two-day windows: PSI over 10 bins needs a couple of hundred
#: images a window before its noise sits well below 0.10 (the expected PSI of two samples of the same
#: distribution is about (bins - 1) (1/n + 1/m)).
DAYS, PER_DAY, CHANGE = 8, 100, 5
#: Confirmed quality over the trailing 4 days: by a window's end the clinicians' labels (1-3 days late) of its
#: first day have arrived, and after the change those 4 days hold the degraded model's answers only.
MONITOR = MonitorConfig(window=dt.timedelta(days=2), quality_days=4, min_melanomas=15)


#: The referral clinic of the case-mix test: as busy as the others together, nine in ten lesions melanomas (the
#: reference flag rate is measured on ~140 validation images here, whose own uncertainty the 2 SD rule counts).
REFERRAL = {"MEL": 0.9, "NV": 0.04, "BCC": 0.02, "AKIEC": 0.01, "BKL": 0.01, "DF": 0.01, "VASC": 0.01}


def _run(scenario: str, tmp_path: Path, bundle: Path) -> dict:
    cfg = SimulationConfig(
        scenario=scenario,
        days=DAYS,
        per_day=PER_DAY,
        change_day=CHANGE,
        class_priors=TRAINING_PRIORS,
        seed=1,
        referral_per_day=PER_DAY,
        referral_priors=REFERRAL,
    )
    return simulate(cfg, bundle, f"sqlite:///{tmp_path / 'sim.db'}", MONITOR)


def test_steady_raises_no_input_drift_alert(sim_bundle: Path, tmp_path: Path) -> None:
    report = _run("steady", tmp_path, sim_bundle)
    sim = report["simulation"]
    assert sim["windows_before_change"] == DAYS // 2
    assert not any("input_drift" in w["alerts"] for w in report["windows"]), sim
    # The flag-rate rule is 2 SD: at its own definition it fires on ~5% of steady windows, more at test size
    # (a reference of ~360 held-out images of clustered lesions); the full-size figure is in the note.
    assert all(abs(w["prediction_drift"]["z"]) < 3.5 for w in report["windows"])


def test_a_new_device_is_an_input_drift_alert_within_3_days(sim_bundle: Path, tmp_path: Path) -> None:
    report = _run("new-device", tmp_path, sim_bundle)
    sim = report["simulation"]
    assert sim["passed"] and sim["days_to_detect"]["input_drift"] <= 3, sim
    before = [w for w in report["windows"] if w["start"] < "2026-01-05"]
    assert not any("input_drift" in w["alerts"] for w in before)
    changed = next(w for w in report["windows"] if "input_drift" in w["alerts"])
    clinics = changed["input_drift"]["by_clinic"]
    assert [c for c, e in clinics.items() if e["level"] == "alert"] == ["clinic-1"]  # the clinic that switched
    assert clinics["clinic-1"]["max_psi"] > 1.0
    assert clinics["clinic-1"]["feature"] in {"brightness", "mean_r", "mean_g", "mean_b", "grey_world", "contrast"}


def test_quiet_degradation_is_seen_by_the_confirmed_sensitivity_only(sim_bundle: Path, tmp_path: Path) -> None:
    report = _run("quiet-degradation", tmp_path, sim_bundle)
    sim = report["simulation"]
    assert sim["passed"], sim
    before = [w for w in report["windows"] if w["start"] < "2026-01-05" and w["quality"]["sensitivity"]]
    after = [w for w in report["windows"] if w["start"] >= "2026-01-05"]
    last = after[-1]
    assert "sensitivity" in last["alerts"] and last["quality"]["sensitivity"]["value"] < 0.88
    assert all(w["quality"]["sensitivity"]["value"] > last["quality"]["sensitivity"]["hi"] for w in before)
    assert sim["days_to_detect"]["input_drift"] is None  # the images did not change
    assert not any("prediction_drift" in w["alerts"] for w in after)  # nor the flag rate: quiet
    # CBPE trusts the probabilities, which kept their distribution: it cannot see this failure
    assert last["estimated"]["sensitivity"] > 0.8


def test_case_mix_is_prediction_drift_not_input_drift(sim_bundle: Path, tmp_path: Path) -> None:
    report = _run("case-mix", tmp_path, sim_bundle)
    sim = report["simulation"]
    assert sim["passed"], sim
    after = [w for w in report["windows"] if w["start"] >= "2026-01-05"]
    assert all(w["prediction_drift"]["z"] > 2 for w in after)  # more melanomas: more flags
    assert all(w["input_drift"]["pooled_level"] != "alert" for w in report["windows"])


def test_a_simulation_refuses_a_store_with_history(sim_bundle: Path, tmp_path: Path) -> None:
    cfg = SimulationConfig(days=1, per_day=5, class_priors=TRAINING_PRIORS)
    url = f"sqlite:///{tmp_path / 's.db'}"
    simulate(cfg, sim_bundle, url, MonitorConfig(min_window=1))
    with pytest.raises(SimulationError, match="already holds predictions"):
        simulate(cfg, sim_bundle, url)


def test_the_commands_and_the_exit_code(sim_bundle: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    sim_out = tmp_path / "sim"
    args = ["--days", "4", "--per-day", "100", "--change-day", "3", "--window", "2d", "--seed", "2"]
    result = runner.invoke(app, ["simulate", "--bundle", str(sim_bundle), "--out", str(sim_out), "--scenario",
                                 "new-device", *args])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "input_drift detected" in result.output and (sim_out / "monitor.html").is_file()
    db = f"sqlite:///{sim_out / 'simulation.db'}"

    alert = runner.invoke(app, ["monitor", "--db", db, "--bundle", str(sim_bundle), "--out", str(tmp_path / "m"),
                                "--window", "2d"])  # fmt: skip
    assert alert.exit_code == 1, alert.output  # the new device: an alert, so cron or CI can act
    assert "ALERT input_drift" in alert.output
    report = json.loads((tmp_path / "m" / "monitor.json").read_text())
    assert "input_drift" in report["alerts"] and len(report["windows"]) == 2
    assert {"quality.png", "drift.png", "latency.png", "volume.png"} <= {p.name for p in (tmp_path / "m").iterdir()}

    # the first two days alone: before the new device and before any label arrived, nothing to alert on
    quiet = runner.invoke(app, ["monitor", "--db", db, "--bundle", str(sim_bundle), "--out", str(tmp_path / "q"),
                                "--since", "2026-01-01", "--until", "2026-01-03", "--window", "2d"])  # fmt: skip
    assert quiet.exit_code == 0, quiet.output

    bad = runner.invoke(app, ["monitor", "--db", db, "--bundle", str(sim_bundle), "--out", str(tmp_path / "b"),
                              "--window", "soon"])  # fmt: skip
    assert bad.exit_code == 2 and "--window 'soon' is not a duration" in bad.output
    empty = runner.invoke(app, ["monitor", "--db", db, "--bundle", str(sim_bundle), "--out", str(tmp_path / "e"),
                                "--since", "2027-01-01"])  # fmt: skip
    assert empty.exit_code == 2 and "no predictions" in empty.output


def test_the_cli_choices_are_the_librarys() -> None:
    from typing import get_args

    from dermascan.cli import _app
    from dermascan.monitoring.simulate import SCENARIOS
    from dermascan.store.clinics import ROLES

    assert get_args(_app.Scenario) == SCENARIOS
    assert get_args(_app.KeyRole) == ROLES


def test_the_demo_step_writes_and_links_both_reports(sim_bundle: Path, tmp_path: Path) -> None:
    from dermascan.monitoring.demo import demo_step

    out = demo_step(tmp_path / "monitoring", sim_bundle, days=2, per_day=40, change_day=2)
    for scenario in ("steady", "new-device"):
        assert Path(out[scenario]["html"]).is_file() and out[scenario]["days"] == 2
        assert f'href="monitoring/{scenario}/monitor.html"' in out["html"]
    assert out["new-device"]["change_at"] == "2026-01-02T00:00:00+00:00"
