"""Data commands: write the synthetic set, explore a data set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dermascan.cli._app import DataOpt, MetadataOpt, OutOpt, SkipBadOpt, app
from dermascan.errors import ConfigError


@app.command()
def synth(
    out: OutOpt,
    n: Annotated[int, typer.Option(help="Number of images.")] = 2000,
    size: Annotated[int, typer.Option(help="Image side in pixels.")] = 224,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives byte-identical files.")] = 0,
    dermoscope: Annotated[
        list[str] | None, typer.Option(help="Force dermoscope profile(s), e.g. a new device for drift tests.")
    ] = None,
    workers: Annotated[int, typer.Option(help="Worker processes (0 = all cores).")] = 0,
    feature_overlap: Annotated[float | None, typer.Option(help="How much class features overlap (difficulty).")] = None,
    nuisance_rate: Annotated[float | None, typer.Option(help="Scale on hair/ruler/ink/bubble/... rates.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty --out folder.")] = False,
) -> None:
    """Write a synthetic dermoscopy data set in the ISIC 2018 Task 3 layout (see docs/synthetic.md)."""
    from dermascan.data.synthetic import SynthConfig, generate_dataset

    kwargs: dict = {"dermoscopes": tuple(dermoscope)} if dermoscope else {}
    kwargs.update(
        {k: v for k, v in (("feature_overlap", feature_overlap), ("nuisance_rate", nuisance_rate)) if v is not None}
    )
    cfg = SynthConfig(n=n, size=size, seed=seed, workers=workers, **kwargs)
    try:
        meta = generate_dataset(out, cfg, overwrite=overwrite)
    except FileExistsError as e:
        raise ConfigError(f"{e} (pass --overwrite to replace it)") from e
    counts = meta["dx"].str.upper().value_counts().to_dict()
    typer.echo(f"wrote {len(meta)} images to {out}: {counts}")


@app.command()
def eda(
    data: DataOpt,
    out: OutOpt = Path("eda_out"),
    max_images: Annotated[int, typer.Option(help="Images sampled for colour statistics.")] = 400,
    skip_bad: SkipBadOpt = False,
    metadata: MetadataOpt = None,
) -> None:
    """Explore a data set: class balance, samples, colour, metadata -> eda.json, PNGs, eda.html."""
    from dermascan.data.eda import run_eda
    from dermascan.data.readers import read_dataset

    index = read_dataset(data, metadata=metadata, skip_bad=skip_bad, progress=True)
    summary = run_eda(index, out, max_images=max_images)
    counts = ", ".join(f"{k} {v}" for k, v in summary["class_counts"].items())
    typer.echo(f"{summary['n_images']} images ({counts}); imbalance ratio {summary['imbalance_ratio']:.1f}")
    if index.skipped:
        typer.echo(f"skipped {len(index.skipped)}: " + "; ".join(r for _, r in index.skipped[:5]))
    typer.echo(f"wrote {out / 'eda.html'}")
