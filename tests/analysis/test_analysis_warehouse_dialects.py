"""The analysis SQL compiled for warehouses that cannot run here (BigQuery, Databricks, Snowflake).

Every statement a full analysis executes is captured (on SQLite, where it also runs) and
compiled by each warehouse's own SQLAlchemy dialect. This proves the statements are
expressible in those dialects' SQL, not that the warehouse computes the same numbers: that
is proved only where an engine runs here (SQLite, PostgreSQL, DuckDB, ClickHouse on chDB; see
test_analysis_backends.py). A dialect that is not installed is skipped with a reason (the dev
extra installs all three).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
import sqlalchemy.sql.functions as sa_functions
from analysis_support import SPEC, START, register, simulate, write

from abflow.analysis import analyze
from abflow.spec import parse_experiment
from abflow.store.dialects import json_text
from abflow.store.schema import exposures

PHASES = [{"phase": 1, "weights_json": "[0.5, 0.5]", "coverage": 1.0, "started_at": START}]

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
def statements(tmp_path_factory: pytest.TempPathFactory) -> list[sa.Executable]:
    """Every statement of an analysis (all metric kinds, CUPED, sequential timeline)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('dialects') / 'events.db'}"
    write(url, simulate(np.random.default_rng(5), units=120))
    register(url, parse_experiment(SPEC), PHASES)
    engine = sa.create_engine(url)
    captured: list[sa.Executable] = []

    def capture(_conn: Any, clause: Any, *_args: Any) -> None:
        if isinstance(clause, sa.Select | sa.CompoundSelect):
            captured.append(clause)

    sa.event.listen(engine, "before_execute", capture)
    result = analyze(engine, "checkout")
    engine.dispose()
    assert result.metrics  # the analysis ran, so the captured statements are the real ones
    return captured


@pytest.mark.parametrize("name", list(DIALECTS))
def test_every_analysis_statement_compiles(name: str, statements: list[sa.Executable]) -> None:
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


def test_statements_read_every_event_table(statements: list[sa.Executable]) -> None:
    # A capture that missed the aggregates would make the compile test vacuous.
    sql = " ".join(str(s) for s in statements)
    for table in ("exposures", "outcomes", "predictions", "phases", "experiment_versions"):
        assert f"FROM {table}" in sql or f"JOIN {table}" in sql, table
