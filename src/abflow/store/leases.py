"""Named leases in the store: one process at a time does a job, across workers and replicas.

A lease is a row of ``leases``: a name, its holder and when it expires. :meth:`Lease.acquire`
takes it when it is free, expired or already held by the same holder, in one conditional
``UPDATE`` (or, for a name never used, an ``INSERT`` that only one racer can win), so two
processes asking at once never both get it, on SQLite and PostgreSQL alike. A holder that
dies simply stops renewing, and the lease is free again when it expires; no lock outlives
its process. The expiry compares the holders' clocks (``time.time()``), so clocks that
disagree by seconds only matter for leases of a few seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from abflow.errors import InvalidArgumentError
from abflow.store.aggregates import StoreTarget, connect
from abflow.store.engine import translating
from abflow.store.schema import leases

__all__ = ["Lease"]


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
        engine = connect(self._target)
        with translating("take a lease"):
            with engine.begin() as connection:
                if connection.execute(take).rowcount:
                    return True
            try:
                with engine.begin() as connection:
                    connection.execute(
                        sa.insert(leases).values(
                            name=self.name, holder=self.holder, expires_at=now + seconds
                        )
                    )
            except IntegrityError:  # the row exists: another holder's lease runs
                return False
        return True

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
