"""The inference seam: every model call of the service goes through :class:`InferenceEngine`.

Each model (the champion and, when configured, the challenger) has its own :class:`MicroBatcher` and its own
inference thread: shadow work for the challenger queues behind the challenger only, never in front of a
clinician's request. Shadow runs are tracked so the shutdown drains them too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from dermascan.inference import Prediction, PredictionError, Predictor
from dermascan.serving.batcher import MicroBatcher
from dermascan.serving.metrics import ServiceMetrics
from dermascan.serving.settings import ServeSettings

log = logging.getLogger("dermascan.serving")


class _Model:
    """One Predictor behind its own thread and batcher."""

    def __init__(self, predictor: Predictor, settings: ServeSettings, metrics: ServiceMetrics | None) -> None:
        self.predictor = predictor
        self.metrics = metrics
        self.pool = ThreadPoolExecutor(settings.inference_threads, thread_name_prefix="dermascan-infer")
        self.batcher = MicroBatcher(
            self._run,
            self.pool,
            metrics,
            max_batch=settings.batch_max_size,
            max_wait_ms=settings.batch_max_wait_ms,
            max_queue=settings.queue_size,
            timeout_s=settings.request_timeout_s,
            retry_after_s=settings.retry_after_s,
        )

    def _run(self, images: list[Image.Image], heatmap: bool) -> list[Prediction | PredictionError]:
        start = time.perf_counter()
        names = [f"image-{i}" for i in range(len(images))]  # never the client's identifiers
        results = self.predictor.predict(images, heatmap=heatmap, names=names)
        if self.metrics is not None:
            self.metrics.inference.observe(time.perf_counter() - start)
        return results

    def warm_up(self, heatmap: bool) -> None:
        img = Image.fromarray(np.full((96, 128, 3), 160, np.uint8))
        result = self.predictor.predict([img], heatmap=heatmap)[0]
        if isinstance(result, PredictionError):
            raise RuntimeError(f"warm-up of {self.predictor.model_version} failed: {result.error}")

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.predictor.close()


class InferenceEngine:
    """The champion Predictor (and an optional challenger), each behind a micro-batcher.

    Args:
        predictor: the served model (the champion).
        metrics: where to record queue depth and wait, batch size and inference time (the champion's).
        settings: batch size, wait, queue size and deadline.
        challenger: the shadow/canary candidate, if any.
    """

    def __init__(
        self,
        predictor: Predictor,
        metrics: ServiceMetrics,
        settings: ServeSettings,
        challenger: Predictor | None = None,
    ) -> None:
        self.predictor = predictor
        self._champion = _Model(predictor, settings, metrics)
        # the challenger's queue is not the clinicians': its own batcher, no entries in the champion's metrics
        self._challenger = _Model(challenger, settings, None) if challenger is not None else None
        self._background: set[asyncio.Task] = set()
        self.ready = False

    @property
    def draft(self) -> int | None:
        """The JPEG draft size the requests are decoded at: the champion's, when the challenger's is the same
        (both then see the pixels they were trained on); else full scale, one decode for both, which then differs
        a little (~0.002 a pixel in normalised units) from what a drafting model was trained on."""
        sizes = {m.predictor.card.preprocessing.jpeg_draft for m in (self._champion, self._challenger) if m}
        return sizes.pop() if len(sizes) == 1 else None

    @property
    def challenger(self) -> Predictor | None:
        return self._challenger.predictor if self._challenger is not None else None

    def start(self) -> None:
        """Start the batchers on the running event loop (the lifespan calls this)."""
        self._champion.batcher.start()
        if self._challenger is not None:
            self._challenger.batcher.start()

    async def predict(
        self, images: list[Image.Image], heatmap: bool, challenger: bool = False
    ) -> list[Prediction | PredictionError]:
        """Analyse decoded RGB images; one result per image, in order.

        Args:
            images: the request's images.
            heatmap: with attention maps.
            challenger: run the challenger instead of the champion (canary traffic, shadow runs).

        Raises:
            ServiceError: 503 (queue full, shutting down) or 504 (deadline passed).
        """
        model = self._challenger if challenger and self._challenger is not None else self._champion
        return list(await model.batcher.submit(images, heatmap))

    def in_background(self, job: Callable[[], Awaitable[None]]) -> None:
        """Run ``job`` after the current request, off its latency path; the shutdown waits for it."""

        async def run() -> None:
            await asyncio.sleep(0)  # let the request's response go first
            try:
                await job()
            except Exception as e:  # a shadow failure never reaches a clinician: log it
                log.warning("background job failed: %s: %s", type(e).__name__, e)

        task = asyncio.get_running_loop().create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def warm_up(self, heatmap: bool) -> None:
        """One inference per model on a synthetic image (first calls allocate and compile), then mark ready."""
        self._champion.warm_up(heatmap)
        if self._challenger is not None:
            self._challenger.warm_up(False)
        self.ready = True

    async def drain(self) -> None:
        """Refuse new requests, answer every accepted one, finish the background jobs (SIGTERM's path)."""
        self.ready = False
        await self._champion.batcher.drain()
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
        if self._challenger is not None:
            await self._challenger.batcher.drain()

    def close(self) -> None:
        self.ready = False
        self._champion.close()
        if self._challenger is not None:
            self._challenger.close()


__all__ = ["InferenceEngine"]
