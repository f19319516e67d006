"""Benchmark of idempotent event writes into SQLite and PostgreSQL, with baselines in one run.

    .venv/bin/python bench/store.py [--events 100000] [--batch 500] [--rounds 3] [--quick]

For each backend it writes the same exposure events (7 columns) in batches of ``--batch``
(the gateway ships 500 at a time), with three id shapes: random ``uuid4`` hex (the worst case
for the primary-key index), the gateway's own ids (``abflow.serving.events.new_id``: a random
per-process prefix and a counter, so mostly sequential) and the store's time-ordered
``new_event_id``. The writers:

* ``EventStore.write_events``: validation plus idempotent insert (SQLite: ``INSERT OR
  IGNORE`` executemany; PostgreSQL: binary COPY straight into the table, or on a duplicate
  into a staging table, then ``INSERT … SELECT … ON CONFLICT DO NOTHING``); then the same
  batches re-sent, which must store nothing;
* row at a time: one ``INSERT … ON CONFLICT DO NOTHING`` statement per event through
  SQLAlchemy Core, one transaction per batch (what a straightforward writer does);
* the raw ceiling: the same rows through the same driver calls with no validation and no
  conflict handling (SQLite: the cursor's ``executemany`` of a plain ``INSERT`` under ``BEGIN
  IMMEDIATE``; PostgreSQL: binary COPY straight into the table), each batch its own
  transaction, so it pays the same commit (one fsync on SQLite, ``synchronous=FULL``).
  Once more with a single commit at the end: what the engine itself does for this table
  (primary key and one secondary index) when no batch pays a commit.

Every measurement starts from a fresh database (a temporary SQLite file, a new PostgreSQL
schema), each is cut off after ``--seconds`` and everything is removed afterwards. The
machine is shared, so each figure is the best of ``--rounds`` interleaved rounds. The last
column divides by the CPU time of this process only: for SQLite, which runs in-process, it
is the rate one free core would give (fsync waits excluded); for PostgreSQL it leaves out the
server's own work and only shows the client's cost.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from abflow.serving.events import new_id
from abflow.store import EventStore, new_event_id
from abflow.store.schema import exposures
from abflow.store.writer import layout_for

Batches = list[list[dict[str, Any]]]
Timing = tuple[int, float, float]
"""Events written, wall seconds, CPU seconds of this process."""
Method = Callable[[EventStore, Batches, float], Timing]
"""Writes batches into a store for at most the given seconds."""

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


IdShape = Callable[[], str]


def uuid4_hex() -> str:
    return uuid.uuid4().hex


def make_batches(events: int, batch: int, *, make_id: IdShape = uuid4_hex) -> Batches:
    """Exposure events as the gateway sends them, split into batches."""
    rows = [
        {
            "event_id": make_id(),
            "ts": 1.7e9 + i * 0.01,
            "experiment_key": "checkout-button",
            "phase": 1,
            "unit_id": f"user-{(i * 7919) % 1_000_003}",
            "variant": "control" if i % 2 else "treatment",
            "attributes_json": None if i % 4 else '{"country":"FR"}',
        }
        for i in range(events)
    ]
    return [rows[k : k + batch] for k in range(0, events, batch)]


# --- the methods ---------------------------------------------------------------------------


def abflow_write(store: EventStore, batches: Batches, seconds: float) -> Timing:
    start, cpu = time.perf_counter(), time.process_time()
    done = 0
    for rows in batches:
        if store.write_events("exposure", rows) != len(rows):
            msg = "every event of a fresh batch must be new"
            raise AssertionError(msg)
        done += len(rows)
        if time.perf_counter() - start > seconds:
            break
    return done, time.perf_counter() - start, time.process_time() - cpu


def abflow_resend(store: EventStore, batches: Batches, seconds: float) -> Timing:
    """Write the batches once (untimed), then time sending them all again."""
    written, _, _ = abflow_write(store, batches, seconds)
    start, cpu = time.perf_counter(), time.process_time()
    done = 0
    for rows in batches:
        if done >= written:
            break
        if store.write_events("exposure", rows) != 0:
            msg = "a re-sent batch must store nothing"
            raise AssertionError(msg)
        done += len(rows)
    return done, time.perf_counter() - start, time.process_time() - cpu


def row_at_a_time(store: EventStore, batches: Batches, seconds: float) -> Timing:
    if store.dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    else:
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    insert = dialect_insert(exposures).on_conflict_do_nothing(index_elements=["event_id"])
    start, cpu = time.perf_counter(), time.process_time()
    done = 0
    with store.engine.connect() as connection:
        for rows in batches:
            with connection.begin():
                for row in rows:
                    connection.execute(insert, row)
            done += len(rows)
            if time.perf_counter() - start > seconds:
                break
    return done, time.perf_counter() - start, time.process_time() - cpu


def raw_ceiling(store: EventStore, batches: Batches, seconds: float) -> Timing:
    """The driver's plain load, one transaction (and one commit) per batch."""
    return raw_load(store, batches, seconds, commit_each_batch=True)


def raw_one_transaction(store: EventStore, batches: Batches, seconds: float) -> Timing:
    """The same load with a single commit at the end: what the engine does without commits."""
    return raw_load(store, batches, seconds, commit_each_batch=False)


