"""Shared-timer timeouts (``Deadlines``) behave as ``asyncio.timeout``, the reference.

Each scenario runs once with ``asyncio.timeout`` and once with ``Deadlines.within`` and must
end the same way. The timed blocks are long sleeps that a short timeout cuts (or short ones
that a long timeout leaves alone): a busy machine cannot turn one outcome into the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
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
