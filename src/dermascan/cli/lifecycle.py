"""The model lifecycle's commands: gates, the shadow A/B decision, the staged rollout, the registry, releases,
feedback datasets and sweeps. Thin: each parses, calls one function of :mod:`dermascan.lifecycle`, prints."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dermascan.cli._app import DbOpt, TrackingOpt, app, fail

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


rollout_app = typer.Typer(help="Staged rollout of the challenger on the canary share (10% -> 50% -> 100%).")
app.add_typer(rollout_app, name="rollout", no_args_is_help=True)

ModelOpt = Annotated[str | None, typer.Option("--model", help="The challenger's model version.")]
WhoOpt = Annotated[str | None, typer.Option("--who", help="Who takes the step (default: the login name).")]
WhyOpt = Annotated[str, typer.Option("--why", help="Why: recorded with the step.")]
StageHoursOpt = Annotated[float, typer.Option(help="Least hours at a stage (36: 100% at 72 h).")]
MinCasesOpt = Annotated[int, typer.Option(help="Fewest canary answers at a stage before it may advance.")]
HookOpt = Annotated[
    str | None,
    typer.Option(
        "--drift-check",
        help="module:function(version, since) -> alert text or None; default: no drift check (see lifecycle.rollout).",
    ),
]


def _policy(stage_hours: float, min_canary_cases: int):  # type: ignore[no-untyped-def]
    from dermascan.lifecycle.rollout import RolloutPolicy

    return RolloutPolicy(stage_hours=stage_hours, min_canary_cases=min_canary_cases)


MonitorOpt = Annotated[
    Path | None,
    typer.Option(
        "--monitor", help="Folder of `dermascan monitor --out`: its drift alerts since the stage began breach."
    ),
]


def _hook(spec: str | None, monitor: Path | None = None):  # type: ignore[no-untyped-def]
    if monitor is not None:
        if spec is not None:
            raise fail("give --monitor or --drift-check, not both")
        from dermascan.lifecycle.rollout import monitor_drift_check

        return monitor_drift_check(monitor)
    if spec is None:
        return None
    import importlib

    module, _, name = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as e:
        raise fail(f"--drift-check {spec!r}: cannot import it ({e}); give module:function") from e


def _finish(result: dict) -> None:  # type: ignore[type-arg]
    """Print the step; a rollback exits 1, so a scheduler sees the breach."""
    _echo_rollout(result)
    if result["action"] == "rollback":
        raise typer.Exit(code=1)


def _echo_rollout(result: dict) -> None:  # type: ignore[type-arg]
    import json

    r = result.get("rollout")
    if r is not None:
        typer.echo(
            f"{result.get('action', 'status')}: {r['model_version']} {r['status']} at {r['share']:.0%} "
            f"(stage {r['stage'] + 1}, champion {r['champion_version']})"
        )
    for c in (result.get("evaluation") or {}).get("checks", []):
        typer.echo(f"  {c['status']:<12} {c['name']}: {c['detail']}")
    for s in result.get("steps", []):
        typer.echo(
            f"  {s['at']}  {s['action']:<8} {s['from_share']:.0%} -> {s['to_share']:.0%}  {s['who']}: {s['why']}"
        )
    if r is None:
        typer.echo(json.dumps(result))


@rollout_app.command("start")
def rollout_start(
    db: DbOpt,
    model: Annotated[str, typer.Option("--model", help="The challenger's model version.")],
    champion: Annotated[str | None, typer.Option(help="Champion version (default: the one answering now).")] = None,
    who: WhoOpt = None,
    why: WhyOpt = "",
) -> None:
    """Start the rollout: the canary share goes to the first stage (10%)."""
    from dermascan.lifecycle.rollout import start

    _echo_rollout(start(db, model, champion, who, why))


@rollout_app.command("advance")
def rollout_advance(
    db: DbOpt,
    model: ModelOpt = None,
    who: WhoOpt = None,
    why: WhyOpt = "",
    stage_hours: StageHoursOpt = 36.0,
    min_canary_cases: MinCasesOpt = 100,
    drift_check: HookOpt = None,
    monitor: MonitorOpt = None,
) -> None:
    """One stage forward if the canary's live figures hold; hold otherwise; roll back at once on a breach."""
    from dermascan.lifecycle.rollout import advance

    _finish(advance(db, model, who, why, _policy(stage_hours, min_canary_cases), _hook(drift_check, monitor)))


