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


@app.command("real-demo")
def real_demo(
    data: Annotated[Path, typer.Option(help="Dataset folder with lesion ids (e.g. ../shared/data/ham10000-200).")],
    out: OutOpt = Path("real_demo_out"),
    preset: Annotated[str, typer.Option(help="Training recipe (ResNet-18-D from scratch, 96 px, 10 epochs).")] = (
        "ham10000-cpu"
    ),
    config: Annotated[Path | None, typer.Option(help="YAML file of training keys (overrides the preset).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Maximum epochs.")] = None,
    image_size: Annotated[int | None, typer.Option(help="Network input side in pixels.")] = None,
    tta: Annotated[bool, typer.Option(help="Lock the threshold on, and score with, flip-averaged views.")] = False,
    target_sensitivity: Annotated[float, typer.Option(help="Melanoma sensitivity the threshold is locked for.")] = 0.90,
    bench: Annotated[bool, typer.Option(help="Benchmark the exported bundle's latency.")] = True,
) -> None:
    """Real dermoscopy on a CPU, end to end: train, lock the threshold on validation, score the held-out lesions,
    audit fairness by age, sex and site, export and benchmark (report.md, summary.json)."""
    import yaml

    from dermascan.real_demo import RealDemoConfig, run_real_demo

    train = dict(yaml.safe_load(config.read_text()) or {}) if config is not None else {}
    train |= {k: v for k, v in {"epochs": epochs, "image_size": image_size}.items() if v is not None}
    cfg = RealDemoConfig(
        data=str(data), out=str(out), preset=preset, target_sensitivity=target_sensitivity, tta=tta, bench=bench,
        train=train,
    )  # fmt: skip
    run_real_demo(cfg, echo=typer.echo)
