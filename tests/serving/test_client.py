"""The edge -> cloud client against real servers on loopback: a down edge, a slow edge, a 4xx."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from tests.serving.conftest import Live, jpeg

from dermascan.client import Client, ClientError


class _Slow(BaseHTTPRequestHandler):
    """An edge box that answers, but only after 20 s."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(20)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def slow_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def down_url() -> str:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_fails_over_when_the_edge_is_down(live: Live, down_url: str) -> None:
    with Client([down_url, live.url], live.keys["clinic-a"], timeout=5, retries=0) as client:
        answer = client.analyze(jpeg(), "clinic-a", "P-1")
    assert answer["prediction_id"] and client.last_url == live.url


def test_fails_over_when_the_edge_is_slower_than_the_timeout(live: Live, slow_url: str) -> None:
    # 2 s: the live service answers well within it even on a loaded CI machine; the edge would take 20 s
    with Client([slow_url, live.url], live.keys["clinic-a"], timeout=2, retries=0) as client:
        t0 = time.monotonic()
        answer = client.analyze(jpeg(), "clinic-a", "P-1")
    assert answer["diagnosis"]["primary"] and client.last_url == live.url
    assert time.monotonic() - t0 < 10  # it did not wait for the slow edge's answer


def test_retries_then_says_which_urls_failed(down_url: str, slow_url: str) -> None:
    with (
        Client([down_url, slow_url], "k", timeout=0.3, retries=1, backoff=0.05) as client,
        pytest.raises(ClientError, match="no service URL answered") as e,
    ):
        client.analyze(jpeg(), "clinic-a", "P-1")
    assert down_url in str(e.value) and slow_url in str(e.value)


def test_a_4xx_is_raised_at_once_not_retried(live: Live, down_url: str) -> None:
    with (
        Client([live.url, down_url], live.keys["clinic-a"], timeout=5, retries=3) as client,
        pytest.raises(ClientError, match="forbidden_clinic") as e,
    ):
        client.analyze(jpeg(), "clinic-b", "P-1")
    assert e.value.status == 403


def test_the_analyze_command(live: Live, down_url: str, tmp_path: Path) -> None:
    paths = [tmp_path / f"{i}.jpg" for i in range(2)]
    for i, p in enumerate(paths):
        p.write_bytes(jpeg(seed=i))
    cmd = [sys.executable, "-m", "dermascan.cli", "analyze", *map(str, paths), "--url", down_url, "--url", live.url]
    cmd += ["--key", live.keys["clinic-a"], "--clinic", "clinic-a", "--patient", "P-9", "--timeout", "5"]
    env = {"PYTHONPATH": ":".join(p for p in sys.path if p), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [ln["image"] for ln in lines] == list(map(str, paths))
    assert all(ln["url"] == live.url and ln["prediction_id"] and "attention_map" not in ln for ln in lines)
