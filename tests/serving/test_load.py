"""The service under load: the bounded queue (503 + Retry-After), the deadline (504), SIGTERM during a burst
(a real ``dermascan serve`` process), shadow and canary traffic. Every burst is bounded in requests and time."""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select
from tests.serving.conftest import PATIENT_KEY, Live, b64, jpeg, start_service

from dermascan.serving.rollout import share_point
from dermascan.store import clinics, db, predictions
from dermascan.store import rollout as stored
from dermascan.store.models import PredictionRow
from dermascan.testing import random_bundle


def _burst(live: Live, n: int) -> list[httpx.Response]:
    def one(i: int) -> httpx.Response:
        return live.analyze(image=jpeg(seed=i), patient_id=f"P-{i}")

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def test_a_burst_beyond_the_queue_gets_503_with_retry_after(tiny_bundle: Path, tmp_path: Path) -> None:
    # the batch gathers for 1.5 s: the first 4 requests fill the queue, the rest arrive while it is full
    with start_service(
        tmp_path, tiny_bundle, queue_size=4, batch_max_size=64, batch_max_wait_ms=1000, retry_after_s=2
    ) as live:
        responses = _burst(live, 12)
        ok = [r for r in responses if r.status_code == 200]
        refused = [r for r in responses if r.status_code == 503]
        assert len(ok) == 4 and len(refused) == 8, [r.status_code for r in responses]
        for r in refused:
            assert r.headers["Retry-After"] == "2" and r.json()["error"]["code"] == "overloaded"
        with db.session_factory(live.engine)() as session:
            assert predictions.count(session) == 4  # every accepted request answered and stored, no more
        assert live.analyze().status_code == 200  # the queue is free again


def test_a_request_past_its_deadline_gets_504(tiny_bundle: Path, tmp_path: Path) -> None:
    with start_service(tmp_path, tiny_bundle, batch_max_size=64, batch_max_wait_ms=1000, request_timeout_s=0.3) as live:
        r = live.analyze()
        assert r.status_code == 504 and r.json()["error"]["code"] == "deadline_exceeded"
        with db.session_factory(live.engine)() as session:
            assert predictions.count(session) == 0  # no answer, so no row


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _queue_depth(url: str) -> float:
    text = httpx.get(url + "/metrics", timeout=5).text
    return next(
        s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == "dermascan_queue_depth"
    )


