"""Idempotent batched writes: every event id is stored once, whatever is re-sent, by whom."""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from abflow.errors import StoreError, StoreUnavailableError
from abflow.store import EventStore
from abflow.store.schema import exposures, metadata, outcomes, predictions
from abflow.store.writer import (
    DIRECT_COPY_BACKOFF_BATCHES,
    WriteState,
    layout_for,
    rows_to_tuples,
    write_batch,
)


def exposure_rows(rng: np.random.Generator, ids: np.ndarray) -> list[dict[str, Any]]:
    """Exposure events with the given integer ids and random contents."""
    return [
        {
            "event_id": f"ev-{int(i):08d}",
            "ts": float(1.7e9 + rng.uniform(0, 86400)),
            "experiment_key": "checkout",
            "phase": int(rng.integers(1, 3)),
            "unit_id": f"user-{int(rng.integers(0, 10**6))}",
            "variant": str(rng.choice(["control", "treatment"])),
            "attributes_json": None if i % 3 else '{"country":"FR"}',
        }
        for i in ids
    ]


def stored(store: EventStore, table: sa.Table) -> dict[str, dict[str, Any]]:
    with store.engine.connect() as connection:
        rows = connection.execute(sa.select(table)).mappings().all()
    return {row["event_id"]: dict(row) for row in rows}


def test_same_batch_twice_stores_it_once(store: EventStore, rng: np.random.Generator) -> None:
    rows = exposure_rows(rng, np.arange(500))
    assert store.write_events("exposure", rows) == 500
    assert store.write_events("exposure", rows) == 0
    assert store.count_events("exposure") == 500


def test_values_round_trip(store: EventStore, rng: np.random.Generator) -> None:
    rows = exposure_rows(rng, np.arange(50))
    store.write_events("exposure", rows)
    assert stored(store, exposures) == {row["event_id"]: row for row in rows}


def test_overlapping_batches_count_only_new_ids(
    store: EventStore, rng: np.random.Generator
) -> None:
    seen: set[int] = set()
    for _ in range(6):
        ids = rng.choice(2000, size=400, replace=False)
        expected_new = len(set(ids.tolist()) - seen)
        seen |= set(ids.tolist())
        assert store.write_events("exposure", exposure_rows(rng, ids)) == expected_new
    assert store.count_events("exposure") == len(seen)


def test_repeats_inside_one_batch_are_stored_once(
    store: EventStore, rng: np.random.Generator
) -> None:
    ids = rng.integers(0, 300, size=1000)
    assert store.write_events("exposure", exposure_rows(rng, ids)) == len(set(ids.tolist()))


def test_first_copy_of_an_event_wins(store: EventStore, rng: np.random.Generator) -> None:
    first = exposure_rows(rng, np.arange(10))
    store.write_events("exposure", first)
    resent = [{**row, "variant": "changed"} for row in first]
    assert store.write_events("exposure", resent) == 0
    assert {row["variant"] for row in stored(store, exposures).values()} <= {
        "control",
        "treatment",
    }


def test_optional_columns_take_their_defaults(store: EventStore) -> None:
    row = {
        "event_id": "p-1",
        "ts": 1.7e9,
        "request_id": "r-1",
        "experiment_key": "checkout",
        "phase": 1,
        "unit_id": "u-1",
        "variant": "control",
        "model_version": "models:/fraud/3",
        "latency_ms": 12.5,
    }
    assert store.write_events("prediction", [row]) == 1
    got = stored(store, predictions)["p-1"]
    assert got["is_fallback"] is False
    assert got["is_shadow"] is False
    assert got["score"] is None
    assert got["latency_ms"] == 12.5


def test_outcomes_with_integer_values(store: EventStore) -> None:
    rows = [
        {
            "event_id": f"o-{i}",
            "ts": 1_700_000_000 + i,
            "unit_id": f"u-{i}",
            "name": "buy",
            "value": i,
        }
        for i in range(5)
    ]
    assert store.write_events("outcome", rows) == 5
    values = {key: row["value"] for key, row in stored(store, outcomes).items()}
    assert values == {f"o-{i}": float(i) for i in range(5)}


def test_missing_required_column_is_named_and_nothing_is_written(
    store: EventStore, rng: np.random.Generator
) -> None:
    rows = exposure_rows(rng, np.arange(5))
    del rows[3]["unit_id"]
    with pytest.raises(StoreError, match=r"exposure event 3 lacks required column 'unit_id'"):
        store.write_events("exposure", rows)
    assert store.count_events("exposure") == 0


def test_null_in_required_column_is_rejected(store: EventStore, rng: np.random.Generator) -> None:
    rows = exposure_rows(rng, np.arange(3))
    rows[1]["variant"] = None
    with pytest.raises(StoreError, match=r"event 1 has no value for required column 'variant'"):
        store.write_events("exposure", rows)
    assert store.count_events("exposure") == 0


