"""The shipped Prometheus rules pass `promtool check rules` and their unit tests, and every DermaScan metric the
rules and the Grafana dashboard read is one the service exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from tests.monitoring.reports import write_drifted_report

from dermascan.serving.metrics import ServiceMetrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "alerts.yml"
_METRIC = re.compile(r"\b(dermascan_[a-z0-9_]*[a-z0-9])\b")
_SUFFIXES = ("_bucket", "_count", "_sum", "_created", "_info")


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: install Debian's prometheus package (sh scripts/ensure-system-deps.sh)")
    return found


def test_promtool_checks_the_rules() -> None:
    out = subprocess.run([_promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_the_rules_unit_tests_pass() -> None:
    test_file = RULES.with_name("alerts.test.yml")
    out = subprocess.run(
        [_promtool(), "test", "rules", test_file.name], cwd=test_file.parent, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_refuses_a_broken_rule(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(RULES.read_text().replace("dermascan_monitor_max_psi > 0.25", "dermascan_monitor_max_psi >> 0.25"))
    out = subprocess.run([_promtool(), "check", "rules", str(bad)], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0


def _base(name: str) -> str:
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def test_rules_and_dashboard_read_metrics_the_service_exports(tmp_path: Path) -> None:
    write_drifted_report(tmp_path)
    exported = {_base(m) for m in _METRIC.findall(ServiceMetrics(tmp_path).render().decode())}
    dashboard = json.loads((DEPLOY / "grafana" / "dermascan.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {_base(m) for m in _METRIC.findall(RULES.read_text() + "\n".join(exprs))}
    assert used, "no dermascan metric in the rules or the dashboard"
    assert used <= exported, f"read but never exported: {sorted(used - exported)}"
    assert {"dermascan_monitor_sensitivity", "dermascan_monitor_max_psi", "dermascan_queue_depth"} <= used
