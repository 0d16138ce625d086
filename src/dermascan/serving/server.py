"""Running the app: ``serve`` (the foreground command) and :class:`BackgroundServer` (the demo and tests).

One uvicorn worker per process, always: the Prometheus counts of ``/metrics`` are per process, so scale out by
running more ``dermascan serve`` processes (each its own port, or behind a proxy) and let Prometheus sum them.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import urllib.request
from types import TracebackType

import uvicorn

from dermascan.serving.app import create_app
from dermascan.serving.settings import ServeSettings


def serve(settings: ServeSettings) -> None:
    """Serve in the foreground until interrupted."""
    app = create_app(settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        workers=1,
        log_level=settings.log_level,
        proxy_headers=False,
        server_header=False,
    )


class BackgroundServer:
    """The service on a free loopback port in a thread, for the demo and the tests (``with`` starts and stops).

    Args:
        settings: the settings (``host``/``port`` are ignored: 127.0.0.1 and a free port).
        timeout_s: how long to wait for ``/readyz``.
    """

    def __init__(self, settings: ServeSettings, timeout_s: float = 120.0) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self.app = create_app(settings)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(self.app, log_level="warning", lifespan="on", server_header=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="dermascan-server", daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            asyncio.run(self._server.serve(sockets=[self._sock]))
        except BaseException as e:
            self._error = e

    def start(self) -> BackgroundServer:
        """Start and wait until ``/readyz`` answers ready.

        Raises:
            RuntimeError: the server stopped or did not get ready in time.
        """
        self._thread.start()
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if not self._thread.is_alive():
                raise RuntimeError(f"the service stopped while starting: {self._error!r}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=2) as r:
                    if json.load(r).get("status") == "ready":
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the service did not get ready within {self.timeout_s:.0f} s")

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        self._sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


__all__ = ["BackgroundServer", "serve"]
