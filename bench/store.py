"""Benchmark of idempotent event writes into SQLite and PostgreSQL, with baselines in one run.

    .venv/bin/python bench/store.py [--events 100000] [--batch 500 5000] [--rounds 3] [--quick]

First, the batch size the gateway really uses: its event log (``events.eventlog.EventLog``:
journal, then a shipper thread that group-commits into the store) is fed as fast as one
thread can append, and every store write it makes is recorded. The shipper wakes when 500
events are queued and takes everything queued, up to ``MAX_BATCH_EVENTS`` (5,000): under
load its batches grow. Its end-to-end rate (first append until ``close`` returns with every
event stored, journal fsyncs included) is printed with the sizes of its batches.

Then, for each backend, it writes the same exposure events (7 columns) in batches of each
``--batch`` size (500: a lightly loaded gateway; 5,000: one under load), with three id
shapes: random ``uuid4`` hex (the worst case
for the primary-key index), the gateway's own ids (``abflow.events.sink.new_id``: a random
per-process prefix and a counter, so mostly sequential) and the store's time-ordered
``new_event_id``. The writers:

* ``EventStore.write_events``: validation plus idempotent insert (SQLite: ``INSERT … ON
  CONFLICT (event_id) DO NOTHING`` executemany; PostgreSQL: binary COPY straight into the table, or on a duplicate
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
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from abflow.events.eventlog import MAX_BATCH_EVENTS, EventLog
from abflow.events.sink import new_id
from abflow.store import EventStore, new_event_id
from abflow.store.schema import exposures
from abflow.store.writer import layout_for

Batches = list[list[dict[str, Any]]]
Timing = tuple[int, float, float]
"""Events written, wall seconds, CPU seconds of this process."""
Method = Callable[[EventStore, Batches, float], Timing]
"""Writes batches into a store for at most the given seconds."""
ShipperTiming = tuple[Timing, list[int]]
"""A timing and the number of events in each store write."""

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
    insert: sa.Insert
    if store.dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        insert = sqlite_insert(exposures).on_conflict_do_nothing(index_elements=["event_id"])
    else:
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        insert = postgresql_insert(exposures).on_conflict_do_nothing(index_elements=["event_id"])
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


class RecordingStore:
    """The real store, noting how many events each of the shipper's writes carried."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.sizes: list[int] = []

    def write_events(self, kind: Any, rows: list[dict[str, Any]]) -> int:
        self.sizes.append(len(rows))
        return self.store.write_events(kind, rows)


def gateway_shipper(store: EventStore, batches: Batches, seconds: float) -> ShipperTiming:
    """Append every event to a gateway event log shipping into ``store``; time until all stored.

    ``seconds`` is not a cut-off here: the log must drain, so every event is counted.
    """
    del seconds
    rows = [row for batch in batches for row in batch]
    recording = RecordingStore(store)
    with tempfile.TemporaryDirectory(prefix="abflow-bench-journal-") as folder:
        log = EventLog(None, Path(folder), store=recording)
        log.start()
        start, cpu = time.perf_counter(), time.process_time()
        for row in rows:
            log.append("exposure", row)
        log.close(timeout_seconds=600)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    if log.queue_depth or store.count_events("exposure") != len(rows):
        msg = "the event log did not deliver every event"
        raise AssertionError(msg)
    return (len(rows), wall, cpu), recording.sizes


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


def measure_shipper(
    open_store: Callable[[], Any], batches: Batches
) -> tuple[float, float, list[int]]:
    """The gateway event log's end-to-end rate (wall, CPU) and its batch sizes, fresh store."""
    with open_store() as store:
        (done, wall, cpu), sizes = gateway_shipper(store, batches, 0.0)
    return done / wall, done / max(cpu, 1e-9), sizes


