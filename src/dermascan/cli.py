"""The `dermascan` command. Thin: parse, call the library, print. Run `dermascan --help`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="dermascan",
    help="AI-assisted dermoscopy screening: data, training, evaluation, heat maps, export and serving.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

DataOpt = Annotated[Path, typer.Option("--data", help="Dataset folder (ISIC 2018, HAM10000 or ImageFolder).")]
OutOpt = Annotated[Path, typer.Option("--out", help="Output folder.")]
SkipBadOpt = Annotated[bool, typer.Option("--skip-bad", help="Leave out bad images/rows and list them.")]


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=2)


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more.")] = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")


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
) -> None:
    """Write a synthetic dermoscopy data set in the ISIC 2018 Task 3 layout."""
    from dermascan.data.synthetic import SynthConfig, generate_dataset

    try:
        kwargs = {"dermoscopes": tuple(dermoscope)} if dermoscope else {}
        cfg = SynthConfig(n=n, size=size, seed=seed, workers=workers, **kwargs)
    except ValueError as e:
        raise _fail(str(e)) from e
    meta = generate_dataset(out, cfg)
    counts = meta["dx"].str.upper().value_counts().to_dict()
    typer.echo(f"wrote {len(meta)} images to {out}: {counts}")


@app.command()
def eda(
    data: DataOpt,
    out: OutOpt = Path("eda_out"),
    max_images: Annotated[int, typer.Option(help="Images sampled for colour statistics.")] = 400,
    skip_bad: SkipBadOpt = False,
) -> None:
    """Explore a data set: class balance, samples, colour, metadata -> eda.json, PNGs, eda.html."""
    from dermascan.data.eda import run_eda
    from dermascan.data.readers import DatasetError, read_dataset

    try:
        index = read_dataset(data, skip_bad=skip_bad, progress=True)
    except DatasetError as e:
        raise _fail(str(e)) from e
    summary = run_eda(index, out, max_images=max_images)
    counts = ", ".join(f"{k} {v}" for k, v in summary["class_counts"].items())
    typer.echo(f"{summary['n_images']} images ({counts}); imbalance ratio {summary['imbalance_ratio']:.1f}")
    if index.skipped:
        typer.echo(f"skipped {len(index.skipped)}: " + "; ".join(r for _, r in index.skipped[:5]))
    typer.echo(f"wrote {out / 'eda.html'}")


if __name__ == "__main__":
    app()
