"""The staged rollout against a live service: start, hold, advance to 100%, complete; a flag-rate breach and a drift
alert roll back at once; the service follows the stored share without a restart."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.serving.conftest import Live, jpeg, start_service, tiny_bundle  # noqa: F401 (a fixture)
from typer.testing import CliRunner

from dermascan.cli import app
from dermascan.lifecycle import rollout
from dermascan.lifecycle.rollout import RolloutError, RolloutPolicy
from dermascan.store import db, predictions
from dermascan.store import rollout as stored

pytestmark = pytest.mark.slow  # three live services, ~150 requests

runner = CliRunner()
FAST = RolloutPolicy(stage_hours=0, min_canary_cases=4)


def _variant(source: Path, folder: Path, version: str, threshold: float) -> Path:
    """The same model under another version and melanoma threshold: a champion that flags almost nothing (0.99)
    and challengers that agree with it (0.99) or flag everything (1e-6). The manifest is outside its own
    checksum table, so a copy with an edited manifest is a valid bundle (of another digest)."""
    import shutil

    from dermascan.inference.bundle import read_manifest, write_manifest

    shutil.copytree(source, folder)
    manifest = read_manifest(folder)
    manifest["version"] = version
    manifest["decision"] = {
        **manifest["decision"],
        "threshold": threshold,
        "risk_bands": {"moderate": threshold / 2, "high": threshold},
    }
    write_manifest(folder, {k: v for k, v in manifest.items() if k != "files"})
    return folder


@pytest.fixture(scope="module")
def bundles(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:  # noqa: F811
    root = tmp_path_factory.mktemp("rollout-bundles")
    return {
        "champion": _variant(tiny_bundle, root / "a", "champion-1", 0.99),
        "good": _variant(tiny_bundle, root / "b", "challenger-2", 0.99),
        "bad": _variant(tiny_bundle, root / "c", "challenger-3", 1e-6),
    }


def _service(tmp: Path, bundles: dict[str, Path], challenger: str) -> Iterator[Live]:
    with start_service(tmp, bundles["champion"], challenger=bundles[challenger], share_refresh_s=0.1) as live:
        yield live


def _traffic(live: Live, n: int) -> None:
    for i in range(n):
        r = live.analyze(image=jpeg(64, 48, seed=i))
        assert r.status_code == 200, r.text


def _wait_for_share(live: Live, share: float) -> None:
    time.sleep(0.3)  # the service re-reads the share every 0.1 s on a request; one request makes it look
    _traffic(live, 1)


def _start_with_canary_answers(live: Live, version: str) -> None:
    """Champion traffic, then the rollout's first stage, then traffic until the canary has answered enough."""
    _traffic(live, 10)
    rollout.start(live.db_url, version, actor="ana")
    _wait_for_share(live, 0.10)
    while _canary_count(live, version) < FAST.min_canary_cases:
        _traffic(live, 10)


def _canary_count(live: Live, version: str) -> int:
    with db.session_factory(live.engine)() as session:
        return len(predictions.answers_since(session, "canary", _epoch(), version))


