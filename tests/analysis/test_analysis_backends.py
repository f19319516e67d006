"""The same events give the same analysis on SQLite, DuckDB and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from analysis_support import SPEC, START, Events, register, simulate, write
from numpy.testing import assert_allclose

from abflow.analysis import ExperimentResult, analyze
from abflow.spec import parse_experiment

PHASES = [{"phase": 1, "weights_json": "[0.5, 0.5]", "coverage": 1.0, "started_at": START}]


@pytest.fixture(scope="module")
def events() -> Events:
    return simulate(np.random.default_rng(3), units=300)


def _run(url: str, events: Events) -> ExperimentResult:
    write(url, events)
    register(url, parse_experiment(SPEC), PHASES)
    return analyze(url, "checkout", dimensions=["country"])


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


def test_numbers_are_not_trivially_equal(reference: ExperimentResult) -> None:
    values: Any = _numbers(reference)
    assert len(values) > 100
    assert len(set(np.round(values, 9))) > 50


def test_clickhouse_matches_sqlite(
    events: Events, reference: ExperimentResult, tmp_path: Path
) -> None:
    pytest.importorskip("chdb")
    _same(_run(f"chdb:///{tmp_path / 'events.chdb'}", events), reference)