@rollout_app.command("check")
def rollout_check(
    db: DbOpt,
    stage_hours: StageHoursOpt = 36.0,
    min_canary_cases: MinCasesOpt = 100,
    drift_check: HookOpt = None,
    monitor: MonitorOpt = None,
) -> None:
    """Watch once (for a scheduler): roll back at once on a breach, else change nothing."""
    from dermascan.lifecycle.rollout import check

    _finish(check(db, _policy(stage_hours, min_canary_cases), _hook(drift_check, monitor)))


@rollout_app.command("rollback")
def rollout_rollback(db: DbOpt, model: ModelOpt = None, who: WhoOpt = None, why: WhyOpt = "") -> None:
    """Back to the champion now (canary share 0)."""
    from dermascan.lifecycle.rollout import rollback

    _echo_rollout(rollback(db, model, who, why))


@rollout_app.command("status")
def rollout_status(
    db: DbOpt,
    stage_hours: StageHoursOpt = 36.0,
    min_canary_cases: MinCasesOpt = 100,
    drift_check: HookOpt = None,
    monitor: MonitorOpt = None,
) -> None:
    """The rollout's state, its live checks and every step (who, why, when)."""
    from dermascan.lifecycle.rollout import status

    _echo_rollout(status(db, _policy(stage_hours, min_canary_cases), _hook(drift_check, monitor)))


registry_app = typer.Typer(help="The MLflow model registry: versions and their champion/challenger aliases.")
app.add_typer(registry_app, name="registry", no_args_is_help=True)
NameOpt = Annotated[str, typer.Option("--name", help="Registered model name.")]


@app.command()
def register(
    bundle: Annotated[Path, typer.Option(help="The bundle to register (verified first).")],
    tracking_uri: TrackingOpt = None,
    name: NameOpt = "dermascan",
    alias: Annotated[str | None, typer.Option(help="Point this alias (challenger) at the new version.")] = None,
    run: Annotated[Path | None, typer.Option(help="The bundle's run folder (its MLflow run gets the files).")] = None,
) -> None:
    """Register a bundle as a new model version: manifest digest, data fingerprint and evaluation as tags."""
    from dermascan.lifecycle.registry import register_bundle

    v = register_bundle(bundle, tracking_uri, name, alias, run_dir=run)
    typer.echo(f"registered {v.name} version {v.version}" + (f" as {alias}" if alias else "") + f" ({v.digest[:12]})")


@registry_app.command("list")
def registry_list(tracking_uri: TrackingOpt = None, name: NameOpt = "dermascan") -> None:
    """Every version, newest first, with its aliases, bundle version, data fingerprint and gates."""
    from dermascan.lifecycle.registry import list_versions

    for v in list_versions(name, tracking_uri):
        t = v["tags"]
        typer.echo(
            f"{v['version']:>4}  {','.join(v['aliases']) or '-':<20} {t.get('bundle_version', '?'):<32} "
            f"data {str(t.get('data_fingerprint'))[:16]}  gates {t.get('gates', '-')}"
        )


@registry_app.command("alias")
def registry_alias(
    alias: Annotated[str, typer.Argument(help="champion or challenger.")],
    version: Annotated[str, typer.Argument(help="The model version.")],
    tracking_uri: TrackingOpt = None,
    name: NameOpt = "dermascan",
) -> None:
    """Point an alias at a version."""
    from dermascan.lifecycle.registry import set_alias

    set_alias(alias, version, name, tracking_uri)
    typer.echo(f"{name}@{alias} -> version {version}")


@registry_app.command("promote")
def registry_promote(tracking_uri: TrackingOpt = None, name: NameOpt = "dermascan") -> None:
    """The challenger becomes the champion (after `dermascan abtest` says promote and the rollout completed)."""
    from dermascan.lifecycle.registry import promote

    v = promote(name, tracking_uri)
    typer.echo(f"{name}@champion -> version {v.version} ({v.tags.get('bundle_version')})")


