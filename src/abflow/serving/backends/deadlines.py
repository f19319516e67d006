"""Per-call timeouts that share one timer: ``asyncio.timeout`` without a timer per call.

``asyncio.timeout`` schedules a timer when a call starts and cancels it when the call ends:
on uvloop that is a libuv timer created, started, stopped and freed, about 8 µs per call, and
the gateway times every model call twice (the backend guard, the HTTP exchange). Here the
calls of one :class:`Deadlines` share one timer, armed for the earliest deadline: with a
fixed timeout, a new call's deadline is later than the armed one, so a call only records
its deadline. When the timer fires it expires the calls that are due and re-arms for the
earliest remaining one; with no call in flight it stays off.

An expired call is cancelled and, leaving the block, raises ``TimeoutError``, with the
same bookkeeping as ``asyncio.timeout`` (``Task.cancelling``/``uncancel``): a cancellation
from elsewhere stays a cancellation, and nested timeouts each see only their own.

A timer that fires in the loop iteration in which the call's reply arrives still finds the
task waiting inside the block: the cancellation is thrown in at the task's next step, so the
block raises ``TimeoutError`` and no cancellation outlives it. That holds because a call is
dropped from the timer's set as its block is left, before the task can await anything else.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

__all__ = ["Deadlines"]


class _Call:
    """One timed block: its task, deadline, and whether the timer cancelled it."""

    __slots__ = ("_cancelling", "_deadlines", "deadline", "expired", "task")

    def __init__(self, deadlines: _LoopDeadlines, task: asyncio.Task[object], deadline: float):
        self._deadlines = deadlines
        self.task = task
        self.deadline = deadline
        self.expired = False
        self._cancelling = task.cancelling()

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._deadlines.calls.discard(self)
        if (
            self.expired
            and self.task.uncancel() <= self._cancelling
            and exc_type is asyncio.CancelledError
        ):
            raise TimeoutError from exc


class _LoopDeadlines:
    """The calls in flight on one event loop and the timer armed for the earliest."""

    __slots__ = ("calls", "loop", "timer", "timer_at")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.calls: set[_Call] = set()
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = float("inf")

    def add(self, task: asyncio.Task[object], seconds: float) -> _Call:
        call = _Call(self, task, self.loop.time() + seconds)
        self.calls.add(call)
        if call.deadline < self.timer_at:
            self._arm(call.deadline)
        return call

    def _arm(self, when: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_at(when, self._fire)
        self.timer_at = when

    def _fire(self) -> None:
        # A timer may fire a little before its time (libuv counts in milliseconds): the calls
        # it was armed for are due all the same.
        due = max(self.loop.time(), self.timer_at)
        self.timer, self.timer_at = None, float("inf")
        for call in self.calls:
            if not call.expired and call.deadline <= due:
                call.expired = True
                call.task.cancel()
        waiting = [call.deadline for call in self.calls if not call.expired]
        if waiting:
            self._arm(min(waiting))


class Deadlines:
    """Timeouts for the calls of one component (a backend), sharing one timer per loop.

    ``with deadlines.within(seconds):`` inside a task bounds the block as
    ``async with asyncio.timeout(seconds):`` would.
    """

    def __init__(self) -> None:
        self._state: _LoopDeadlines | None = None

    def within(self, seconds: float) -> _Call:
        """A context manager that cancels the current task ``seconds`` from now, and then
        raises ``TimeoutError`` where the block is left."""
        task = asyncio.current_task()
        if task is None:
            msg = "Deadlines.within() must be used inside a task"
            raise RuntimeError(msg)
        state = self._state
        loop = task.get_loop()
        if state is None or state.loop is not loop:
            state = self._state = _LoopDeadlines(loop)  # a fresh loop (tests run several)
        return state.add(task, seconds)
