"""Group rollups folded over random event streams equal the raw-event moments, fold by fold.

Each stream has two phases (some units in both), units exposed several times, units that
switch variant within a phase (after a first fold has seen them), outcomes before and after
exposure (and of names no metric reads), zero and negative values. Events land in time order
in several batches; after every batch the rollup of each phase is folded and compared with
:func:`unit_moments` over the same rows.
"""

from __future__ import annotations

import itertools
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from analysis_support import START, Events, write
from numpy.testing import assert_allclose

from abflow.store.aggregates import (
    GroupKey,
    Moments,
    OutcomeColumn,
    Window,
    connect,
    unit_moments,
)
from abflow.store.rollups import refresh_rollup, rollup_moments

DAY = 86400.0
PHASE_TWO = START + 3 * DAY
WINDOWS = {1: Window(START, PHASE_TWO), 2: Window(PHASE_TWO, None)}
COLUMNS = [
    OutcomeColumn("revenue", "purchase"),
    OutcomeColumn("orders", "purchase", "count"),
    OutcomeColumn("converted", "purchase", "any"),
    OutcomeColumn("visits", "visit"),
    OutcomeColumn("visited", "visit", "any"),
    OutcomeColumn("revenue_pre", "purchase", "sum", "pre"),
]
PAIRS = [
    ("revenue", "revenue_pre"),
    ("revenue", "orders"),
    ("visits", "orders"),
    ("converted", "visited"),
]


def stream(rng: np.random.Generator, units: int) -> Events:
    """Two phases of exposures and outcomes; about one unit in eight switches variant."""
    ids = itertools.count()
    events = Events()
    for u in range(units):
        unit = f"u{u}"
        outcome_times = []
        for phase in (1, 2):
            if rng.random() < (0.6 if phase == 1 else 0.5):
                continue
            start = START if phase == 1 else PHASE_TWO
            first = start + rng.uniform(0, 2.5 * DAY)
            variant = "treatment" if rng.random() < 0.5 else "control"
            times = first + np.sort(rng.uniform(0, 0.3 * DAY, int(rng.integers(1, 4))))
            times[0] = first
            exposures = [(t, variant) for t in times]
            if rng.random() < 0.125:  # a later exposure to the other variant
                other = "control" if variant == "treatment" else "treatment"
                exposures.append((first + rng.uniform(0.3, 0.45) * DAY, other))
            for ts, name in exposures:
                events.exposures.append(
                    {
                        "event_id": f"e{next(ids)}",
                        "ts": float(ts),
                        "experiment_key": "checkout",
                        "phase": phase,
                        "unit_id": unit,
                        "variant": name,
                        "attributes_json": None,
                    }
                )
            outcome_times.append(first)
        anchor = outcome_times[0] if outcome_times else START + rng.uniform(0, 5 * DAY)
        for _ in range(int(rng.poisson(4))):
            ts = anchor + rng.uniform(-2 * DAY, 4 * DAY)
            name = str(rng.choice(["purchase", "visit", "other"], p=[0.45, 0.45, 0.1]))
            value = float(
                rng.choice([0.0, -5.0, 1.0, rng.gamma(2.0, 20.0)], p=[0.1, 0.05, 0.2, 0.65])
            )
            events.outcomes.append(
                {
                    "event_id": f"o{next(ids)}",
                    "ts": float(ts),
                    "unit_id": unit,
                    "name": name,
                    "value": value,
                }
            )
    return events


def batches(events: Events, cuts: list[float]) -> list[Events]:
    """The events landed between consecutive cuts, in time order."""
    out = [Events() for _ in range(len(cuts) + 1)]
    for name in ("exposures", "outcomes"):
        for row in getattr(events, name):
            index = int(np.searchsorted(cuts, row["ts"], side="left"))
            getattr(out[index], name).append(row)
    return out


def assert_same_moments(
    folded: tuple[dict[GroupKey, Moments], int], direct: tuple[dict[GroupKey, Moments], int]
) -> None:
    (got, got_mixed), (want, want_mixed) = folded, direct
    assert got_mixed == want_mixed
    assert got.keys() == want.keys()
    for key, moments in want.items():
        other = got[key]
        assert (other.n, other.rows) == (moments.n, moments.rows), key
        assert (other.first_ts, other.last_ts) == (moments.first_ts, moments.last_ts), key
        for column in COLUMNS:
            name = column.name
            assert_allclose(other.total(name), moments.total(name), rtol=1e-12, atol=1e-9)
            assert_allclose(
                other.product(name, name), moments.product(name, name), rtol=1e-12, atol=1e-9
            )
        for a, b in PAIRS:
            assert_allclose(other.product(a, b), moments.product(a, b), rtol=1e-12, atol=1e-9)


def fold_and_compare(url: str, events: Events, cuts: list[float]) -> dict[str, int]:
    """Land each batch, fold both phases, compare; returns what the stream exercised."""
    seen = {"folds": 0, "mixed": 0, "groups": 0}
    engine = connect(url)
    try:
        for batch in batches(events, cuts):
            write(url, batch)
            for phase, window in WINDOWS.items():
                folded = rollup_moments(engine, "checkout", phase, COLUMNS, PAIRS, window=window)
                direct = unit_moments(engine, "checkout", phase, COLUMNS, PAIRS, window=window)
                assert_same_moments(folded, direct)
                seen["folds"] += 1
                seen["mixed"] = max(seen["mixed"], direct[1])
                seen["groups"] = max(seen["groups"], len(direct[0]))
    finally:
        engine.dispose()
    return seen


