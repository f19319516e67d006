"""Migration 2: PostgreSQL event ids in byte order (``COLLATE "C"``), for new and old stores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from abflow.store import EventStore
from abflow.store.engine import create_store_engine
from abflow.store.migrations import SCHEMA_VERSION, upgrade
from abflow.store.schema import EVENT_TABLES

EVENT_TABLE_NAMES = sorted(table.name for table in EVENT_TABLES.values())
VERSION_1_EVENT_TABLES = ["exposures", "outcomes", "predictions"]
"""The event tables revision 1 created (later ones are created in byte order)."""


def event_id_collations(url: str, tables: list[str] = EVENT_TABLE_NAMES) -> dict[str, str]:
    engine = create_store_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text(
                    "SELECT a.attrelid::regclass::text, c.collname FROM pg_attribute a "
                    "JOIN pg_collation c ON c.oid = a.attcollation "
                    "WHERE a.attrelid = ANY(CAST(:tables AS regclass[])) "
                    "AND a.attname = 'event_id'"
                ),
                {"tables": tables},
            ).all()
    finally:
        engine.dispose()
    return {str(table): str(collation) for table, collation in rows}


def exposure(event_id: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "ts": 1.7e9,
        "experiment_key": "checkout",
        "phase": 1,
        "unit_id": "user-1",
        "variant": "control",
        "attributes_json": None,
    }


def test_a_new_postgres_store_keys_events_in_byte_order(pg_url: str) -> None:
    EventStore.open(pg_url, upgrade=True).close()
    assert event_id_collations(pg_url) == dict.fromkeys(EVENT_TABLE_NAMES, "C")


def test_upgrade_converts_a_version_1_store(pg_url: str) -> None:
    engine = create_store_engine(pg_url)
    try:
        upgrade(engine, target=1)
        with engine.begin() as connection:  # what version 1 created: the database's collation
            for name in VERSION_1_EVENT_TABLES:
                connection.exec_driver_sql(
                    f'ALTER TABLE {name} ALTER COLUMN event_id TYPE VARCHAR(64) COLLATE "default"'
                )
    finally:
        engine.dispose()
    old = event_id_collations(pg_url, VERSION_1_EVENT_TABLES)
    assert old == dict.fromkeys(VERSION_1_EVENT_TABLES, "default")
    with EventStore.open(pg_url, upgrade=True) as store:
        assert store.schema_version() == SCHEMA_VERSION
    assert event_id_collations(pg_url) == dict.fromkeys(EVENT_TABLE_NAMES, "C")


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_events_written_before_the_upgrade_stay_unique(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'store.db'}"
        if backend == "sqlite"
        else str(request.getfixturevalue("pg_url"))
    )
    engine = create_store_engine(url)
    try:
        upgrade(engine, target=1)
        with engine.begin() as connection:
            if backend == "postgres":
                connection.exec_driver_sql(
                    'ALTER TABLE exposures ALTER COLUMN event_id TYPE VARCHAR(64) COLLATE "default"'
                )
            connection.execute(
                EVENT_TABLES["exposure"].insert(), [exposure("b-2"), exposure("a-1")]
            )
    finally:
        engine.dispose()
    with EventStore.open(url, upgrade=True) as store:
        assert store.schema_version() == SCHEMA_VERSION
        # Both old ids are still keys (nothing stored twice), a new one is added.
        rows = [exposure("a-1"), exposure("b-2"), exposure("c-3")]
        assert store.write_events("exposure", rows) == 1
        assert store.count_events("exposure") == 3
