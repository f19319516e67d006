"""Named leases in the store: one process at a time does a job, across workers and replicas.

A lease is a row of ``leases``: a name, its holder and when it expires. :meth:`Lease.acquire`
takes it when it is free, expired or already held by the same holder, in one conditional
``UPDATE``; a name never used gets its row from an ``INSERT … ON CONFLICT DO NOTHING`` that
only one racer can win. Two processes asking at once never both get it, and one that does
not get it is told so without a failed statement: the processes that wait for a lease ask
for it every interval, and on PostgreSQL each refused statement would be an error in the
server's log and a rolled-back transaction.

:data:`INSERT_IF_ABSENT` names the dialects that can say ``ON CONFLICT DO NOTHING``. Any other
database that enforces the primary key gets a plain ``INSERT`` whose duplicate-key error
means "taken"; ClickHouse enforces no key, so it cannot hold a lease and says so.

A holder that dies simply stops renewing, and the lease is free again when it expires; no
lock outlives its process. The expiry compares the holders' clocks (``time.time()``), so
clocks that disagree by seconds only matter for leases of a few seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from abflow.errors import InvalidArgumentError, StoreError
from abflow.store.aggregates import StoreTarget, connect
from abflow.store.engine import translating, write_transaction
from abflow.store.schema import leases

__all__ = ["INSERT_IF_ABSENT", "Lease"]

INSERT_IF_ABSENT: dict[str, Callable[[sa.Table], sqlite.Insert | postgresql.Insert]] = {
    "sqlite": sqlite.insert,
    "postgresql": postgresql.insert,
    # duckdb-engine's dialect is PostgreSQL's, and DuckDB runs its ON CONFLICT clause.
    "duckdb": postgresql.insert,
}
"""Dialect name → the ``INSERT`` construct that can say ``ON CONFLICT DO NOTHING``."""

NO_UNIQUE_KEYS = frozenset({"clickhousedb"})
"""Dialects whose tables enforce no primary key: two racers could both insert a lease."""


class Lease:
    """The lease ``name`` as ``holder`` sees it (one holder per process and job)."""

    def __init__(
        self,
        target: StoreTarget,
        name: str,
        holder: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not name or not holder:
            msg = f"a lease needs a name and a holder, got {name!r} and {holder!r}"
            raise InvalidArgumentError(msg)
        self._target = target
        self.name = name
        self.holder = holder
        self._clock = clock

    def acquire(self, seconds: float) -> bool:
        """Hold the lease for ``seconds`` from now (taking or extending it); False while
        another holder's lease runs."""
        if not seconds > 0:
            msg = f"a lease is held for a positive time, got {seconds}"
            raise InvalidArgumentError(msg)
        engine = connect(self._target)
        dialect = engine.dialect.name
        if dialect in NO_UNIQUE_KEYS:
            msg = (
                f"a {dialect} store cannot hold leases (it enforces no unique key): "
                "use a SQLite or PostgreSQL store"
            )
            raise StoreError(msg)
        now = self._clock()
        row = leases.c
        take = (
            sa.update(leases)
            .where(
                row.name == self.name,
                sa.or_(row.holder == self.holder, row.expires_at <= now),
            )
            .values(holder=self.holder, expires_at=now + seconds)
        )
        new_row = {"name": self.name, "holder": self.holder, "expires_at": now + seconds}
        insert = INSERT_IF_ABSENT.get(dialect)
        if insert is None:
            return _take_or_insert(engine, take, new_row)
        # Without preserve_rowcount, an INSERT's rowcount is -1 on psycopg.
        insert_if_absent = (
            insert(leases)
            .values(new_row)
            .on_conflict_do_nothing()
            .execution_options(preserve_rowcount=True)
        )
        with write_transaction(engine) as connection, translating("take a lease"):
            if connection.execute(take).rowcount:
                return True
            # No row was ours or expired: either the name is new, or another holder's lease
            # runs (the row exists, and nothing is inserted).
            return bool(connection.execute(insert_if_absent).rowcount)

    def hold_until(self, until: float) -> bool:
        """Keep the lease, if still ours, until ``until`` (epoch seconds; a time past frees
        it); False when another holder has it."""
        row = leases.c
        keep = (
            sa.update(leases)
            .where(row.name == self.name, row.holder == self.holder)
            .values(expires_at=until)
        )
        with translating("keep a lease"), connect(self._target).begin() as connection:
            return bool(connection.execute(keep).rowcount)

    def release(self) -> None:
        """Free the lease now, if ours."""
        self.hold_until(self._clock())


def _take_or_insert(engine: Engine, take: sa.Update, new_row: dict[str, Any]) -> bool:
    """:meth:`Lease.acquire` on a database without ``ON CONFLICT``: a duplicate key on the
    ``INSERT`` means that another holder's lease runs."""
    with translating("take a lease"):
        with engine.begin() as connection:
            if connection.execute(take).rowcount:
                return True
        try:
            with engine.begin() as connection:
                connection.execute(sa.insert(leases).values(new_row))
        except IntegrityError:  # the row exists: another holder's lease runs
            return False
    return True