@pytest.mark.parametrize("column", ["event_id", "ts", "experiment_key", "unit_id"])
def test_null_is_named_even_past_the_shape_check(
    store: EventStore, rng: np.random.Generator, column: str
) -> None:
    """Tuples straight to write_batch: the database refuses the NULL, the error names it.

    (An ``INSERT OR IGNORE`` on SQLite would drop such a row and report one event fewer.)
    """
    layout = layout_for("exposure")
    values = rows_to_tuples(layout, exposure_rows(rng, np.arange(600)))
    position = layout.columns.index(column)
    values[417] = (*values[417][:position], None, *values[417][position + 1 :])
    pattern = rf"exposure event 417 has no value for required column '{column}'"
    with pytest.raises(StoreError, match=pattern):
        write_batch(store.engine, layout, values, WriteState())
    assert store.count_events("exposure") == 0
    values[417] = rows_to_tuples(layout, exposure_rows(rng, np.array([417])))[0]
    assert write_batch(store.engine, layout, values, WriteState()) == 600


def test_null_in_a_replayed_batch_is_named(store: EventStore, rng: np.random.Generator) -> None:
    """On PostgreSQL a batch with a repeat takes the staging path: NOT NULL is checked there."""
    rows = exposure_rows(rng, np.arange(100))
    assert store.write_events("exposure", rows[:50]) == 50
    rows[70]["unit_id"] = None
    with pytest.raises(StoreError, match=r"event 70 has no value for required column 'unit_id'"):
        store.write_events("exposure", rows)
    assert store.count_events("exposure") == 50


def test_unknown_column_and_kind_are_rejected(store: EventStore, rng: np.random.Generator) -> None:
    rows = exposure_rows(rng, np.arange(2))
    rows[0]["varaint"] = "typo"
    with pytest.raises(StoreError, match="unknown column 'varaint'"):
        store.write_events("exposure", rows)
    with pytest.raises(StoreError, match="unknown event kind 'click'"):
        store.write_events("click", rows)  # type: ignore[arg-type]


def test_empty_batch_writes_nothing(store: EventStore) -> None:
    assert store.write_events("outcome", []) == 0


def test_a_failing_batch_is_rolled_back_whole(store: EventStore, rng: np.random.Generator) -> None:
    """PostgreSQL's typed columns refuse the batch; SQLite, which would store any value in
    any column, refuses the same batches before writing, naming the row and column."""
    sqlite = store.dialect == "sqlite"
    rows = exposure_rows(rng, np.arange(20))
    rows[-1]["event_id"] = "x" * 65  # longer than the column allows
    too_long = "exposure event 19: column 'event_id' holds 65 characters, at most 64"
    with pytest.raises(StoreError, match=too_long if sqlite else "cannot write events"):
        store.write_events("exposure", rows)
    rows[-1]["event_id"] = "ev-long-but-fits"
    rows[-1]["ts"] = "not a number"
    wrong_type = "column 'ts' holds 'not a number' \\(text\\), expected a number"
    with pytest.raises(StoreError, match=wrong_type if sqlite else "does not fit its column"):
        store.write_events("exposure", rows)
    assert store.count_events("exposure") == 0
    rows[-1] = exposure_rows(rng, np.array([99]))[0]
    assert store.write_events("exposure", rows) == 20  # the connection is still usable


@pytest.mark.parametrize(
    ("column", "value", "problem"),
    [
        ("value", "abc", "column 'value' holds 'abc' (text), expected a number"),
        ("ts", "yesterday", "column 'ts' holds 'yesterday' (text), expected a number"),
        ("unit_id", "u" * 257, "column 'unit_id' holds 257 characters, at most 256"),
        ("value", math.nan, "column 'value' holds NaN, not a number the store keeps"),
    ],
)
def test_sqlite_refuses_what_a_typed_column_would(
    tmp_path: Path, column: str, value: object, problem: str
) -> None:
    """A row from Kafka with text in a number column was stored on SQLite (and read as 0)
    where PostgreSQL dead-letters it: SQLite now refuses it, naming the row and column.
    (SQLite's column affinity still turns 42 into the text '42' and true into 1.)"""
    with EventStore.open(f"sqlite:///{tmp_path / 'typed.db'}") as sqlite_store:
        good = {"event_id": "o1", "ts": 1.0, "unit_id": "u1", "name": "buy", "value": 2.0}
        bad = {**good, "event_id": "o2", column: value}
        with pytest.raises(StoreError) as refused:
            sqlite_store.write_events("outcome", [good, bad])
        assert str(refused.value) == f"outcome event 1: {problem}"
        assert sqlite_store.count_events("outcome") == 0
        numpy_floats = {**good, "value": np.float64(2.5), "ts": 3}  # float subclass, an int
        assert sqlite_store.write_events("outcome", [good, numpy_floats | {"event_id": "o3"}]) == 2


