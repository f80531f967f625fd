"""Cross-request batching: a bounded queue and one worker thread that pools requests into engine calls.

Each request becomes a *job* of (query, document) pairs. The worker takes pairs from the queued jobs,
round robin, up to ``max_batch_docs`` per engine call (a big job is cut into slices, so small requests
queued behind it do not wait for all of it, and a cancelled job stops at the next slice), scores them
with one blocking ``score_pairs`` call, and hands each job its results when its last slice is done. While the
engine is busy, new requests queue up, so under load every engine call is full: N concurrent small
requests cost about N / k engine calls instead of N.

The scorer is called from the worker thread only (engines need not be thread-safe); results go back to
the asyncio loop that submitted the job with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Batcher", "BatcherClosed", "QueueFull"]

logger = logging.getLogger(__name__)

Scorer = Callable[[list[tuple[str, Any]]], Sequence[Any]]
"""``score_pairs``: (query, document) pairs -> one result per pair, in order (blocking)."""


class QueueFull(RuntimeError):
    """The queue holds ``max_queue`` requests; the caller should answer 503 with ``Retry-After``."""


class BatcherClosed(RuntimeError):
    """The batcher is shutting down and takes no new work."""


@dataclass(eq=False)
class _Job:
    pairs: list[tuple[str, Any]]
    future: asyncio.Future[list[Any]]
    loop: asyncio.AbstractEventLoop
    results: list[Any] = field(default_factory=list)
    handed_out: int = 0  # pairs given to the engine so far
    finished: int = 0  # pairs scored so far
    running: int = 0  # slices now in the engine
    cancelled: bool = False
    failed: bool = False


class Batcher:
    """Pool (query, document) pairs of concurrent requests into shared engine calls.

    Args:
        score_pairs: Blocking scorer, e.g. :meth:`reasonrank.ReasoningReranker.score_pairs`.
        max_batch_docs: Most pairs per engine call.
        max_queue: Most jobs waiting or running; :meth:`submit` raises :class:`QueueFull` beyond it.
        batch_wait_s: When a batch is not full, wait this long for more jobs before scoring it.
        on_batch: Called (worker thread) with the number of pairs of every engine call.
        on_dropped: Called (worker thread) with the number of pairs a cancelled job will never score.

    Example:
        >>> import asyncio
        >>> async def demo():
        ...     b = Batcher(lambda pairs: [len(q) + len(d) for q, d in pairs], max_batch_docs=8, max_queue=4)
        ...     b.start()
        ...     try:
        ...         return await asyncio.gather(b.submit([("ab", "c")]), b.submit([("a", "b"), ("", "xyz")]))
        ...     finally:
        ...         b.close()
        >>> asyncio.run(demo())
        [[3], [2, 3]]
    """

    def __init__(self, score_pairs: Scorer, *, max_batch_docs: int, max_queue: int, batch_wait_s: float = 0.0,
                 on_batch: Callable[[int], None] | None = None,
                 on_dropped: Callable[[int], None] | None = None) -> None:
        if max_batch_docs < 1 or max_queue < 1:
            raise ValueError(f"max_batch_docs and max_queue must be >= 1, got {max_batch_docs}, {max_queue}")
        self._score = score_pairs
        self.max_batch_docs = max_batch_docs
        self.max_queue = max_queue
        self.batch_wait_s = max(0.0, batch_wait_s)
        self._on_batch = on_batch
        self._on_dropped = on_dropped
        self._cond = threading.Condition()
        self._waiting: collections.deque[_Job] = collections.deque()  # jobs with pairs not yet handed out
        self._active = 0  # jobs submitted and not yet answered (the queue depth)
        self._closing = False
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ event-loop side
    @property
    def depth(self) -> int:
        """Requests waiting or being scored."""
        return self._active

    @property
    def closing(self) -> bool:
        return self._closing

    def start(self) -> None:
        """Start the worker thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="reasonrank-batcher", daemon=True)
            self._thread.start()

    def submit(self, pairs: Sequence[tuple[str, Any]]) -> asyncio.Future[list[Any]]:
        """Queue one request's pairs; the future resolves to their results in order.

        Cancelling the future (client gone, timeout) drops the job's pairs not yet in the engine.

        Raises:
            QueueFull: ``max_queue`` jobs are waiting or running.
            BatcherClosed: :meth:`close` was called.
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[Any]] = loop.create_future()
        job = _Job(pairs=list(pairs), future=fut, loop=loop, results=[None] * len(pairs))
        with self._cond:
            if self._closing:
                raise BatcherClosed("the server is shutting down; retry on another replica")
            if self._active >= self.max_queue:
                raise QueueFull(f"{self._active} requests are queued (--max-queue {self.max_queue}); retry later")
            if not job.pairs:
                fut.set_result([])
                return fut
            self._active += 1
            self._waiting.append(job)
            self._cond.notify()
        fut.add_done_callback(lambda f: self._cancel(job) if f.cancelled() else None)
        return fut

    def _cancel(self, job: _Job) -> None:
        with self._cond:
            if job.cancelled or job.failed or job.finished == len(job.pairs):
                return
            job.cancelled = True
            dropped = len(job.pairs) - job.handed_out
            job.handed_out = len(job.pairs)
            if job in self._waiting:
                self._waiting.remove(job)
            if job.running == 0:
                self._active -= 1
            self._cond.notify_all()
        if dropped and self._on_dropped:
            self._on_dropped(dropped)

    def close(self, timeout: float | None = None) -> bool:
        """Take no new jobs, let queued ones finish (up to ``timeout`` seconds), stop the worker.

        Returns True when every job was answered; jobs still queued after the timeout fail with
        :class:`BatcherClosed`.
        """
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                with self._cond:
                    left = list(self._waiting)
                    self._waiting.clear()
                for job in left:
                    self._fail(job, BatcherClosed("the server shut down before this request was scored"))
                return False
        return True

    def wait_idle(self, timeout: float) -> bool:
        """Block until no job is waiting or running (True) or ``timeout`` seconds pass (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._active == 0, timeout)

    # ------------------------------------------------------------------ worker side
    def _take(self) -> list[tuple[_Job, int, int]]:
        """Slices (job, start, end) for one engine call, round robin over the queued jobs (a job that got
        a slice but has pairs left goes to the back); call with the lock held."""
        budget = self.max_batch_docs
        slices = []
        while self._waiting and budget > 0:
            job = self._waiting[0]
            start = job.handed_out
            end = min(len(job.pairs), start + budget)
            slices.append((job, start, end))
            job.handed_out = end
            job.running += 1
            budget -= end - start
            if end == len(job.pairs):
                self._waiting.popleft()
            else:
                self._waiting.rotate(-1)  # round robin: requests behind a big one get the next batch's room
        return slices

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._waiting or self._closing)
                if not self._waiting:
                    return  # closing and drained
                if self.batch_wait_s and not self._closing:
                    deadline = time.monotonic() + self.batch_wait_s
                    while not self._closing and self._pending() < self.max_batch_docs:
                        left = deadline - time.monotonic()
                        if left <= 0 or not self._cond.wait(left):
                            break
                slices = self._take()
            if slices:
                self._score_slices(slices)

    def _pending(self) -> int:
        return sum(len(j.pairs) - j.handed_out for j in self._waiting)

    def _score_slices(self, slices: list[tuple[_Job, int, int]]) -> None:
        pairs = [p for job, s, e in slices for p in job.pairs[s:e]]
        if self._on_batch:
            self._on_batch(len(pairs))
        try:
            results = list(self._score(pairs))
            if len(results) != len(pairs):
                raise RuntimeError(f"scorer returned {len(results)} results for {len(pairs)} pairs")
        except Exception as exc:  # noqa: BLE001 - handed to the request that caused it
            if len({id(job) for job, _, _ in slices}) > 1:
                # one request's bad input must not fail its batch-mates: score each job's slice alone
                logger.info("a pooled engine call failed (%s); rescoring its %d requests one by one", exc, len(slices))
                for sl in slices:
                    self._score_slices([sl])
                return
            for job, _, _ in slices:
                self._release(job)
                self._fail(job, exc)
            return
        k = 0
        for job, s, e in slices:
            job.results[s:e] = results[k:k + e - s]
            k += e - s
            self._release(job, scored=e - s)

    def _release(self, job: _Job, scored: int = 0) -> None:
        """A slice of ``job`` left the engine: record it; answer the job when it is complete."""
        with self._cond:
            job.running -= 1
            job.finished += scored
            done = job.finished == len(job.pairs) and not job.failed
            if (done or (job.cancelled and job.running == 0)) and not job.failed:
                self._active -= 1
                self._cond.notify_all()
        if done and not job.cancelled:
            _deliver(job, result=job.results)

    def _fail(self, job: _Job, exc: BaseException) -> None:
        with self._cond:
            if job.failed or job.cancelled:
                return
            job.failed = True
            if job in self._waiting:
                self._waiting.remove(job)
            if job.running == 0:
                self._active -= 1
            self._cond.notify_all()
        _deliver(job, error=exc)


def _deliver(job: _Job, *, result: list[Any] | None = None, error: BaseException | None = None) -> None:
    def settle() -> None:
        if job.future.done():
            return
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result if result is not None else [])

    try:
        job.loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the loop is closed: nobody is waiting any more
        pass
