"""The monitoring step of ``dermascan demo``: the steady and new-device scenarios at small size, each with its
``monitor.html``, and an HTML fragment that links them (the demo's index page embeds it)."""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

from dermascan.monitoring.monitor import MonitorConfig
from dermascan.monitoring.report import write_report
from dermascan.monitoring.simulate import SimulationConfig, simulate

DEMO_SCENARIOS = ("steady", "new-device")


def demo_step(
    out: str | os.PathLike[str], bundle: str | os.PathLike[str], days: int = 14, per_day: int = 150, change_day: int = 8
) -> dict[str, Any]:
    """Simulate ``steady`` and ``new-device`` into ``out/<scenario>/`` (a SQLite store each) and monitor them.

    Args:
        out: folder of the step (``out/steady/monitor.html``, ``out/new-device/monitor.html``).
        bundle: the demo's exported bundle (with its training reference).
        days: simulated days per scenario.
        per_day: images a day (150: 50 a clinic, the least a clinic's own PSI is computed from).
        change_day: the new device's first day.

    Returns:
        Per scenario: its ``html`` path, false-alarm rate, days to detect each alert, the expected outcome and
        whether it held; and ``html``, a fragment linking the reports (paths relative to ``out``'s parent).
    """
    root = Path(out)
    summary: dict[str, Any] = {}
    for scenario in DEMO_SCENARIOS:
        folder = root / scenario
        db = folder / "simulation.db"
        db.unlink(missing_ok=True)  # a simulation writes its own history
        folder.mkdir(parents=True, exist_ok=True)
        sim = SimulationConfig(scenario=scenario, days=days, per_day=per_day, change_day=change_day)
        report = simulate(sim, bundle, f"sqlite:///{db.resolve()}", MonitorConfig())
        page = write_report(report, folder)
        summary[scenario] = {**report["simulation"], "html": str(page)}
    summary["html"] = _fragment(root, summary)
    return summary


def _fragment(root: Path, summary: dict[str, Any]) -> str:
    rows = []
    for scenario in DEMO_SCENARIOS:
        s = summary[scenario]
        link = f"{root.name}/{scenario}/monitor.html"
        detect = ", ".join(f"{k} after {v:.1f} d" for k, v in s["days_to_detect"].items() if v is not None) or "none"
        rate = "—" if s["false_alarm_rate"] is None else f"{s['false_alarm_rate']:.0%}"
        rows.append(
            f'<tr><td><a href="{html.escape(link)}">{scenario}</a></td><td>{s["days"]} d x {s["per_day"]}</td>'
            f"<td>{rate}</td><td>{html.escape(detect)}</td><td>{html.escape(s['expected'])}: "
            f"{'held' if s['passed'] else 'did not hold'}</td></tr>"
        )
    head = "<tr><th>scenario</th><th>traffic</th><th>drift false alarms before the change</th><th>detected</th>"
    return f"<table><thead>{head}<th>expected</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"


__all__ = ["DEMO_SCENARIOS", "demo_step"]