def test_concurrent_writers_and_readers(store: EventStore, rng: np.random.Generator) -> None:
    """Four threads send overlapping batches while one reads: each id is counted new once."""
    batches = [[rng.choice(3000, size=250, replace=False) for _ in range(8)] for _ in range(4)]
    payloads = [[exposure_rows(rng, ids) for ids in thread] for thread in batches]
    new_counts: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    stop = threading.Event()

    def write(thread_batches: list[list[dict[str, Any]]]) -> None:
        try:
            for rows in thread_batches:
                count = store.write_events("exposure", rows)
                with lock:
                    new_counts.append(count)
        except BaseException as exc:  # surfaced below, with the thread's traceback
            errors.append(exc)

    def read() -> None:
        try:
            while not stop.is_set():
                store.count_events("exposure")
        except BaseException as exc:
            errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=write, args=(p,)) for p in payloads]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    reader.join()
    assert errors == []
    distinct = {int(i) for thread in batches for ids in thread for i in ids}
    assert sum(new_counts) == len(distinct)
    assert store.count_events("exposure") == len(distinct)


def test_replays_after_fresh_batches(store: EventStore, rng: np.random.Generator) -> None:
    """Fresh batches, then a replay of old ones mixed with new: counts stay exact throughout.

    On PostgreSQL this walks the optimistic direct copy, its fallback on a duplicate, and the
    back-off after it; the count of new events must not depend on which path a batch took.
    """
    state = WriteState()
    layout = layout_for("exposure")
    fresh = [exposure_rows(rng, np.arange(k * 100, (k + 1) * 100)) for k in range(3)]
    for rows in fresh:
        assert write_batch(store.engine, layout, rows_to_tuples(layout, rows), state) == 100
    assert state.skip_direct_batches == 0
    replay = fresh[1][50:] + exposure_rows(rng, np.arange(1000, 1030))
    assert write_batch(store.engine, layout, rows_to_tuples(layout, replay), state) == 30
    expected_skip = DIRECT_COPY_BACKOFF_BATCHES if store.dialect == "postgresql" else 0
    assert state.skip_direct_batches == expected_skip
    more = exposure_rows(rng, np.arange(2000, 2040))
    assert write_batch(store.engine, layout, rows_to_tuples(layout, more), state) == 40
    assert store.count_events("exposure") == 370


def test_a_value_the_driver_cannot_bind_fails_the_whole_batch(
    store: EventStore, rng: np.random.Generator
) -> None:
    """The driver-level write turns a binding error into StoreError and writes nothing."""
    rows = exposure_rows(rng, np.arange(10))
    rows[7]["attributes_json"] = {"country": "FR"}  # a dict, not its JSON text
    with pytest.raises(StoreError, match="cannot write events"):
        store.write_events("exposure", rows)
    assert store.count_events("exposure") == 0
    rows[7]["attributes_json"] = '{"country":"FR"}'
    assert store.write_events("exposure", rows) == 10  # the connection is still usable
    assert stored(store, exposures)["ev-00000007"]["attributes_json"] == '{"country":"FR"}'


def test_gateway_shaped_ids_resent_in_a_mixed_batch(
    store: EventStore, rng: np.random.Generator
) -> None:
    """Ids in the gateway's shape (fixed prefix, counter): a replay mixed with new ids."""
    prefix = "9f3a5c7e1b2d4f60"
    rows = exposure_rows(rng, np.arange(600))
    for i, row in enumerate(rows):
        row["event_id"] = f"{prefix}{i:016x}"
    assert store.write_events("exposure", rows[:400]) == 400
    order = rng.permutation(300)  # ids 300..599: 100 repeats, 200 new, shuffled
    assert store.write_events("exposure", [rows[300 + int(k)] for k in order]) == 200
    kept = stored(store, exposures)
    assert sorted(kept) == sorted(row["event_id"] for row in rows)
    assert all(kept[row["event_id"]]["unit_id"] == row["unit_id"] for row in rows)


def test_a_locked_sqlite_store_stays_retryable_whatever_the_batch_holds(tmp_path: Path) -> None:
    """A batch refused because another writer holds the lock is StoreUnavailableError (the
    loader retries it), not a misfit: an integer unit id, which SQLite stores as text, was
    named as a bad value and its rows went to the dead-letter topic."""
    import sqlite3

    path = tmp_path / "locked.db"
    engine = sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.2})
    metadata.create_all(engine)
    layout = layout_for("outcome")
    row = {"event_id": "o1", "ts": 1.0, "unit_id": 777, "name": "buy", "value": 1.0}
    blocker = sqlite3.connect(path)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreUnavailableError):
            write_batch(engine, layout, rows_to_tuples(layout, [row]))
    finally:
        blocker.rollback()
        blocker.close()
    assert write_batch(engine, layout, rows_to_tuples(layout, [row])) == 1
    engine.dispose()
