"""Active learning and the cost model: which images to label next, what that saves, what DermaScan costs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, get_args

import typer

from dermascan.cli._app import DataOpt, OutOpt, RunOpt, app

learn = typer.Typer(help="Active learning: rank a pool for labelling; measure the label saving.", no_args_is_help=True)
app.add_typer(learn, name="active-learn")

#: The strategies of dermascan.active_learning.strategies.STRATEGIES (tests/test_cli.py-style check in the tests).
StrategyName = Literal["random", "entropy", "margin", "melanoma-boundary", "bald", "kcenter"]


@learn.command("rank")
def rank(
    run: RunOpt,
    pool: Annotated[
        str,
        typer.Option(
            help="Image folder, or the store: sqlite:///path.db, postgresql+psycopg://..., or a .db file "
            "(predictions awaiting histopathology, with kept images)."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Ranking CSV: rank, image, score, why, p_melanoma, ...")],
    budget: Annotated[int, typer.Option(help="How many images to rank (labels you can pay for).")] = 50,
    strategy: Annotated[StrategyName, typer.Option(help="Acquisition strategy.")] = "melanoma-boundary",
    seed: Annotated[int, typer.Option(help="Seeds random and the tie-breaks.")] = 0,
) -> None:
    """The images whose label (histopathology) would help the model most, best first, each with why."""
    from dermascan.active_learning.ranking import rank_pool

    frame, found = rank_pool(run, pool, budget, strategy, out=out, seed=seed)
    typer.echo(f"ranked {len(frame)} of {len(found.names)} pool images by {strategy} -> {out}")
    for row in frame.head(5).itertuples(index=False):
        typer.echo(f"  {row.rank:>3}  {row.image}  {row.score:.3f}  {row.why}")
    if found.skipped:
        typer.echo(f"skipped {len(found.skipped)}: " + "; ".join(f"{n}: {w}" for n, w in found.skipped[:3]))


@learn.command("simulate")
def simulate(
    data: DataOpt,
    out: OutOpt,
    seed_labels: Annotated[int, typer.Option(help="Images labelled at random before the first round.")] = 300,
    round_size: Annotated[int, typer.Option("--round", help="Images labelled per round.")] = 200,
    rounds: Annotated[int, typer.Option(help="Acquisition rounds.")] = 3,
    strategy: Annotated[
        list[str] | None,
        typer.Option(
            help=f"Strategy to compare, repeatable: {', '.join(get_args(StrategyName))} (default: all; "
            "random is always in)."
        ),
    ] = None,
    repeats: Annotated[int, typer.Option(help="Independent repeats (the interval is over them).")] = 3,
    arch: Annotated[str, typer.Option(help="Model (small: the simulation trains many).")] = "resnet18",
    image_size: Annotated[int, typer.Option(help="Network input side in pixels.")] = 32,
    seed_epochs: Annotated[int, typer.Option(help="Epochs of the seed model.")] = 8,
    round_epochs: Annotated[int, typer.Option(help="Fine-tuning epochs per round.")] = 2,
    finetune_lr_scale: Annotated[float, typer.Option(help="Fine-tuning learning rate, times the seed model's.")] = 0.1,
    label_cost: Annotated[float, typer.Option(help="Dollars per biopsy-confirmed label.")] = 85.0,
    seed: Annotated[int, typer.Option(help="Seeds the split and every repeat.")] = 0,
) -> None:
    """Simulate labelling rounds on a labelled set; curves, labels needed to match random, the saving in $."""
    from dermascan.active_learning.report import SAVING_HEADER, saving_rows
    from dermascan.active_learning.simulate import SimulationConfig
    from dermascan.active_learning.simulate import simulate as run_simulation

    chosen = {"strategies": tuple(strategy)} if strategy else {}  # default: every strategy
    config = SimulationConfig(
        data=str(data), out=str(out), seed_labels=seed_labels, round_size=round_size, rounds=rounds,
        repeats=repeats, arch=arch, image_size=image_size, seed_epochs=seed_epochs, round_epochs=round_epochs,
        finetune_lr_scale=finetune_lr_scale,
        label_cost=label_cost, seed=seed, **chosen,
    )  # fmt: skip
    summary = run_simulation(config)
    block = summary["metrics"]["auroc"]
    typer.echo(f"random reaches AUROC {block['target']:.3f} with {summary['budget']:.0f} labels; saving per strategy:")
    typer.echo("  " + " | ".join(SAVING_HEADER))
    for row in saving_rows(summary):
        typer.echo("  " + " | ".join(row))
    typer.echo(f"wrote {out / 'simulation.html'} ({summary['elapsed_s'] / 60:.1f} min)")


@app.command()
def cost(
    out: OutOpt,
    config: Annotated[Path | None, typer.Option(help="costs.yaml: any input of the model by name.")] = None,
    al_simulation: Annotated[
        Path | None, typer.Option(help="Output of `dermascan active-learn simulate` (its measured saving).")
    ] = None,
    bench: Annotated[Path | None, typer.Option(help="JSON of `dermascan bench --out` (the CPU latency).")] = None,
) -> None:
    """The brief's monthly cost table, cost per scan and margin, and scenarios; each figure names its source."""
    from dermascan.cost import write_cost_report

    model = write_cost_report(out, config=config, al_simulation=al_simulation, bench=bench)
    b = model["baseline"]
    typer.echo(
        f"monthly cost {b['total']:,.0f} $ for {b['scans']:,.0f} scans: {b['cost_per_scan']:.4f} $/scan, "
        f"margin {b['margin_share']:.1%}"
    )
    for s in model["scenarios"]:
        total = "needs --bench" if s.get("total") is None else f"{s['total']:,.0f} $ ({s['source']})"
        typer.echo(f"  {s['name']}: {total}")
    typer.echo(f"wrote {out / 'cost.md'} and {out / 'cost.html'}")
