"""The model lifecycle's commands: gates, the shadow A/B decision, the staged rollout, the registry, releases,
feedback datasets and sweeps. Thin: each parses, calls one function of :mod:`dermascan.lifecycle`, prints."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dermascan.cli._app import DbOpt, app

GatesOpt = Annotated[Path | None, typer.Option("--gates", help="YAML file of gate bounds (see GateConfig).")]


@app.command()
def gate(
    eval: Annotated[Path, typer.Option("--eval", help="metrics.json (or its folder) of `dermascan evaluate`.")],
    bench: Annotated[Path, typer.Option("--bench", help="JSON written by `dermascan bench --out`.")],
    gates: GatesOpt = None,
    fairness: Annotated[
        Path | None, typer.Option(help="fairness.json (or folder) of `dermascan audit fairness` (skin-type gap).")
    ] = None,
    bundle: Annotated[Path | None, typer.Option(help="The bundle (export parity gate).")] = None,
    lower_bound: Annotated[
        bool, typer.Option("--lower-bound", help="Melanoma sensitivity: the lower 95% bound must clear the bar.")
    ] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Also write the gate report (JSON) here.")] = None,
) -> None:
    """The promotion gates: a pass/fail table; exits 1 when a gate fails."""
    from dermascan.lifecycle.gates import GateConfig, run_gates

    config = GateConfig.load(gates, sensitivity_bound="lower" if lower_bound else None)
    report = run_gates(eval, bench, config, fairness, bundle, out)
    typer.echo(report.table())
    if not report.passed:
        raise typer.Exit(code=1)


@app.command()
def abtest(
    db: DbOpt,
    out: Annotated[Path | None, typer.Option("--out", help="Write abtest.json, abtest.html and the plot here.")] = None,
    challenger: Annotated[str | None, typer.Option(help="Challenger version (default: the newest shadowed).")] = None,
    champion: Annotated[str | None, typer.Option(help="Champion version (default: the one now in service).")] = None,
    min_melanomas: Annotated[int, typer.Option(help="Stop rule: confirmed melanomas.")] = 500,
    max_days: Annotated[float, typer.Option(help="Stop rule: days after the first shadow case.")] = 30.0,
    margin: Annotated[float, typer.Option(help="Specificity non-inferiority margin (0.02 = 2 points).")] = 0.02,
    alpha: Annotated[float, typer.Option(help="One-sided level of the sensitivity test.")] = 0.05,
) -> None:
    """The shadow A/B decision on confirmed cases: promote, keep champion or continue, with the evidence."""
    from dermascan.lifecycle.abtest import ABSettings, run_abtest

    settings = ABSettings(alpha=alpha, margin=margin, min_melanomas=min_melanomas, max_days=max_days)
    report = run_abtest(db, out, settings, challenger, champion)
    typer.echo(f"{report['verdict'].upper()}: {report['challenger']} against {report['champion']}")
    for reason in report["reasons"]:
        typer.echo(f"  {reason}")
    if out is not None:
        typer.echo(f"report: {out / 'abtest.html'}")


@app.command("abtest-sim")
def abtest_sim(
    repeats: Annotated[int, typer.Option(help="Simulated shadow periods per scenario.")] = 20000,
    melanomas: Annotated[int, typer.Option(help="Confirmed melanomas at the stop.")] = 500,
    gain: Annotated[float, typer.Option(help="True sensitivity gain of the challenger for the power.")] = 0.03,
    correlation: Annotated[float, typer.Option(help="Phi correlation of the two models' answers.")] = 0.5,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Operating characteristics of `dermascan abtest`: false-promotion rate and power, by simulation."""
    from dermascan.lifecycle.abtest_sim import operating_characteristics

    oc = operating_characteristics(repeats, seed, melanomas, gain, correlation)
    for name, r in oc.items():
        rate = r["rate"]
        typer.echo(
            f"{name.replace('_', ' ')}: {rate['value']:.4f} [{rate['lo']:.4f}, {rate['hi']:.4f}] "
            f"({r['promoted']} of {r['repeats']} promoted; sensitivity test alone {r['sensitivity_significant']:.4f})"
        )
