"""The operator's monitoring commands: ``dermascan monitor`` (the store against the bundle's training reference;
exit code 1 when an alert fires, so cron or CI can act) and ``dermascan simulate`` (a synthetic deployment
replayed into a store, then monitored)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dermascan.cli._app import DbOpt, OutOpt, Scenario, app

BundleOpt = Annotated[Path, typer.Option("--bundle", help="The served model's bundle (its training reference).")]
WindowOpt = Annotated[str, typer.Option("--window", help="Window length: 1d, 12h, 30m, 1w.")]
QualityDaysOpt = Annotated[
    int, typer.Option("--quality-days", help="Confirmed quality uses the predictions of this many trailing days.")
]
MinMelanomasOpt = Annotated[
    int, typer.Option("--min-melanomas", help="Fewer confirmed melanomas: 'not enough confirmed melanomas'.")
]


def _echo_summary(report: dict, html: Path) -> None:
    windows = report["windows"]
    typer.echo(f"{len(windows)} window(s) of {report['period']['window']}, {sum(w['n'] for w in windows)} predictions")
    for kind, first in report["first_alert"].items():
        if first is not None:
            n = sum(kind in w["alerts"] for w in windows)
            typer.echo(f"  ALERT {kind}: {n} window(s), first at {first}")
    typer.echo(f"report: {html}")


@app.command()
def monitor(
    db: DbOpt,
    bundle: BundleOpt,
    out: OutOpt,
    since: Annotated[str | None, typer.Option(help="Start (ISO date, UTC): default the first prediction.")] = None,
    until: Annotated[str | None, typer.Option(help="End, exclusive (ISO date, UTC): default after the last.")] = None,
    window: WindowOpt = "1d",
    quality_days: QualityDaysOpt = 30,
    min_melanomas: MinMelanomasOpt = 20,
    metrics_url: Annotated[
        list[str] | None,
        typer.Option(
            "--metrics-url", help="A service instance (repeatable): its error rate and queue depth from /metrics."
        ),
    ] = None,
) -> None:
    """Quality, drift and latency per window: monitor.json and monitor.html in OUT; exit 1 when an alert fires."""
    from dermascan.monitoring.monitor import MonitorConfig, parse_time, parse_window
    from dermascan.monitoring.monitor import monitor as run_monitor
    from dermascan.monitoring.report import write_report
    from dermascan.monitoring.service import scrape

    cfg = MonitorConfig(window=parse_window(window), quality_days=quality_days, min_melanomas=min_melanomas)
    start = parse_time(since, "--since") if since else None
    end = parse_time(until, "--until") if until else None
    report = run_monitor(db, bundle, start, end, cfg)
    if metrics_url:
        report["service"] = [f.to_dict() for f in scrape(metrics_url)]
        for f in report["service"]:
            if f["error"]:
                typer.echo(f"  could not read {f['url']}/metrics: {f['error']}", err=True)
            else:
                rate = "-" if f["error_rate"] is None else f"{f['error_rate']:.2%}"
                depth = "-" if f["queue_depth"] is None else f"{f['queue_depth']:g}"
                typer.echo(
                    f"  service {f['url']}: {f['requests']} API requests since start, {f['server_errors']} 5xx "
                    f"({rate}), {f['client_errors']} 4xx, queue depth {depth}"
                )
    _echo_summary(report, write_report(report, out))
    if report["alerts"]:
        raise typer.Exit(code=1)


@app.command()
def simulate(
    bundle: BundleOpt,
    out: OutOpt,
    scenario: Annotated[Scenario, typer.Option(help="What changes on --change-day.")] = "steady",
    days: Annotated[int, typer.Option(help="Simulated days.")] = 60,
    per_day: Annotated[int, typer.Option(help="Images a day over the usual clinics.")] = 100,
    change_day: Annotated[int, typer.Option(help="First day of the change (days count from 1).")] = 31,
    seed: Annotated[int, typer.Option(help="Seeds images, feedback and delays.")] = 0,
    db: Annotated[
        str | None, typer.Option("--db", help="Store to write (must hold no predictions); default OUT/simulation.db.")
    ] = None,
    window: WindowOpt = "1d",
    quality_days: QualityDaysOpt = 30,
    min_melanomas: MinMelanomasOpt = 20,
) -> None:
    """A synthetic deployment replayed into a store, then monitored: monitor.json and monitor.html in OUT.

    Synthetic patients go day by day through the bundle; clinician feedback and histopathology arrive later.
    """
    from dermascan.monitoring.monitor import MonitorConfig, parse_window
    from dermascan.monitoring.report import write_report
    from dermascan.monitoring.simulate import SimulationConfig
    from dermascan.monitoring.simulate import simulate as run_simulation

    out.mkdir(parents=True, exist_ok=True)
    url = db or f"sqlite:///{(out / 'simulation.db').resolve()}"
    sim = SimulationConfig(scenario=scenario, days=days, per_day=per_day, change_day=change_day, seed=seed)
    cfg = MonitorConfig(window=parse_window(window), quality_days=quality_days, min_melanomas=min_melanomas)
    report = run_simulation(sim, bundle, url, cfg)
    html = write_report(report, out)
    s = report["simulation"]
    typer.echo(f"simulated {scenario}: {days} days, {per_day} images a day, into {url}")
    if s["false_alarm_rate"] is not None:
        typer.echo(
            f"  drift false alarms before the change: {s['false_alarm_windows']} of {s['windows_before_change']} "
            f"windows ({s['false_alarm_rate']:.1%})"
        )
    for kind, d in s["days_to_detect"].items():
        if d is not None:
            typer.echo(f"  {kind} detected {d:.1f} days after the change")
    typer.echo(f"  expected: {s['expected']}: {'held' if s['passed'] else 'DID NOT HOLD'}")
    typer.echo(f"report: {html}")
