"""Evaluation commands: evaluate at the locked threshold, explain one image, errors, fairness, compare."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dermascan.cli._app import Method, OutOpt, RunDataOpt, RunMetadataOpt, RunOpt, Split, TrackingOpt, app


def _run_index(run: Path, data: Path | None, metadata: Path | None):
    """The dataset evaluate/errors/fairness read: --data or the run's folders, with --metadata or the run's."""
    from dermascan.runs import BEST_CHECKPOINT, read_config
    from dermascan.training.config import TrainConfig, read_run_data

    if not (run / BEST_CHECKPOINT).is_file():
        return None  # not a run folder: the library says so, with the fix, before any image is read
    config = read_config(run) or TrainConfig()
    return read_run_data(config, data=data, metadata=metadata, progress=True)


@app.command()
def evaluate(
    run: RunOpt,
    out: OutOpt,
    data: RunDataOpt = None,
    metadata: RunMetadataOpt = None,
    split: Annotated[Split, typer.Option(help="test, val, train, or all (every image of --data).")] = "test",
    tta: Annotated[
        bool,
        typer.Option(
            help="Average over flips (test-time augmentation); must match the locked "
            "operating point unless --recalibrate."
        ),
    ] = False,
    target_sensitivity: Annotated[
        float | None,
        typer.Option(
            help="Melanoma sensitivity the threshold targets (default 0.90; to change a locked one, --recalibrate)."
        ),
    ] = None,
    lower_ci: Annotated[
        bool, typer.Option("--lower-ci", help="Require the lower 95% CI bound on validation to reach the target.")
    ] = False,
    recalibrate: Annotated[bool, typer.Option(help="Choose temperature and threshold again.")] = False,
    tracking_uri: TrackingOpt = None,
) -> None:
    """Evaluate at argmax and at the validation-locked melanoma threshold, with 95% CIs.

    Writes metrics.json, predictions.csv (ISIC 2018 submission format), decisions.csv (DermaScan's decision
    of each image), plots and report.html.
    """
    from dermascan.evaluation.evaluate import evaluate as run_evaluation
    from dermascan.evaluation.evaluate_report import headline_rows, threshold_free_rows

    # Not given is None, so a flag that differs from a locked operating point is refused, not ignored.
    m = run_evaluation(
        run,
        out,
        data=data,
        split=split,
        tta=tta,
        target_sensitivity=target_sensitivity,
        require_lower_ci=True if lower_ci else None,
        recalibrate=recalibrate,
        index=_run_index(run, data, metadata),
    )
    typer.echo(
        f"{m['split']}: {m['n']} images, {m['melanoma']['n_pos']} melanomas; "
        f"threshold {m['melanoma']['threshold']:.4f} (locked on validation)"
    )
    typer.echo(f"{'figure (95% CI)':<32} {'at threshold':<24} {'at argmax':<24}")
    for label, t, a in headline_rows(m):
        typer.echo(f"{label:<32} {t:<24} {a:<24}")
    typer.echo("threshold-free (each picks its own threshold on this split; not an operating point):")
    for label, v in threshold_free_rows(m):
        typer.echo(f"{label:<32} {v:<24}")
    typer.echo(f"wrote {out / 'report.html'} and decisions.csv beside the ISIC submission predictions.csv")
    if tracking_uri is not None:
        from dermascan.lifecycle.registry import log_evaluation

        typer.echo(f"logged to MLflow run {log_evaluation(run, out, tracking_uri)} at {tracking_uri}")


@app.command()
def explain(
    run: RunOpt,
    image: Annotated[Path, typer.Option(help="Image file to explain.")],
    out: Annotated[Path, typer.Option("--out", help="Overlay PNG to write.")] = Path("heat.png"),
    method: Annotated[
        Method, typer.Option(help="auto (Grad-CAM for CNNs, attention for ViTs), gradcam, attention, rollout.")
    ] = "auto",
    class_code: Annotated[
        str | None, typer.Option("--class", help="Class to explain (Grad-CAM); default: the decided one.")
    ] = None,
) -> None:
    """Heat map of what drove the model's answer for one image, as an overlay PNG, with the calibrated answer."""
    from dermascan.data.io import ImageError
    from dermascan.explain.run import write_explanation
    from dermascan.inference import PredictionError, Predictor
    from dermascan.runs import load_run
    from dermascan.taxonomy import class_index

    # The answer comes from the Predictor (calibrated, at the locked threshold); the map from the method asked.
    loaded = load_run(run)
    policy = loaded.policy()
    policy.check_views(False, "explain")
    with Predictor.from_model(loaded.loaded, policy) as predictor:
        answer = predictor.predict([image])[0]
    if isinstance(answer, PredictionError):
        raise ImageError(answer.error)
    k = class_index(class_code) if class_code else loaded.loaded.classes.index(answer.primary)
    write_explanation(loaded.loaded, image, out, method=method, class_index=k)
    flag = "melanoma flagged" if answer.melanoma_flag else "not flagged"
    band = f", {answer.risk_band} risk" if answer.risk_band else " (uncalibrated: run `dermascan evaluate` first)"
    threshold = f" at threshold {answer.threshold:.3f}" if answer.threshold is not None else ""
    typer.echo(
        f"{image.name}: {answer.primary} {answer.confidence:.3f}, p(MEL) {answer.melanoma_risk:.3f}, "
        f"{flag}{threshold}{band}; wrote {out}"
    )