@app.command("export-feedback")
def export_feedback(
    db: DbOpt,
    out: Annotated[Path, typer.Option("--out", help="New dataset folder (ISIC 2018 layout).")],
    since: Annotated[str | None, typer.Option(help="Only cases answered since this date (2026-11-01).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Write into a non-empty folder.")] = False,
) -> None:
    """Confirmed production cases (kept images, histopathology first) as a new dataset, without patient ids."""
    import datetime as dt

    from dermascan.lifecycle.feedback_data import export_feedback as run_export

    try:
        start = dt.datetime.fromisoformat(since).replace(tzinfo=dt.UTC) if since else None
    except ValueError as e:
        raise fail(f"--since {since!r} is not a date (use 2026-11-01)") from e
    record = run_export(db, out, start, overwrite)
    typer.echo(
        f"wrote {record['n_images']} confirmed images ({record['label_sources']}) to {out}; "
        f"skipped {record['skipped']}; fingerprint {record['fingerprint']}"
    )


@app.command()
def release(
    run: Annotated[Path, typer.Option("--run", help="Run folder made by `dermascan train`.")],
    out: Annotated[Path, typer.Option("--out", help="Release folder (eval/, bundle/, bench.json, gate.json).")],
    gates: GatesOpt = None,
    tracking_uri: TrackingOpt = None,
    name: NameOpt = "dermascan",
    runtime: Annotated[list[str] | None, typer.Option(help="Bench runtime(s) (default onnxruntime).")] = None,
    repeats: Annotated[int, typer.Option(help="Timed predictions per runtime.")] = 30,
    version: Annotated[str | None, typer.Option(help="Bundle version (default: the export's).")] = None,
) -> None:
    """evaluate -> export -> bench -> gate -> register as challenger; stops at the first failure (exit 1)."""
    from dermascan.lifecycle.gates import GateConfig, GateReport
    from dermascan.lifecycle.release import release as run_release

    record = run_release(
        run,
        out,
        GateConfig.load(gates),
        tracking_uri,
        name,
        bench_runtimes=runtime or ["onnxruntime"],
        bench_repeats=repeats,
        version=version,
        progress=True,
    )
    for s in record["steps"]:
        typer.echo(f"{'ok  ' if s['ok'] else 'FAIL'} {s['step']}" + (f" ({s['seconds']} s)" if "seconds" in s else ""))
    if "gates" in record:
        g = record["gates"]
        typer.echo(GateReport.from_dict(g).table())
    if not record["passed"]:
        raise typer.Exit(code=1)
    r = record["registered"]
    typer.echo(f"registered {r['name']} version {r['version']} as challenger" if r else "passed (no --tracking-uri)")


@app.command()
def sweep(
    data: Annotated[Path, typer.Option("--data", help="Dataset folder.")],
    trials: Annotated[int, typer.Option(help="Trials this worker runs.")] = 20,
    out: Annotated[Path, typer.Option("--out", help="Sweep folder.")] = Path("runs/sweep"),
    storage: Annotated[
        str | None, typer.Option(help="Optuna storage shared by workers (default sqlite:///OUT/sweep.db).")
    ] = None,
    study: Annotated[str, typer.Option(help="Study name in the storage.")] = "dermascan",
    preset: Annotated[str, typer.Option(help="Training preset each trial starts from.")] = "cpu-demo",
    epochs: Annotated[int | None, typer.Option(help="Epochs per trial (default: the preset's).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch size per trial.")] = None,
    image_sizes: Annotated[str, typer.Option(help="Image sizes to choose from, comma-separated.")] = "64,96",
    seed: Annotated[int, typer.Option(help="Sampler and split seed.")] = 0,
) -> None:
    """Optuna sweep (TPE, median pruner) maximising validation specificity at 90% melanoma sensitivity."""
    from dermascan.lifecycle.sweep import SearchSpace
    from dermascan.lifecycle.sweep import sweep as run_sweep

    try:
        sizes = tuple(int(x) for x in image_sizes.split(","))
    except ValueError as e:
        raise fail(f"--image-sizes {image_sizes!r}: give integers separated by commas, e.g. 64,96") from e
    fixed = {k: v for k, v in {"epochs": epochs, "batch_size": batch_size}.items() if v is not None}
    result = run_sweep(data, out, trials, storage, study, preset, SearchSpace(image_size=sizes), seed, fixed)
    typer.echo(
        f"{result['n_complete']} trial(s) complete, {result['n_pruned']} pruned; best {result['best_value']:.4f} "
        f"(trial {result['best_trial']}): {result['best_params']}"
    )
    typer.echo(f"wrote {', '.join(str(out / f) for f in result['files'])}")
