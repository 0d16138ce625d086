"""The micro-batcher: requests from many clinics meet in one bounded queue and reach the Predictor as batches.

One asyncio task takes the oldest request, then keeps taking more until the batch holds ``max_batch`` images
or ``max_wait_ms`` has passed since it took the first, and runs the batch in the inference thread (one forward
pass). While a batch runs, new requests queue up, so under load batches fill without any waiting at all.

- A full queue refuses at once: :class:`ServiceError` 503 ``overloaded`` with ``Retry-After`` (seconds).
- A request still unanswered at its deadline answers 504 ``deadline_exceeded``; a queued request already past
  its deadline is dropped before inference (its client has been answered).
- :meth:`MicroBatcher.drain` (the lifespan's shutdown) refuses new requests with 503 ``shutting_down`` and
  returns once every accepted request is answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dermascan.serving.errors import ServiceError
from dermascan.serving.metrics import ServiceMetrics

log = logging.getLogger("dermascan.serving")

#: Runs one batch in a worker thread: (images, heatmap) -> one result per image.
RunBatch = Callable[[list[Any], bool], Sequence[Any]]


@dataclass
class _Item:
    images: list[Any]
    heatmap: bool
    future: asyncio.Future
    submitted: float
    deadline: float
    n: int = field(init=False)

    def __post_init__(self) -> None:
        self.n = len(self.images)


class MicroBatcher:
    """A bounded queue in front of one batch function.

    Args:
        run: the batch function, called in a worker thread (``loop.run_in_executor(executor, ...)``).
        executor: where ``run`` runs (``None``: the loop's default executor).
        metrics: queue depth, queue wait and batch size are recorded here (``None``: not recorded).
        max_batch: most images in one call of ``run`` (1: no batching).
        max_wait_ms: longest a batch waits for more requests after its first one.
        max_queue: most requests accepted and unanswered (queued, in the batch being gathered or running); one
            more is refused with 503.
        timeout_s: a request's deadline, from its arrival in the queue.
        retry_after_s: the ``Retry-After`` of a 503.
    """

    def __init__(
        self,
        run: RunBatch,
        executor: Any = None,
        metrics: ServiceMetrics | None = None,
        max_batch: int = 8,
        max_wait_ms: float = 0.0,
        max_queue: int = 64,
        timeout_s: float = 30.0,
        retry_after_s: float = 1.0,
    ) -> None:
        if max_batch < 1 or max_queue < 1 or max_wait_ms < 0 or timeout_s <= 0:
            raise ValueError(
                f"max_batch={max_batch}, max_queue={max_queue} must be >= 1, max_wait_ms={max_wait_ms} >= 0 and "
                f"timeout_s={timeout_s} > 0"
            )
        self.run, self.executor, self.metrics = run, executor, metrics
        self.max_batch, self.max_wait_s, self.max_queue = max_batch, max_wait_ms / 1e3, max_queue
        self.timeout_s, self.retry_after_s = timeout_s, retry_after_s
        self._queue: asyncio.Queue[_Item] | None = None
        self._held: _Item | None = None  # taken from the queue but did not fit the last batch
        self._task: asyncio.Task | None = None
        self._accepting = False
        self._pending = 0  # accepted and not yet answered

    def start(self) -> None:
        """Start the batching task on the running loop."""
        self._queue = asyncio.Queue()  # bounded by `pending`, which also counts the batch being gathered
        self._accepting = True
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="dermascan-batcher")

    @property
    def pending(self) -> int:
        """Requests accepted and not yet answered."""
        return self._pending

    async def submit(self, images: list[Any], heatmap: bool) -> list[Any]:
        """Queue one request's images and wait for their results (in order).

        Raises:
            ServiceError: 503 when the queue is full or the service is shutting down, 504 past the deadline.
        """
        if not self._accepting or self._queue is None:
            raise self._refusal("shutting_down", "the service is shutting down; retry on another instance")
        now = time.perf_counter()
        item = _Item(list(images), heatmap, asyncio.get_running_loop().create_future(), now, now + self.timeout_s)
        if self._pending >= self.max_queue:
            raise self._refusal(
                "overloaded", f"{self.max_queue} requests are already waiting for the model; retry shortly"
            )
        self._queue.put_nowait(item)
        self._count(+1)
        try:
            # shield: a 504 answers the client, the item stays queued and is dropped (or finished) by the loop
            return await asyncio.wait_for(asyncio.shield(item.future), self.timeout_s)
        except TimeoutError:
            raise ServiceError(
                504,
                "deadline_exceeded",
                f"no answer within {self.timeout_s:g} s (the model is overloaded); nothing was stored, retry later",
            ) from None

    def _refusal(self, code: str, message: str) -> ServiceError:
        return ServiceError(503, code, message, headers={"Retry-After": str(max(1, math.ceil(self.retry_after_s)))})

    def _count(self, delta: int) -> None:
        self._pending += delta
        if self.metrics is not None:
            self.metrics.queue_depth.inc(delta)

    async def _next(self, timeout: float | None) -> _Item | None:
        assert self._queue is not None
        if self._held is not None:
            item, self._held = self._held, None
            return item
        if timeout is None:
            return await self._queue.get()
        if timeout <= 0:
            with contextlib.suppress(asyncio.QueueEmpty):
                return self._queue.get_nowait()
            return None
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None

    async def _collect(self) -> list[_Item]:
        first = await self._next(None)
        assert first is not None
        batch, n = [first], first.n
        until = time.perf_counter() + self.max_wait_s
        while n < self.max_batch:
            item = await self._next(until - time.perf_counter() if self._accepting else 0)
            if item is None:
                break
            if n + item.n > self.max_batch or item.heatmap != first.heatmap:
                self._held = item  # first in the next batch
                break
            batch.append(item)
            n += item.n
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            now = time.perf_counter()
            live = []
            for item in batch:
                if item.future.done() or now > item.deadline:  # its client already got a 504
                    self._finish(item, None, None)
                else:
                    live.append(item)
            if not live:
                continue
            images = [img for item in live for img in item.images]
            if self.metrics is not None:
                for item in live:
                    self.metrics.queue_wait.observe(now - item.submitted)
                self.metrics.batch_size.observe(len(images))
            try:
                results = await loop.run_in_executor(self.executor, self.run, images, live[0].heatmap)
                error = None
            except Exception as e:  # the model failed: every request of the batch gets the error
                log.error("inference failed on a batch of %d: %s", len(images), e)
                results, error = [], e
            at = 0
            for item in live:
                self._finish(item, None if error else list(results[at : at + item.n]), error)
                at += item.n

    def _finish(self, item: _Item, result: list[Any] | None, error: BaseException | None) -> None:
        if not item.future.done():
            if error is not None:
                item.future.set_exception(error)
            elif result is not None:
                item.future.set_result(result)
            else:
                item.future.cancel()
        self._count(-1)

    async def drain(self, timeout_s: float | None = None) -> None:
        """Refuse new requests, wait until every accepted one is answered, then stop the task."""
        self._accepting = False
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self._pending > 0 and (deadline is None or time.monotonic() < deadline):
            await asyncio.sleep(0.01)
        if self._pending:
            log.error("drain: %d request(s) still unanswered after %.0f s", self._pending, timeout_s)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


__all__ = ["MicroBatcher", "RunBatch"]
