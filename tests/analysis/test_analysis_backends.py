"""The same events give the same analysis on SQLite, DuckDB, PostgreSQL and ClickHouse,
breakdowns by string, boolean and integer attributes included."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from analysis_support import SPEC, START, Events, register, simulate, write
from numpy.testing import assert_allclose

from abflow.analysis import ExperimentResult, analyze
from abflow.spec import parse_experiment

PHASES = [{"phase": 1, "weights_json": "[0.5, 0.5]", "coverage": 1.0, "started_at": START}]


DIMENSIONS = ["country", "premium", "tier"]


@pytest.fixture(scope="module")
def events() -> Events:
    """Each unit also has a boolean and an integer attribute (JSON true/false and 0-2)."""
    simulated = simulate(np.random.default_rng(3), units=300)
    rng = np.random.default_rng(4)
    extra: dict[str, dict[str, Any]] = {}
    for exposure in simulated.exposures:
        unit = exposure["unit_id"]
        if unit not in extra:
            extra[unit] = {"premium": bool(rng.random() < 0.4), "tier": int(rng.integers(3))}
        attributes = orjson.loads(exposure["attributes_json"]) | extra[unit]
        exposure["attributes_json"] = orjson.dumps(attributes).decode()
    return simulated


def _run(url: str, events: Events) -> ExperimentResult:
    write(url, events)
    register(url, parse_experiment(SPEC), PHASES)
    return analyze(url, "checkout", dimensions=DIMENSIONS)


def _numbers(result: ExperimentResult) -> list[float]:
    out: list[float] = [v.units for v in result.variants]
    for metric in result.metrics:
        out.extend(v.value for v in metric.values)
        for c in metric.comparisons:
            out.extend([c.effect, c.ci_low, c.ci_high, c.p_value or 0.0])
        out.extend(point.effect for point in metric.timeline)
    out.extend(row.effect for row in result.breakdowns)
    return out


@pytest.fixture(scope="module")
def reference(events: Events, tmp_path_factory: pytest.TempPathFactory) -> ExperimentResult:
    return _run(f"sqlite:///{tmp_path_factory.mktemp('ref') / 'events.db'}", events)


def _same(result: ExperimentResult, reference: ExperimentResult, rtol: float = 1e-9) -> None:
    assert [r.value for r in result.breakdowns] == [r.value for r in reference.breakdowns]
    assert_allclose(_numbers(result), _numbers(reference), rtol=rtol)
    assert result.provenance.rows == reference.provenance.rows


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_duckdb_matches_sqlite(events: Events, reference: ExperimentResult, tmp_path: Path) -> None:
    # DuckDB stores the schema's FLOAT columns as 32-bit REAL: values agree to ~1e-7.
    _same(_run(f"duckdb:///{tmp_path / 'events.duckdb'}", events), reference, rtol=1e-5)


@pytest.mark.postgres
def test_postgres_matches_sqlite(events: Events, reference: ExperimentResult, pg_url: str) -> None:
    _same(_run(pg_url, events), reference)


def test_breakdowns_by_boolean_and_integer_attributes_count_every_unit(
    events: Events, reference: ExperimentResult
) -> None:
    """Labels are the values as JSON text on every engine (SQLite's own extraction gives 1
    and 0 for true and false), and each segment holds the units that have its value."""
    units: dict[tuple[str, str], set[str]] = {}
    for exposure in events.exposures:
        attributes = orjson.loads(exposure["attributes_json"])
        for name in DIMENSIONS:
            label = orjson.dumps(attributes[name]).decode().strip('"')
            units.setdefault((name, label), set()).add(exposure["unit_id"])
    for name, labels in (("premium", {"false", "true"}), ("tier", {"0", "1", "2"})):
        rows = [row for row in reference.breakdowns if row.dimension == name]
        assert {row.value for row in rows} == labels
        for row in rows:
            assert row.control_units + row.treatment_units == len(units[(name, row.value)])


def test_a_breakdown_by_an_attribute_no_unit_has_warns(events: Events, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    write(url, events)
    register(url, parse_experiment(SPEC), PHASES)
    result = analyze(url, "checkout", dimensions=["contry", "country"])
    assert {row.value for row in result.breakdowns if row.dimension == "contry"} == {"None"}
    assert [w for w in result.warnings if "breakdown" in w] == [
        "breakdown by 'contry': no exposed unit has this attribute (misspelled, or not sent "
        "in the requests' attributes)"
    ]


def test_numbers_are_not_trivially_equal(reference: ExperimentResult) -> None:
    values: Any = _numbers(reference)
    assert len(values) > 100
    assert len(set(np.round(values, 9))) > 50


def test_clickhouse_matches_sqlite(
    events: Events, reference: ExperimentResult, tmp_path: Path
) -> None:
    pytest.importorskip("chdb")
    _same(_run(f"chdb:///{tmp_path / 'events.chdb'}", events), reference)
