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
    feature_overlap: Annotated[float | None, typer.Option(help="How much class features overlap (difficulty).")]
    = None,
    nuisance_rate: Annotated[float | None, typer.Option(help="Scale on hair/ruler/ink/bubble/... rates.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty --out folder.")] = False,
) -> None:
    """Write a synthetic dermoscopy data set in the ISIC 2018 Task 3 layout (see docs/synthetic.md)."""
    from dermascan.data.synthetic import SynthConfig, generate_dataset

    kwargs: dict = {"dermoscopes": tuple(dermoscope)} if dermoscope else {}
    kwargs.update({k: v for k, v in (("feature_overlap", feature_overlap), ("nuisance_rate", nuisance_rate))
                   if v is not None})
    try:
        cfg = SynthConfig(n=n, size=size, seed=seed, workers=workers, **kwargs)
        meta = generate_dataset(out, cfg, overwrite=overwrite)
    except (ValueError, FileExistsError) as e:
        raise _fail(f"{e}" + (" (pass --overwrite to replace it)" if isinstance(e, FileExistsError) else "")) from e
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


@app.command()
def train(
    data: Annotated[Path | None, typer.Option(help="Dataset folder (not needed with --resume).")] = None,
    out: OutOpt = Path("runs/run"),
    preset: Annotated[str | None, typer.Option(help="cpu-demo, isic2018-resnet50-baseline, isic2018-resnet50, "
                                                    "isic2018-vit_b_16.")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML file of config keys (overrides the preset).")] = None,
    arch: Annotated[str | None, typer.Option(help="resnet50, vit_b_16, resnet18, vit_tiny or timm:<name>.")] = None,
    weights: Annotated[str | None, typer.Option(help="none, imagenet, or a local state-dict file.")] = None,
    freeze: Annotated[bool | None, typer.Option("--freeze/--no-freeze", help="Freeze early layers.")] = None,
    image_size: Annotated[int | None, typer.Option(help="Network input side in pixels.")] = None,
    loss: Annotated[str | None, typer.Option(help="ce (baseline) or weighted_ce_focal.")] = None,
    class_weighting: Annotated[str | None, typer.Option(help="inverse, sqrt_inverse, clipped, uniform.")] = None,
    sampler: Annotated[str | None, typer.Option(help="shuffle or balanced.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Maximum epochs.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per step per device.")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate.")] = None,
    precision: Annotated[str | None, typer.Option(help="auto, 32-true, bf16-mixed, 16-mixed.")] = None,
    devices: Annotated[int | None, typer.Option(help="Processes/GPUs; >1 runs DDP.")] = None,
    accelerator: Annotated[str | None, typer.Option(help="auto, cpu or gpu.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for split, init, sampling, augmentation.")] = None,
    patience: Annotated[int | None, typer.Option(help="Early-stopping patience (epochs).")] = None,
    val_fraction: Annotated[float | None, typer.Option(help="Validation share per class.")] = None,
    test_fraction: Annotated[float | None, typer.Option(help="Test share per class.")] = None,
    num_workers: Annotated[int | None, typer.Option(help="Loader workers (-1 automatic).")] = None,
    val_data: Annotated[Path | None, typer.Option(help="Separate validation folder (e.g. official ISIC 2018 "
                                                        "validation), used whole as the val split.")] = None,
    test_data: Annotated[Path | None, typer.Option(help="Separate test folder, used whole as the test split.")]
    = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Pre-resized image cache folder.")] = None,
    limit_train_batches: Annotated[int | None, typer.Option(help="Cap steps per epoch (smoke runs).")] = None,
    skip_bad: SkipBadOpt = False,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from last.ckpt.")] = False,
) -> None:
    """Train a classifier; writes config.yaml, splits.csv, best.ckpt, last.ckpt, history.csv/json to --out."""
    from dermascan.data.readers import DatasetError
    from dermascan.models import WeightsFileError, WeightsUnavailableError
    from dermascan.training.config import resolve_config
    from dermascan.training.module import NonFiniteLossError
    from dermascan.training.train import train as run_training

    overrides = dict(data=str(data) if data else None, out=str(out), arch=arch, weights=weights, freeze=freeze,
                     image_size=image_size, loss=loss, class_weighting=class_weighting, sampler=sampler,
                     epochs=epochs, batch_size=batch_size, lr=lr, precision=precision, devices=devices,
                     accelerator=accelerator, seed=seed, patience=patience, val_fraction=val_fraction,
                     test_fraction=test_fraction, num_workers=num_workers,
                     cache_dir=str(cache_dir) if cache_dir else None, limit_train_batches=limit_train_batches,
                     val_data=str(val_data) if val_data else None, test_data=str(test_data) if test_data else None,
                     skip_bad=skip_bad or None)
    saved = out / "config.yaml"
    try:
        if resume and saved.exists():
            cfg = resolve_config(config_file=saved, **overrides)  # the run's own config, plus what you change
        else:
            cfg = resolve_config(preset=preset, config_file=config, **overrides)
        if not cfg.data:
            raise ValueError("--data is required (a dataset folder; `dermascan synth --out DIR` makes one)")
        result = run_training(cfg, resume=resume)
    except (ValueError, FileNotFoundError, FileExistsError, DatasetError, WeightsUnavailableError,
            WeightsFileError, NonFiniteLossError) as e:
        raise _fail(str(e)) from e
    typer.echo(f"trained {result.epochs_run} epoch(s); best selection score {result.best_score:.4f}")
    typer.echo(f"run folder: {result.out} (best.ckpt, last.ckpt, history.csv, splits.csv, config.yaml)")


RunOpt = Annotated[Path, typer.Option("--run", help="Run folder made by `dermascan train`.")]
RunDataOpt = Annotated[Path | None, typer.Option("--data", help="Dataset folder (default: the run's own).")]


@app.command()
def evaluate(
    run: RunOpt,
    out: OutOpt,
    data: RunDataOpt = None,
    split: Annotated[str, typer.Option(help="test, val, train, or all (every image of --data).")] = "test",
    tta: Annotated[bool, typer.Option(help="Average over flips (test-time augmentation); must match the locked "
                                           "operating point unless --recalibrate.")] = False,
    target_sensitivity: Annotated[float | None, typer.Option(help="Melanoma sensitivity the threshold targets "
                                                                  "(default 0.90; to change a locked one, "
                                                                  "--recalibrate).")] = None,
    lower_ci: Annotated[bool, typer.Option("--lower-ci", help="Require the lower 95% CI bound on validation "
                                                               "to reach the target.")] = False,
    recalibrate: Annotated[bool, typer.Option(help="Choose temperature and threshold again.")] = False,
) -> None:
    """Evaluate at argmax and at the validation-locked melanoma threshold, with 95% CIs.

    Writes metrics.json, predictions.csv (ISIC 2018 submission format), decisions.csv (DermaScan's decision
    of each image), plots and report.html.
    """
    from dermascan.data.readers import DatasetError
    from dermascan.errors import DermaScanError
    from dermascan.evaluation.evaluate import evaluate as run_evaluation
    from dermascan.evaluation.evaluate_report import headline_rows, threshold_free_rows

    try:
        # Not given is None, so a flag that differs from a locked operating point is refused, not ignored.
        m = run_evaluation(run, out, data=data, split=split, tta=tta, target_sensitivity=target_sensitivity,
                           require_lower_ci=True if lower_ci else None, recalibrate=recalibrate)
    except (DermaScanError, ValueError, FileNotFoundError, DatasetError) as e:
        raise _fail(str(e)) from e
    typer.echo(f"{m['split']}: {m['n']} images, {m['melanoma']['n_pos']} melanomas; "
               f"threshold {m['melanoma']['threshold']:.4f} (locked on validation)")
    typer.echo(f"{'figure (95% CI)':<32} {'at threshold':<24} {'at argmax':<24}")
    for label, t, a in headline_rows(m):
        typer.echo(f"{label:<32} {t:<24} {a:<24}")
    typer.echo("threshold-free (each picks its own threshold on this split; not an operating point):")
    for label, v in threshold_free_rows(m):
        typer.echo(f"{label:<32} {v:<24}")
    typer.echo(f"wrote {out / 'report.html'} and decisions.csv beside the ISIC submission predictions.csv")


@app.command()
def explain(
    run: RunOpt,
    image: Annotated[Path, typer.Option(help="Image file to explain.")],
    out: Annotated[Path, typer.Option("--out", help="Overlay PNG to write.")] = Path("heat.png"),
    method: Annotated[str, typer.Option(help="auto (Grad-CAM for CNNs, attention for ViTs), gradcam, attention, "
                                             "rollout.")] = "auto",
    class_code: Annotated[str | None, typer.Option("--class", help="Class to explain (Grad-CAM); default: the "
                                                                     "predicted one.")] = None,
) -> None:
    """Heat map of what drove the model's answer for one image, as an overlay PNG, with the calibrated answer."""
    from dermascan.data.io import ImageError
    from dermascan.explain.run import write_explanation
    from dermascan.inference import PredictionError, Predictor
    from dermascan.runs import load_run
    from dermascan.taxonomy import class_index

    try:
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
    except (ValueError, FileNotFoundError, ImageError) as e:
        raise _fail(str(e)) from e
    flag = "melanoma flagged" if answer.melanoma_flag else "not flagged"
    band = f", {answer.risk_band} risk" if answer.risk_band else " (uncalibrated: run `dermascan evaluate` first)"
    threshold = f" at threshold {answer.threshold:.3f}" if answer.threshold is not None else ""
    typer.echo(f"{image.name}: {answer.primary} {answer.confidence:.3f}, p(MEL) {answer.melanoma_risk:.3f}, "
               f"{flag}{threshold}{band}; wrote {out}")


@app.command()
def errors(
    run: RunOpt,
    out: OutOpt,
    data: RunDataOpt = None,
    split: Annotated[str, typer.Option(help="test, val, train or all.")] = "test",
    heatmaps: Annotated[bool, typer.Option(help="Show heat maps beside the missed melanomas.")] = True,
) -> None:
    """Missed melanomas at the operating point, by lesion size, nuisance and device -> errors.html."""
    from dermascan.data.readers import DatasetError
    from dermascan.evaluation.evaluate import audit_errors

    try:
        heatmap_fn = _heatmap_fn(run) if heatmaps else None
        summary = audit_errors(run, out, data=data, split=split, heatmap_fn=heatmap_fn)
    except (ValueError, FileNotFoundError, DatasetError) as e:
        raise _fail(str(e)) from e
    typer.echo(f"{summary['n_false_negatives']} missed melanoma(s) of {summary['n_melanoma']} at threshold "
               f"{summary['threshold']:.4f}")
    for finding in summary.get("findings", []):
        typer.echo(f"  - {finding}")
    typer.echo(f"wrote {out / 'errors.html'}")


def _heatmap_fn(run: Path):
    """Overlay of the run's heat map on an image path, for galleries (None when explain is unavailable)."""
    try:
        from dermascan.explain.run import explain_image
        from dermascan.models import load_checkpoint
    except ImportError:
        return None
    loaded = load_checkpoint(run / "best.ckpt")
    return lambda path: explain_image(loaded, path, "auto")[2]


@app.command()
def fairness(
    run: RunOpt,
    out: OutOpt,
    data: RunDataOpt = None,
    split: Annotated[str, typer.Option(help="test, val, train or all.")] = "test",
) -> None:
    """Melanoma sensitivity/specificity/AUROC by skin type, age, sex and site, with gaps, CIs, mitigation."""
    from dermascan.data.readers import DatasetError
    from dermascan.evaluation.evaluate import audit_fairness

    try:
        report = audit_fairness(run, out, data=data, split=split)
    except (ValueError, FileNotFoundError, DatasetError) as e:
        raise _fail(str(e)) from e
    for sentence in report.get("summary", []):
        typer.echo(f"- {sentence}")
    typer.echo(f"wrote {out / 'fairness.html'}")


@app.command()
def predict(
    images: Annotated[list[Path], typer.Argument(help="Image files and/or folders.")],
    bundle: Annotated[Path | None, typer.Option(help="Model bundle made by `dermascan export`.")] = None,
    run: Annotated[Path | None, typer.Option(help="Run folder (eager PyTorch) instead of a bundle.")] = None,
    heatmap: Annotated[Path | None, typer.Option("--heatmap", help="Write heat-map overlays to this folder.")]
    = None,
    runtime: Annotated[str, typer.Option(help="auto, onnxruntime, openvino, torch, torchscript.")] = "auto",
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = 16,
) -> None:
    """One JSON line per image: probabilities, primary diagnosis, melanoma risk and flag, model version.

    A file that is not a usable image gets an error line and the run goes on.
    """
    import json

    from dermascan.inference import Predictor

    source = bundle or run
    if source is None or (bundle and run):
        raise _fail("pass exactly one of --bundle or --run")
    try:
        predictor = Predictor.from_path(source, runtime=runtime, batch_size=batch_size)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        raise _fail(str(e)) from e
    from tqdm import tqdm

    from dermascan.inference import expand_paths

    files = list(expand_paths(images))
    failed = 0
    results = predictor.predict_paths(files, batch_size=batch_size, heatmap_dir=heatmap)
    # the bar goes to stderr, the JSON lines to stdout: `dermascan predict DIR > out.jsonl` stays clean
    for result in tqdm(results, total=len(files), desc="predicting", unit="img", disable=len(files) < 2):
        d = result.to_dict()
        failed += "error" in d
        typer.echo(json.dumps(d))
    if failed:
        typer.secho(f"{failed} file(s) could not be analysed (see their error lines)", err=True,
                    fg=typer.colors.YELLOW)


@app.command("score")
def score_archive(
    bundle: Annotated[Path, typer.Option(help="Model bundle made by `dermascan export`.")],
    input: Annotated[str, typer.Option("--input", help="Folder, image file or fsspec URL (file://, s3://, gs://), "
                                                       "read recursively.")],
    output: Annotated[Path, typer.Option("--output", help="Parquet file; a re-run skips the images already in it.")],
    engine: Annotated[str, typer.Option(help="local (one process) or ray (Ray Data actor pool).")] = "local",
    address: Annotated[str | None, typer.Option(help="Ray cluster to join (auto, ray://head:10001); default: "
                                                     "start a local one.")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per runtime batch (and per Ray block).")] = 64,
    actors: Annotated[int, typer.Option(help="Ray actors, each holding one copy of the model.")] = 2,
    gpus_per_actor: Annotated[float, typer.Option(help="GPUs per Ray actor (0.5 packs two on a GPU).")] = 0.0,
    cpus_per_actor: Annotated[float | None, typer.Option(help="CPUs per Ray actor (default: half the cluster's "
                                                              "CPUs shared out, at most 1).")] = None,
    threads: Annotated[int | None, typer.Option(help="Runtime threads (per actor on Ray).")] = None,
    runtime: Annotated[str, typer.Option(help="auto, onnxruntime, openvino, torch, torchscript.")] = "auto",
    num_cpus: Annotated[int | None, typer.Option(help="CPUs of a local Ray cluster (default: all).")] = None,
) -> None:
    """Score every image of an archive into Parquet: probabilities, decision, risk, model; one row per image.

    A file that cannot be read or decoded gets a row with its error; the run goes on.
    """
    from dermascan.scoring import score

    try:
        s = score(bundle, input, output, engine=engine, address=address, batch_size=batch_size, actors=actors,
                  gpus_per_actor=gpus_per_actor, cpus_per_actor=cpus_per_actor, threads=threads, runtime=runtime,
                  num_cpus=num_cpus, progress=True)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        raise _fail(str(e)) from e
    typer.echo(f"scored {s.n_scored} image(s) ({s.n_errors} error rows), skipped {s.n_skipped} already in {output}; "
               f"{s.n_rows} rows in all")
    if s.n_scored:
        typer.echo(f"{s.engine}: start-up {s.startup_s:.1f} s, then {s.images_per_s:.0f} images/s; "
                   f"{s.elapsed_s:.1f} s in all")


@app.command()
def export(
    run: RunOpt,
    out: OutOpt,
    format: Annotated[str, typer.Option("--format", help="onnx (main artifact) or torchscript.")] = "onnx",
    precision: Annotated[str, typer.Option(help="fp32, fp16, bf16 or int8 (ONNX only; see dermascan.export).")]
    = "fp32",
    name: Annotated[str | None, typer.Option(help="Model name (default dermascan-<arch>).")] = None,
    version: Annotated[str | None, typer.Option(help="Model version (default <run>-<date>).")] = None,
    parity_images: Annotated[Path | None, typer.Option(help="Folder of images for the parity check "
                                                            "(default: the run's validation split).")] = None,
    calibration_images: Annotated[Path | None, typer.Option(help="int8: folder of images that fit the activation "
                                                                 "ranges (default: the run's training split).")]
    = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing bundle folder.")] = False,
) -> None:
    """Export a run to a checksummed bundle; fails when parity against the eager model fails."""
    from dermascan.export import ExportParityError, export_bundle
    from dermascan.inference import load_bundle

    for folder in (parity_images, calibration_images):
        if folder is not None and not folder.is_dir():
            raise _fail(f"{folder} is not a folder of images")
    try:
        path = export_bundle(run, out, fmt=format, precision=precision, name=name, version=version,
                             parity_images=[parity_images] if parity_images else None,
                             calibration_images=[calibration_images] if calibration_images else None,
                             overwrite=overwrite, progress=True)
    except ExportParityError as e:
        raise _fail(f"parity check failed, bundle not written: {e}") from e
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as e:
        raise _fail(str(e)) from e
    manifest = load_bundle(path).manifest
    typer.echo(f"wrote bundle {path}: {manifest['name']} {manifest['version']} ({format}, {precision})")
    for r in manifest.get("parity", []):
        typer.echo(f"  parity on {r['n_images']} validation images, {r['runtime']} {r['compute_precision']}: "
                   f"max |dp| {r['max_abs_prob_diff']:.2e}, decisions agree {r['primary_agreement']:.1%}, "
                   f"melanoma flags agree {r['flag_agreement']:.1%}"
                   + ("" if r.get("p95_abs_map_diff") is None else
                      f", heat maps within {r['p95_abs_map_diff']:.3f} (p95)"))


@app.command()
def bench(
    bundle: Annotated[Path, typer.Option(help="Model bundle.")],
    out: Annotated[Path | None, typer.Option("--out", help="Write the report (JSON) here.")] = None,
    runtime: Annotated[list[str] | None, typer.Option(help="runtime[:precision], repeatable (default: all).")]
    = None,
    image: Annotated[Path | None, typer.Option(help="Test image (default: a synthetic 1024x768 JPEG).")] = None,
    repeats: Annotated[int, typer.Option(help="Timed single-image predictions per runtime.")] = 30,
    rounds: Annotated[int, typer.Option(help="Measure every runtime this many times, in rotated order, and pool "
                                             "(steadier ratios on a busy machine).")] = 1,
) -> None:
    """Latency per stage (p50/p95/p99), throughput and peak memory per runtime, eager PyTorch as reference."""
    from dermascan.export.benchmark import format_table, run_benchmark

    try:
        report = run_benchmark(bundle, runtimes=runtime, out_json=out, image=image, repeats=repeats, rounds=rounds,
                               progress=True)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        raise _fail(str(e)) from e
    typer.echo(format_table(report))


@app.command()
def compare(
    evals: Annotated[list[Path], typer.Argument(help="Evaluation folders (each with metrics.json).")],
    out: Annotated[Path | None, typer.Option(help="Write comparison.csv/.json/.html here.")] = None,
) -> None:
    """Side-by-side table of several evaluations (baseline vs improved, CNN vs ViT)."""
    from dermascan.errors import DermaScanError
    from dermascan.evaluation.compare import compare as run_compare
    from dermascan.evaluation.compare import format_table

    try:
        table = run_compare(evals, out)
    except (DermaScanError, FileNotFoundError) as e:
        raise _fail(str(e)) from e
    typer.echo(format_table(table))


@app.command()
def demo(
    out: OutOpt = Path("demo_out"),
    n_images: Annotated[int, typer.Option(help="Synthetic images in all.")] = 8000,
    epochs: Annotated[int, typer.Option(help="Epochs per model.")] = 8,
    seed: Annotated[int, typer.Option(help="Seed for data, splits and training.")] = 0,
    quick: Annotated[bool, typer.Option(help="A tiny smoke run (about a minute), not meaningful figures.")] = False,
    variant: Annotated[list[str] | None, typer.Option(help="Train only these variants (cnn_ce, cnn_focal_inverse, "
                                                           "cnn_focal_sqrt, vit_focal_sqrt).")] = None,
    audit: Annotated[bool, typer.Option(help="Heat maps, errors, fairness, export and benchmark of the winner.")]
    = True,
) -> None:
    """The main job on the synthetic default: data, EDA, training, evaluation, comparison, one report."""
    from dermascan.demo import VARIANTS, DemoConfig, run_demo

    unknown = sorted(set(variant or ()) - set(VARIANTS))
    if unknown:
        raise _fail(f"unknown variant(s) {unknown}; choose from {sorted(VARIANTS)}")
    cfg = DemoConfig(n_images=n_images, epochs=epochs, seed=seed, audit=audit,
                     **({"variants": tuple(variant)} if variant else {}))
    if quick:
        cfg = DemoConfig(n_images=300, size=48, image_size=32, epochs=1, seed=seed, lower_ci=False,
                         extra={"batch_size": 32})
    run_demo(out, cfg, echo=typer.echo)


# ------------------------------------------------------------------------------------------ the service

clinic_app = typer.Typer(help="Clinics and their API keys.", no_args_is_help=True)
db_app = typer.Typer(help="The service's database.", no_args_is_help=True)
app.add_typer(clinic_app, name="clinic")
app.add_typer(db_app, name="db")
DbOpt = Annotated[str, typer.Option("--db", help="Database URL: sqlite:///path.db or postgresql+psycopg://...")]


def _session(db: str):  # type: ignore[no-untyped-def]
    from dermascan.store import StoreError, check_schema, make_engine, session_factory, transaction

    try:
        engine = make_engine(db)
        check_schema(engine)
    except StoreError as e:
        raise _fail(str(e)) from e
    return transaction(session_factory(engine))


@app.command()
def serve(
    bundle: Annotated[Path, typer.Option(help="Model bundle folder.")],
    db: Annotated[str | None, typer.Option(help="Database URL (default: SQLite in the data folder).")] = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on [default: 127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port [default: 8000].")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML file of settings (see ServeSettings).")] = None,
    dev: Annotated[bool, typer.Option(help="Development: a throwaway patient key if none is set.")] = False,
    patient_key_file: Annotated[Path | None, typer.Option(help="File holding the patient-hash key.")] = None,
) -> None:
    """The clinical HTTP service (one uvicorn worker per process; see /docs)."""
    from dermascan.serving.server import serve as run_server
    from dermascan.serving.settings import ServeSettings, SettingsError
    from dermascan.store import StoreError
    from dermascan.store.identity import PatientKeyError

    try:
        settings = ServeSettings.load(config, bundle=bundle, db=db, host=host, port=port, dev=dev or None,
                                      patient_key_file=patient_key_file)
        run_server(settings)
    except (SettingsError, PatientKeyError, StoreError) as e:
        raise _fail(str(e)) from e


@app.command()
def analyze(
    images: Annotated[list[Path], typer.Argument(help="Image files (JPEG/PNG).")],
    url: Annotated[list[str], typer.Option("--url", help="Service URL; repeat for fallbacks (edge first).")],
    key: Annotated[str, typer.Option(envvar="DERMASCAN_API_KEY", help="The clinic's API key.")],
    clinic: Annotated[str, typer.Option(help="Clinic id.")],
    patient: Annotated[str, typer.Option(help="Patient id (hashed by the service, never stored in clear).")],
    timeout: Annotated[float, typer.Option(help="Seconds per attempt before the next URL.")] = 10.0,
    retries: Annotated[int, typer.Option(help="Rounds over all URLs after a failed one.")] = 2,
) -> None:
    """Send images to the service (edge -> cloud fallback) and print one JSON line per image."""
    import json

    from dermascan.client import Client, ClientError

    with Client(url, key, timeout=timeout, retries=retries) as client:
        for image in images:
            try:
                answer = client.analyze(image, clinic, patient)
            except (ClientError, OSError) as e:
                raise _fail(f"{image}: {e}") from e
            answer.pop("attention_map", None)
            typer.echo(json.dumps({"image": str(image), "url": client.last_url, **answer}))


@clinic_app.command("add")
def clinic_add(name: Annotated[str, typer.Argument(help="Clinic name; its id is the lower-case slug.")],
               db: DbOpt) -> None:
    """Add a clinic (or a key to an existing one) and print the new API key once, on its own line."""
    from dermascan.store.clinics import ClinicError, add_clinic

    try:
        with _session(db) as session:
            clinic, key = add_clinic(session, name)
    except ClinicError as e:
        raise _fail(str(e)) from e
    typer.echo(f"clinic_id: {clinic.id}  (the key below is shown once; only its hash is stored)", err=True)
    typer.echo(key)


@clinic_app.command("revoke")
def clinic_revoke(clinic_id: Annotated[str, typer.Argument(help="The clinic's id.")], db: DbOpt,
                  key: Annotated[str | None, typer.Option(help="Revoke only the key with this prefix "
                                                               "(its first 12 characters).")] = None) -> None:
    """Revoke a clinic's keys (all, or one by its prefix)."""
    from dermascan.store.clinics import ClinicError, revoke

    try:
        with _session(db) as session:
            n = revoke(session, clinic_id, key[:12] if key else None)
    except ClinicError as e:
        raise _fail(str(e)) from e
    typer.echo(f"revoked {n} key(s) of {clinic_id}")


@clinic_app.command("list")
def clinic_list(db: DbOpt) -> None:
    """Clinics and their active keys."""
    from dermascan.store.clinics import list_clinics

    with _session(db) as session:
        for clinic, active in list_clinics(session):
            typer.echo(f"{clinic.id}\t{clinic.name}\t{active} active key(s)")


@db_app.command("upgrade")
def db_upgrade(db: DbOpt) -> None:
    """Create or migrate the database to this version's schema (safe on an up-to-date one)."""
    from dermascan.store import StoreError, make_engine, upgrade

    try:
        before, after = upgrade(make_engine(db))
    except StoreError as e:
        raise _fail(str(e)) from e
    typer.echo(f"database at revision {after}" + ("" if before == after else f" (was {before or 'empty'})"))


if __name__ == "__main__":
    app()
