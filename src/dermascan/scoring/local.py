"""The local engine: the scoring pipeline in one process, for a laptop and as the reference for Ray.

Decoding runs ``workers`` batches ahead in threads (PIL releases the GIL) while the runtime scores the
current batch: the same overlap the Ray engine gets from its decode tasks, with the same two per-batch
functions (:mod:`dermascan.scoring.batch`).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa

from dermascan.inference import Predictor
from dermascan.scoring.batch import decode_batch, score_batch
from dermascan.scoring.sources import ImageRef


def chunks(refs: Sequence[ImageRef], size: int) -> Iterator[dict[str, np.ndarray]]:
    """The listed images as batches of ``size`` (``image_id`` and ``path`` arrays), in order."""
    for i in range(0, len(refs), size):
        part = refs[i : i + size]
        yield {
            "image_id": np.asarray([r.image_id for r in part], dtype=object),
            "path": np.asarray([r.path for r in part], dtype=object),
        }


def run_local(
    bundle: str | os.PathLike[str],
    refs: Sequence[ImageRef],
    digest: str,
    batch_size: int = 64,
    runtime: str = "auto",
    threads: int | None = None,
    workers: int = 2,
    storage_options: dict[str, Any] | None = None,
) -> Iterator[pa.Table]:
    """Score ``refs`` in this process, yielding one output table per batch, in input order.

    Args:
        bundle: the bundle folder (verified on load, pinned to ``digest``).
        refs: the images still to score.
        digest: the bundle's manifest digest.
        batch_size: images per runtime batch.
        runtime: ``auto`` or a runtime name (see :mod:`dermascan.inference.runtimes`).
        threads: the runtime's intra-op threads (``None``: its default, all cores).
        workers: decoding threads.
        storage_options: fsspec options for URLs.
    """
    with Predictor.from_path(
        bundle, runtime=runtime, threads=threads, batch_size=batch_size, workers=1, digest=digest
    ) as predictor:
        pre = predictor.card.preprocessing
        todo = chunks(refs, batch_size)
        with ThreadPoolExecutor(max(1, workers), thread_name_prefix="dermascan-score-decode") as pool:
            pending: deque[Future[dict[str, np.ndarray]]] = deque()

            def submit_next() -> None:
                batch = next(todo, None)
                if batch is not None:
                    pending.append(pool.submit(decode_batch, batch, pre, storage_options))

            for _ in range(max(1, workers) + 1):  # keep the decoders one batch ahead of each other
                submit_next()
            while pending:
                decoded = pending.popleft().result()
                submit_next()
                yield score_batch(predictor, decoded, digest)


__all__ = ["chunks", "run_local"]
