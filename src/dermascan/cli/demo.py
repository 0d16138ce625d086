"""``dermascan demo``: the main job on the synthetic default, end to end, one report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dermascan.cli._app import OutOpt, app


@app.command()
def demo(
    out: OutOpt = Path("demo_out"),
    n_images: Annotated[
        int | None, typer.Option(help="Synthetic images in all (default 8000; 300 with --quick).")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs per model (default 8; 1 with --quick).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for data, splits and training.")] = 0,
    quick: Annotated[
        bool,
        typer.Option(
            help="A tiny smoke run (about a minute), not meaningful figures; "
            "--n-images, --epochs, --variant and --no-audit still apply."
        ),
    ] = False,
    variant: Annotated[
        list[str] | None,
        typer.Option(help="Train only these variants (cnn_ce, cnn_focal_inverse, cnn_focal_sqrt, vit_focal_sqrt)."),
    ] = None,
    audit: Annotated[
        bool, typer.Option(help="Heat maps, errors, fairness, export and benchmark of the winner.")
    ] = True,
) -> None:
    """The main job on the synthetic default: data, EDA, training, evaluation, comparison, one report."""
    from dermascan.demo import demo_config, run_demo

    cfg = demo_config(
        quick, n_images=n_images, epochs=epochs, seed=seed, audit=audit, variants=tuple(variant) if variant else None
    )
    run_demo(out, cfg, echo=typer.echo)
