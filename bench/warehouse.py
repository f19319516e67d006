"""Warehouse benchmark: the analysis SQL on ClickHouse (chDB) against DuckDB, same events.

One command: ``.venv/bin/python bench/warehouse.py`` (``--events 100000000`` for the full
size; the default, 10M, fits this machine's time budget). Events are generated in chunks of
``--chunk`` rows straight to Parquet files under ``bench/.data/warehouse-<events>`` (never
all in memory; reused by later runs), one exposure per unit and nine outcomes per unit on
average (visits, purchases with revenue). Each engine then loads the same files into
abflow's ``exposures`` and ``outcomes`` tables (chDB: ``store.clickhouse.create_tables``,
ReplacingMergeTree on the event id, read with FINAL; DuckDB: plain tables, no primary-key
index) and, in the same run, times:

- raw: ``store.aggregates.unit_moments``, the SQL ``abflow analyze`` runs (per unit join of
  exposures and outcomes, then moments per variant and cohort day);
- pre-aggregation: one per-unit table built from the events (what a rollup keeps; built
  once, then refreshed), and the moments read from it with the same ``moment_select``.

Both engines must give the same moments (relative 1e-9) before any time is printed. Times are
wall-clock seconds on a shared machine: compare the ratio, not the absolute values.
"""

from __future__ import annotations

import argparse
import shutil
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from abflow.store.aggregates import (
    Moments,
    OutcomeColumn,
    collect_moments,
    connect,
    day_of,
    moment_select,
    unit_moments,
)
from abflow.store.clickhouse import create_tables
from abflow.store.schema import exposures, outcomes

START = 1_764_000_000.0
DAY = 86_400.0
COLUMNS = [
    OutcomeColumn("converted", "purchase", reduce="any"),
    OutcomeColumn("revenue", "purchase"),
    OutcomeColumn("visits", "visit", reduce="count"),
]
NAMES = [c.name for c in COLUMNS]
PRODUCTS = [("revenue", "visits")]


