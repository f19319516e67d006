"""Analysis benchmark: 10M events in SQLite, PostgreSQL and DuckDB, against pandas + scipy.

One command: ``.venv/bin/python bench/analysis.py`` (``--rows 1000000`` for a quick run,
``--backends sqlite duckdb`` to skip one). Data is generated once per size with a fixed seed
and cached under ``bench/.data`` (PostgreSQL: schema ``abflow_bench_analysis_v2_<rows>``);
later runs reuse it. Rows are inserted in time order, as events land. For each backend it
times, in the same process and on the same rows:

- abflow, raw events: ``analyze`` aggregating exposures and outcomes in SQL;
- abflow, rollups: building the rollups (per unit, and per variant and day) up to the 99th
  percentile of time, then the steady state: folding the last 1 % of events and analysing
  (what a refresh costs), and analysing again with the rollup current (reads group rows);
- the baseline: export the rows to pandas (``read_sql``), per-unit values with groupby,
  the same five metrics with scipy (Welch t, delta method, CUPED), fixed horizon.

The experiment: 5 metrics x 2 variants (conversion, revenue with CUPED, order value (mean),
purchases per visit (ratio), visit rate), sequential analysis. Numbers are wall-clock seconds
on whatever else the machine is doing: compare ratios, not absolute values.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table
from scipy import stats

from abflow.analysis import AnalysisOptions, analyze
from abflow.analysis.metrics import plan_metric
from abflow.spec import parse_experiment
from abflow.store import EventStore
from abflow.store.rollups import drop_rollup
from abflow.store.schema import (
    experiment_versions,
    exposures,
    metadata,
    outcomes,
    phases,
    predictions,
)

DATA = Path(__file__).parent / ".data"
START = 1_764_000_000.0
DAY = 86400.0
KEY = "bench-analysis"
SEED = 20261126
PG_SCHEMA = "abflow_bench_analysis"
DATA_VERSION = "v2"  # v2: rows inserted in time order
TARGETS = {"sqlite": 5.0, "postgres": 3.0, "duckdb": 1.0}
SPEC = parse_experiment(
    {
        "key": KEY,
        "variants": [
            {"name": "control", "model": "models:/m@champion"},
            {"name": "treatment", "model": "models:/m@challenger"},
        ],
        "metrics": [
            {"name": "converted", "kind": "conversion", "event": "purchase", "role": "primary"},
            {"name": "revenue", "kind": "sum", "event": "purchase"},
            {"name": "order_value", "kind": "mean", "event": "purchase"},
            {"name": "per_visit", "kind": "ratio", "numerator": "purchase", "denominator": "visit"},
            {"name": "visit_rate", "kind": "conversion", "event": "visit"},
        ],
        "analysis": {"cuped": True, "method": "sequential", "correction": "holm"},
    }
)


def generate(rows: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """60 % exposures (4 per unit), 40 % outcomes (visits, purchases, pre-period purchases)."""
    rng = np.random.default_rng(SEED)
    n_exposures = int(rows * 0.6) // 4 * 4
    units = n_exposures // 4
    first = START + rng.uniform(0, 14 * DAY, units)
    unit_of = np.repeat(np.arange(units), 4)
    unit_ids = np.char.add("u", np.arange(units).astype(str))
    variant = np.where(unit_of % 2 == 0, "control", "treatment")
    exp = pd.DataFrame(
        {
            "event_id": np.char.add("e", np.arange(n_exposures).astype(str)),
            "ts": first[unit_of] + np.tile(np.arange(4) * 3600.0, units),
            "experiment_key": KEY,
            "phase": 1,
            "unit_id": unit_ids[unit_of],
            "variant": variant,
            "attributes_json": None,
        }
    )
    n_outcomes = rows - n_exposures
    kinds = rng.choice(3, size=n_outcomes, p=[0.6, 0.3, 0.1])  # visit, purchase, pre-purchase
    who = rng.integers(0, units, n_outcomes)
    lift = np.where(who % 2 == 1, 1.05, 1.0)
    offset = np.where(
        kinds == 2, -rng.uniform(60, 7 * DAY, n_outcomes), rng.uniform(60, 7 * DAY, n_outcomes)
    )
    value = np.where(kinds == 0, 1.0, rng.gamma(2.0, 20.0, n_outcomes) * lift)
    out = pd.DataFrame(
        {
            "event_id": np.char.add("o", np.arange(n_outcomes).astype(str)),
            "ts": first[who] + offset,
            "unit_id": unit_ids[who],
            "name": np.where(kinds == 0, "visit", "purchase"),
            "value": value,
            "request_id": None,
            "experiment_key": KEY,
        }
    )
    # rows land in time order, as the gateway logs them (and as the rollup's watermark assumes)
    exp = exp.sort_values("ts", kind="stable", ignore_index=True)
    out = out.sort_values("ts", kind="stable", ignore_index=True)
    return exp, out


def _register(url: str, upgrade: bool | None = None) -> None:
    store = EventStore.open(url, upgrade=upgrade, clock=lambda: START)
    try:
        store.register_experiment(SPEC)
    finally:
        store.close()


def prepare_sqlite(rows: int) -> str:
    path = DATA / f"analysis-{DATA_VERSION}-{rows}.db"
    url = f"sqlite:///{path}"
    if path.exists() and (DATA / f"analysis-{DATA_VERSION}-{rows}.db.ok").exists():
        return url
    path.unlink(missing_ok=True)
    exp, out = generate(rows)
    _register(url)
    import sqlite3

    connection = sqlite3.connect(path)
    for table, frame in (("exposures", exp), ("outcomes", out)):
        marks = ",".join("?" * len(frame.columns))
        connection.executemany(
            f"INSERT INTO {table} ({','.join(frame.columns)}) VALUES ({marks})",
            frame.itertuples(index=False, name=None),
        )
        connection.commit()
    connection.close()
    (DATA / f"analysis-{DATA_VERSION}-{rows}.db.ok").touch()
    return url


def prepare_duckdb(rows: int) -> str:
    import duckdb

    path = DATA / f"analysis-{DATA_VERSION}-{rows}.duckdb"
    url = f"duckdb:///{path}"
    if path.exists() and (DATA / f"analysis-{DATA_VERSION}-{rows}.duckdb.ok").exists():
        return url
    path.unlink(missing_ok=True)
    exp, out = generate(rows)
    engine = sa.create_engine(url)
    metadata.create_all(
        engine, tables=[experiment_versions, phases, exposures, outcomes, predictions]
    )
    engine.dispose()
    sqlite_url = prepare_sqlite(rows)  # copy the registered spec and phase from SQLite
    source = sa.create_engine(sqlite_url)
    with source.connect() as connection:
        versions = [dict(r._mapping) for r in connection.execute(sa.select(experiment_versions))]
        phase_rows = [dict(r._mapping) for r in connection.execute(sa.select(phases))]
    source.dispose()
    duck = duckdb.connect(str(path))
    duck.register("exp_frame", exp)
    duck.register("out_frame", out)
    duck.execute(f"INSERT INTO exposures ({','.join(exp.columns)}) SELECT * FROM exp_frame")
    duck.execute(f"INSERT INTO outcomes ({','.join(out.columns)}) SELECT * FROM out_frame")
    duck.close()
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(experiment_versions.insert(), versions)
        connection.execute(phases.insert(), phase_rows)
    engine.dispose()
    (DATA / f"analysis-{DATA_VERSION}-{rows}.duckdb.ok").touch()
    return url


def prepare_postgres(rows: int) -> str:
    base = os.environ.get(
        "ABFLOW_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    schema = (
        f"{PG_SCHEMA}_{DATA_VERSION}_{rows}"  # one schema per size: a quick run keeps the big data
    )
    url = f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {schema}"))
        marker = connection.execute(
            sa.text("SELECT obj_description(oid) FROM pg_namespace WHERE nspname = :name"),
            {"name": schema},
        ).scalar()
    if marker == f"rows={rows}":
        admin.dispose()
        return url
    with admin.connect() as connection:
        connection.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        connection.execute(sa.text(f"CREATE SCHEMA {schema}"))
    exp, out = generate(rows)
    _register(url, upgrade=True)
    engine = sa.create_engine(url)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        for table, frame in (("exposures", exp), ("outcomes", out)):
            with cursor.copy(f"COPY {table} ({','.join(frame.columns)}) FROM STDIN") as copy:
                for row in frame.itertuples(index=False, name=None):
                    copy.write_row(row)
        raw.commit()
        cursor.execute(f"ANALYZE {schema}.exposures")
        cursor.execute(f"ANALYZE {schema}.outcomes")
        raw.commit()
    finally:
        raw.close()
        engine.dispose()
    with admin.connect() as connection:
        connection.execute(sa.text(f"COMMENT ON SCHEMA {schema} IS 'rows={rows}'"))
    admin.dispose()
    return url


# --- the baseline ----------------------------------------------------------------------------


def _welch(c: np.ndarray, t: np.ndarray) -> tuple[float, float]:
    result = stats.ttest_ind(t, c, equal_var=False)
    return float(t.mean() - c.mean()), float(result.pvalue)


def _ratio(m: np.ndarray, d: np.ndarray) -> tuple[float, float]:
    ratio = m.sum() / d.sum()
    cov = np.cov(m, d)
    return ratio, (
        cov[0, 0] - 2 * ratio * cov[0, 1] + ratio**2 * cov[1, 1]
    ) / d.mean() ** 2 / m.size


def baseline(url: str) -> tuple[float, float, dict[tuple[str, int], float]]:
    """Export raw rows with pandas, then compute the five metrics naively. Returns timings."""
    began = time.perf_counter()
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        exp = pd.read_sql_query(
            sa.select(exposures.c.unit_id, exposures.c.variant, exposures.c.ts).where(
                exposures.c.experiment_key == KEY, exposures.c.phase == 1
            ),
            connection,
        )
        out = pd.read_sql_query(
            sa.select(outcomes.c.unit_id, outcomes.c.name, outcomes.c.ts, outcomes.c.value),
            connection,
        )
    engine.dispose()
    exported = time.perf_counter()
    units = exp.groupby("unit_id").agg(variant=("variant", "min"), first_ts=("ts", "min"))
    joined = out.join(units, on="unit_id", how="inner")
    post = joined[joined["ts"] >= joined["first_ts"]]
    pre = joined[(joined["ts"] < joined["first_ts"]) & (joined["name"] == "purchase")]
    sums = post.pivot_table(index="unit_id", columns="name", values="value", aggfunc="sum")
    counts = post[post["name"] == "purchase"].groupby("unit_id")["value"].count()
    frame = units.join(sums).fillna(0.0)
    frame["n_purchase"] = counts.reindex(frame.index).fillna(0.0)
    frame["pre"] = pre.groupby("unit_id")["value"].sum().reindex(frame.index).fillna(0.0)
    values: dict[tuple[str, int], float] = {}
    arms = [frame[frame["variant"] == v] for v in ("control", "treatment")]
    for name, column in (("converted", "purchase"), ("visit_rate", "visit")):
        c, t = ((a[column] > 0).to_numpy(float) for a in arms)
        values[(name, 0)], values[(name, 1)] = c.mean(), t.mean()
        _welch(c, t)
    theta = np.cov(frame["purchase"], frame["pre"])[0, 1] / frame["pre"].var()
    adjusted = [a["purchase"] - theta * (a["pre"] - frame["pre"].mean()) for a in arms]
    _welch(adjusted[0].to_numpy(), adjusted[1].to_numpy())
    values[("revenue", 0)], values[("revenue", 1)] = (a["purchase"].mean() for a in arms)
    ratios = (("order_value", ("purchase", "n_purchase")), ("per_visit", ("purchase", "visit")))
    for name, (top, bottom) in ratios:
        (rc, vc), (rt, vt) = (_ratio(a[top].to_numpy(), a[bottom].to_numpy()) for a in arms)
        values[(name, 0)], values[(name, 1)] = rc, rt
        stats.norm.sf(abs(rt - rc) / np.sqrt(vc + vt))
    done = time.perf_counter()
    return exported - began, done - exported, values


# --- the run -----------------------------------------------------------------------------


def _time_quantile(url: str, q: float) -> float:
    """The ``ts`` below which a share ``q`` of all exposures and outcomes lie."""
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        times = np.concatenate(
            [
                np.asarray(connection.execute(sa.select(table.c.ts)).scalars().all())
                for table in (exposures, outcomes)
            ]
        )
    engine.dispose()
    return float(np.quantile(times, q))


def _timed(function: Any, *args: Any, **kwargs: Any) -> tuple[float, Any]:
    began = time.perf_counter()
    result = function(*args, **kwargs)
    seconds = time.perf_counter() - began
    print(f"  {getattr(function, '__name__', 'step')}: {seconds:.2f} s", flush=True)
    return seconds, result


def run(backend: str, rows: int) -> dict[str, Any]:
    prepare = {"sqlite": prepare_sqlite, "duckdb": prepare_duckdb, "postgres": prepare_postgres}
    load_seconds, url = _timed(prepare[backend], rows)
    direct_seconds, direct = _timed(analyze, url, KEY, AnalysisOptions(timeline=True))
    columns = {}
    for metric in SPEC.metrics:
        for column in plan_metric(metric, SPEC).columns:
            columns[column.name] = column
    drop_rollup(url, KEY, 1, list(columns.values()))
    t99 = _time_quantile(url, 0.99)  # the last 1 % of events land after the build
    build_seconds, _ = _timed(analyze, url, KEY, AnalysisOptions(rollups=True, until=t99))
    fold_seconds, folded = _timed(analyze, url, KEY, AnalysisOptions(rollups=True))
    warm_seconds, _ = _timed(analyze, url, KEY, AnalysisOptions(rollups=True))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    export_seconds, compute_seconds, reference = baseline(url)
    print(f"  pandas: export {export_seconds:.2f} s, compute {compute_seconds:.2f} s", flush=True)
    agreement = max(
        abs(folded.metric(name).values[arm].value - value) / max(abs(value), 1e-12)
        for (name, arm), value in reference.items()
    )
    same = max(
        abs(a.effect - b.effect) / max(abs(b.effect), 1e-12)
        for ma, mb in zip(folded.metrics, direct.metrics, strict=True)
        for a, b in zip(ma.comparisons, mb.comparisons, strict=True)
    )
    return {
        "backend": backend,
        "rows": direct.provenance.rows["unit_event_rows"],
        "load": load_seconds,
        "direct": direct_seconds,
        "build": build_seconds,
        "fold": fold_seconds,
        "warm": warm_seconds,
        "export": export_seconds,
        "compute": compute_seconds,
        "peak_mb": peak_mb,
        "agreement": agreement,
        "same": same,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgres", "duckdb"])
    args = parser.parse_args()
    DATA.mkdir(exist_ok=True)
    console = Console(width=170)
    results = []
    for backend in args.backends:
        console.print(
            f"[bold]{backend}[/]: preparing {args.rows:,} rows (cached after the first run)…"
        )
        results.append(run(backend, args.rows))
    table = Table(
        title=f"Analysis of 5 metrics x 2 variants (CUPED, sequential), {args.rows:,} event rows"
    )
    for column in (
        "backend", "abflow raw SQL", "rollup build", "fold 1% + analyse", "analyse (current)",
        "pandas export", "pandas compute", "pandas total", "speed-up", "target", "peak RSS",
    ):  # fmt: skip
        table.add_column(column, justify="right")
    for r in results:
        pandas_total = r["export"] + r["compute"]
        best = r["fold"]
        table.add_row(
            r["backend"],
            f"{r['direct']:.2f} s",
            f"{r['build']:.2f} s",
            f"{r['fold']:.2f} s",
            f"{r['warm']:.2f} s",
            f"{r['export']:.2f} s",
            f"{r['compute']:.2f} s",
            f"{pandas_total:.2f} s",
            f"{pandas_total / best:.1f}x",
            f"≤ {TARGETS[r['backend']]:g} s {'✓' if best <= TARGETS[r['backend']] else '✗'}",
            f"{r['peak_mb']:.0f} MB",
        )
    console.print(table)
    for r in results:
        console.print(
            f"{r['backend']}: rows counted by abflow {r['rows']:,}; rollup vs raw effects agree to "
            f"{r['same']:.1e}; abflow vs pandas per-variant values agree to {r['agreement']:.1e}; "
            f"data load (first run only) {r['load']:.0f} s"
        )
    console.print(
        "speed-up = pandas total / (fold 1% + analyse). Peak RSS is read before the pandas "
        "baseline runs (on a first run it includes generating the data)."
    )


if __name__ == "__main__":
    main()
