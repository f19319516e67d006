"""Versioned schema migrations: a small runner with a ``schema_version`` table.

Each migration has a number, a description and a function that changes the schema on a
connection. :func:`upgrade` applies the missing ones in order, inside one write transaction
(both SQLite and PostgreSQL have transactional DDL, so a failed upgrade leaves the schema as
it was) and under a lock, so two ``abflow db upgrade`` run at once apply each step once.
Running it again is a no-op.

Migration 1 creates the tables of :mod:`abflow.store.schema` with ``checkfirst``, so it also
adopts a database whose tables were created directly from the metadata. Because it reads the
current table definitions, a later migration that adds a column must check that the column is
missing first (:func:`add_column_if_missing`): a fresh database gets it from migration 1.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from abflow.store import schema
from abflow.store.engine import translating, write_transaction

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Migration",
    "UpgradeResult",
    "add_column_if_missing",
    "current_version",
    "read_version",
    "upgrade",
]

_meta = sa.MetaData()
schema_version = sa.Table(
    "schema_version",
    _meta,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("applied_at", sa.Double, nullable=False),
)

# Any constant works: it only has to be the same in every process that upgrades.
_POSTGRES_LOCK_KEY = 0x0ABF_1000


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the schema's history."""

    version: int
    description: str
    apply: Callable[[Connection], None]


@dataclass(frozen=True, slots=True)
class UpgradeResult:
    """What :func:`upgrade` did: the versions before and after, and the steps applied."""

    from_version: int
    to_version: int
    applied: tuple[int, ...]


def _create_initial_tables(connection: Connection) -> None:
    tables = [
        schema.experiment_versions,
        schema.phases,
        schema.exposures,
        schema.predictions,
        schema.outcomes,
        schema.audit_log,
        schema.api_tokens,
    ]
    schema.metadata.create_all(connection, tables=tables, checkfirst=True)


def _event_ids_in_byte_order(connection: Connection) -> None:
    """PostgreSQL: ``COLLATE "C"`` on every event table's ``event_id`` (rebuilds its key)."""
    if connection.dialect.name != "postgresql":
        return  # SQLite compares text byte by byte already
    for table in schema.EVENT_TABLES.values():
        collation = connection.execute(
            sa.text(
                "SELECT c.collname FROM pg_attribute a JOIN pg_collation c "
                "ON c.oid = a.attcollation "
                "WHERE a.attrelid = CAST(:table AS regclass) AND a.attname = 'event_id'"
            ),
            {"table": table.name},
        ).scalar_one()
        if collation != "C":
            connection.exec_driver_sql(
                f'ALTER TABLE {table.name} ALTER COLUMN event_id TYPE VARCHAR(64) COLLATE "C"'
            )


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "events, experiments and phases, audit log, API tokens", _create_initial_tables),
    Migration(2, "event ids compared byte by byte on PostgreSQL", _event_ids_in_byte_order),
)
SCHEMA_VERSION = MIGRATIONS[-1].version
"""The schema version this abflow reads and writes."""


def add_column_if_missing(connection: Connection, table: sa.Table, column_name: str) -> None:
    """``ALTER TABLE … ADD COLUMN`` for a column of ``table``, unless it is already there."""
    existing = {c["name"] for c in sa.inspect(connection).get_columns(table.name)}
    if column_name in existing:
        return
    column = table.c[column_name]
    ddl = sa.schema.CreateColumn(column).compile(dialect=connection.dialect)
    connection.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {ddl}")


def current_version(connection: Connection) -> int:
    """The schema version of the database behind ``connection``; 0 when it has none."""
    if not sa.inspect(connection).has_table(schema_version.name):
        return 0
    found = connection.execute(sa.select(sa.func.max(schema_version.c.version))).scalar()
    return int(found or 0)


def read_version(engine: Engine) -> int:
    """The schema version of the database behind ``engine`` (its own short transaction)."""
    with translating("read the store's schema version"), engine.connect() as connection:
        return current_version(connection)


def upgrade(engine: Engine, *, target: int = SCHEMA_VERSION) -> UpgradeResult:
    """Apply every migration above the current version up to ``target``; idempotent."""
    with write_transaction(engine) as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_POSTGRES_LOCK_KEY)))
        schema_version.create(connection, checkfirst=True)
        before = current_version(connection)
        applied: list[int] = []
        for migration in MIGRATIONS:
            if before < migration.version <= target:
                migration.apply(connection)
                connection.execute(
                    schema_version.insert().values(
                        version=migration.version,
                        description=migration.description,
                        applied_at=time.time(),
                    )
                )
                applied.append(migration.version)
        after = current_version(connection)
    return UpgradeResult(before, after, tuple(applied))
