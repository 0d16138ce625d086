"""The model lifecycle's commands: gates, the shadow A/B decision, the staged rollout, the registry, releases,
feedback datasets and sweeps. Thin: each parses, calls one function of :mod:`dermascan.lifecycle`, prints."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dermascan.cli._app import app

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
