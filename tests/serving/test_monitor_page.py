"""The latest monitor report in the service: gauges on /metrics, /api/v1/monitor and the operator's page, which
clinic keys cannot read."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from tests.serving.conftest import Live, start_service
from tests.serving.test_page_http import signed_in

from dermascan.monitoring.features import FEATURES
from dermascan.monitoring.files import ALERTS
from dermascan.monitoring.monitor import MonitorConfig, monitor_frames
from dermascan.monitoring.reference import build_reference
from dermascan.monitoring.report import write_report
from dermascan.store import clinics, db
from dermascan.store.models import prob_column
from dermascan.taxonomy import CLASSES


def _report(folder: Path) -> None:
    """A one-day report whose images are much brighter than the reference's: an input-drift alert."""
    rng = np.random.default_rng(0)
    train = [{f: float(v) for f, v in zip(FEATURES, rng.uniform(0.2, 0.6, len(FEATURES)), strict=True)}
             for _ in range(300)]  # fmt: skip
    probs = rng.dirichlet(np.ones(7), 200)
    ref = build_reference(train, probs, probs[:, 0] > 0.3, list(CLASSES), np.log(probs))
    n = 60
    p = rng.dirichlet(np.ones(7), n)
    preds = pd.DataFrame({
        "id": [f"p{i}" for i in range(n)],
        "created_at": pd.Timestamp("2026-03-01 09:00", tz="UTC") + pd.to_timedelta(rng.uniform(0, 8, n), unit="h"),
        "model_version": "v1", "primary_class": [CLASSES[k] for k in p.argmax(1)], "melanoma_flag": p[:, 0] > 0.3,
        "latency_ms": rng.uniform(20, 80, n), **{prob_column(c): p[:, i] for i, c in enumerate(CLASSES)},
        **{f: rng.uniform(0.7, 0.9, n) for f in FEATURES},
    })  # fmt: skip
    feedback = pd.DataFrame(columns=["prediction_id", "created_at", "clinician_label", "histopathology_label"])
    feedback["created_at"] = pd.to_datetime(feedback["created_at"], utc=True)
    write_report(monitor_frames(preds, feedback, ref, MonitorConfig()), folder)


@pytest.fixture(scope="module")
def monitored(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    report = tmp_path_factory.mktemp("monitor")
    _report(report)
    with start_service(tmp_path_factory.mktemp("service"), tiny_bundle, monitor_dir=report) as live:
        with db.transaction(db.session_factory(live.engine)) as session:
            _, live.keys["operator"] = clinics.add_clinic(session, "Operations", role="operator")
        yield live


def test_the_reports_figures_are_gauges(monitored: Live) -> None:
    text = httpx.get(monitored.url + "/metrics", timeout=30).text
    assert 'dermascan_monitor_alert{kind="input_drift"} 1.0' in text
    assert 'dermascan_monitor_alert{kind="sensitivity"} 0.0' in text
    psi = next(line for line in text.splitlines() if line.startswith("dermascan_monitor_max_psi "))
    assert float(psi.split()[1]) > 0.25
    assert 'dermascan_monitor_feature_psi{feature="brightness"}' in text
    assert set(ALERTS) == {"input_drift", "embedding_drift", "prediction_drift", "sensitivity", "concept_drift"}


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
