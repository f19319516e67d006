"""What the analysis SQL needs that SQL dialects spell differently, in one table.

The aggregates are SQLAlchemy Core and portable, with one exception: reading one key of a
JSON text column (``attributes_json`` for breakdowns). Each supported dialect has its entry
here; a dialect without one cannot break down by attribute and says so.

Nor can every dialect run a correlated scalar subquery over a joined alias
(:data:`UNCORRELATED`): the shadow pairs join grouped lookups there instead.

Other differences are settled elsewhere, once: ClickHouse's NULLs after a LEFT JOIN, its
32-bit ``FLOAT`` and its duplicate event ids by the settings and DDL of
:mod:`abflow.store.clickhouse`; integer division by SQLAlchemy's own ``/`` (true division
in every dialect since 2.0); DuckDB's 32-bit ``FLOAT`` by the schema's ``Double`` columns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from abflow.errors import InvalidArgumentError

__all__ = ["JSON_TEXT", "UNCORRELATED", "has_correlated_lookups", "json_text"]

Extract = Callable[[sa.ColumnElement[Any], str], sa.ColumnElement[Any]]


def _sqlite(column: sa.ColumnElement[Any], key: str) -> sa.ColumnElement[Any]:
    # json_extract gives SQL values: 1 and 0 for true and false, numbers as numbers. The
    # other engines give text, so a boolean is 'true' or 'false' here too.
    path = f"$.{key}"
    kind = sa.func.json_type(column, path)
    extracted: sa.ColumnElement[Any] = sa.case(
        (kind == "true", "true"),
        (kind == "false", "false"),
        else_=sa.cast(sa.func.json_extract(column, path), sa.String),
    )
    return extracted


def _duckdb(column: sa.ColumnElement[Any], key: str) -> sa.ColumnElement[Any]:
    return sa.func.json_extract_string(column, f"$.{key}")


def _postgresql(column: sa.ColumnElement[Any], key: str) -> sa.ColumnElement[Any]:
    extracted: sa.ColumnElement[Any] = sa.cast(column, sa.JSON)[key].as_string()
    return extracted


def _clickhouse(column: sa.ColumnElement[Any], key: str) -> sa.ColumnElement[Any]:
    # JSONExtractString gives '' for a missing key and for a number: NULL when absent, the
    # string's value for a string and the literal JSON text otherwise, as the others do.
    extracted: sa.ColumnElement[Any] = sa.func.multiIf(
        sa.func.JSONHas(column, key) == 0,
        sa.null(),
        sa.func.JSONType(column, key) == "String",
        sa.func.JSONExtractString(column, key),
        sa.func.JSONExtractRaw(column, key),
    )
    return extracted


def _bigquery(column: sa.ColumnElement[Any], key: str) -> sa.ColumnElement[Any]:
    return sa.func.JSON_VALUE(column, f"$.{key}")


def _snowflake(column: sa.ColumnElement[Any], key: str) -> sa.ColumnElement[Any]:
    return sa.func.JSON_EXTRACT_PATH_TEXT(column, key)


def _spark(column: sa.ColumnElement[Any], key: str) -> sa.ColumnElement[Any]:
    return sa.func.get_json_object(column, f"$.{key}")


JSON_TEXT: dict[str, Extract] = {
    "sqlite": _sqlite,
    "duckdb": _duckdb,
    "postgresql": _postgresql,
    "clickhousedb": _clickhouse,
    "bigquery": _bigquery,
    "snowflake": _snowflake,
    "databricks": _spark,
    "hive": _spark,
    "spark": _spark,
}
"""Dialect name → the expression for ``column ->> key`` as text (NULL when absent)."""


def json_text(dialect_name: str, column: sa.ColumnElement[Any], key: str) -> sa.ColumnElement[Any]:
    """``column ->> key`` in the dialect ``dialect_name`` (an engine's ``dialect.name``)."""
    extract = JSON_TEXT.get(dialect_name)
    if extract is None:
        msg = f"breakdowns are not supported on {dialect_name}"
        raise InvalidArgumentError(msg)
    return extract(column, key)


UNCORRELATED = frozenset({"clickhousedb"})
"""Dialects that cannot run the shadow pairs' correlated scalar lookups (a label per
request, a segment per unit) inside a join: ClickHouse 26 prunes the correlated column
before the subquery reads it. They join grouped lookups instead."""


def has_correlated_lookups(dialect_name: str) -> bool:
    """Whether the dialect runs a correlated scalar subquery over a joined alias."""
    return dialect_name not in UNCORRELATED
