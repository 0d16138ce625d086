"""The latest ``dermascan monitor`` report as the service shows it: gauges on ``/metrics`` and the operator's page.

The monitor runs apart (cron, CI) and writes ``monitor.json`` beside ``monitor.html`` in ``monitor_dir``; the
service re-reads the JSON at each scrape, so the gauges are always the latest report's, and never computes a
figure itself (it reads the file's keys and imports nothing of :mod:`dermascan.monitoring` but
:mod:`~dermascan.monitoring.files`: the serving process stays free of pandas, scipy and scikit-learn).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from dermascan.monitoring.files import ALERTS, JSON_FILE

log = logging.getLogger("dermascan.serving")


def read_report(folder: Path | None) -> dict[str, Any] | None:
    """The report in ``folder``, or ``None`` when there is none (or it cannot be read: logged)."""
    if folder is None:
        return None
    path = folder / JSON_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        log.warning("cannot read the monitor report %s: %s", path, e)
        return None


def _latest(windows: list[dict[str, Any]], *keys: str) -> float | None:
    """The figure of the latest window that has it."""
    for w in reversed(windows):
        v: Any = w
        for k in keys:
            v = v.get(k) if isinstance(v, dict) else None
        if isinstance(v, int | float) and not isinstance(v, bool):
            return float(v)
    return None


class MonitorCollector(Collector):
    """Gauges of the latest report's last window, read at each scrape."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder

    def collect(self) -> Iterator[GaugeMetricFamily]:
        report = read_report(self.folder)
        if report is None or not report.get("windows"):
            return
        w = report["windows"]
        simple = {
            "dermascan_monitor_sensitivity": ("Confirmed melanoma sensitivity (trailing window).",
                                              ("quality", "sensitivity", "value")),
            "dermascan_monitor_sensitivity_lower": ("Lower Wilson 95% bound of it.", ("quality", "sensitivity", "lo")),
            "dermascan_monitor_specificity": ("Confirmed specificity.", ("quality", "specificity", "value")),
            "dermascan_monitor_auroc": ("Confirmed AUROC.", ("quality", "auroc", "value")),
            "dermascan_monitor_confirmed_melanomas": ("Confirmed melanomas in the trailing window.",
                                                      ("quality", "n_melanoma")),
            "dermascan_monitor_estimated_sensitivity": ("CBPE estimated sensitivity.", ("estimated", "sensitivity")),
            "dermascan_monitor_max_psi": ("Largest image-feature PSI.", ("input_drift", "max_psi")),
            "dermascan_monitor_flag_rate": ("Melanoma-flag rate.", ("prediction_drift", "rate")),
            "dermascan_monitor_flag_rate_z": ("Flag rate minus reference, in SDs.", ("prediction_drift", "z")),
            "dermascan_monitor_class_mix_psi": ("Class-mix PSI.", ("prediction_drift", "class_mix_psi")),
            "dermascan_monitor_embedding_p_value": ("MMD permutation p-value.", ("embedding_drift", "p_value")),
            "dermascan_monitor_disagreement": ("Disagreement with labels.", ("concept_drift", "disagreement")),
            "dermascan_monitor_disagreement_expected": ("Disagreement the calibrated model expects.",
                                                        ("concept_drift", "expected")),
            "dermascan_monitor_disagreement_z": ("Disagreement minus expected, in SDs.", ("concept_drift", "z")),
        }  # fmt: skip
        for name, (doc, keys) in simple.items():
            value = _latest(w, *keys)
            if value is not None:
                g = GaugeMetricFamily(name, doc)
                g.add_metric([], value)
                yield g
        psi = GaugeMetricFamily("dermascan_monitor_feature_psi", "PSI of each image feature.", labels=["feature"])
        for feature, entry in (w[-1].get("features") or {}).items():
            if entry.get("psi") is not None:
                psi.add_metric([feature], float(entry["psi"]))
        yield psi
        alert = GaugeMetricFamily("dermascan_monitor_alert", "1 when the last window raised it.", labels=["kind"])
        for kind in ALERTS:
            alert.add_metric([kind], float(kind in w[-1].get("alerts", [])))
        yield alert
        age = GaugeMetricFamily("dermascan_monitor_report_timestamp_seconds", "When the report was written (mtime).")
        assert self.folder is not None
        age.add_metric([], os.path.getmtime(self.folder / JSON_FILE))
        yield age


__all__ = ["MonitorCollector", "read_report"]
