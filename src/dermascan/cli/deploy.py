"""Shipping a model: export a bundle, predict with it, benchmark it, score an archive with it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dermascan.cli._app import (
    BundlePrecision,
    Engine,
    ModelFormat,
    OutOpt,
    RunOpt,
    RuntimeOpt,
    TrackingOpt,
    app,
    fail,
)


@app.command()
def export(
    run: RunOpt,
    out: OutOpt,
    format: Annotated[ModelFormat, typer.Option("--format", help="onnx (main artifact) or torchscript.")] = "onnx",
    precision: Annotated[
        BundlePrecision, typer.Option(help="fp32, fp16, bf16 or int8 (ONNX only; see dermascan.export).")
    ] = "fp32",
    name: Annotated[str | None, typer.Option(help="Model name (default dermascan-<arch>).")] = None,
    version: Annotated[str | None, typer.Option(help="Model version (default <run>-<date>).")] = None,
    parity_images: Annotated[
        Path | None, typer.Option(help="Folder of images for the parity check (default: the run's validation split).")
    ] = None,
    calibration_images: Annotated[
        Path | None,
        typer.Option(help="int8: folder of images that fit the activation ranges (default: the run's training split)."),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing bundle folder.")] = False,
    tracking_uri: TrackingOpt = None,
    register: Annotated[str, typer.Option(help="With --tracking-uri: the registered model's name.")] = "dermascan",
    alias: Annotated[
        str | None, typer.Option(help="With --tracking-uri: point this alias (challenger) at the new version.")
    ] = None,
) -> None:
    """Export a run to a checksummed bundle; fails (and writes nothing) when parity against the eager model fails.

    With --tracking-uri the bundle is registered as a new model version (manifest digest, data fingerprint,
    evaluation summary as tags)."""
    from dermascan.export import export_bundle
    from dermascan.inference import load_bundle

    for folder in (parity_images, calibration_images):
        if folder is not None and not folder.is_dir():
            raise fail(f"{folder} is not a folder of images")
    path = export_bundle(
        run,
        out,
        fmt=format,
        precision=precision,
        name=name,
        version=version,
        parity_images=[parity_images] if parity_images else None,
        calibration_images=[calibration_images] if calibration_images else None,
        overwrite=overwrite,
        progress=True,
    )
    manifest = load_bundle(path).manifest
    typer.echo(f"wrote bundle {path}: {manifest['name']} {manifest['version']} ({format}, {precision})")
    for r in manifest.get("parity", []):
        typer.echo(
            f"  parity on {r['n_images']} validation images, {r['runtime']} {r['compute_precision']}: "
            f"max |dp| {r['max_abs_prob_diff']:.2e}, decisions agree {r['primary_agreement']:.1%}, "
            f"melanoma flags agree {r['flag_agreement']:.1%}"
            + ("" if r.get("p95_abs_map_diff") is None else f", heat maps within {r['p95_abs_map_diff']:.3f} (p95)")
        )
    ref = manifest.get("reference")
    typer.echo(
        f"  monitoring reference: {ref['file']}"
        if ref
        else "  monitoring reference: none (the run's data set is not here)"
    )
    if tracking_uri is not None:
        from dermascan.lifecycle.registry import register_bundle

        v = register_bundle(path, tracking_uri, register, alias, run_dir=run if run.is_dir() else run.parent)
        typer.echo(
            f"registered {v.name} version {v.version}" + (f" as {alias}" if alias else "") + f" ({v.digest[:12]})"
        )


@app.command()
def predict(
    images: Annotated[list[Path], typer.Argument(help="Image files and/or folders.")],
    bundle: Annotated[Path | None, typer.Option(help="Model bundle made by `dermascan export`.")] = None,
    run: Annotated[Path | None, typer.Option(help="Run folder (eager PyTorch) instead of a bundle.")] = None,
    heatmap: Annotated[Path | None, typer.Option("--heatmap", help="Write heat-map overlays to this folder.")] = None,
    runtime: RuntimeOpt = "auto",
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = 16,
) -> None:
    """One JSON line per image: probabilities, primary diagnosis, melanoma risk and flag, model version.

    A file that is not a usable image gets an error line and the run goes on.
    """
    import json

    from tqdm import tqdm

    from dermascan.inference import Predictor, expand_paths

    source = bundle or run
    if source is None or (bundle and run):
        raise fail("pass exactly one of --bundle or --run")
    predictor = Predictor.from_path(source, runtime=runtime, batch_size=batch_size)
    files = list(expand_paths(images))
    failed = 0
    results = predictor.predict_paths(files, batch_size=batch_size, heatmap_dir=heatmap)
    # the bar goes to stderr, the JSON lines to stdout: `dermascan predict DIR > out.jsonl` stays clean
    for result in tqdm(results, total=len(files), desc="predicting", unit="img", disable=len(files) < 2):
        d = result.to_dict()
        failed += "error" in d
        typer.echo(json.dumps(d))
    if failed:
        typer.secho(f"{failed} file(s) could not be analysed (see their error lines)", err=True, fg=typer.colors.YELLOW)


@app.command()
def bench(
    bundle: Annotated[Path, typer.Option(help="Model bundle.")],
    out: Annotated[Path | None, typer.Option("--out", help="Write the report (JSON) here.")] = None,
    runtime: Annotated[list[str] | None, typer.Option(help="runtime[:precision], repeatable (default: all).")] = None,
    image: Annotated[Path | None, typer.Option(help="Test image (default: a synthetic 1024x768 JPEG).")] = None,
    repeats: Annotated[int, typer.Option(help="Timed single-image predictions per runtime.")] = 30,
    rounds: Annotated[
        int,
        typer.Option(
            help="Measure every runtime this many times, in rotated order, and pool "
            "(steadier ratios on a busy machine)."
        ),
    ] = 1,
    reference: Annotated[
        bool,
        typer.Option(
            "--reference/--no-reference", help="Also measure the eager-PyTorch references (for the speed-ups)."
        ),
    ] = True,
) -> None:
    """Latency per stage (p50/p95/p99), throughput and peak memory per runtime, eager PyTorch as reference."""
    from dermascan.export.benchmark import format_table, run_benchmark

    report = run_benchmark(
        bundle,
        runtimes=runtime,
        out_json=out,
        image=image,
        repeats=repeats,
        rounds=rounds,
        with_reference=reference,
        progress=True,
    )
    typer.echo(format_table(report))


@app.command("score")
def score_archive(
    bundle: Annotated[Path, typer.Option(help="Model bundle made by `dermascan export`.")],
    input: Annotated[
        str, typer.Option("--input", help="Folder, image file or fsspec URL (file://, s3://, gs://), read recursively.")
    ],
    output: Annotated[Path, typer.Option("--output", help="Parquet file; a re-run skips the images already in it.")],
    engine: Annotated[Engine, typer.Option(help="local (one process) or ray (Ray Data actor pool).")] = "local",
    address: Annotated[
        str | None, typer.Option(help="Ray cluster to join (auto, ray://head:10001); default: start a local one.")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Images per runtime batch (and per Ray block).")] = 64,
    actors: Annotated[int, typer.Option(help="Ray actors, each holding one copy of the model.")] = 2,
    gpus_per_actor: Annotated[float, typer.Option(help="GPUs per Ray actor (0.5 packs two on a GPU).")] = 0.0,
    cpus_per_actor: Annotated[
        float | None, typer.Option(help="CPUs per Ray actor (default: half the cluster's CPUs shared out, at most 1).")
    ] = None,
    threads: Annotated[int | None, typer.Option(help="Runtime threads (per actor on Ray).")] = None,
    runtime: RuntimeOpt = "auto",
    num_cpus: Annotated[int | None, typer.Option(help="CPUs of a local Ray cluster (default: all).")] = None,
) -> None:
    """Score every image of an archive into Parquet: probabilities, decision, risk, model; one row per image.

    A file that cannot be read or decoded gets a row with its error; the run goes on.
    """
    from dermascan.scoring import score

    s = score(
        bundle,
        input,
        output,
        engine=engine,
        address=address,
        batch_size=batch_size,
        actors=actors,
        gpus_per_actor=gpus_per_actor,
        cpus_per_actor=cpus_per_actor,
        threads=threads,
        runtime=runtime,
        num_cpus=num_cpus,
        progress=True,
    )
    typer.echo(
        f"scored {s.n_scored} image(s) ({s.n_errors} error rows), skipped {s.n_skipped} already in {output}; "
        f"{s.n_rows} rows in all"
    )
    if s.n_scored:
        typer.echo(
            f"{s.engine}: start-up {s.startup_s:.1f} s, then {s.images_per_s:.0f} images/s; {s.elapsed_s:.1f} s in all"
        )
