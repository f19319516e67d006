"""Rollout fixtures: a store with a settable clock, on SQLite and (when a server exists)
PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from rollout_traffic import Clock

from abflow.store import EventStore

T0 = 1_790_000_000.0


@pytest.fixture
def ramp_clock() -> Clock:
    return Clock(T0)


@pytest.fixture(params=["sqlite", "postgres"])
def ramp_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def ramp_store(ramp_store_url: str, ramp_clock: Clock) -> Iterator[EventStore]:
    opened = EventStore.open(ramp_store_url, upgrade=True, clock=ramp_clock)
    try:
        yield opened
    finally:
        opened.close()
