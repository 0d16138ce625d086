"""The inference seam: every model call of the service goes through :class:`InferenceEngine`.

Inference runs off the event loop in a small executor (one thread by default: the runtime parallelises inside
a call). A micro-batcher can replace this class later without touching the routes: it needs the same
``predict`` coroutine, ``warm_up`` and ``close``.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from dermascan.inference import Prediction, PredictionError, Predictor
from dermascan.serving.metrics import ServiceMetrics


class InferenceEngine:
    """Runs the Predictor in worker threads and records queue wait, inference time, depth and batch size.

    Args:
        predictor: the loaded model.
        metrics: where to record.
        threads: inference threads.
    """

    def __init__(self, predictor: Predictor, metrics: ServiceMetrics, threads: int = 1) -> None:
        self.predictor = predictor
        self.metrics = metrics
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="dermascan-infer")
        self.ready = False

    async def predict(self, images: list[Image.Image], heatmap: bool) -> list[Prediction | PredictionError]:
        """Analyse decoded RGB images (one inference call); one result per image, in order."""
        submitted = time.perf_counter()
        self.metrics.queue_depth.inc()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, self._run, images, heatmap, submitted)
        finally:
            self.metrics.queue_depth.dec()

    def _run(self, images: list[Image.Image], heatmap: bool, submitted: float) -> list[Prediction | PredictionError]:
        start = time.perf_counter()
        self.metrics.queue_wait.observe(start - submitted)
        names = [f"image-{i}" for i in range(len(images))]  # never the client's identifiers
        results = self.predictor.predict(images, heatmap=heatmap, names=names)
        self.metrics.inference.observe(time.perf_counter() - start)
        self.metrics.batch_size.observe(len(images))
        return results

    def warm_up(self, heatmap: bool) -> None:
        """One inference on a synthetic image (first calls allocate and compile), then mark ready."""
        img = Image.fromarray(np.full((96, 128, 3), 160, np.uint8))
        result = self.predictor.predict([img], heatmap=heatmap)[0]
        if isinstance(result, PredictionError):
            raise RuntimeError(f"warm-up failed: {result.error}")
        self.ready = True

    def close(self) -> None:
        self.ready = False
        self._pool.shutdown(wait=True)
        self.predictor.close()


__all__ = ["InferenceEngine"]
