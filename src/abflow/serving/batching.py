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
import contextvars
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from abflow.errors import InvalidArgumentError

__all__ = ["Execution", "MicroBatcher", "RemoteBatcher"]

Execution = Literal["auto", "thread", "loop"]
_LEARNING_CALLS = 32

PredictRows = Callable[[np.ndarray], Sequence[Any]]
SendRows = Callable[[np.ndarray], Awaitable[list[Any]]]


@dataclass(slots=True)
class _Job:
    rows: np.ndarray
    future: asyncio.Future[list[Any]]
    context: contextvars.Context
    """The caller's context variables (its trace span, for one), for the call that sends
    this job's batch."""


class _Queue:
    """What both batchers share: callers' jobs wait in ``_pending``, and one worker task,
    started on the first call and again after a failure, drains them (``_run``)."""

    def __init__(self) -> None:
        self._pending: deque[_Job] = deque()
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        raise NotImplementedError

    async def _enqueue(self, rows: np.ndarray, task_name: str) -> list[Any]:
        """Queue ``rows`` for the worker (started if none runs) and wait for their outputs."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._pending.append(_Job(rows, future, contextvars.copy_context()))
        if self._worker is None or self._worker.done():
            self._wake = asyncio.Event()
            self._worker = loop.create_task(self._run(), name=task_name)
        assert self._wake is not None
        self._wake.set()
        return await future

    def _cancel_pending(self) -> None:
        for job in self._pending:
            job.future.cancel()
        self._pending.clear()


class MicroBatcher(_Queue):
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
        super().__init__()
        _check_limits(max_rows, max_wait_seconds)
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
        self.batches = 0
        """Vectorised calls made so far (tests and benchmarks read it)."""

    async def predict(self, rows: np.ndarray) -> list[Any]:
        """Outputs for ``rows`` (2-D), computed together with concurrent callers' rows."""
        return await self._enqueue(rows, "abflow-batcher")

    async def _run(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                await _gather(self._pending, self.max_rows, self.max_wait_seconds, loop)
                jobs = _take(self._pending, self.max_rows)
                await self._execute(loop, jobs)

    async def _execute(self, loop: asyncio.AbstractEventLoop, jobs: list[_Job]) -> None:
        if not jobs:
            return
        matrix = _stacked(jobs)
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
        _settle_each(jobs, outputs)

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
        self._cancel_pending()
        if self._executor is not None:
            self._executor.shutdown(wait=True)


def _settle(future: asyncio.Future[list[Any]], outcome: list[Any] | BaseException) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _stacked(jobs: list[_Job]) -> np.ndarray:
    """The rows of ``jobs`` as one matrix, in queue order (no copy for a single job)."""
    return jobs[0].rows if len(jobs) == 1 else np.concatenate([j.rows for j in jobs])


def _settle_each(jobs: list[_Job], outputs: list[Any]) -> None:
    """Give each job its own slice of the outputs of its batch (rows stacked in job order)."""
    start = 0
    for job in jobs:
        end = start + job.rows.shape[0]
        _settle(job.future, outputs[start:end])
        start = end


def _check_limits(max_rows: int, max_wait_seconds: float) -> None:
    if max_rows < 1:
        msg = f"max_rows must be at least 1, got {max_rows}"
        raise InvalidArgumentError(msg)
    if max_wait_seconds < 0:
        msg = f"max_wait_seconds must not be negative, got {max_wait_seconds}"
        raise InvalidArgumentError(msg)


class RemoteBatcher(_Queue):
    """Coalesces concurrent ``predict`` calls into ``send_rows`` calls (one request each),
    at most ``max_in_flight`` at a time.

    Batches grow with the load by themselves: while every slot is busy, arriving requests
    queue, and the next free slot takes them all (up to ``max_rows`` rows). A call that
    finds the backend idle (nothing queued, nothing in flight) is sent at once from the
    caller's own task, without the hand-off to the worker. When a batch fails, ``split(exc)``
    decides whether each request is retried on its own (an error that one request's rows
    may have caused, such as a 4xx) or every request fails with the batch's error (a
    timeout, a refused connection, a 5xx: the server is the problem, and retrying each
    request would multiply the load on it). Either way each caller gets its own outcome, so
    its fallback and the reason in its event are its own.
    """

    def __init__(
        self,
        send_rows: SendRows,
        *,
        max_rows: int = 64,
        max_wait_seconds: float = 0.002,
        max_in_flight: int = 4,
        split: Callable[[BaseException], bool] | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__()
        _check_limits(max_rows, max_wait_seconds)
        if max_in_flight < 1:
            msg = f"max_in_flight must be at least 1, got {max_in_flight}"
            raise InvalidArgumentError(msg)
        self._send_rows = send_rows
        self.max_rows = max_rows
        self.max_wait_seconds = max_wait_seconds
        self.max_in_flight = max_in_flight
        self._split = split
        self._on_batch = on_batch
        self._in_flight: set[asyncio.Task[None]] = set()
        self._direct = 0  # calls sent from their caller's task (the idle path)
        self.batches = 0
        """Requests sent so far (tests and benchmarks read it)."""

    @property
    def _busy(self) -> int:
        return len(self._in_flight) + self._direct

    async def predict(self, rows: np.ndarray) -> list[Any]:
        """Outputs for ``rows`` (2-D), sent together with concurrent callers' rows."""
        if not self._pending and not self._busy:
            self._direct += 1
            try:
                return await self._send(rows)
            finally:
                self._direct -= 1
                if self._pending and self._wake is not None:
                    self._wake.set()
        return await self._enqueue(rows, "abflow-remote-batcher")

    async def _run(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending and self._busy < self.max_in_flight:
                await _gather(self._pending, self.max_rows, self.max_wait_seconds, loop)
                jobs = _take(self._pending, self.max_rows)
                if not jobs:
                    continue
                # The call runs in its first caller's context, as an unbatched call would.
                task = loop.create_task(self._execute(jobs), context=jobs[0].context)
                self._in_flight.add(task)
                task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if self._pending and self._wake is not None:
            self._wake.set()  # a slot is free: send what queued meanwhile

    async def _execute(self, jobs: list[_Job]) -> None:
        matrix = _stacked(jobs)
        try:
            outputs = await self._send(matrix)
        except asyncio.CancelledError:
            for job in jobs:
                job.future.cancel()
            raise
        except Exception as exc:
            if len(jobs) > 1 and self._split is not None and self._split(exc):
                await asyncio.gather(*(self._alone(job) for job in jobs))
            else:
                for job in jobs:
                    _settle(job.future, exc)
            return
        _settle_each(jobs, outputs)

    async def _alone(self, job: _Job) -> None:
        if job.future.done():
            return
        try:
            _settle(job.future, await self._send(job.rows))
        except asyncio.CancelledError:
            job.future.cancel()
            raise
        except Exception as exc:
            _settle(job.future, exc)

    async def _send(self, matrix: np.ndarray) -> list[Any]:
        self.batches += 1
        if self._on_batch is not None:
            self._on_batch(matrix.shape[0])
        outputs = await self._send_rows(matrix)
        if len(outputs) != matrix.shape[0]:
            msg = f"model returned {len(outputs)} outputs for {matrix.shape[0]} rows"
            raise ValueError(msg)
        return outputs

    async def aclose(self) -> None:
        """Stop the worker and the requests in flight; pending callers get cancelled."""
        tasks = [t for t in (self._worker, *self._in_flight) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._worker = None
        self._cancel_pending()


async def _gather(
    pending: deque[_Job], max_rows: int, max_wait_seconds: float, loop: asyncio.AbstractEventLoop
) -> None:
    """Let requests arriving in the same instant join: loop turns until one brings nothing
    new, the queue holds ``max_rows`` rows, or ``max_wait_seconds`` has passed."""
    deadline = loop.time() + max_wait_seconds
    while _queued_rows(pending) < max_rows and loop.time() < deadline:
        before = len(pending)
        await asyncio.sleep(0)
        if len(pending) == before:
            return


def _queued_rows(pending: deque[_Job]) -> int:
    return sum(job.rows.shape[0] for job in pending)


def _take(pending: deque[_Job], max_rows: int) -> list[_Job]:
    """The next batch: queued jobs up to ``max_rows`` rows (at least one job), skipping
    callers that gave up (timeout)."""
    jobs: list[_Job] = []
    rows = 0
    while pending:
        size = pending[0].rows.shape[0]
        if jobs and rows + size > max_rows:
            break
        job = pending.popleft()
        if job.future.done():
            continue
        jobs.append(job)
        rows += size
    return jobs