def raw_load(
    store: EventStore, batches: Batches, seconds: float, *, commit_each_batch: bool
) -> Timing:
    layout = layout_for("exposure")
    names = ", ".join(layout.columns)
    marks = ", ".join("?" * len(layout.columns))
    raw: Any = store.engine.raw_connection()
    start, cpu = time.perf_counter(), time.process_time()
    done = 0
    try:
        for rows in batches:
            values = list(map(layout.getter, rows))  # what the writer's fast path does
            cursor = raw.cursor()
            if store.dialect == "sqlite":
                if commit_each_batch or done == 0:  # the store leaves BEGIN to the caller
                    cursor.execute("BEGIN IMMEDIATE")
                cursor.executemany(f"INSERT INTO exposures ({names}) VALUES ({marks})", values)
            else:
                with cursor.copy(f"COPY exposures ({names}) FROM STDIN (FORMAT BINARY)") as copy:
                    copy.set_types(list(layout.postgres_types))
                    for value in values:
                        copy.write_row(value)
            cursor.close()
            if commit_each_batch:
                raw.commit()
            done += len(rows)
            if time.perf_counter() - start > seconds:
                break
        raw.commit()
    finally:
        raw.close()
    return done, time.perf_counter() - start, time.process_time() - cpu


# --- fresh databases -----------------------------------------------------------------------


@contextmanager
def sqlite_store() -> Iterator[EventStore]:
    with tempfile.TemporaryDirectory(prefix="abflow-bench-") as folder:
        store = EventStore.open(f"sqlite:///{Path(folder) / 'bench.db'}")
        try:
            yield store
        finally:
            store.close()


@contextmanager
def postgres_store(url: str) -> Iterator[EventStore]:
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in url else "?"
    try:
        store = EventStore.open(f"{url}{separator}options=-csearch_path%3D{schema}", upgrade=True)
        try:
            yield store
        finally:
            store.close()
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def postgres_reachable(url: str) -> str | None:
    """None when the server answers, else why not."""
    try:
        engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(sa.text("select 1"))
        engine.dispose()
    except sa.exc.SQLAlchemyError as exc:
        return str(exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc).splitlines()[0]
    return None


# --- running -------------------------------------------------------------------------------


def measure(
    open_store: Callable[[], Any], method: Method, batches: Batches, seconds: float
) -> tuple[float, float]:
    """Events per wall second and per CPU second of this process, on a fresh store."""
    with open_store() as store:
        done, wall, cpu = method(store, batches, seconds)
    return done / wall, done / max(cpu, 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0, help="cut-off per measurement")
    parser.add_argument("--quick", action="store_true", help="20,000 events, one round")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("ABFLOW_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="PostgreSQL server to use (a temporary schema is created and dropped)",
    )
    args = parser.parse_args()
    if args.quick:
        args.events, args.rounds = 20_000, 1

    backends: list[tuple[str, Callable[[], Any]]] = [("SQLite", sqlite_store)]
    why_not = postgres_reachable(args.postgres)
    if why_not is None:
        backends.append(("PostgreSQL", lambda: postgres_store(args.postgres)))
    else:
        print(f"PostgreSQL skipped: {why_not}", file=sys.stderr)

    random_ids = make_batches(args.events, args.batch)
    gateway_ids = make_batches(args.events, args.batch, make_id=new_id)
    ordered_ids = make_batches(args.events, args.batch, make_id=new_event_id)
    methods: list[tuple[str, Method, Batches]] = [
        ("abflow `write_events` (idempotent), uuid4 ids", abflow_write, random_ids),
        ("abflow, same batches re-sent (all duplicates)", abflow_resend, random_ids),
        ("abflow, gateway ids (prefix + counter)", abflow_write, gateway_ids),
        ("abflow, time-ordered ids (`new_event_id`)", abflow_write, ordered_ids),
        ("row at a time (one INSERT … ON CONFLICT per event)", row_at_a_time, random_ids),
        ("raw ceiling, gateway ids (no conflict handling)", raw_ceiling, gateway_ids),
        ("raw ceiling, uuid4 ids (no conflict handling)", raw_ceiling, random_ids),
        ("raw, gateway ids, one commit for all batches", raw_one_transaction, gateway_ids),
    ]
    best: dict[tuple[str, str], tuple[float, float]] = {}
    for _ in range(args.rounds):
        for backend, open_store in backends:
            for label, method, batches in methods:
                rate, cpu_rate = measure(open_store, method, batches, args.seconds)
                old_rate, old_cpu_rate = best.get((backend, label), (0.0, 0.0))
                best[(backend, label)] = (max(old_rate, rate), max(old_cpu_rate, cpu_rate))

    print(
        f"\n{args.events:,} exposure events in batches of {args.batch:,}; "
        f"best of {args.rounds} round{'s' if args.rounds != 1 else ''}\n"
    )
    print("| backend | writer | events/s | vs raw ceiling, same ids | events per CPU-second |")
    print("|---|---|---:|---:|---:|")
    for backend, _ in backends:
        # Each row is compared with the raw ceiling of the same ids, where there is one.
        ceilings = {
            id(batches): best[(backend, label)][0]
            for label, method, batches in methods
            if method is raw_ceiling
        }
        for label, _, batches in methods:
            rate, cpu_rate = best[(backend, label)]
            ceiling = ceilings.get(id(batches))
            ratio = f"{rate / ceiling:.2f}x" if ceiling else "-"
            print(f"| {backend} | {label} | {rate:,.0f} | {ratio} | {cpu_rate:,.0f} |")


if __name__ == "__main__":
    main()
