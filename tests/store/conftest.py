"""Store fixtures: every store test runs on SQLite and, when a server exists, on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from abflow.store import EventStore


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty database: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def store(store_url: str) -> Iterator[EventStore]:
    """An open, upgraded store on ``store_url``, closed afterwards."""
    opened = EventStore.open(store_url, upgrade=True)
    try:
        yield opened
    finally:
        opened.close()
