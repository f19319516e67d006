"""Versioned schema migrations with Alembic: revisions ``0001``, ``0002``… in
``migration_scripts/versions``, the number being the schema version ``abflow db status`` shows.

:func:`upgrade` applies the missing revisions in order, inside one write transaction (both
SQLite and PostgreSQL have transactional DDL, so a failed upgrade leaves the schema as it
was) and under a lock, so two ``abflow db upgrade`` run at once apply each step once.
Running it again is a no-op. Alembic records the revision in its ``alembic_version`` table.

Stores made before Alembic recorded their version in a ``schema_version`` table: such a
store is adopted by stamping the revision it reached, then upgraded like any other. Table
changes on SQLite go through Alembic's batch mode (``op.batch_alter_table``), which copies
the table, since SQLite cannot alter most column definitions in place.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from abflow.errors import StoreUnavailableError
from abflow.store.engine import translating, write_transaction

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = [
    "SCHEMA_VERSION",
    "UpgradeResult",
    "add_column_if_missing",
    "current_version",
    "read_version",
    "upgrade",
]

SCRIPTS = Path(__file__).with_name("migration_scripts")
"""Alembic's script directory (``env.py``, and ``versions/v0001_….py`` onwards)."""
ALEMBIC_TABLE = "alembic_version"
LEGACY_TABLE = "schema_version"
"""Where stores made before Alembic recorded their version (the highest row's ``version``)."""

# Any constant works: it only has to be the same in every process that upgrades.
_POSTGRES_LOCK_KEY = 0x0ABF_1000


@dataclass(frozen=True, slots=True)
class UpgradeResult:
    """What :func:`upgrade` did: the versions before and after, and the steps applied."""

    from_version: int
    to_version: int
    applied: tuple[int, ...]


def _config(connection: Connection) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(SCRIPTS))
    config.attributes["connection"] = connection  # read by migration_scripts/env.py
    return config


def _revision(version: int) -> str:
    return f"{version:04d}"


# From the file names, so that importing the store (every gateway worker does) never loads
# Alembic; a test checks it against Alembic's head revision.
SCHEMA_VERSION = max(int(path.name[1:5]) for path in (SCRIPTS / "versions").glob("v[0-9]*_*.py"))
"""The schema version this abflow reads and writes: the number of Alembic's head revision."""


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
    revision = _alembic_revision(connection)
    if revision is not None:
        return int(revision)
    if not sa.inspect(connection).has_table(LEGACY_TABLE):
        return 0
    found = connection.execute(sa.text(f"SELECT max(version) FROM {LEGACY_TABLE}")).scalar()
    return int(found or 0)


def _alembic_revision(connection: Connection) -> str | None:
    if not sa.inspect(connection).has_table(ALEMBIC_TABLE):
        return None
    found = connection.execute(sa.text(f"SELECT max(version_num) FROM {ALEMBIC_TABLE}")).scalar()
    return None if found is None else str(found)


def read_version(engine: Engine) -> int:
    """The schema version of the database behind ``engine`` (its own short transaction)."""
    with translating("read the store's schema version"), engine.connect() as connection:
        return current_version(connection)


_LOCKED_ATTEMPTS = 5
"""SQLite answers "database is locked" at once, without waiting out its busy timeout, when
two connections race on a brand-new file (one switching it to WAL while another starts its
write transaction). Nothing was written then, so the upgrade simply tries again."""


def upgrade(engine: Engine, *, target: int = SCHEMA_VERSION) -> UpgradeResult:
    """Apply every revision above the current version up to ``target``; idempotent."""
    for attempt in range(1, _LOCKED_ATTEMPTS):
        try:
            return _upgrade_once(engine, target)
        except StoreUnavailableError as exc:
            if engine.dialect.name != "sqlite" or "locked" not in str(exc):
                raise
            time.sleep(0.1 * attempt)
    return _upgrade_once(engine, target)


def _upgrade_once(engine: Engine, target: int) -> UpgradeResult:
    with write_transaction(engine) as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_POSTGRES_LOCK_KEY)))
        before = current_version(connection)
        stamped = _alembic_revision(connection) is not None
        legacy = 0 < before <= SCHEMA_VERSION and not stamped  # made by the pre-Alembic runner
        if before < target or legacy:
            _run(connection, before, max(before, target))
        after = current_version(connection)
    return UpgradeResult(before, after, tuple(range(before + 1, after + 1)))


def _run(connection: Connection, before: int, target: int) -> None:
    """``alembic upgrade`` from ``before`` to ``target`` on ``connection``'s transaction."""
    from alembic import command

    config = _config(connection)
    if before > 0 and _alembic_revision(connection) is None:
        command.stamp(config, _revision(before))  # a store from before Alembic: adopt it
    command.upgrade(config, _revision(target))
