"""``score``: one bundle over a whole archive, on the local engine or on Ray, into a resumable Parquet file."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dermascan.inference.bundle import bundle_digest, load_bundle
from dermascan.scoring.batch import output_schema
from dermascan.scoring.output import ResultWriter
from dermascan.scoring.sources import ScoringError, list_images

ENGINES = ("local", "ray")


@dataclass
class ScoreSummary:
    """What one ``score`` call did.

    Attributes:
        output: the Parquet file.
        engine: ``local`` or ``ray``.
        n_images: images found under the input.
        n_skipped: of those, already in the output (resume).
        n_scored: rows written by this call.
        n_errors: of those, images that could not be read or decoded.
        n_rows: rows in the output file now.
        startup_s: from the call to the first scored batch (listing, cluster start, bundle load, first batch).
        elapsed_s: the whole call.
        images_per_s: steady rate after the first batch (``nan`` with a single batch).
    """

    output: Path
    engine: str
    n_images: int
    n_skipped: int
    n_scored: int
    n_errors: int
    n_rows: int
    startup_s: float
    elapsed_s: float
    images_per_s: float

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "output": str(self.output)}


def score(
    bundle: str | os.PathLike[str],
    input: str | os.PathLike[str],
    output: str | os.PathLike[str],
    engine: str = "local",
    address: str | None = None,
    batch_size: int = 64,
    actors: int = 2,
    gpus_per_actor: float = 0.0,
    cpus_per_actor: float | None = None,
    threads: int | None = None,
    runtime: str = "auto",
    num_cpus: int | None = None,
    workers: int = 2,
    storage_options: dict[str, Any] | None = None,
    rows_per_part: int = 4096,
    progress: bool = False,
) -> ScoreSummary:
    """Score every image under ``input`` with ``bundle`` into ``output`` (Parquet), skipping those already there.

    Args:
        bundle: the model bundle (checksums verified; every row records its manifest digest).
        input: a folder, an image file or an fsspec URL (``file://``, ``s3://bucket/prefix``, ``gs://``,
            ``memory://``: local engine only), read recursively.
        output: the ``.parquet`` file (local). Rows already in it are kept and their images skipped.
        engine: ``local`` (one process) or ``ray`` (Ray Data actors).
        address: Ray cluster to join (``auto``, ``ray://head:10001``); ``None`` starts a local cluster.
        batch_size: images per runtime batch (and per Ray block).
        actors: Ray actors, each holding one copy of the model.
        gpus_per_actor: GPUs per Ray actor (fractions share a GPU); 0 runs on CPUs.
        cpus_per_actor: CPUs per Ray actor (default: half the cluster's CPUs shared out, at most 1 each).
        threads: runtime intra-op threads (local default: the runtime's; Ray default: each actor's whole CPUs).
        runtime: ``auto`` or a runtime name (see :mod:`dermascan.inference.runtimes`).
        num_cpus: CPUs of a local Ray cluster (default: all).
        workers: decoding threads of the local engine.
        storage_options: fsspec options (credentials, endpoint) for URLs.
        rows_per_part: rows per part file; a crash loses at most the rows not yet in a part.
        progress: show a progress bar on stderr.

    Returns:
        A :class:`ScoreSummary`.

    Raises:
        ScoringError: a bad input, output or option (the message says how to fix it).
        BundleError: a tampered or malformed bundle.
    """
    start = time.perf_counter()
    if engine not in ENGINES:
        raise ScoringError(f"unknown engine {engine!r}: use one of {', '.join(ENGINES)}")
    if batch_size < 1:
        raise ScoringError(f"--batch-size must be at least 1, got {batch_size}")
    if "://" in os.fspath(output):
        raise ScoringError(f"--output must be a local file, got {output!r}; copy it to object storage afterwards")
    if engine == "ray" and os.fspath(input).startswith("memory://"):
        raise ScoringError(
            "memory:// lives inside one process, so Ray's workers cannot read it: use --engine "
            "local, or put the images in a folder or an object store"
        )
    digest = bundle_digest(bundle)
    refs = list_images(input, storage_options)
    writer = ResultWriter(output, output_schema(), digest, rows_per_part)
    done = writer.done_paths()
    todo = [r for r in refs if r.path not in done]
    first_s, last_s, first_rows, n_scored, n_errors = float("nan"), float("nan"), 0, 0, 0
    if todo:
        if engine == "local":
            from dermascan.scoring.local import run_local

            tables = run_local(
                bundle,
                todo,
                digest,
                batch_size=batch_size,
                runtime=runtime,
                threads=threads,
                workers=workers,
                storage_options=storage_options,
            )
        else:
            from dermascan.scoring.ray_engine import run_ray

            preprocessing = load_bundle(bundle, digest=digest).card.preprocessing  # verified before any cluster
            tables = run_ray(
                bundle,
                todo,
                digest,
                preprocessing,
                batch_size=batch_size,
                actors=actors,
                cpus_per_actor=cpus_per_actor,
                gpus_per_actor=gpus_per_actor,
                threads=threads,
                runtime=runtime,
                address=address,
                num_cpus=num_cpus,
                storage_options=storage_options,
            )
        from tqdm import tqdm

        with tqdm(total=len(todo), unit="img", desc=f"score ({engine})", disable=not progress, file=sys.stderr) as bar:
            for table in tables:
                if n_scored == 0:
                    first_s = time.perf_counter() - start
                    first_rows = table.num_rows
                writer.write(table)
                n_scored += table.num_rows
                n_errors += table.num_rows - table.column("error").null_count
                bar.update(table.num_rows)
                last_s = time.perf_counter() - start
    n_rows = writer.close()
    elapsed = time.perf_counter() - start
    steady = last_s - first_s  # after the first batch: start-up excluded, so the rate is what scales
    rate = (n_scored - first_rows) / steady if n_scored > first_rows and steady > 0 else float("nan")
    return ScoreSummary(
        Path(output), engine, len(refs), len(refs) - len(todo), n_scored, n_errors, n_rows, first_s, elapsed, rate
    )


__all__ = ["ENGINES", "ScoreSummary", "score"]
