"""Leases in the store: one holder at a time, taken back on expiry, raced by threads."""

from __future__ import annotations

import threading

import pytest

from abflow.errors import InvalidArgumentError
from abflow.store import EventStore
from abflow.store.leases import Lease


class Clock:
    """A settable clock, shared by the holders of one test."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_one_holder_until_it_expires_or_lets_go(store: EventStore) -> None:
    clock = Clock()
    first = Lease(store, "job", "a", clock=clock)
    second = Lease(store, "job", "b", clock=clock)
    assert first.acquire(10.0)
    assert not second.acquire(10.0)
    clock.now += 9.9
    assert first.acquire(10.0)  # the holder extends it: now until 1019.9
    clock.now += 9.0
    assert not second.acquire(10.0)
    clock.now += 1.0  # expired at 1019.9
    assert second.acquire(5.0)
    assert not first.acquire(5.0)
    assert not first.hold_until(clock.now + 60.0)  # not the holder: nothing changes
    assert second.hold_until(clock.now + 60.0)
    clock.now += 30.0
    assert not first.acquire(5.0)
    second.release()
    assert first.acquire(5.0)
    assert Lease(store, "other job", "b", clock=clock).acquire(5.0)  # names are independent


def test_racing_holders_get_it_once(store: EventStore) -> None:
    clock = Clock()
    holders = [Lease(store, "job", f"h{i}", clock=clock) for i in range(4)]
    won: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(holders))

    def race(lease: Lease) -> None:
        try:
            start.wait()
            if lease.acquire(10.0):
                won.append(lease.holder)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=race, args=(lease,)) for lease in holders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(won) == 1


def test_a_lease_needs_a_name_a_holder_and_a_positive_time(store: EventStore) -> None:
    with pytest.raises(InvalidArgumentError, match="a name and a holder"):
        Lease(store, "", "a")
    with pytest.raises(InvalidArgumentError, match="positive time"):
        Lease(store, "job", "a").acquire(0.0)
