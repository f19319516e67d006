"""ClickHouse as an analysis store: a server through clickhouse-connect, or embedded chDB.

The analysis SQL (SQLAlchemy Core) compiles with clickhouse-connect's own dialect
(``clickhousedb``) and runs on whichever client that dialect is given: a server
(``clickhouse://user:password@host:8123/db``, ``clickhouses://…`` for TLS) or chDB, the
embedded ClickHouse, in a folder (``chdb:///path`` or ``clickhouse+chdb:///path``).

Every connection carries three settings that make ClickHouse answer as the other stores do:

- ``join_use_nulls=1``: an unmatched LEFT JOIN column is NULL, not the type's default (0 or
  ''), so a unit without outcomes counts as missing, as in SQL elsewhere;
- ``final=1``: tables are ``ReplacingMergeTree`` keyed by ``event_id``, and every read
  collapses rows of one event id, so an event delivered twice (a loader's redelivery, a
  replayed spool) counts once before the background merge has run too;
- ``aggregate_functions_null_for_empty=1``: ``sum`` of no rows is NULL, as in SQL.

Tables are created here (:func:`create_tables`) rather than by ``metadata.create_all``:
ClickHouse needs an engine and sort key per table, and Nullable types spelled out.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import NullPool

from abflow.errors import StoreError

__all__ = [
    "CLICKHOUSE_SETTINGS",
    "clickhouse_engine",
    "create_tables",
    "is_clickhouse_url",
    "table_ddl",
]

CLICKHOUSE_SETTINGS: dict[str, Any] = {
    "join_use_nulls": 1,
    "final": 1,
    "aggregate_functions_null_for_empty": 1,
}
"""Sent with every query (see the module docstring for why each is needed)."""

_ENGINE_OPTIONS: dict[str, Any] = {"enable_from_linting": False}
"""The dialect's own join compiler does not tell SQLAlchemy's cartesian-product linter about
its joins, which then warns about every LEFT JOIN; the same statements are linted on the
other stores."""

_EMBEDDED = ("chdb", "clickhouse+chdb")
_SERVER = {"clickhouse": False, "clickhouse+http": False, "clickhouses": True}


def is_clickhouse_url(url: str) -> bool:
    """Whether ``url`` names a ClickHouse store (embedded chDB or a server)."""
    scheme = url.split(":", 1)[0].lower()
    return scheme in _EMBEDDED or scheme in _SERVER or scheme.startswith("clickhousedb")


def clickhouse_engine(url: str) -> Engine:
    """An engine whose SQL is compiled by clickhouse-connect's dialect, for ``url``."""
    scheme, _, rest = url.partition(":")
    scheme = scheme.lower()
    try:
        if scheme in _EMBEDDED:
            path = rest.removeprefix("//")
            if not path or path == "/":
                msg = f"a chDB store needs a folder: chdb:///PATH, got {url!r}"
                raise StoreError(msg)
            # The DB-API connection passes unknown keywords on as ClickHouse settings.
            args: dict[str, Any] = {"dsn": f"chdb://{path}", **CLICKHOUSE_SETTINGS}
            # chDB opens one folder per process at a time, and only while a connection is
            # open: pooled connections would keep it from opening another store's folder.
            return sa.create_engine(
                "clickhousedb://", connect_args=args, poolclass=NullPool, **_ENGINE_OPTIONS
            )
        parsed = make_url(url)
        secure = _SERVER.get(scheme, parsed.query.get("secure") in ("true", "1"))
        target = parsed.set(drivername="clickhousedb")
        extra = {**CLICKHOUSE_SETTINGS, "secure": secure}
        return sa.create_engine(target, connect_args=extra, **_ENGINE_OPTIONS)
    except (sa.exc.SQLAlchemyError, ImportError, ValueError) as exc:
        msg = (
            f"cannot open ClickHouse store {url!r}: {exc} "
            "(install the extra: pip install 'abflow[clickhouse]')"
        )
        raise StoreError(msg) from exc


def _column_type(column: sa.Column[Any]) -> str:
    kind = column.type
    if isinstance(kind, sa.Boolean):
        name = "Bool"
    elif isinstance(kind, sa.Integer):
        name = "Int64"
    elif isinstance(kind, sa.Float | sa.Double | sa.Numeric):
        name = "Float64"  # FLOAT is 32 bits in ClickHouse: today's epoch would round to minutes
    elif isinstance(kind, sa.String | sa.Text):
        name = "String"
    else:
        msg = f"no ClickHouse type for {column.table.name}.{column.name} ({kind!r})"
        raise StoreError(msg)
    return f"Nullable({name})" if column.nullable and not column.primary_key else name


def table_ddl(table: sa.Table) -> str:
    """``CREATE TABLE IF NOT EXISTS`` for ``table``: ReplacingMergeTree on its primary key."""
    columns = ",\n  ".join(f"`{c.name}` {_column_type(c)}" for c in table.columns)
    key = ", ".join(f"`{c.name}`" for c in table.primary_key.columns) or "tuple()"
    return (
        f"CREATE TABLE IF NOT EXISTS `{table.name}` (\n  {columns}\n)\n"
        f"ENGINE = ReplacingMergeTree ORDER BY ({key})"
    )


def create_tables(engine: Engine, tables: Iterable[sa.Table]) -> None:
    """Create ``tables`` on a ClickHouse engine (existing ones are left as they are)."""
    with engine.begin() as connection:
        for table in tables:
            connection.exec_driver_sql(table_ddl(table))
