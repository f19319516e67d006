"""Leases in the store: one holder at a time, taken back on expiry, raced by threads."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from abflow.errors import InvalidArgumentError, StoreError
from abflow.store import EventStore
from abflow.store import leases as leases_module
from abflow.store.leases import Lease
from abflow.store.schema import leases, metadata


class Clock:
    """A settable clock, shared by the holders of one test."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def race_once(holders: list[Lease], seconds: float) -> list[str]:
    """The holders that got the lease when all of them asked at once."""
    won: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(holders))

    def race(lease: Lease) -> None:
        try:
            start.wait()
            if lease.acquire(seconds):
                won.append(lease.holder)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=race, args=(lease,)) for lease in holders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return won


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
    assert len(race_once(holders, 10.0)) == 1


def test_a_lease_needs_a_name_a_holder_and_a_positive_time(store: EventStore) -> None:
    with pytest.raises(InvalidArgumentError, match="a name and a holder"):
        Lease(store, "", "a")
    with pytest.raises(InvalidArgumentError, match="positive time"):
        Lease(store, "job", "a").acquire(0.0)


class RefusedStatements:
    """The statements an engine's database refused, and the transactions rolled back."""

    def __init__(self, engine: sa.Engine) -> None:
        self.errors: list[str] = []
        self.rollbacks = 0
        self._engine = engine
        event.listen(engine, "handle_error", self._on_error)
        event.listen(engine, "rollback", self._on_rollback)

    def _on_error(self, context: sa.engine.ExceptionContext) -> None:
        self.errors.append(str(context.original_exception).splitlines()[0])

    def _on_rollback(self, _connection: sa.Connection) -> None:
        self.rollbacks += 1

    def close(self) -> None:
        event.remove(self._engine, "handle_error", self._on_error)
        event.remove(self._engine, "rollback", self._on_rollback)


def test_contended_acquires_make_the_database_refuse_nothing(store: EventStore) -> None:
    """Holders that do not get the lease are told so without a failed statement: on
    PostgreSQL each one would be an ERROR in the server's log and a rolled-back transaction,
    per process and interval."""
    clock = Clock()
    holders = [Lease(store, "job", f"h{i}", clock=clock) for i in range(4)]
    refused = RefusedStatements(store.engine)
    try:
        winners: list[str] = []
        for round_ in range(12):
            won = race_once(holders, 10.0)
            assert len(won) == 1, f"round {round_}: {won}"
            if winners and round_ % 3 != 0:  # the lease still runs: its holder renewed it
                assert won == winners[-1:], f"round {round_}"
            winners += won
            clock.now += 11.0 if round_ % 3 == 2 else 1.0  # every third round it expires
    finally:
        refused.close()
    assert refused.errors == []
    assert refused.rollbacks == 0
    with store.engine.connect() as connection:
        row = connection.execute(sa.select(leases)).one()
    assert (row.name, row.holder, row.expires_at) == ("job", winners[-1], clock.now - 11.0 + 10.0)


def check_one_holder_at_a_time(target: sa.Engine) -> None:
    """Taking, refusing, renewing, expiry and release, as one process sees them."""
    clock = Clock()
    first = Lease(target, "job", "a", clock=clock)
    second = Lease(target, "job", "b", clock=clock)
    assert first.acquire(10.0)
    assert not second.acquire(10.0)
    clock.now += 9.0
    assert first.acquire(10.0)  # renewed until 1019
    clock.now += 9.5
    assert not second.acquire(10.0)
    clock.now += 0.5  # expired at 1019
    assert second.acquire(10.0)
    assert not first.acquire(10.0)
    second.release()
    assert first.acquire(10.0)
    with target.connect() as connection:
        rows = connection.execute(sa.select(leases.c.holder, leases.c.expires_at)).all()
    assert [tuple(row) for row in rows] == [("a", 1029.0)]


def test_a_database_without_on_conflict_refuses_a_taken_lease_with_its_key(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any other dialect gets a plain INSERT, whose duplicate key means "taken"."""
    monkeypatch.setattr(leases_module, "INSERT_IF_ABSENT", {})
    check_one_holder_at_a_time(store.engine)
    holders = [Lease(store, "raced", f"h{i}") for i in range(4)]
    assert len(race_once(holders, 10.0)) == 1


def test_leases_on_duckdb(tmp_path: Path) -> None:
    pytest.importorskip("duckdb_engine")
    engine = sa.create_engine(f"duckdb:///{tmp_path / 'store.duckdb'}")
    try:
        metadata.create_all(engine, tables=[leases])
        check_one_holder_at_a_time(engine)
    finally:
        engine.dispose()


def test_clickhouse_cannot_hold_a_lease() -> None:
    pytest.importorskip("clickhouse_connect")
    lease = Lease("clickhouse://default@127.0.0.1:1/abflow", "job", "a")  # refused unasked
    with pytest.raises(StoreError, match="clickhousedb store cannot hold leases"):
        lease.acquire(10.0)