def test_sigterm_during_a_burst_loses_no_accepted_request(tiny_bundle: Path, tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = db.make_engine(db_url)
    db.upgrade(engine)
    with db.transaction(db.session_factory(engine)) as session:
        _, key = clinics.add_clinic(session, "Clinic A")
    (tmp_path / "key").write_text(PATIENT_KEY)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        "DERMASCAN_RUNTIME": "onnxruntime",
        "DERMASCAN_BATCH_MAX_SIZE": "64",
        "DERMASCAN_BATCH_MAX_WAIT_MS": "1000",  # the burst is still queued when SIGTERM arrives
    }
    cmd = [sys.executable, "-m", "dermascan.cli", "serve", "--bundle", str(tiny_bundle), "--db", db_url]
    cmd += ["--port", str(port), "--patient-key-file", str(tmp_path / "key")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read()  # type: ignore[union-attr]
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        n = 8
        results: list[httpx.Response | None] = [None] * n

        def one(i: int) -> None:
            body = {"image": b64(jpeg(seed=i)), "clinic_id": "clinic-a", "patient_id": f"P-{i}"}
            headers = {"Authorization": f"Bearer {key}"}
            results[i] = httpx.post(url + "/api/v1/analyze", json=body, headers=headers, timeout=60)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        while _queue_depth(url) < n:  # every request accepted (queued), none answered yet
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(timeout=60)
        # uvicorn re-raises SIGTERM once its graceful shutdown is over: exiting by the signal is the clean exit
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
        log = proc.stdout.read()  # type: ignore[union-attr]
        assert "Application shutdown complete" in log and "Traceback" not in log, log[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert all(r is not None and r.status_code == 200 for r in results), [r and r.status_code for r in results]
    ids = {r.json()["prediction_id"] for r in results if r is not None}
    with db.session_factory(engine)() as session:
        stored_ids = set(session.scalars(select(PredictionRow.id)).all())
    engine.dispose()
    assert len(ids) == n and stored_ids == ids  # each got its answer and its row
    with pytest.raises(httpx.TransportError):
        httpx.get(url + "/healthz", timeout=2)  # and the process is gone


@pytest.fixture(scope="module")
def challenger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_bundle(
        tmp_path_factory.mktemp("challenger"), "resnet18", image_size=32, parity_runtimes=["onnxruntime"], seed=1
    )


def test_shadow_and_canary_shares(tiny_bundle: Path, challenger: Path, tmp_path: Path) -> None:
    shadow, canary, n = 0.5, 0.3, 48
    with start_service(
        tmp_path, tiny_bundle, challenger=challenger, shadow_share=shadow, canary_share=canary, share_refresh_s=0.2
    ) as live:
        responses = _burst(live, n)
        assert [r.status_code for r in responses] == [200] * n
        answers = [r.json() for r in responses]
        assert all(set(a) == set(answers[0]) and "shadow" not in str(a).lower() for a in answers)
        ids = [a["prediction_id"] for a in answers]
        sessions = db.session_factory(live.engine)
        deadline = time.monotonic() + 30  # shadow rows are written after the responses
        expected_shadows = sum(share_point(i, "canary") >= canary and share_point(i, "shadow") < shadow for i in ids)
        while time.monotonic() < deadline:
            with sessions() as session:
                if predictions.count(session, "shadow") >= expected_shadows:
                    break
            time.sleep(0.1)
        with sessions() as session:
            rows = {r.id: r for r in session.scalars(select(PredictionRow)).all()}
        digests = {r.role: r.bundle_digest for r in rows.values()}
        assert digests["primary"] != digests["canary"] == digests["shadow"]  # the challenger answered both
        answered = [rows[i] for i in ids]
        # the canary share, by the hash of the id, and within binomial noise of the share
        for row in answered:
            assert row.role == ("canary" if share_point(row.id, "canary") < canary else "primary")
            assert (row.shadow_share, row.canary_share) == (shadow, canary)
        k = sum(row.role == "canary" for row in answered)
        assert abs(k - canary * n) <= 4 * math.sqrt(n * canary * (1 - canary)), k
        # shadow rows: on the shadow share of the champion's answers, linked to them, never listed to the clinic
        shadows = [r for r in rows.values() if r.role == "shadow"]
        shadowed = {r.shadow_of for r in shadows}
        assert len(shadows) == expected_shadows == len(shadowed) > 0
        assert shadowed == {r.id for r in answered if r.role == "primary" and share_point(r.id, "shadow") < shadow}
        listed = live.client().get("/api/v1/predictions", params={"limit": 100}).json()
        assert {p["prediction_id"] for p in listed["items"]} == set(ids)
        assert live.client().get(f"/api/v1/predictions/{shadows[0].id}").status_code == 404

        # the rollout changes the canary share in the store: the service follows without a restart
        with db.transaction(sessions) as session:
            stored.set_share(session, 0.0)
        # the service re-reads the share on its refresh period; on a busy machine that can take a few periods
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            probe = _burst(live, 1)[0].json()["prediction_id"]
            with sessions() as session:
                if session.get(PredictionRow, probe).canary_share == 0.0:
                    break
            time.sleep(0.2)
        later = [r.json()["prediction_id"] for r in _burst(live, 8)]
        with sessions() as session:
            assert {session.get(PredictionRow, i).role for i in later} == {"primary"}
            assert {session.get(PredictionRow, i).canary_share for i in later} == {0.0}
