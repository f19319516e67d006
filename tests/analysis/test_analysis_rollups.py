"""Rollups folded in several steps give the same analysis as aggregating the raw events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
import sqlalchemy as sa
from analysis_support import SPEC, START, Events, register, simulate, write
from numpy.testing import assert_allclose

from abflow.analysis import AnalysisOptions, ExperimentResult, analyze
from abflow.errors import StoreError
from abflow.spec import parse_experiment
from abflow.store.aggregates import OutcomeColumn, Window, unit_moments
from abflow.store.rollups import refresh_rollup, rollup_moments

DAY = 86400.0
PHASES = [{"phase": 1, "weights_json": "[0.5, 0.5]", "coverage": 1.0, "started_at": START}]
CUPED_SPEC: dict[str, Any] = {
    **SPEC,
    "analysis": {"cuped": True, "method": "sequential", "relative": True},
}


def _numbers(result: ExperimentResult) -> list[float]:
    out: list[float] = [v.units for v in result.variants]
    for metric in result.metrics:
        out.extend(v.value for v in metric.values)
        for c in metric.comparisons:
            out.extend([c.effect, c.ci_low, c.ci_high, c.p_value or 0.0])
        out.extend(point.effect for point in metric.timeline)
    out.extend(row.effect for row in result.breakdowns)
    return out


def _split(events: Events, cut: float) -> tuple[Events, Events]:
    """Events before and after ``cut``: what has landed at two refreshes."""
    early, late = Events(), Events()
    for name in ("exposures", "outcomes", "predictions"):
        for row in getattr(events, name):
            getattr(early if row["ts"] <= cut else late, name).append(row)
    return early, late


def _check(url: str, tmp: Events, rtol: float) -> None:
    spec = parse_experiment(CUPED_SPEC)
    early, late = _split(tmp, START + 2.5 * DAY)
    write(url, early)
    register(url, spec, PHASES)
    options = AnalysisOptions(rollups=True, dimensions=("country",))
    first = analyze(url, spec, options)
    assert first.provenance.rows["units"] < len({r["unit_id"] for r in tmp.exposures})
    write(url, late)
    folded = analyze(url, spec, options)  # a second fold on top of the first
    direct = analyze(url, spec, AnalysisOptions(dimensions=("country",)))
    assert_allclose(_numbers(folded), _numbers(direct), rtol=rtol)
    assert folded.provenance.rows == direct.provenance.rows
    assert folded.metric("revenue").cuped


@pytest.fixture(scope="module")
def events() -> Events:
    return simulate(np.random.default_rng(21), units=500)


def test_sqlite_rollup_matches_raw_events(events: Events, tmp_path: Path) -> None:
    _check(f"sqlite:///{tmp_path / 'events.db'}", events, rtol=1e-9)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_duckdb_rollup_matches_raw_events(events: Events, tmp_path: Path) -> None:
    _check(f"duckdb:///{tmp_path / 'events.duckdb'}", events, rtol=1e-9)


@pytest.mark.postgres
def test_postgres_rollup_matches_raw_events(events: Events, pg_url: str) -> None:
    _check(pg_url, events, rtol=1e-9)


def test_moments_agree_column_by_column(events: Events, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    write(url, events)
    columns = [
        OutcomeColumn("rev", "purchase"),
        OutcomeColumn("n", "visit", "count"),
        OutcomeColumn("any", "purchase", "any"),
        OutcomeColumn("pre", "purchase", "sum", "pre"),
    ]
    pairs = [("rev", "pre"), ("rev", "n")]
    direct, _ = unit_moments(url, "checkout", 1, columns, pairs)
    folded, _ = rollup_moments(url, "checkout", 1, columns, pairs)
    assert direct.keys() == folded.keys()
    for key, moments in direct.items():
        other = folded[key]
        assert (other.n, other.rows) == (moments.n, moments.rows)
        for name in ("rev", "n", "any", "pre"):
            assert_allclose(other.total(name), moments.total(name))
            assert_allclose(other.product(name, name), moments.product(name, name))
        for a, b in pairs:
            assert_allclose(other.product(a, b), moments.product(a, b))


def test_a_window_behind_the_watermark_is_refused(events: Events, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    write(url, events)
    columns = [OutcomeColumn("rev", "purchase")]
    refresh_rollup(url, "checkout", 1, columns)
    with pytest.raises(StoreError, match="without rollups"):
        refresh_rollup(url, "checkout", 1, columns, window=Window(end=START + DAY))
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        tables = sa.inspect(connection).get_table_names()
    engine.dispose()
    assert not [t for t in tables if t.endswith("_new")]  # scratch tables are dropped


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("backend", ["sqlite", "duckdb"])
def test_events_exactly_on_the_watermark_are_folded_once(
    events: Events, tmp_path: Path, backend: str
) -> None:
    url = f"{backend}:///{tmp_path / 'edge.db'}"
    spec = parse_experiment(CUPED_SPEC)
    write(url, events)
    register(url, spec, PHASES)
    cut = float(np.median([row["ts"] for row in events.outcomes]))
    cut = max(row["ts"] for row in events.outcomes if row["ts"] <= cut)  # an event sits on it
    analyze(url, spec, AnalysisOptions(rollups=True, until=cut))  # build up to the cut
    folded = analyze(url, spec, AnalysisOptions(rollups=True))
    direct = analyze(url, spec)
    assert_allclose(_numbers(folded), _numbers(direct), rtol=1e-9)


def _moving_units(rng: np.random.Generator, units: int = 300) -> Events:
    """Units whose later exposures carry other attributes (a user who travels, changes
    device): two or three exposures each, a day or so apart, and visits after them."""
    events = Events()
    for u in range(units):
        variant = ("control", "treatment")[u % 2]
        first = START + rng.uniform(0, DAY)
        for k in range(int(rng.integers(2, 4))):
            ts = first + k * rng.uniform(0.5, 1.0) * DAY
            attributes = {"country": str(rng.choice(["DE", "FR", "US"])),
                          "tier": int(rng.integers(0, 3))}  # fmt: skip
            events.exposures.append(
                {
                    "event_id": f"e{u}-{k}",
                    "ts": ts,
                    "experiment_key": "checkout",
                    "phase": 1,
                    "unit_id": f"u{u}",
                    "variant": variant,
                    "attributes_json": orjson.dumps(attributes).decode(),
                }
            )
            events.outcomes.append(
                {
                    "event_id": f"o{u}-{k}",
                    "ts": ts + 60,
                    "unit_id": f"u{u}",
                    "name": "purchase",
                    "value": float(rng.gamma(2.0, 10.0)),
                    "request_id": None,
                    "experiment_key": None,
                }
            )
    return events


@pytest.mark.parametrize("backend", ["sqlite", "duckdb"])
def test_a_units_breakdown_attributes_are_its_first_exposures(tmp_path: Path, backend: str) -> None:
    """Raw events took each attribute's minimum over a unit's exposures and a rollup the
    smallest attributes text, so the two disagreed (and a cell could mix two exposures). Both
    now take the unit's first exposure, as pandas does here, the rollup folded in two steps."""
    events = _moving_units(np.random.default_rng(5))
    frame = pd.DataFrame(events.exposures).sort_values(["ts", "event_id"])
    first = frame.groupby("unit_id").first()
    attributes = first["attributes_json"].map(orjson.loads)
    expected = {
        name: attributes.map(lambda a, name=name: str(a[name])) for name in ("country", "tier")
    }
    suffix = "db" if backend == "sqlite" else "duckdb"
    url = f"{backend}:///{tmp_path / f'events.{suffix}'}"
    spec = parse_experiment(SPEC)
    early, late = _split(events, START + DAY)
    write(url, early)
    register(url, spec, PHASES)
    analyze(url, spec, AnalysisOptions(rollups=True))  # a first fold of what has landed
    write(url, late)
    for name in ("country", "tier"):
        counts = expected[name].groupby([first["variant"], expected[name]]).size()
        for options in (AnalysisOptions(dimensions=(name,)),
                        AnalysisOptions(dimensions=(name,), rollups=True)):  # fmt: skip
            result = analyze(url, spec, options)
            rows = {(r.value, "control"): r.control_units for r in result.breakdowns}
            rows |= {(r.value, "treatment"): r.treatment_units for r in result.breakdowns}
            got = {key: units for key, units in rows.items() if units}
            want = {(value, variant): int(n) for (variant, value), n in counts.items()}
            assert got == want, (name, options.rollups)
