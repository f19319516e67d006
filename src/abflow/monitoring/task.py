"""The monitor inside the gateway: a pass every interval, on a worker thread, one process at
a time across every worker and replica.

An asyncio task wakes every ``interval_seconds`` and asks the store for the ``monitor``
lease (:class:`abflow.store.leases.Lease`). The process that gets it runs the pass
(:meth:`abflow.monitoring.runner.MonitorRunner.run_pass`) on a worker thread, so the event
loop keeps serving, renews the lease while the pass runs, and afterwards keeps it until the
next pass is due: across the replicas there is one pass per interval, by whichever holds the
lease, and when that process dies another takes over once the lease expires. A process that
does not get the lease copies the stored results into its gauges instead, so every worker's
and replica's ``/metrics`` shows the same figures.

A pass that takes longer than the interval is followed by the next one at once, never by two
at the same time. Failures are counted (``abflow_monitor_errors_total``) and logged at most
once per ``log_every_seconds`` per experiment; they never end the task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from typing import Protocol, TypeVar

from abflow.errors import AbflowError, InvalidArgumentError
from abflow.monitoring.monitor_metrics import MonitorMetrics
from abflow.monitoring.runner import ExperimentPass
from abflow.store.leases import Lease

__all__ = ["LEASE_NAME", "MonitorTask", "PassRunner"]

logger = logging.getLogger("abflow.monitor")

LEASE_NAME = "monitor"
MIN_HOLD_SECONDS = 30.0
"""While a pass runs the lease is held this long at least (renewed every third of it), so
a short interval does not hand it over in the middle of a slow pass."""

T = TypeVar("T")


class PassRunner(Protocol):
    """What the task runs (:class:`abflow.monitoring.runner.MonitorRunner`)."""

    metrics: MonitorMetrics

    def run_pass(
        self, keys: Sequence[str] | None = None, *, stop: threading.Event | None = None
    ) -> list[ExperimentPass]: ...

    def publish_stored(self, keys: Sequence[str] | None = None) -> None: ...


class _ErrorLog:
    """At most one line per key and ``every`` seconds, saying how many were held back."""

    def __init__(self, every: float) -> None:
        self._every = every
        self._last: dict[str, tuple[float, int]] = {}

    def failed(self, key: str, exc: BaseException) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last[0] < self._every:
            self._last[key] = (last[0], last[1] + 1)
            return
        held = f" ({last[1]} more since the last report)" if last is not None and last[1] else ""
        what = f"experiment {key}" if key else "a pass"
        if isinstance(exc, AbflowError):
            logger.warning("the monitor could not run %s: %s%s", what, exc, held)
        else:  # a fault in the monitor itself: the traceback is the report
            logger.error("the monitor could not run %s%s", what, held, exc_info=exc)
        self._last[key] = (now, 0)


class MonitorTask:
    """Monitor passes every ``interval_seconds`` while the gateway runs (see the module)."""

    def __init__(
        self,
        runner: PassRunner,
        lease: Lease,
        interval_seconds: float,
        *,
        log_every_seconds: float = 300.0,
    ) -> None:
        if not interval_seconds > 0:
            msg = f"the monitor interval must be positive, got {interval_seconds}"
            raise InvalidArgumentError(msg)
        self._runner = runner
        self._lease = lease
        self._interval = interval_seconds
        self._hold = max(interval_seconds, MIN_HOLD_SECONDS)
        self._errors = _ErrorLog(log_every_seconds)
        self._stop = threading.Event()  # read by the pass, between experiments
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start on the running event loop; the first pass is due at once."""
        self._task = asyncio.create_task(self._run(), name="abflow-monitor")

    async def stop(self, timeout_seconds: float) -> None:
        """End the task: a pass in progress stops after its current experiment; after
        ``timeout_seconds`` the task is cancelled (its thread ends on its own)."""
        if self._task is None:
            return
        self._stop.set()
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout_seconds)
        except TimeoutError:
            logger.warning("the monitor pass did not stop within %.0f s", timeout_seconds)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            started = loop.time()
            try:
                await self._tick(time.time())
            except Exception as exc:  # nothing may end the task: count, log, try again
                self._runner.metrics.errors.labels("").inc()
                self._errors.failed("", exc)
            # An overrun pass is followed by the next at once (the delay is negative).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), started + self._interval - loop.time())

    async def _tick(self, now: float) -> None:
        if not await asyncio.to_thread(self._lease.acquire, self._hold):
            await asyncio.to_thread(self._runner.publish_stored)
            return
        try:
            done = await self._renewing(
                asyncio.ensure_future(asyncio.to_thread(self._runner.run_pass, stop=self._stop))
            )
        finally:
            # Keep the lease until the next pass is due: the other processes skip until then.
            await asyncio.to_thread(self._lease.hold_until, now + self._interval)
        for part in done:
            if part.error is not None:
                self._errors.failed(part.key, part.error)

    async def _renewing(self, work: asyncio.Future[T]) -> T:
        """``work``'s result, renewing the lease while it runs (a failed renewal is logged:
        the pass goes on, and a second one is never started beside it)."""
        while True:
            finished, _ = await asyncio.wait({work}, timeout=self._hold / 3)
            if finished:
                return work.result()
            try:
                if not await asyncio.to_thread(self._lease.acquire, self._hold):
                    logger.warning("another process took the monitor lease during a pass")
            except Exception as exc:  # the pass must still be waited for, whatever happened
                self._runner.metrics.errors.labels("").inc()
                self._errors.failed("", exc)
