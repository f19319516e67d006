"""The analysis SQL executed on Spark SQL (pyspark 4.3 in local mode), compared with SQLite.

Every statement a full analysis executes (analysis_statements.py: all metric kinds, CUPED,
the sequential timeline, shadow pairs) is compiled by databricks-sqlalchemy's dialect with
literal values and run on a local Spark session over the same rows; each must give SQLite's
rows, floats to 1e-9 (relative). So is a breakdown attribute read with the Spark entry of
abflow/store/dialects.py. This is Spark SQL, not Databricks: Databricks SQL runs its own
runtime, which is not checked here.

Spark runs in its own virtual environment (requirements-spark.txt beside this file, built
once and cached like the orchestrator environments) through spark_driver.py: this process
writes the input tables as JSON Lines and the SQL text into a job file, and reads the rows
back as JSON. One Spark session serves every statement. Without a Java runtime, or when the
environment cannot be built (no network), the tests skip with the reason.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from analysis_statements import CapturedAnalysis, Statement, capture_analysis
from sqlalchemy.sql.util import find_tables

from abflow.store.dialects import json_text
from abflow.store.schema import exposures
from cached_envs import ensure_env

# slow: a first run builds the environment (about 40 s); Spark then takes 30-50 s on two busy cores.
pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
RUN_TIMEOUT_SECONDS = 600
REFUSED_SQL = "SELECT json_extract('{\"a\": 1}', '$.a') AS a"  # SQLite's, not Spark's
REL_TOL = 1e-9


@dataclasses.dataclass(frozen=True)
class Case:
    """One query: the statement SQLite runs and the Spark SQL text of the same query."""

    label: str
    sqlite: Statement
    spark_sql: str


@dataclasses.dataclass(frozen=True, repr=False)  # a failure shows the differences, not all rows
class SparkRun:
    cases: list[Case]
    sqlite_rows: list[list[list[Any]]]
    version: str
    is_ansi: bool
    answers: list[dict[str, Any]]
    refused: dict[str, Any]


def _environment_python() -> Path:
    if shutil.which("java") is None:
        pytest.skip("no Java runtime on the PATH, so Spark SQL cannot run here")
    return ensure_env("spark", HERE) / "bin" / "python"


def _databricks() -> Any:
    try:
        from databricks.sqlalchemy import DatabricksDialect
    except ImportError:
        pytest.skip("databricks-sqlalchemy is not installed: no Spark SQL to run")
    return DatabricksDialect()


def _spark_type(column: sa.Column[Any]) -> str:
    kind = column.type
    if isinstance(kind, sa.Boolean):
        return "BOOLEAN"
    if isinstance(kind, sa.Integer):
        return "BIGINT"
    if isinstance(kind, sa.Float):
        return "DOUBLE"
    if isinstance(kind, sa.String):
        return "STRING"
    msg = f"{column.table.name}.{column.name}: no Spark type for {kind!r}"
    raise AssertionError(msg)


def _export(engine: sa.Engine, tables: list[sa.Table], folder: Path) -> list[dict[str, str]]:
    """Each table as JSON Lines in ``folder``, with the Spark DDL of its columns."""
    exported = []
    with engine.connect() as connection:
        for table in tables:
            path = folder / f"{table.name}.jsonl"
            with path.open("w") as out:
                for row in connection.execute(sa.select(table)).mappings():
                    out.write(json.dumps(dict(row)) + "\n")
            schema = ", ".join(f"`{c.name}` {_spark_type(c)}" for c in table.columns)
            exported.append({"name": table.name, "schema": schema, "path": str(path)})
    return exported


def _breakdown(dialect_name: str) -> sa.Select[Any]:
    """Exposures per value of a present and an absent attribute, as a breakdown reads them."""
    country = json_text(dialect_name, exposures.c.attributes_json, "country").label("country")
    absent = json_text(dialect_name, exposures.c.attributes_json, "plan").label("plan")
    return (
        sa.select(country, absent, sa.func.count().label("n"))
        .group_by(country, absent)
        .order_by(country)
    )


def _cases(captured: CapturedAnalysis, dialect: Any) -> list[Case]:
    def compiled(statement: Statement) -> str:
        return str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))

    cases = [
        Case(f"analysis statement {i}", statement, compiled(statement))
        for i, statement in enumerate(captured.statements)
    ]
    cases.append(
        Case("breakdown attribute", _breakdown("sqlite"), compiled(_breakdown(dialect.name)))
    )
    return cases


@pytest.fixture(scope="module")
def spark_run(tmp_path_factory: pytest.TempPathFactory) -> SparkRun:
    """The cases, SQLite's rows for each, and the Spark driver's answer for all of them."""
    dialect = _databricks()
    python = _environment_python()
    folder = tmp_path_factory.mktemp("spark")
    captured = capture_analysis(folder)
    cases = _cases(captured, dialect)
    tables = {
        found
        for case in cases
        for found in find_tables(case.sqlite, include_aliases=True)
        if isinstance(found, sa.Table)
    }
    engine = sa.create_engine(captured.url)
    try:
        exported = _export(engine, sorted(tables, key=lambda t: t.name), folder)
        with engine.connect() as connection:
            sqlite_rows = [[list(row) for row in connection.execute(case.sqlite)] for case in cases]
    finally:
        engine.dispose()
    job = folder / "job.json"
    job.write_text(
        json.dumps({"tables": exported, "statements": [*(c.spark_sql for c in cases), REFUSED_SQL]})
    )
    done = subprocess.run(
        [str(python), str(HERE / "spark_driver.py"), str(job)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
        env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"},  # no lookup of the host's address
    )
    assert done.returncode == 0, done.stderr[-3000:]
    spark: dict[str, Any] = json.loads(done.stdout)
    *answers, refused = spark["results"]
    assert len(answers) == len(cases)
    is_ansi = spark["ansi"] == "true"
    return SparkRun(cases, sqlite_rows, spark["spark_version"], is_ansi, answers, refused)


def _same(expected: Any, actual: Any) -> bool:
    if expected is None or actual is None:
        return expected is None and actual is None
    if isinstance(expected, str) or isinstance(actual, str):
        return bool(expected == actual)
    expected, actual = float(expected), float(actual)
    if math.isnan(expected) or math.isnan(actual):
        return math.isnan(expected) and math.isnan(actual)
    return math.isclose(expected, actual, rel_tol=REL_TOL)


def _order_key(row: list[Any]) -> tuple[tuple[int, Any], ...]:
    """An order on rows for statements without ORDER BY: numbers rounded to 6 significant
    digits, so that last-digit differences between the engines do not reorder rows."""
    key: list[tuple[int, Any]] = []
    for value in row:
        if value is None:
            key.append((0, 0))
        elif isinstance(value, str):
            key.append((2, value))
        else:
            key.append((1, float(f"{float(value):.6g}")))
    return tuple(key)


def _difference(case: Case, expected: list[list[Any]], actual: list[list[Any]]) -> str | None:
    """None when Spark's rows are SQLite's, else what differs first."""
    if not getattr(case.sqlite, "_order_by_clauses", ()):  # no ORDER BY: any order is right
        expected, actual = sorted(expected, key=_order_key), sorted(actual, key=_order_key)
    if len(expected) != len(actual):
        return f"{len(expected)} rows on SQLite, {len(actual)} on Spark"
    for i, (want, got) in enumerate(zip(expected, actual, strict=True)):
        if len(want) != len(got):
            return f"row {i}: {len(want)} columns on SQLite, {len(got)} on Spark"
        for j, (a, b) in enumerate(zip(want, got, strict=True)):
            if not _same(a, b):
                return f"row {i}, column {j}: SQLite {a!r}, Spark {b!r}"
    return None


def _report(run: SparkRun, labels: set[str]) -> list[str]:
    failures = []
    for case, sqlite_rows, result in zip(run.cases, run.sqlite_rows, run.answers, strict=True):
        if case.label not in labels:
            continue
        if "error" in result:
            problem = f"Spark refused it: {result['error'][:1500]}"
        else:
            problem = _difference(case, sqlite_rows, result["rows"])
        if problem is not None:
            failures.append(f"{case.label}: {problem}\n{case.spark_sql}")
    return failures


def test_analysis_sql_gives_sqlites_rows_on_spark(spark_run: SparkRun) -> None:
    # One test for the whole run, so that parallel workers never start a second Spark.
    failures = _report(spark_run, {case.label for case in spark_run.cases})
    assert not failures, "\n\n".join(failures)
    assert spark_run.version.startswith("4.")
    assert spark_run.is_ansi  # Spark's default: overflow and division by zero are errors
    assert sum(c.label.startswith("analysis statement") for c in spark_run.cases) >= 10
    # not vacuous: many non-integral sums were compared, and the breakdown read real values
    compared = [
        value
        for answer in spark_run.answers
        for row in answer["rows"]
        for value in row
        if isinstance(value, float) and value != round(value)
    ]
    assert len(compared) > 100
    breakdown = spark_run.sqlite_rows[-1]  # the last case
    assert sorted(row[0] for row in breakdown) == ["DE", "FR", "US"]
    assert all(row[1] is None for row in breakdown)
    # a statement Spark refuses is reported, and the comparison turns it into a failure
    assert "json_extract" in spark_run.refused["error"]
    broken = dataclasses.replace(spark_run, answers=[spark_run.refused, *spark_run.answers[1:]])
    refusals = _report(broken, {spark_run.cases[0].label})
    assert len(refusals) == 1
    assert "Spark refused it" in refusals[0]


def test_the_comparison_catches_what_differs() -> None:
    rows = [["control", 3, 0.1234567891234], ["treatment", 4, None]]
    unordered = Case("unordered", sa.select(exposures.c.variant), "")
    ordered = Case("ordered", sa.select(exposures.c.variant).order_by(exposures.c.variant), "")
    assert _difference(unordered, rows, rows[::-1]) is None
    assert _difference(ordered, rows, rows[::-1]) is not None
    within = [["control", 3, 0.1234567891234 * (1 + 1e-11)], ["treatment", 4.0, None]]
    assert _difference(ordered, rows, within) is None
    beyond = [["control", 3, 0.1234567901], ["treatment", 4, None]]  # 8e-9 relative
    assert _difference(ordered, rows, beyond) == (
        "row 0, column 2: SQLite 0.1234567891234, Spark 0.1234567901"
    )
    assert _difference(ordered, rows, [rows[0], ["treatment", 4, 0.0]]) is not None
    assert _difference(ordered, rows, [rows[0], ["Treatment", 4, None]]) is not None
    assert _difference(ordered, rows, rows[:1]) == "2 rows on SQLite, 1 on Spark"