def describe_sizes(sizes: list[int]) -> str:
    """Median, 90th percentile and largest of the shipper's batch sizes, and how many."""
    ordered = sorted(sizes)
    median = statistics.median(ordered)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    share = sum(size for size in ordered if size == MAX_BATCH_EVENTS) / max(sum(ordered), 1)
    return (
        f"{len(ordered):,} writes; median {median:,.0f}, p90 {p90:,}, max {ordered[-1]:,} "
        f"events; {share:.0%} of events in full batches of {MAX_BATCH_EVENTS:,}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, nargs="+", default=[500, MAX_BATCH_EVENTS])
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

    # Ids are drawn once per shape, so every batch size writes the very same events.
    shapes = {
        "uuid4": make_batches(args.events, args.events, make_id=uuid4_hex),
        "gateway": make_batches(args.events, args.events, make_id=new_id),
        "ordered": make_batches(args.events, args.events, make_id=new_event_id),
    }
    shipper_ids = make_batches(args.events, args.events, make_id=new_id)
    table: list[tuple[str, Method, str]] = [
        ("abflow `write_events` (idempotent), uuid4 ids", abflow_write, "uuid4"),
        ("abflow, same batches re-sent (all duplicates)", abflow_resend, "uuid4"),
        ("abflow, gateway ids (prefix + counter)", abflow_write, "gateway"),
        ("abflow, time-ordered ids (`new_event_id`)", abflow_write, "ordered"),
        ("row at a time (one INSERT … ON CONFLICT per event)", row_at_a_time, "uuid4"),
        ("raw ceiling, gateway ids (no conflict handling)", raw_ceiling, "gateway"),
        ("raw ceiling, uuid4 ids (no conflict handling)", raw_ceiling, "uuid4"),
        ("raw, gateway ids, one commit for all batches", raw_one_transaction, "gateway"),
    ]
    best: dict[tuple[str, int, str], tuple[float, float]] = {}
    shipper: dict[str, tuple[float, float]] = {}
    shipper_sizes: dict[str, list[int]] = {}
    for _ in range(args.rounds):
        for backend, open_store in backends:
            rate, cpu_rate, sizes = measure_shipper(open_store, shipper_ids)
            old_rate, old_cpu_rate = shipper.get(backend, (0.0, 0.0))
            shipper[backend] = (max(old_rate, rate), max(old_cpu_rate, cpu_rate))
            shipper_sizes.setdefault(backend, []).extend(sizes)
            for batch in args.batch:
                for label, method, shape in table:
                    rows = shapes[shape][0]
                    batches = [rows[k : k + batch] for k in range(0, len(rows), batch)]
                    rate, cpu_rate = measure(open_store, method, batches, args.seconds)
                    old_rate, old_cpu_rate = best.get((backend, batch, label), (0.0, 0.0))
                    best[(backend, batch, label)] = (
                        max(old_rate, rate),
                        max(old_cpu_rate, cpu_rate),
                    )

    rounds = f"best of {args.rounds} round{'s' if args.rounds != 1 else ''}"
    print(
        f"\nThe gateway's event log under load: {args.events:,} exposure events appended as "
        f"fast as one thread can, gateway ids; {rounds}\n"
    )
    print("| backend | end to end, events/s | events per CPU-second | store writes (all rounds) |")
    print("|---|---:|---:|---|")
    for backend, _ in backends:
        rate, cpu_rate = shipper[backend]
        print(
            f"| {backend} | {rate:,.0f} | {cpu_rate:,.0f} | {describe_sizes(shipper_sizes[backend])} |"
        )
    for batch in args.batch:
        print(f"\n{args.events:,} exposure events in batches of {batch:,}; {rounds}\n")
        print("| backend | writer | events/s | vs raw ceiling, same ids | events per CPU-second |")
        print("|---|---|---:|---:|---:|")
        for backend, _ in backends:
            # Each row is compared with the raw ceiling of the same ids, where there is one.
            ceilings = {
                shape: best[(backend, batch, label)][0]
                for label, method, shape in table
                if method is raw_ceiling
            }
            for label, _, shape in table:
                rate, cpu_rate = best[(backend, batch, label)]
                ceiling = ceilings.get(shape)
                ratio = f"{rate / ceiling:.2f}x" if ceiling else "-"
                print(f"| {backend} | {label} | {rate:,.0f} | {ratio} | {cpu_rate:,.0f} |")


if __name__ == "__main__":
    main()
