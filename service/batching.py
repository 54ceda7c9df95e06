"""The compute thread: proposal queries never run on the event loop.

One thread owns the pipeline (and so the device). Queries wait in a bounded queue; when the thread
takes one it also takes whatever else is waiting (after a short window, up to ``max_batch``) and
runs them as one batch, so concurrent clients share the optimiser's steps. A full queue refuses at
once (the route answers 503 with Retry-After) instead of letting latency grow without bound.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field, replace

from models.pipeline import GraspPipeline, GraspQuery, PipelineResult

from .metrics import Metrics


def charge_queue_wait(query: GraspQuery, wait_s: float) -> GraspQuery:
    """The query as the pipeline runs it: the time it waited in the queue is part of its ``timeout_ms``."""
    return replace(query, queued_s=query.queued_s + max(0.0, wait_s))


class Overloaded(RuntimeError):
    """The proposal queue is full."""


@dataclass
class _Item:
    query: GraspQuery
    future: Future[tuple[PipelineResult, float, int]]
    enqueued: float = field(default_factory=time.perf_counter)


class Batcher:
    def __init__(
        self, pipeline: GraspPipeline, metrics: Metrics, max_batch: int = 8, window_s: float = 0.005, max_queue: int = 64
    ) -> None:
        self.pipeline = pipeline
        self.metrics = metrics
        self.max_batch = max(1, max_batch)
        self.window_s = window_s
        self._q: queue.Queue[_Item | None] = queue.Queue(maxsize=max_queue)
        self._thread = threading.Thread(target=self._loop, name="dexgrasp-compute", daemon=True)
        self._stopped = threading.Event()

    def start(self) -> Batcher:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stopped.set()
        try:
            self._q.put_nowait(None)
        except queue.Full:
            pass
        self._thread.join(timeout)

    def submit(self, query: GraspQuery) -> Future[tuple[PipelineResult, float, int]]:
        fut: Future[tuple[PipelineResult, float, int]] = Future()
        try:
            self._q.put_nowait(_Item(query, fut))
        except queue.Full as e:
            raise Overloaded(f"{self._q.maxsize} proposal requests are already waiting; retry shortly") from e
        self.metrics.queue_depth.set(self._q.qsize())
        return fut

    async def run(self, query: GraspQuery) -> tuple[PipelineResult, float, int]:
        """(result, queue wait in seconds, batch size)."""
        return await asyncio.wrap_future(self.submit(query))

    def _take_batch(self, first: _Item) -> list[_Item]:
        items = [first]
        deadline = time.perf_counter() + self.window_s
        while len(items) < self.max_batch:
            remaining = deadline - time.perf_counter()
            try:
                nxt = self._q.get(timeout=max(remaining, 0.0)) if remaining > 0 else self._q.get_nowait()
            except queue.Empty:
                break
            if nxt is None:
                self._stopped.set()
                break
            items.append(nxt)
        return items

    def _loop(self) -> None:
        while not self._stopped.is_set():
            first = self._q.get()
            if first is None:
                break
            items = [i for i in self._take_batch(first) if i.future.set_running_or_notify_cancel()]
            self.metrics.queue_depth.set(self._q.qsize())
            if not items:
                continue
            start = time.perf_counter()
            self.metrics.batch_size.observe(len(items))
            try:
                results = self.pipeline.run_batch([charge_queue_wait(i.query, start - i.enqueued) for i in items])
            except BaseException as e:  # a bug must fail these requests, not kill the thread
                for i in items:
                    i.future.set_exception(e)
                continue
            for item, res in zip(items, results):
                wait = start - item.enqueued
                self.metrics.queue_time.observe(wait)
                if isinstance(res, BaseException):
                    item.future.set_exception(res)
                else:
                    item.future.set_result((res, wait, len(items)))