@pytest.fixture
def events(rng: np.random.Generator) -> Events:
    return stream(rng, units=400)


@pytest.fixture
def cuts(rng: np.random.Generator, events: Events) -> list[float]:
    times = np.array([row["ts"] for row in [*events.exposures, *events.outcomes]])
    return sorted(float(t) for t in np.quantile(times, np.sort(rng.uniform(0.1, 0.95, 5))))


def _check(url: str, events: Events, cuts: list[float]) -> None:
    seen = fold_and_compare(url, events, cuts)
    assert seen["folds"] == 2 * (len(cuts) + 1)
    assert seen["mixed"] > 5  # units switched variant, some after a fold had seen them
    assert seen["groups"] >= 6  # several cohort days per variant


def test_sqlite_group_rollup_follows_a_random_stream(
    events: Events, cuts: list[float], tmp_path: Path
) -> None:
    _check(f"sqlite:///{tmp_path / 's.db'}", events, cuts)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_duckdb_group_rollup_follows_a_random_stream(
    events: Events, cuts: list[float], tmp_path: Path
) -> None:
    _check(f"duckdb:///{tmp_path / 's.duckdb'}", events, cuts)


@pytest.mark.postgres
def test_postgres_group_rollup_follows_a_random_stream(
    events: Events, cuts: list[float], pg_url: str
) -> None:
    _check(pg_url, events, cuts)


def test_phases_are_never_mixed(events: Events, tmp_path: Path) -> None:
    """A unit in both phases counts in each with that phase's exposures only."""
    url = f"sqlite:///{tmp_path / 'p.db'}"
    write(url, events)
    engine = connect(url)
    both = {r["unit_id"] for r in events.exposures if r["phase"] == 1} & {
        r["unit_id"] for r in events.exposures if r["phase"] == 2
    }
    assert both
    for phase, window in WINDOWS.items():
        moments, mixed = rollup_moments(engine, "checkout", phase, COLUMNS, PAIRS, window=window)
        exposed: dict[str, set[str]] = {}
        for row in events.exposures:
            if row["phase"] == phase:
                exposed.setdefault(row["unit_id"], set()).add(row["variant"])
        assert mixed == sum(len(v) > 1 for v in exposed.values())
        assert sum(m.n for m in moments.values()) == sum(len(v) == 1 for v in exposed.values())
    engine.dispose()


def test_a_rollup_without_group_table_is_adopted(
    events: Events, cuts: list[float], tmp_path: Path
) -> None:
    """A per-unit rollup built before group tables existed gets its groups on the next fold."""
    url = f"sqlite:///{tmp_path / 'a.db'}"
    early, late = batches(events, [cuts[2]])
    write(url, early)
    window = WINDOWS[1]
    engine = connect(url)
    name = refresh_rollup(engine, "checkout", 1, COLUMNS, window=window)
    with engine.begin() as connection:
        connection.exec_driver_sql(f"DROP TABLE {name}_g")
    write(url, late)
    folded = rollup_moments(engine, "checkout", 1, COLUMNS, PAIRS, window=window)
    direct = unit_moments(engine, "checkout", 1, COLUMNS, PAIRS, window=window)
    engine.dispose()
    assert_same_moments(folded, direct)


def test_the_stream_exercises_every_case(events: Events) -> None:
    """Guard the generator: pre- and post-exposure outcomes, zero and negative values."""
    first: dict[str, float] = {}
    for row in events.exposures:
        first[row["unit_id"]] = min(first.get(row["unit_id"], np.inf), row["ts"])
    timing: Any = [
        row["ts"] < first[row["unit_id"]] for row in events.outcomes if row["unit_id"] in first
    ]
    assert 0 < sum(timing) < len(timing)
    values = [row["value"] for row in events.outcomes]
    assert min(values) < 0
    assert 0.0 in values


@pytest.mark.postgres
def test_concurrent_folds_count_each_event_once(
    events: Events, cuts: list[float], pg_url: str
) -> None:
    """Two analyses refreshing the same rollup at once must not fold one window twice."""
    early, late = batches(events, [cuts[0]])
    write(pg_url, early)
    engine = connect(pg_url)
    try:
        refresh_rollup(engine, "checkout", 1, COLUMNS, window=WINDOWS[1])
        write(pg_url, late)
        barrier = threading.Barrier(4)

        def refresh() -> None:
            barrier.wait()
            refresh_rollup(engine, "checkout", 1, COLUMNS, window=WINDOWS[1])

        threads = [threading.Thread(target=refresh) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        folded = rollup_moments(engine, "checkout", 1, COLUMNS, PAIRS, window=WINDOWS[1])
        direct = unit_moments(engine, "checkout", 1, COLUMNS, PAIRS, window=WINDOWS[1])
    finally:
        engine.dispose()
    assert_same_moments(folded, direct)
