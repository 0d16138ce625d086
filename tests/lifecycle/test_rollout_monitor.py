"""The rollout's drift check on the monitor's report (``--monitor M``): drift alerts since the stage began breach;
a missing or stale report stops the command instead of passing a stage it says nothing about."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dermascan.cli import app
from dermascan.lifecycle.rollout import RolloutError, monitor_drift_check
from dermascan.monitoring.files import JSON_FILE

DAY = dt.timedelta(days=1)
START = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def _report(folder: Path, alerts_by_day: list[list[str]]) -> Path:
    windows = [
        {"start": (START + i * DAY).isoformat(), "end": (START + (i + 1) * DAY).isoformat(), "alerts": alerts}
        for i, alerts in enumerate(alerts_by_day)
    ]
    period = {"since": windows[0]["start"], "until": windows[-1]["end"], "window": "1 day, 0:00:00"}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / JSON_FILE).write_text(json.dumps({"period": period, "windows": windows}))
    return folder


def test_a_drift_alert_since_the_stage_began_is_reported(tmp_path: Path) -> None:
    check = monitor_drift_check(_report(tmp_path / "m", [[], ["input_drift"], [], ["prediction_drift"]]))
    alert = check("v2", START + 2 * DAY)  # the stage began on day 3: only day 4's alert counts
    assert alert is not None and "prediction_drift" in alert and "input_drift" not in alert
    assert check("v2", START + 1 * DAY) is not None and "input_drift" in check("v2", START + 1 * DAY)


def test_labelled_alerts_are_not_drift_and_a_quiet_stage_passes(tmp_path: Path) -> None:
    check = monitor_drift_check(_report(tmp_path / "m", [["input_drift"], ["sensitivity", "concept_drift"], []]))
    assert check("v2", START + DAY) is None  # sensitivity and concept drift are the quality checks' business


def test_a_missing_or_stale_report_stops_the_step(tmp_path: Path) -> None:
    with pytest.raises(RolloutError, match="dermascan monitor"):
        monitor_drift_check(tmp_path / "nothing")("v2", START)
    check = monitor_drift_check(_report(tmp_path / "m", [[], []]))
    with pytest.raises(RolloutError, match="before this stage began"):
        check("v2", START + 5 * DAY)


def test_the_command_refuses_both_hooks(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "rollout",
            "status",
            "--db",
            f"sqlite:///{tmp_path / 's.db'}",
            "--monitor",
            str(tmp_path),
            "--drift-check",
            "a:b",
        ],
    )
    assert result.exit_code == 2 and "not both" in result.output
