"""The analysis SQL compiled for warehouses whose engines cannot run here (BigQuery,
Databricks, Snowflake).

Every statement a full analysis executes is captured on SQLite, where it also runs
(analysis_statements.py, shared with test_analysis_spark.py), and compiled by each
warehouse's own SQLAlchemy dialect. This proves the statements are expressible in those
dialects' SQL, not that the warehouse computes the same numbers: that is proved only where
an engine runs here (SQLite, PostgreSQL, DuckDB, ClickHouse on chDB; see
test_analysis_backends.py), and for Spark SQL, whose local pyspark runs the Databricks
dialect's statements (test_analysis_spark.py); Databricks' own runtime and BigQuery and
Snowflake are compiled only. A dialect that is not installed is skipped with a reason (the
dev extra installs all three).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
import sqlalchemy.sql.functions as sa_functions
from analysis_statements import Statement, capture_analysis

from abflow.store.dialects import json_text
from abflow.store.schema import exposures

DIALECTS = {
    "bigquery": ("sqlalchemy_bigquery", "BigQueryDialect", "JSON_VALUE"),
    "databricks": ("databricks.sqlalchemy", "DatabricksDialect", "get_json_object"),
    "snowflake": ("snowflake.sqlalchemy.snowdialect", "SnowflakeDialect", "JSON_EXTRACT_PATH_TEXT"),
}


@pytest.fixture(scope="module", autouse=True)
def _sql_functions_restored() -> Iterator[None]:
    """Importing a warehouse dialect registers its SQL functions for every engine in the
    process (sqlalchemy-bigquery's ``unnest`` then stands in for the one PostgreSQL's
    reflection uses, and warns); give the later tests SQLAlchemy's own registry back."""
    saved = {name: dict(functions) for name, functions in sa_functions._registry.items()}
    yield
    sa_functions._registry.clear()
    sa_functions._registry.update(saved)


def _dialect(name: str) -> Any:
    module_name, class_name, _ = DIALECTS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        pytest.skip(f"{module_name} is not installed: the {name} dialect is not checked")
    return getattr(module, class_name)()


@pytest.fixture(scope="module")
def statements(tmp_path_factory: pytest.TempPathFactory) -> list[Statement]:
    """Every statement of an analysis (all metric kinds, CUPED, sequential timeline, shadow)."""
    return capture_analysis(tmp_path_factory.mktemp("dialects")).statements


@pytest.mark.parametrize("name", list(DIALECTS))
def test_every_analysis_statement_compiles(name: str, statements: list[Statement]) -> None:
    dialect = _dialect(name)
    assert len(statements) >= 5
    for statement in statements:
        sql = str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
        assert "SELECT" in sql.upper()
        assert "json_extract(" not in sql  # nothing of SQLite's dialect left in it


@pytest.mark.parametrize("name", list(DIALECTS))
def test_breakdown_attribute_compiles(name: str) -> None:
    dialect = _dialect(name)
    function = DIALECTS[name][2]
    column = json_text(dialect.name, exposures.c.attributes_json, "country")
    sql = str(sa.select(column).compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    assert function.lower() in sql.lower()
    assert "country" in sql


def test_statements_read_every_event_table(statements: list[Statement]) -> None:
    # A capture that missed the aggregates would make the compile test vacuous.
    sql = " ".join(str(s) for s in statements)
    for table in ("exposures", "outcomes", "predictions", "phases", "experiment_versions"):
        assert f"FROM {table}" in sql or f"JOIN {table}" in sql, table
