"""Error rate and queue depth from a real service's /metrics, and in the monitor's report (--metrics-url)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.serving.conftest import jpeg, start_service
from typer.testing import CliRunner

from dermascan.cli import app
from dermascan.inference.bundle import load_bundle
from dermascan.monitoring.service import parse_metrics, scrape
from dermascan.store import make_engine
from dermascan.store.models import PredictionRow


def _down_url() -> str:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_the_monitor_reads_error_rate_and_queue_depth_from_the_service(sim_bundle: Path, tmp_path: Path) -> None:
    with start_service(tmp_path / "service", sim_bundle) as live:
        for seed in range(3):
            assert live.analyze(image=jpeg(seed=seed)).status_code == 200
        assert live.analyze(image=b"not an image").status_code == 422
        assert live.client(None).get("/healthz").status_code == 200  # not an API route: not counted
        down = _down_url()
        up, unreachable = scrape([live.url, down], timeout_s=2)
        assert (up.requests, up.client_errors, up.server_errors, up.error_rate) == (4, 1, 0, 0.0)
        assert up.queue_depth == 0 and up.inference_ms_mean is not None and up.inference_ms_mean > 0
        assert unreachable.url == down and unreachable.error and unreachable.requests is None
        # each answer stored its embedding: the penultimate features through the bundle's projection
        engine = make_engine(live.db_url)
        with Session(engine) as session:
            stored = session.scalars(select(PredictionRow.embedding)).all()
        engine.dispose()
        dims = load_bundle(sim_bundle).projection.dims  # type: ignore[union-attr]
        assert len(stored) == 3 and all(len(e) == dims and all(isinstance(v, float) for v in e) for e in stored)

        out = tmp_path / "m"
        result = CliRunner().invoke(app, ["monitor", "--db", live.db_url, "--bundle", str(sim_bundle),
                                          "--out", str(out), "--metrics-url", live.url,
                                          "--metrics-url", down])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"could not read {down}/metrics" in result.output
    assert f"service {live.url}: 4 API requests since start, 0 5xx (0.00%), 1 4xx, queue depth 0" in result.output
    report = json.loads((out / "monitor.json").read_text())
    assert [f["requests"] for f in report["service"]] == [4, None]
    page = (out / "monitor.html").read_text()
    assert "Service now" in page and "error rate" in page and live.url in page


def test_server_errors_make_the_error_rate() -> None:
    counts = [("/api/v1/analyze", "200", 90), ("/api/v1/analyze", "503", 6), ("/api/v1/analyze", "422", 4),
              ("/metrics", "500", 50)]  # fmt: skip
    text = "\n".join(
        f'dermascan_http_request_duration_seconds_count{{method="POST",route="{route}",status="{status}"}} {n}'
        for route, status, n in counts
    )
    text = "# TYPE dermascan_http_request_duration_seconds histogram\n" + text + "\n"
    f = parse_metrics("http://x", text + "# TYPE dermascan_queue_depth gauge\ndermascan_queue_depth 7.0\n")
    assert (f.requests, f.server_errors, f.client_errors, f.queue_depth) == (100, 6, 4, 7.0)
    assert f.error_rate == 0.06  # the /metrics route's 500s are not API traffic
