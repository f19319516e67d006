"""Micro-batching: concurrent requests for one in-process model become one vectorised call.

A scikit-learn ``predict_proba`` costs about the same for 1 row as for 64: its time goes to
input validation and Python dispatch. Coalescing the rows of concurrent requests therefore
buys throughput. The batcher is adaptive: it never waits for company that is not coming. It
gathers whatever is queued, lets the event loop run once more (requests that arrived in the
same instant join), and stops as soon as a loop turn brings nothing new, the batch holds
``max_rows`` rows, or ``max_wait_seconds`` has passed. Under load, requests pile up while the
previous batch is being computed, so batches grow with the load; when idle, a request
pays one loop turn.

Where the model runs (``execution``): ``"thread"`` always on a thread of its own, off the
event loop, where a timeout can abandon a stuck call; ``"loop"`` always on the event loop;
``"auto"`` (default) on the thread until it has seen the model answer, then on the loop
while its recent calls typically (median) take less than ``inline_below_seconds``: handing
a sub-millisecond call to a thread and back costs more than the call (two wake-ups, each a
scheduling delay on a busy machine). A model that slows down goes back to its thread on
the next batch; one that hangs outright while on the loop stalls its worker, which is the
price of ``"auto"`` (choose ``"thread"`` for models that might).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from abflow.errors import InvalidArgumentError

__all__ = ["Execution", "MicroBatcher"]

Execution = Literal["auto", "thread", "loop"]
_LEARNING_CALLS = 32

PredictRows = Callable[[np.ndarray], Sequence[Any]]


@dataclass(slots=True)
class _Job:
    rows: np.ndarray
    future: asyncio.Future[list[Any]]


class MicroBatcher:
    """Coalesces ``predict`` calls made on one event loop into batched ``predict_rows`` calls."""

    def __init__(
        self,
        predict_rows: PredictRows,
        *,
        max_rows: int = 64,
        max_wait_seconds: float = 0.002,
        execution: Execution = "auto",
        inline_below_seconds: float = 0.002,
        on_batch: Callable[[int], None] | None = None,
        name: str = "model",
    ) -> None:
        if max_rows < 1:
            msg = f"max_rows must be at least 1, got {max_rows}"
            raise InvalidArgumentError(msg)
        if max_wait_seconds < 0:
            msg = f"max_wait_seconds must not be negative, got {max_wait_seconds}"
            raise InvalidArgumentError(msg)
        self._predict_rows = predict_rows
        self.max_rows = max_rows
        self.max_wait_seconds = max_wait_seconds
        self._on_batch = on_batch
        self.execution: Execution = execution
        self.inline_below_seconds = inline_below_seconds
        self._executor = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"abflow-{name}")
            if execution != "loop"
            else None
        )
        self._durations: deque[float] = deque(maxlen=_LEARNING_CALLS)
        self._pending: deque[_Job] = deque()
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self.batches = 0
        """Vectorised calls made so far (tests and benchmarks read it)."""

    async def predict(self, rows: np.ndarray) -> list[Any]:
        """Outputs for ``rows`` (2-D), computed together with concurrent callers' rows."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._pending.append(_Job(rows, future))
        if self._worker is None or self._worker.done():
            self._wake = asyncio.Event()
            self._worker = loop.create_task(self._run(), name="abflow-batcher")
        assert self._wake is not None
        self._wake.set()
        return await future

    async def _run(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                await self._gather(loop)
                jobs = self._take()
                await self._execute(loop, jobs)

    async def _gather(self, loop: asyncio.AbstractEventLoop) -> None:
        deadline = loop.time() + self.max_wait_seconds
        while self._queued_rows() < self.max_rows and loop.time() < deadline:
            before = len(self._pending)
            await asyncio.sleep(0)
            if len(self._pending) == before:
                return

    def _queued_rows(self) -> int:
        return sum(job.rows.shape[0] for job in self._pending)

    def _take(self) -> list[_Job]:
        jobs: list[_Job] = []
        rows = 0
        while self._pending:
            size = self._pending[0].rows.shape[0]
            if jobs and rows + size > self.max_rows:
                break
            job = self._pending.popleft()
            if job.future.done():  # the caller gave up (timeout): skip its rows
                continue
            jobs.append(job)
            rows += size
        return jobs

    async def _execute(self, loop: asyncio.AbstractEventLoop, jobs: list[_Job]) -> None:
        if not jobs:
            return
        matrix = jobs[0].rows if len(jobs) == 1 else np.concatenate([j.rows for j in jobs])
        try:
            outputs = await self._call(loop, matrix)
        except Exception as exc:
            if len(jobs) == 1:
                _settle(jobs[0].future, exc)
                return
            # One bad request must not fail its neighbours: retry each on its own.
            for job in jobs:
                try:
                    _settle(job.future, await self._call(loop, job.rows))
                except Exception as job_exc:
                    _settle(job.future, job_exc)
            return
        start = 0
        for job in jobs:
            end = start + job.rows.shape[0]
            _settle(job.future, outputs[start:end])
            start = end

    async def _call(self, loop: asyncio.AbstractEventLoop, matrix: np.ndarray) -> list[Any]:
        self.batches += 1
        if self._on_batch is not None:
            self._on_batch(matrix.shape[0])
        if self._executor is None or self._runs_inline():
            outputs = self._timed(matrix)
        else:
            outputs = await loop.run_in_executor(self._executor, self._timed, matrix)
        result = list(outputs)
        if len(result) != matrix.shape[0]:
            msg = f"model returned {len(result)} outputs for {matrix.shape[0]} rows"
            raise ValueError(msg)
        return result

    def _timed(self, matrix: np.ndarray) -> Sequence[Any]:
        """The model call itself, timed where it runs (excluding any thread hand-off)."""
        started = time.perf_counter()
        try:
            return self._predict_rows(matrix)
        finally:
            self._durations.append(time.perf_counter() - started)

    def _runs_inline(self) -> bool:
        if self.execution != "auto" or len(self._durations) < _LEARNING_CALLS:
            return False
        return sorted(self._durations)[_LEARNING_CALLS // 2] < self.inline_below_seconds

    async def aclose(self) -> None:
        """Stop the worker task and the model thread; pending callers get cancelled."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        for job in self._pending:
            job.future.cancel()
        self._pending.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=True)


def _settle(future: asyncio.Future[list[Any]], outcome: list[Any] | BaseException) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
