"""Prometheus metrics of one service process (Histograms, never Summaries: the Python client's Summary has no
quantiles). One registry per app, so two apps in one process (tests) do not share counts.

Counts are per process: run one uvicorn worker per process (the default, ``workers: 1``) and let Prometheus
scrape and sum the processes; several workers in one process group would each answer with their own counts.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector, generate_latest

from dermascan.serving.monitor_report import MonitorCollector

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class ServiceMetrics:
    """The service's metrics, in their own registry."""

    def __init__(self, monitor_dir: Path | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # the latest monitor report's figures (dermascan_monitor_*), read at each scrape
        r.register(MonitorCollector(monitor_dir))
        ProcessCollector(registry=r)  # process_resident_memory_bytes, cpu seconds, open fds
        self.request_latency = Histogram(
            "dermascan_http_request_duration_seconds",
            "Request latency, received to response sent.",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference = Histogram(
            "dermascan_inference_duration_seconds",
            "Model time per inference call (one batch).",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "dermascan_queue_wait_seconds",
            "Time an inference call waited for the inference executor.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge("dermascan_queue_depth", "Inference calls waiting or running.", registry=r)
        self.batch_size = Histogram(
            "dermascan_batch_size", "Images per inference call.", buckets=BATCH_BUCKETS, registry=r
        )
        self.predictions = Counter(
            "dermascan_predictions_total", "Stored predictions by risk band.", ["risk_band"], registry=r
        )
        self.model = Info("dermascan_model", "The served model.", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)


__all__ = ["ServiceMetrics"]