def _heatmap_fn(run: Path):
    """Overlay of the run's heat map on an image path, for galleries (None when explain is unavailable)."""
    try:
        from dermascan.explain.run import explain_image
        from dermascan.runs import load_run
    except ImportError:
        return None
    loaded = load_run(run).loaded
    return lambda path: explain_image(loaded, path, "auto")[2]


@app.command()
def errors(
    run: RunOpt,
    out: OutOpt,
    data: RunDataOpt = None,
    metadata: RunMetadataOpt = None,
    split: Annotated[Split, typer.Option(help="test, val, train or all.")] = "test",
    heatmaps: Annotated[bool, typer.Option(help="Show heat maps beside the missed melanomas.")] = True,
) -> None:
    """Missed melanomas at the operating point, by lesion size, nuisance and device -> errors.html."""
    from dermascan.evaluation.evaluate import audit_errors

    index = _run_index(run, data, metadata)
    heatmap_fn = _heatmap_fn(run) if heatmaps else None
    summary = audit_errors(run, out, data=data, split=split, heatmap_fn=heatmap_fn, index=index)
    typer.echo(
        f"{summary['n_false_negatives']} missed melanoma(s) of {summary['n_melanoma']} at threshold "
        f"{summary['threshold']:.4f}"
    )
    for finding in summary.get("findings", []):
        typer.echo(f"  - {finding}")
    typer.echo(f"wrote {out / 'errors.html'}")


@app.command()
def fairness(
    run: RunOpt,
    out: OutOpt,
    data: RunDataOpt = None,
    metadata: RunMetadataOpt = None,
    split: Annotated[Split, typer.Option(help="test, val, train or all.")] = "test",
) -> None:
    """Melanoma sensitivity/specificity/AUROC by skin type, age, sex and site, with gaps, CIs, mitigation."""
    from dermascan.evaluation.evaluate import audit_fairness

    report = audit_fairness(run, out, data=data, split=split, index=_run_index(run, data, metadata))
    for sentence in report.get("summary", []):
        typer.echo(f"- {sentence}")
    typer.echo(f"wrote {out / 'fairness.html'}")


@app.command()
def compare(
    evals: Annotated[list[Path], typer.Argument(help="Evaluation folders (each with metrics.json).")],
    out: Annotated[Path | None, typer.Option(help="Write comparison.csv/.json/.html here.")] = None,
) -> None:
    """Side-by-side table of several evaluations (baseline vs improved, CNN vs ViT)."""
    from dermascan.evaluation.compare import compare as run_compare
    from dermascan.evaluation.compare import format_table

    typer.echo(format_table(run_compare(evals, out)))