def _epoch():  # type: ignore[no-untyped-def]
    import datetime as dt

    return dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def test_start_hold_advance_complete(tmp_path: Path, bundles: dict[str, Path]) -> None:
    for live in _service(tmp_path, bundles, "good"):
        _traffic(live, 5)
        assert _canary_count(live, "challenger-2") == 0  # no rollout yet: the champion answers all
        result = runner.invoke(
            app,
            ["rollout", "start", "--db", live.db_url, "--model", "challenger-2", "--who", "ana", "--why", "gates ok"],
        )
        assert result.exit_code == 0, result.output
        assert "challenger-2 active at 10%" in result.output and "champion champion-1" in result.output
        with pytest.raises(RolloutError, match="is active"):
            rollout.start(live.db_url, "challenger-3")
        # no canary answers yet: held, share unchanged
        held = rollout.advance(live.db_url, "challenger-2", "ana", policy=FAST)
        assert held["action"] == "hold" and held["rollout"]["share"] == 0.10
        _wait_for_share(live, 0.10)
        _traffic(live, 40)
        assert 1 <= _canary_count(live, "challenger-2") <= 14  # about 10% of 41
        while _canary_count(live, "challenger-2") < FAST.min_canary_cases:
            _traffic(live, 10)
        step = rollout.advance(live.db_url, "challenger-2", "ana", "10% held", policy=FAST)
        assert step["action"] == "advance" and step["rollout"]["share"] == 0.50, step["evaluation"]
        _wait_for_share(live, 0.50)
        before = _canary_count(live, "challenger-2")
        _traffic(live, 30)
        assert _canary_count(live, "challenger-2") - before >= 6  # about half of 31 now
        assert rollout.advance(live.db_url, None, "ben", policy=FAST)["rollout"]["share"] == 1.0
        _wait_for_share(live, 1.0)
        _traffic(live, 6)
        done = rollout.advance(live.db_url, None, "ben", policy=FAST)
        assert done["action"] == "complete" and done["rollout"]["status"] == "completed"
        history = rollout.status(live.db_url)
        actions = [(s["action"], s["who"]) for s in history["steps"]]
        assert actions == [
            ("start", "ana"),
            ("hold", "ana"),
            ("advance", "ana"),
            ("advance", "ben"),
            ("complete", "ben"),
        ]
        assert history["steps"][2]["why"] == "10% held" and history["steps"][1]["why"].startswith("held:")
        status = runner.invoke(app, ["rollout", "status", "--db", live.db_url])
        assert status.exit_code == 0 and "complete" in status.output and "ana: gates ok" in status.output


def test_a_flag_rate_breach_rolls_back_at_once(tmp_path: Path, bundles: dict[str, Path]) -> None:
    for live in _service(tmp_path, bundles, "bad"):
        _start_with_canary_answers(live, "challenger-3")
        args = ["rollout", "advance", "--db", live.db_url, "--stage-hours", "0", "--min-canary-cases", "4"]
        result = runner.invoke(app, args)
        assert result.exit_code == 1, result.output
        assert "rollback" in result.output and "melanoma-flag rate" in result.output
        with db.session_factory(live.engine)() as session:
            assert stored.get_share(session) == 0.0 and stored.active(session) is None
        _wait_for_share(live, 0.0)
        n = _canary_count(live, "challenger-3")
        _traffic(live, 20)
        assert _canary_count(live, "challenger-3") == n  # the champion answers everything again
        with pytest.raises(RolloutError, match="no rollout is active"):
            rollout.advance(live.db_url, policy=FAST)


def test_a_drift_alert_rolls_back_and_a_manual_rollback_is_recorded(tmp_path: Path, bundles: dict[str, Path]) -> None:
    for live in _service(tmp_path, bundles, "good"):
        _start_with_canary_answers(live, "challenger-2")
        quiet = rollout.check(live.db_url, FAST, drift_check=lambda version, since: None)
        assert quiet["action"] == "none"
        drift = {c["name"]: c for c in quiet["evaluation"]["checks"]}["drift alert"]
        assert drift["status"] == "ok"
        alarm = rollout.check(
            live.db_url, FAST, drift_check=lambda version, since: f"PSI 0.4 on brightness ({version})"
        )
        assert alarm["action"] == "rollback" and alarm["rollout"]["status"] == "rolled_back"
        rollout.start(live.db_url, "challenger-2", actor="ana", reason="drift explained: new dermoscope")
        result = runner.invoke(
            app, ["rollout", "rollback", "--db", live.db_url, "--who", "carl", "--why", "clinic asked"]
        )
        assert result.exit_code == 0 and "rolled_back at 0%" in result.output
        steps = rollout.status(live.db_url)["steps"]
        assert [(s["action"], s["who"], s["why"]) for s in steps][-1] == ("rollback", "carl", "clinic asked")
        with db.session_factory(live.engine)() as session:
            first = stored.steps(session, alarm["rollout"]["id"])
        assert first[-1].action == "rollback" and first[-1].reason.startswith("breach: drift alert: PSI 0.4")
        assert first[-1].evidence["status"] == "breach"
