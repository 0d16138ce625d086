"""The latest monitor report in the service: gauges on /metrics, /api/v1/monitor and the operator's page, which
clinic keys cannot read."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.monitoring.reports import write_drifted_report
from tests.serving.conftest import Live, start_service
from tests.serving.test_page_http import signed_in

from dermascan.monitoring.files import ALERTS
from dermascan.store import clinics, db


@pytest.fixture(scope="module")
def monitored(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    report = tmp_path_factory.mktemp("monitor")
    write_drifted_report(report)
    with start_service(tmp_path_factory.mktemp("service"), tiny_bundle, monitor_dir=report) as live:
        with db.transaction(db.session_factory(live.engine)) as session:
            _, live.keys["operator"] = clinics.add_clinic(session, "Operations", role="operator")
        yield live


def test_the_reports_figures_are_gauges(monitored: Live) -> None:
    text = httpx.get(monitored.url + "/metrics", timeout=30).text
    assert 'dermascan_monitor_alert{kind="input_drift"} 1.0' in text
    fired = set(json.loads((monitored.server.settings.monitor_dir / "monitor.json").read_text())["alerts"])
    for kind in ALERTS:  # one gauge per kind, 1 exactly for the report's alerts
        assert f'dermascan_monitor_alert{{kind="{kind}"}} {float(kind in fired)}' in text
    psi = next(line for line in text.splitlines() if line.startswith("dermascan_monitor_max_psi "))
    assert float(psi.split()[1]) > 0.25
    assert 'dermascan_monitor_feature_psi{feature="brightness"}' in text
    assert "dermascan_monitor_sensitivity " in text and "dermascan_monitor_disagreement " in text


def test_only_operator_keys_read_the_report(monitored: Live) -> None:
    r = monitored.client("clinic-a").get("/api/v1/monitor")
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden_role"
    r = monitored.client("operator").get("/api/v1/monitor")
    assert r.status_code == 200 and r.json()["alerts"][0] == "input_drift"
    assert monitored.client(None).get("/api/v1/monitor").status_code == 401


def test_the_operator_page(monitored: Live) -> None:
    clinic, _ = signed_in(monitored, monitored.keys["clinic-a"])
    assert clinic.get("/ops/monitor").status_code == 403
    assert clinic.get("/ops/monitor/quality.png").status_code == 403
    assert 'href="/ops/monitor"' not in clinic.get("/visit").text

    operator, _ = signed_in(monitored, monitored.keys["operator"])
    assert 'href="/ops/monitor"' in operator.get("/visit").text
    page = operator.get("/ops/monitor")
    assert page.status_code == 200 and "input_drift" in page.text and 'src="/ops/monitor/drift.png"' in page.text
    plot = operator.get("/ops/monitor/drift.png")
    assert plot.status_code == 200 and plot.headers["content-type"] == "image/png" and plot.content[:4] == b"\x89PNG"
    assert operator.get("/ops/monitor/monitor.json").status_code == 404  # only the report's plots are served
    full = operator.get("/ops/monitor/report")
    assert full.status_code == 200 and "DermaScan monitor" in full.text


def test_clinic_add_gives_an_operator_key_and_refuses_an_unknown_role(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from dermascan.cli import app

    url = f"sqlite:///{tmp_path / 's.db'}"
    runner = CliRunner()
    assert runner.invoke(app, ["db", "upgrade", "--db", url]).exit_code == 0
    result = runner.invoke(app, ["clinic", "add", "Operations", "--role", "operator", "--db", url])
    assert result.exit_code == 0, result.output
    key = result.stdout.strip().splitlines()[-1]
    engine = db.make_engine(url)
    with db.session_factory(engine)() as session:
        caller = clinics.authenticate(session, key)
    engine.dispose()
    assert caller is not None and caller.is_operator and caller.clinic_id == "operations"
    bad = runner.invoke(app, ["clinic", "add", "X", "--role", "root", "--db", url])
    assert bad.exit_code == 2