def generate(folder: Path, events: int, chunk: int, seed: int) -> None:
    """Parquet files of exposures and outcomes, ``chunk`` units' events at a time."""
    done = folder / "done"
    if done.exists():
        return
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "exposures").mkdir(parents=True)
    (folder / "outcomes").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    units = events // 10
    per_chunk = max(1, chunk // 10)
    for part, first in enumerate(range(0, units, per_chunk)):
        n = min(per_chunk, units - first)
        ids = np.arange(first, first + n)
        unit_ids = np.char.add("u", ids.astype(str))
        treated = rng.random(n) < 0.5
        first_ts = START + rng.uniform(0, 14 * DAY, n)
        exposure = pa.table(
            {
                "event_id": np.char.add("e", ids.astype(str)),
                "ts": first_ts,
                "experiment_key": np.full(n, "bench"),
                "phase": np.ones(n, dtype=np.int64),
                "unit_id": unit_ids,
                "variant": np.where(treated, "treatment", "control"),
                "attributes_json": pa.nulls(n, pa.string()),
            }
        )
        pq.write_table(exposure, folder / "exposures" / f"{part:05d}.parquet")
        counts = rng.poisson(9.0, n)
        owner = np.repeat(np.arange(n), counts)
        m = owner.size
        is_purchase = rng.random(m) < np.where(treated[owner], 0.11, 0.10)
        value = np.where(is_purchase, np.round(rng.gamma(2.0, 20.0, m), 2), 1.0)
        offset = rng.uniform(-DAY, 7 * DAY, m)  # some before exposure: not counted
        outcome = pa.table(
            {
                "event_id": np.char.add(f"o{part}_", np.arange(m).astype(str)),
                "ts": first_ts[owner] + offset,
                "unit_id": unit_ids[owner],
                "name": np.where(is_purchase, "purchase", "visit"),
                "value": value,
                "request_id": pa.nulls(m, pa.string()),
                "experiment_key": pa.nulls(m, pa.string()),
            }
        )
        pq.write_table(outcome, folder / "outcomes" / f"{part:05d}.parquet")
    done.write_text(str(events))


def _load_duckdb(url: str, folder: Path) -> sa.Engine:
    engine = connect(url)
    with engine.begin() as c:
        for table in ("exposures", "outcomes"):
            c.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
            c.exec_driver_sql(
                f"CREATE TABLE {table} AS SELECT * FROM read_parquet('{folder / table}/*.parquet')"
            )
    return engine


def _load_chdb(url: str, folder: Path) -> sa.Engine:
    engine = connect(url)
    with engine.begin() as c:
        for table in ("exposures", "outcomes"):
            c.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
    create_tables(engine, [exposures, outcomes])
    with engine.begin() as c:
        for table in ("exposures", "outcomes"):
            c.exec_driver_sql(
                f"INSERT INTO {table} SELECT * FROM file('{folder / table}/*.parquet', Parquet)"
            )
    return engine


def _per_unit_select() -> sa.Select[Any]:
    """Per-unit values as unit_moments computes them (post-exposure outcomes only)."""
    e, o = exposures, outcomes
    units = (
        sa.select(
            e.c.unit_id,
            sa.func.min(e.c.variant).label("variant"),
            sa.func.max(e.c.variant).label("variant_max"),
            sa.func.min(e.c.ts).label("first_ts"),
            sa.func.count().label("n_exposures"),
        )
        .where(e.c.experiment_key == "bench", e.c.phase == 1)
        .group_by(e.c.unit_id)
        .subquery("units")
    )
    after = o.c.ts >= units.c.first_ts
    purchase = sa.and_(o.c.name == "purchase", after)
    visit = sa.and_(o.c.name == "visit", after)
    joined = units.outerjoin(
        o, sa.and_(o.c.unit_id == units.c.unit_id, o.c.name.in_(["purchase", "visit"]))
    )
    return (
        sa.select(
            units.c.unit_id,
            units.c.variant,
            units.c.first_ts,
            (sa.func.min(units.c.n_exposures) + sa.func.count(o.c.event_id)).label("rows"),
            sa.case((units.c.variant != units.c.variant_max, 1), else_=0).label("mixed"),
            sa.func.max(sa.case((sa.and_(purchase, o.c.value > 0), 1), else_=0)).label("converted"),
            sa.func.coalesce(sa.func.sum(sa.case((purchase, o.c.value), else_=0.0)), 0.0).label(
                "revenue"
            ),
            sa.func.sum(sa.case((visit, 1), else_=0)).label("visits"),
        )
        .select_from(joined)
        .group_by(units.c.unit_id, units.c.variant, units.c.variant_max, units.c.first_ts)
    )


def _build_per_unit(engine: sa.Engine) -> None:
    select = _per_unit_select().compile(engine, compile_kwargs={"literal_binds": True})
    storage = (
        " ENGINE = MergeTree ORDER BY tuple()" if engine.dialect.name == "clickhousedb" else ""
    )
    with engine.begin() as c:
        c.exec_driver_sql("DROP TABLE IF EXISTS per_unit")
        c.exec_driver_sql(f"CREATE TABLE per_unit{storage} AS {select}")


def _pre_aggregated(engine: sa.Engine) -> dict[Any, Moments]:
    table = sa.table(
        "per_unit",
        *(sa.column(n) for n in ("unit_id", "variant", "first_ts", "rows", "mixed", *NAMES)),
    )
    per_unit = sa.select(table).subquery("per_unit")
    query = moment_select(per_unit, NAMES, PRODUCTS, day_of(per_unit.c.first_ts))
    return collect_moments(engine, query, NAMES, PRODUCTS)[0]


def _raw(url: str) -> dict[Any, Moments]:
    return unit_moments(url, "bench", 1, COLUMNS, PRODUCTS)[0]


def _flat(moments: dict[Any, Moments]) -> list[float]:
    out: list[float] = []
    for key in sorted(moments, key=str):
        m = moments[key]
        out += [m.n, *(m.total(n) for n in NAMES), *(m.product(n, n) for n in NAMES)]
        out += [m.product(a, b) for a, b in PRODUCTS]
    return out


T = TypeVar("T")


def _timed(fn: Callable[[], T]) -> tuple[T, float]:
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--chunk", type=int, default=5_000_000)
    parser.add_argument("--data", type=Path, default=Path(__file__).parent / ".data")
    args = parser.parse_args()
    console = Console()
    folder = args.data / f"warehouse-{args.events}"
    _, gen_s = _timed(lambda: generate(folder, args.events, args.chunk, seed=17))
    console.print(f"events on disk: {folder} ({gen_s:.1f} s to generate)")
    engines: dict[str, tuple[str, Callable[[str, Path], sa.Engine]]] = {
        "ClickHouse (chDB)": (f"chdb:///{folder / 'store.chdb'}", _load_chdb),
        "DuckDB": (f"duckdb:///{folder / 'store.duckdb'}", _load_duckdb),
    }
    rows: dict[str, dict[str, float]] = {}
    answers: dict[str, list[list[float]]] = {}
    for name, (url, load) in engines.items():
        engine, load_s = _timed(partial(load, url, folder))
        raw, raw_s = _timed(partial(_raw, url))
        _, build_s = _timed(partial(_build_per_unit, engine))
        pre, pre_s = _timed(partial(_pre_aggregated, engine))
        answers[name] = [_flat(raw), _flat(pre)]
        rows[name] = {"load": load_s, "raw": raw_s, "build": build_s, "pre": pre_s}
        console.print(f"{name}: done")
        engine.dispose()
    reference = answers["DuckDB"][0]
    for name, (raw_values, pre_values) in answers.items():
        np.testing.assert_allclose(raw_values, reference, rtol=1e-9, err_msg=name)
        np.testing.assert_allclose(pre_values, reference, rtol=1e-9, err_msg=name)
    table = Table(title=f"{args.events:,} events: analysis SQL, seconds (same answers to 1e-9)")
    for heading in ("step", *engines, "chDB / DuckDB"):
        table.add_column(heading, justify="right")
    labels = {
        "load": "load from Parquet",
        "raw": "analysis on raw events",
        "build": "build per-unit pre-aggregate",
        "pre": "analysis on pre-aggregate",
    }
    ch, duck = rows["ClickHouse (chDB)"], rows["DuckDB"]
    for key, label in labels.items():
        table.add_row(label, f"{ch[key]:.2f}", f"{duck[key]:.2f}", f"{ch[key] / duck[key]:.2f}")
    console.print(table)


if __name__ == "__main__":
    main()
