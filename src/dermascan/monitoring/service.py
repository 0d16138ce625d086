"""The service's own figures at report time: error rate and queue depth, which the store cannot hold (a refused
request writes no row), read from each instance's ``/metrics``.

Counts are cumulative since the instance started (Prometheus counters): the report shows them as "since start",
and the shipped Prometheus rules (``deploy/prometheus/alerts.yml``) watch their rates over time. Only the API
routes count (``/api/...``): probes and scrapes would dilute the error rate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

REQUESTS = "dermascan_http_request_duration_seconds"
INFERENCE = "dermascan_inference_duration_seconds"
QUEUE_DEPTH = "dermascan_queue_depth"


@dataclass(frozen=True)
class ServiceFigures:
    """One instance's figures (``error`` set, the rest ``None``: it could not be read).

    Attributes:
        url: the instance's base URL.
        requests: API requests answered since it started.
        client_errors: of those, answered 4xx (bad input, a wrong key).
        server_errors: answered 5xx (overloaded 503, deadline 504, store down, bugs).
        error_rate: ``server_errors / requests`` (``None`` before the first request).
        queue_depth: inference calls waiting or running now.
        inference_ms_mean: mean model time per inference call since start.
        error: why the instance could not be read.
    """

    url: str
    requests: int | None = None
    client_errors: int | None = None
    server_errors: int | None = None
    error_rate: float | None = None
    queue_depth: float | None = None
    inference_ms_mean: float | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_metrics(url: str, text: str) -> ServiceFigures:
    """The figures of one ``/metrics`` page (Prometheus text format)."""
    by_status: dict[str, float] = {}
    inference = {"sum": 0.0, "count": 0.0}
    depth = None
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == REQUESTS + "_count" and s.labels.get("route", "").startswith("/api/"):
                status = s.labels.get("status", "")
                by_status[status] = by_status.get(status, 0.0) + s.value
            elif s.name == INFERENCE + "_sum":
                inference["sum"] += s.value
            elif s.name == INFERENCE + "_count":
                inference["count"] += s.value
            elif s.name == QUEUE_DEPTH:
                depth = s.value
    total = int(sum(by_status.values()))
    client = int(sum(v for k, v in by_status.items() if k.startswith("4")))
    server = int(sum(v for k, v in by_status.items() if k.startswith("5")))
    return ServiceFigures(
        url=url,
        requests=total,
        client_errors=client,
        server_errors=server,
        error_rate=server / total if total else None,
        queue_depth=depth,
        inference_ms_mean=1e3 * inference["sum"] / inference["count"] if inference["count"] else None,
    )


def scrape(urls: list[str], timeout_s: float = 5.0) -> list[ServiceFigures]:
    """Each instance's figures; one that cannot be reached gets its ``error``, the others are still read."""
    out = []
    for url in urls:
        base = url.rstrip("/")
        try:
            r = httpx.get(base + "/metrics", timeout=timeout_s)
            r.raise_for_status()
            out.append(parse_metrics(base, r.text))
        except (httpx.HTTPError, ValueError) as e:  # ValueError: not Prometheus text (another server there?)
            out.append(ServiceFigures(url=base, error=f"{type(e).__name__}: {e}"))
    return out


__all__ = ["ServiceFigures", "parse_metrics", "scrape"]
