"""One pure-ASGI middleware: stamps the arrival time, enforces the body-size limit, records request latency.

An analysis answers with a ``Server-Timing`` header (W3C Server Timing: browsers' developer tools draw it): each
step's milliseconds (``parse``, ``check``, ``model``, ``render``, ``store``) and ``total`` to the response.

The body limit is checked on ``Content-Length`` first (refused before the body is parsed) and again while the
body streams in (a chunked upload without a length). Before the 413 is sent, the rest of the body is read and
dropped, up to :data:`DRAIN_FACTOR` times the limit and :data:`DRAIN_SECONDS`: closing a connection with unread
bytes makes the kernel answer them with a reset, which can destroy the 413 before the client reads it (seen as a
client-side read error instead of the JSON message). Past those bounds the connection is closed at once.

Latency is labelled by the route *template* (``/api/v1/predictions/{prediction_id}``), never the raw path, so
ids do not become metric labels.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dermascan.serving.errors import ServiceError
from dermascan.serving.metrics import ServiceMetrics

#: How much of an oversized body is read and dropped before its 413, relative to the limit, and for how long.
DRAIN_FACTOR = 4
DRAIN_SECONDS = 5.0


async def _drain(receive: Receive, budget: int) -> None:
    """Read and drop the rest of a request body: at most ``budget`` bytes and :data:`DRAIN_SECONDS`."""
    try:
        async with asyncio.timeout(DRAIN_SECONDS):  # a slow sender is not waited for
            while budget > 0:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client went away
                budget -= len(message.get("body", b""))
                if not message.get("more_body", False):
                    return
    except TimeoutError:
        return


def _too_large(limit: int) -> ServiceError:
    return ServiceError(
        413,
        "payload_too_large",
        f"the request body is larger than {limit:,} bytes; send a smaller image (or raise max_body_bytes)",
    )


class RequestMiddleware:
    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, max_body_bytes: int) -> None:
        self.app, self.metrics, self.limit = app, metrics, max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        scope.setdefault("state", {}).update(t0=t0, timings=timings)
        status = {"code": 500}

        async def send_and_note(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                if timings:
                    timings["total"] = (time.perf_counter() - t0) * 1e3
                    value = ", ".join(f"{k};dur={v:.1f}" for k, v in timings.items())
                    message["headers"] = [*message.get("headers", []), (b"server-timing", value.encode())]
            await send(message)

        try:
            length = int(dict(scope["headers"]).get(b"content-length", b"0") or 0)
        except ValueError:
            length = 0
        if length > self.limit:
            if length <= DRAIN_FACTOR * self.limit:
                await _drain(receive, length)
            await _send_error(send_and_note, _too_large(self.limit))
        else:
            received = 0

            async def limited_receive() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > self.limit:
                        if message.get("more_body", False):
                            await _drain(receive, (DRAIN_FACTOR - 1) * self.limit)
                        raise _too_large(self.limit)
                return message

            await self.app(scope, limited_receive, send_and_note)
        route = scope.get("route")
        label = getattr(route, "path", None) or "unmatched"
        self.metrics.request_latency.labels(label, scope["method"], str(status["code"])).observe(
            time.perf_counter() - t0
        )


async def _send_error(send: Any, error: ServiceError) -> None:
    body = json.dumps(error.body()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


__all__ = ["RequestMiddleware"]
