"""Shared-timer timeouts (``Deadlines``) behave as ``asyncio.timeout``, the reference.

Each scenario runs once with ``asyncio.timeout`` and once with ``Deadlines.within`` and must
end the same way. The timed blocks are long sleeps that a short timeout cuts (or short ones
that a long timeout leaves alone): a busy machine cannot turn one outcome into the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from abflow.serving.backends.deadlines import Deadlines

pytestmark = pytest.mark.anyio

LONG = 30.0  # a block the timeout must cut; the test would hang visibly if it did not
Timed = Callable[[float], contextlib.AbstractAsyncContextManager[None]]


def _reference() -> Timed:
    return asyncio.timeout


def _shared() -> Timed:
    deadlines = Deadlines()

    @contextlib.asynccontextmanager
    async def within(seconds: float) -> AsyncIterator[None]:
        with deadlines.within(seconds):
            yield

    return within


KINDS = {"asyncio.timeout": _reference, "Deadlines": _shared}


async def _outcome(awaitable: Any) -> str:
    try:
        await awaitable
    except TimeoutError:
        return "timeout"
    except asyncio.CancelledError:
        return "cancelled"
    return "done"


@pytest.mark.parametrize("kind", KINDS)
async def test_a_block_past_its_deadline_raises_timeout_and_leaves_the_task_clean(
    kind: str,
) -> None:
    within = KINDS[kind]()
    started = time.monotonic()

    async def call() -> None:
        async with within(0.05):
            await asyncio.sleep(LONG)

    assert await _outcome(call()) == "timeout"
    assert time.monotonic() - started < LONG / 2
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0  # not left cancelled: later awaits run normally
    await asyncio.sleep(0)


@pytest.mark.parametrize("kind", KINDS)
async def test_blocks_that_finish_in_time_raise_nothing(kind: str) -> None:
    within = KINDS[kind]()
    for _ in range(50):
        async with within(LONG):
            await asyncio.sleep(0)
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


@pytest.mark.parametrize("kind", KINDS)
async def test_a_cancellation_from_elsewhere_stays_a_cancellation(kind: str) -> None:
    within = KINDS[kind]()

    async def call() -> None:
        async with within(LONG):
            await asyncio.sleep(LONG)

    task = asyncio.create_task(call())
    await asyncio.sleep(0.01)
    task.cancel()
    assert await _outcome(task) == "cancelled"


@pytest.mark.parametrize("kind", KINDS)
async def test_nested_timeouts_each_see_only_their_own(kind: str) -> None:
    outer, inner = KINDS[kind](), KINDS[kind]()
    steps: list[str] = []

    async def inner_fires() -> None:
        async with outer(LONG):
            try:
                async with inner(0.05):
                    await asyncio.sleep(LONG)
            except TimeoutError:
                steps.append("inner timed out")
            await asyncio.sleep(0)
            steps.append("outer went on")

    async def outer_fires() -> None:
        async with outer(0.05), inner(LONG):
            await asyncio.sleep(LONG)

    assert await _outcome(inner_fires()) == "done"
    assert steps == ["inner timed out", "outer went on"]
    assert await _outcome(outer_fires()) == "timeout"


@pytest.mark.parametrize("kind", KINDS)
async def test_concurrent_calls_expire_by_their_own_deadlines(kind: str) -> None:
    within = KINDS[kind]()

    async def call(timeout: float, sleep: float) -> None:
        async with within(timeout):
            await asyncio.sleep(sleep)

    # a later call with an earlier deadline, and an earlier call that finishes in time
    first = asyncio.create_task(call(LONG, 0.2))
    await asyncio.sleep(0)
    short = asyncio.create_task(call(0.05, LONG))
    long_ok = asyncio.create_task(call(LONG, 0.3))
    started = time.monotonic()
    outcomes = [await _outcome(t) for t in (short, first, long_ok)]
    assert outcomes == ["timeout", "done", "done"]
    assert time.monotonic() - started < LONG / 2


async def test_calls_in_a_row_share_one_timer() -> None:
    loop = asyncio.get_running_loop()
    armed: list[float] = []
    call_at = loop.call_at

    def counting(when: float, callback: Any, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        armed.append(when)
        return call_at(when, callback, *args, **kwargs)

    deadlines = Deadlines()
    loop.call_at = counting  # type: ignore[method-assign]
    try:
        for _ in range(100):
            with deadlines.within(LONG):
                await asyncio.sleep(0)
    finally:
        del loop.call_at  # type: ignore[method-assign]
    assert len(armed) == 1


def test_outside_a_task_is_an_error() -> None:
    with pytest.raises(RuntimeError, match=r"loop|task"):
        Deadlines().within(1.0)


# A timer that fires in the loop iteration in which the timed call's reply arrives. The timer
# callback is taken from ``loop.call_at`` and run by the test at a chosen point, so each order
# below happens exactly, whatever the machine's speed.
Step = Callable[[], None]
Soon = Callable[[Step], object]


def _reply_and_timer_in_one_callback(reply: Step, fire: Step, soon: Soon) -> None:
    reply()  # the task's wake-up is queued for the next iteration ...
    fire()  # ... and the timer cancels the task before it runs


def _reply_then_timer_in_one_iteration(reply: Step, fire: Step, soon: Soon) -> None:
    soon(reply)
    soon(fire)


def _reply_then_task_then_timer(reply: Step, fire: Step, soon: Soon) -> None:
    reply()
    soon(fire)  # queued behind the task's wake-up: the block is left before the timer runs


def _timer_then_reply(reply: Step, fire: Step, soon: Soon) -> None:
    fire()
    reply()


RACES = {
    "reply and timer in one callback": _reply_and_timer_in_one_callback,
    "reply, then timer, in one iteration": _reply_then_timer_in_one_iteration,
    "reply, then task, then timer": _reply_then_task_then_timer,
    "timer, then reply": _timer_then_reply,
}


@contextlib.contextmanager
def _taken_timers(
    loop: asyncio.AbstractEventLoop,
) -> Iterator[list[tuple[asyncio.TimerHandle, Step]]]:
    """Record each timer armed through ``loop.call_at`` with its callback."""
    armed: list[tuple[asyncio.TimerHandle, Step]] = []
    call_at = loop.call_at

    def taking(when: float, callback: Any, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        handle = call_at(when, callback, *args, **kwargs)
        armed.append((handle, functools.partial(callback, *args)))
        return handle

    loop.call_at = taking  # type: ignore[assignment]
    try:
        yield armed
    finally:
        del loop.call_at


@pytest.mark.parametrize("shielded", [False, True], ids=["awaited", "shielded"])
@pytest.mark.parametrize("race", RACES)
@pytest.mark.parametrize("kind", KINDS)
async def test_a_timer_firing_as_the_reply_arrives_leaves_no_cancellation_behind(
    kind: str, race: str, shielded: bool
) -> None:
    """The block either raises ``TimeoutError`` or returns the reply; either way the task
    carries no cancellation out of it, and its next awaits run."""
    within = KINDS[kind]()
    loop = asyncio.get_running_loop()
    reply: asyncio.Future[str] = loop.create_future()
    left_block: list[tuple[str, int]] = []

    async def call() -> str:
        try:
            async with within(LONG):
                value = await (asyncio.shield(reply) if shielded else reply)
        except TimeoutError:
            value = "timeout"
        task = asyncio.current_task()
        assert task is not None
        left_block.append((value, task.cancelling()))
        for _ in range(3):
            await asyncio.sleep(0)
        return value

    with _taken_timers(loop) as armed:
        task = asyncio.create_task(call())
        await asyncio.sleep(0)  # the task enters the block, arms its timer and waits
    assert len(armed) == 1
    handle, on_timer = armed[0]

    def fire() -> None:
        if not handle.cancelled():  # a block that disarmed its timer on leaving never sees it
            handle.cancel()
            on_timer()

    def answer() -> None:
        if not reply.done():  # the timer cancelled the wait on it
            reply.set_result("scored")

    loop.call_soon(RACES[race], answer, fire, loop.call_soon)
    assert await _outcome(task) == "done"  # not "cancelled": no cancellation was left pending
    assert len(left_block) == 1
    value, cancelling = left_block[0]
    assert value in {"timeout", "scored"}
    assert cancelling == 0
    assert task.result() == value
