"""The monitor report's file names and alert kinds: the contract between ``dermascan monitor``, which writes the
report, and the service, which shows it (gauges, operator page). Constants only: the serving process imports it."""

from __future__ import annotations

JSON_FILE = "monitor.json"
HTML_FILE = "monitor.html"
#: The kinds of alert, in the order reports list them; the first three need no label (drift alerts).
ALERTS = ("input_drift", "embedding_drift", "prediction_drift", "sensitivity", "concept_drift")
DRIFT_ALERTS = ALERTS[:3]

__all__ = ["ALERTS", "DRIFT_ALERTS", "HTML_FILE", "JSON_FILE"]
