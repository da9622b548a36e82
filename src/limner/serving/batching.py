"""Dynamic batching: concurrent requests share one generator call.

Requests wait in a bounded queue. A worker takes the first, then keeps taking
more for up to `wait_timeout_s` or until `max_batch_size` images are gathered,
and runs them together in a thread, so the event loop keeps answering. A full
queue refuses at once (the caller answers 503 with Retry-After) instead of
letting memory and latency grow without bound.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence


class QueueFullError(Exception):
    pass


@dataclass
class _Pending:
    job: Any
    size: int
    future: asyncio.Future
    queued_at: float = field(default_factory=time.monotonic)


class DynamicBatcher:
    def __init__(
        self,
        run_batch: Callable[[Sequence[Any]], Sequence[Any]],
        *,
        max_batch_size: int,
        wait_timeout_s: float,
        max_queue_size: int,
        batching: bool = True,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.wait_timeout_s = wait_timeout_s
        self.batching = batching
        self.on_batch = on_batch or (lambda size: None)
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=max_queue_size)
        self._carry: _Pending | None = None  # taken from the queue but too big for the last batch
        self._worker: asyncio.Task | None = None
        self.batch_seconds = 0.05  # running estimate of one batch's time, for Retry-After

    @property
    def depth(self) -> int:
        return self._queue.qsize() + (self._carry is not None)

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._work(), name="limner-batcher")

    async def stop(self) -> None:
        """Finish what is queued, then stop."""
        if self._worker is None:
            return
        while self.depth:
            await asyncio.sleep(0.01)
        self._worker.cancel()
        try:
            await self._worker
        except asyncio.CancelledError:
            pass
        self._worker = None

    def retry_after(self) -> float:
        """A fair guess at when a slot frees: the queue's worth of batches."""
        return max(1.0, self.batch_seconds * (1 + self.depth * 1.0 / max(1, self.max_batch_size)))

    async def submit(self, job: Any, size: int) -> Any:
        """Queue `job` (worth `size` images) and wait for its result; QueueFullError at once if full."""
        pending = _Pending(job, size, asyncio.get_running_loop().create_future())
        try:
            self._queue.put_nowait(pending)
        except asyncio.QueueFull:
            self._drop_abandoned()  # callers that timed out no longer hold their places
            try:
                self._queue.put_nowait(pending)
            except asyncio.QueueFull:
                raise QueueFullError from None
        try:
            return await pending.future
        finally:
            if not pending.future.done():
                pending.future.cancel()  # a timed-out caller: the worker will skip it

    def _drop_abandoned(self) -> None:
        """Take the cancelled requests out of the queue (no await in here: nothing else runs meanwhile)."""
        waiting = [self._queue.get_nowait() for _ in range(self._queue.qsize())]
        for pending in waiting:
            if not pending.future.cancelled():
                self._queue.put_nowait(pending)

    async def _next(self, timeout: float | None) -> _Pending | None:
        if self._carry is not None:
            pending, self._carry = self._carry, None
            return pending
        if timeout is None:
            return await self._queue.get()
        try:
            return await asyncio.wait_for(self._queue.get(), timeout=max(0.0, timeout))
        except asyncio.TimeoutError:
            return None

    async def _gather(self) -> list[_Pending]:
        first = await self._next(None)
        batch, images = [first], first.size
        deadline = time.monotonic() + self.wait_timeout_s
        while self.batching and images < self.max_batch_size:
            pending = await self._next(deadline - time.monotonic()) if self._queue.qsize() == 0 else self._queue.get_nowait()
            if pending is None:
                break
            if images + pending.size > self.max_batch_size:
                self._carry = pending
                break
            batch.append(pending)
            images += pending.size
        return [p for p in batch if not p.future.cancelled()]

    async def _work(self) -> None:
        while True:
            batch = await self._gather()
            if not batch:
                continue
            started = time.monotonic()
            try:
                results = await asyncio.to_thread(self.run_batch, [p.job for p in batch])
            except Exception as err:  # one bad batch fails its requests, never the worker
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(err)
                continue
            elapsed = time.monotonic() - started
            self.batch_seconds = 0.8 * self.batch_seconds + 0.2 * elapsed
            self.on_batch(sum(p.size for p in batch))
            for p, result in zip(batch, results):
                if not p.future.done():
                    p.future.set_result(result)
