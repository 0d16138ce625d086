"""The Typer app, its shared options and choices, and the one place where user-facing errors are mapped."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any, Literal

import click
import typer
from typer.core import TyperGroup

from dermascan.errors import DermaScanError

#: Errors a user causes and can fix: one red line and exit code 2 instead of a traceback (``-v`` shows it).
#: Bad paths (``OSError``) and bad values (``ValueError``) the library raises are the user's too.
USER_ERRORS = (DermaScanError, ValueError, OSError)


class _Group(TyperGroup):
    """Maps :data:`USER_ERRORS` of every command (sub-apps included) to ``error: <message>``, exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except USER_ERRORS as e:
            if ctx.find_root().params.get("verbose"):
                raise
            raise fail(str(e)) from e


app = typer.Typer(
    name="dermascan",
    cls=_Group,
    help="AI-assisted dermoscopy screening: data, training, evaluation, heat maps, export and serving.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` in red on stderr; raise the returned ``Exit`` (code 2)."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=2)


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more; show tracebacks.")] = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")


# ------------------------------------------------------------------------------------------ choices
# Literal types so that typer refuses a bad choice and --help lists them; tests/test_cli.py checks that each
# equals the library's own tuple of choices.

Split = Literal["test", "val", "train", "all"]
Method = Literal["auto", "gradcam", "attention", "rollout"]
ModelFormat = Literal["onnx", "torchscript"]
BundlePrecision = Literal["fp32", "fp16", "bf16", "int8"]
Runtime = Literal["auto", "onnxruntime", "openvino", "torch", "torch-compile", "torchscript"]
Engine = Literal["local", "ray"]
Loss = Literal["ce", "weighted_ce_focal"]
Weighting = Literal["inverse", "sqrt_inverse", "clipped", "uniform"]
Sampler = Literal["shuffle", "balanced"]
Checkpoint = Literal["best", "last"]
TrainPrecision = Literal["auto", "32-true", "bf16-mixed", "16-mixed"]
Accelerator = Literal["auto", "cpu", "gpu"]
Scenario = Literal["steady", "new-device", "quiet-degradation", "case-mix"]
KeyRole = Literal["clinic", "operator"]

# ------------------------------------------------------------------------------------------ options

DataOpt = Annotated[Path, typer.Option("--data", help="Dataset folder (ISIC 2018, HAM10000 or ImageFolder).")]
OutOpt = Annotated[Path, typer.Option("--out", help="Output folder.")]
SkipBadOpt = Annotated[bool, typer.Option("--skip-bad", help="Leave out bad images/rows and list them.")]
MetadataOpt = Annotated[
    Path | None,
    typer.Option(
        "--metadata",
        help="Metadata CSV (image_id, lesion_id, age, sex, localization, ...) joined to the images, "
        "e.g. HAM10000_metadata_sample.csv beside an ImageFolder tree. Default: the folder's "
        "metadata.csv / HAM10000_metadata.csv, else its one *metadata*.csv.",
    ),
]
RunOpt = Annotated[Path, typer.Option("--run", help="Run folder made by `dermascan train`.")]
RunDataOpt = Annotated[Path | None, typer.Option("--data", help="Dataset folder (default: the run's own).")]
RunMetadataOpt = Annotated[
    Path | None,
    typer.Option(
        "--metadata",
        help="Metadata CSV joined to the images (default: the run's own --metadata with its own data; "
        "else the folder's metadata.csv / HAM10000_metadata.csv / one *metadata*.csv).",
    ),
]
RuntimeOpt = Annotated[Runtime, typer.Option(help="Runtime (auto: the fastest present).")]
TrackingOpt = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        envvar="MLFLOW_TRACKING_URI",
        help="Log to this MLflow tracking store (sqlite:///mlflow.db, http://server:5000); default: no tracking.",
    ),
]
DbOpt = Annotated[
    str, typer.Option("--db", envvar="DERMASCAN_DB", help="Database URL: sqlite:///path.db or postgresql+psycopg://...")
]
