"""The Ray engine: the same pipeline on Ray Data, from one machine to a cluster.

::

    from_arrow(image_id, path)            blocks of batch_size listed images (the driver lists, never reads)
      -> map_batches(decode_batch)        tasks: read bytes (fsspec) + the Predictor's decode/preprocess
      -> map_batches(_ScoreActor)         a fixed pool of actors; each verifies and loads the bundle once
      -> iter_batches() in the driver     rows streamed into the resumable Parquet writer

Sizing, the pitfalls of a small machine included (see docs/scoring.md):

* Actors ask for a fraction of a CPU (by default half the cluster's CPUs shared by the actors, at most one
  each), and decode tasks for :data:`DECODE_TASK_CPUS`: with 2 CPUs, read tasks plus actors that each hold a
  whole CPU leave the tasks nothing and the job hangs. A plan that leaves no room for a decode task is
  refused up front, and so is a GPU request the cluster cannot meet (its actors would wait forever).
* ONNX Runtime sizes its thread pool to the host, not to the actor's share, and ignores
  ``OMP_NUM_THREADS``: every actor sets its runtime threads explicitly (by default its whole CPUs, at least 1).
* The bundle travels through the object store and each actor writes it to a private temporary folder and
  verifies it against the driver's digest: no shared file system is needed for the model.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from dermascan.config import Preprocessing
from dermascan.scoring.batch import decode_batch, score_batch
from dermascan.scoring.sources import ImageRef, ScoringError

log = logging.getLogger(__name__)

#: CPUs a decode task asks for: decoding an image costs a fraction of running the model on it.
DECODE_TASK_CPUS = 0.5


@dataclass(frozen=True)
class ActorPlan:
    """Resources of the scoring actors.

    Attributes:
        actors: actors in the pool.
        cpus_per_actor: logical CPUs each actor reserves (a fraction on small machines).
        gpus_per_actor: GPUs each reserves (a fraction packs several actors on one GPU).
        threads: the runtime's intra-op threads in each actor.
        device: ``cuda`` when actors hold GPUs, else ``None`` (the runtime's CPU default).
    """

    actors: int
    cpus_per_actor: float
    gpus_per_actor: float
    threads: int
    device: str | None


def plan_actors(
    cluster: dict[str, float],
    actors: int,
    cpus_per_actor: float | None = None,
    gpus_per_actor: float = 0.0,
    threads: int | None = None,
) -> ActorPlan:
    """Size the actor pool to the cluster, or refuse a size that would hang.

    Args:
        cluster: ``ray.cluster_resources()`` (``CPU``, ``GPU`` totals).
        actors: actors wanted.
        cpus_per_actor: CPUs per actor (``None``: ``min(1, CPUs / (2 * actors))``, half the cluster for the
            actors, the rest for the decode tasks).
        gpus_per_actor: GPUs per actor (0: CPU inference).
        threads: runtime threads per actor (``None``: the actor's whole CPUs, at least 1).

    Raises:
        ScoringError: the actors and one decode task do not fit the cluster, or not enough GPUs.
    """
    if actors < 1:
        raise ScoringError(f"--actors must be at least 1, got {actors}")
    cpus = float(cluster.get("CPU", 0.0))
    gpus = float(cluster.get("GPU", 0.0))
    if cpus_per_actor is None:
        cpus_per_actor = min(1.0, cpus / (2 * actors))
    if cpus_per_actor <= 0:
        raise ScoringError(f"cpus per actor must be > 0, got {cpus_per_actor}")
    if actors * cpus_per_actor + DECODE_TASK_CPUS > cpus + 1e-9:
        raise ScoringError(
            f"{actors} actors x {cpus_per_actor:g} CPU leave no room for the decode tasks ({DECODE_TASK_CPUS} CPU "
            f"each) on a cluster of {cpus:g} CPUs, and the job would hang: use fewer actors or a fraction of a CPU "
            f"each (--cpus-per-actor {max(0.1, (cpus - DECODE_TASK_CPUS) / actors):.2g})"
        )
    if gpus_per_actor < 0:
        raise ScoringError(f"--gpus-per-actor must be >= 0, got {gpus_per_actor}")
    if gpus_per_actor > 0 and actors * gpus_per_actor > gpus + 1e-9:
        raise ScoringError(
            f"{actors} actors x {gpus_per_actor:g} GPU need {actors * gpus_per_actor:g} GPUs, the cluster has "
            f"{gpus:g}: the actors would wait forever; use fewer actors or a fraction of a GPU each"
        )
    threads = threads or max(1, math.floor(cpus_per_actor))
    return ActorPlan(actors, cpus_per_actor, gpus_per_actor, threads, "cuda" if gpus_per_actor > 0 else None)


def bundle_files(bundle: str | os.PathLike[str]) -> dict[str, bytes]:
    """Every file of a (flat) bundle folder by name: what an actor needs to rebuild it anywhere."""
    return {p.name: p.read_bytes() for p in sorted(Path(bundle).iterdir()) if p.is_file()}


class _ScoreActor:
    """One scoring actor: rebuilds the bundle locally, verifies it against the digest, loads it once."""

    def __init__(
        self, files: list[Any], digest: str, runtime: str, device: str | None, threads: int, batch_size: int
    ) -> None:
        import ray

        from dermascan.inference import Predictor

        # The bundle stays on disk for the actor's life: some runtimes map or re-read their model file.
        self._folder = tempfile.TemporaryDirectory(prefix="dermascan-bundle-")
        for name, data in ray.get(files[0]).items():
            (Path(self._folder.name) / name).write_bytes(data)
        self.digest = digest
        self.predictor = Predictor.from_path(
            self._folder.name,
            runtime=runtime,
            device=device,
            threads=threads,
            batch_size=batch_size,
            workers=1,
            digest=digest,
        )

    def __call__(self, batch: dict[str, Any]) -> pa.Table:
        return score_batch(self.predictor, batch, self.digest)


def _connect(address: str | None, num_cpus: int | None) -> bool:
    """Join ``address`` or start a local cluster (unless Ray is already up); returns whether we started it."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage reports from a clinic's archive job
    try:
        import ray
    except ImportError as e:
        raise ScoringError("--engine ray needs Ray Data: pip install 'dermascan[ray]' (or use --engine local)") from e

    if ray.is_initialized():
        return False
    common: dict[str, Any] = {"logging_level": logging.WARNING, "include_dashboard": False}
    if address is None:
        ray.init(num_cpus=num_cpus or os.cpu_count() or 1, **common)
    else:
        try:
            ray.init(address=address, **common)
        except ConnectionError as e:
            raise ScoringError(
                f"cannot join the Ray cluster at {address!r} ({e}): check the address, or omit "
                "--address to start a local cluster"
            ) from e
    return True


def run_ray(
    bundle: str | os.PathLike[str],
    refs: Sequence[ImageRef],
    digest: str,
    preprocessing: Preprocessing,
    batch_size: int = 64,
    actors: int = 2,
    cpus_per_actor: float | None = None,
    gpus_per_actor: float = 0.0,
    threads: int | None = None,
    runtime: str = "auto",
    address: str | None = None,
    num_cpus: int | None = None,
    storage_options: dict[str, Any] | None = None,
) -> Iterator[pa.Table]:
    """Score ``refs`` on Ray Data, yielding output tables as blocks finish (in no particular order).

    Args:
        bundle: the verified bundle folder (shipped to the actors).
        refs: the images still to score.
        digest: the bundle's manifest digest (each actor's copy is checked against it).
        preprocessing: the bundle's preprocessing (for the decode tasks).
        batch_size: images per block, decode task and actor call.
        actors, cpus_per_actor, gpus_per_actor, threads: see :func:`plan_actors`.
        runtime: ``auto`` or a runtime name; with GPUs, ``auto`` means ONNX Runtime on CUDA.
        address: a cluster to join (``auto``, ``ray://head:10001``); ``None`` starts a local one.
        num_cpus: CPUs of the local cluster (default: all of this machine's).
        storage_options: fsspec options the decode tasks read URLs with.
    """
    started = _connect(address, num_cpus)
    try:
        import ray
        import ray.data

        logging.getLogger("ray.data").setLevel(logging.WARNING)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # the caller shows one bar over the whole archive
        plan = plan_actors(ray.cluster_resources(), actors, cpus_per_actor, gpus_per_actor, threads)
        if plan.device == "cuda" and runtime == "auto":
            runtime = "onnxruntime"  # OpenVINO's automatic choice would leave the reserved GPU idle
        log.info(
            "scoring %d images on %d actors x %.2g CPU, %.2g GPU, %d runtime threads",
            len(refs),
            plan.actors,
            plan.cpus_per_actor,
            plan.gpus_per_actor,
            plan.threads,
        )
        listing = pa.table({"image_id": [r.image_id for r in refs], "path": [r.path for r in refs]})
        blocks = [listing.slice(i, batch_size) for i in range(0, listing.num_rows, batch_size)]
        ds = ray.data.from_arrow(blocks)
        ds = ds.map_batches(
            decode_batch,
            batch_size=batch_size,
            batch_format="numpy",
            num_cpus=DECODE_TASK_CPUS,
            fn_kwargs={"preprocessing": preprocessing, "storage_options": storage_options},
        )
        ds = ds.map_batches(
            _ScoreActor,
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=plan.actors),
            num_cpus=plan.cpus_per_actor,
            num_gpus=plan.gpus_per_actor or None,
            fn_constructor_kwargs={
                "files": [ray.put(bundle_files(bundle))],
                "digest": digest,
                "runtime": runtime,
                "device": plan.device,
                "threads": plan.threads,
                "batch_size": batch_size,
            },
        )
        yield from ds.iter_batches(batch_size=None, batch_format="pyarrow")
    finally:
        if started:
            import ray

            ray.shutdown()


__all__ = ["DECODE_TASK_CPUS", "ActorPlan", "bundle_files", "plan_actors", "run_ray"]
