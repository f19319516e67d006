"""Where a database spends its time storing exposure events: CPU per event by index and key.

    .venv/bin/python bench/store_cost.py [--events 100000] [--batch 500] [--rounds 3]

The same events are loaded, one transaction per batch as the writer does, into variants of
the exposures table: as abflow creates it (primary key on ``event_id``, secondary index
``ix_exposures_experiment``), without the secondary index, with no index at all, and on
PostgreSQL with the key in the database's collation (``C.UTF-8`` here) instead of ``C``.

* PostgreSQL: the batches are binary COPY data prepared before timing (the server's own
  output for these rows, ``COPY … TO STDOUT (FORMAT BINARY)``), so the client does nothing
  but send bytes. Reported: the server backend's CPU time per event (from
  ``/proc/<pid>/stat``, so the server must run on this machine) and the WAL bytes per event.
  CPU time is what a busy shared machine does not distort much; wall time is printed too.
* SQLite: the driver's ``executemany`` of the prepared insert, ``synchronous=FULL``; the
  process's CPU time per event (SQLite runs in-process).

Every variant starts from an empty table; best of ``--rounds`` interleaved rounds.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from abflow.events.sink import new_id

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
COLUMNS = ("event_id", "ts", "experiment_key", "phase", "unit_id", "variant", "attributes_json")
NAMES = ", ".join(COLUMNS)


def table_ddl(name: str, *, key: str, secondary: bool, collation: str = "") -> list[str]:
    """CREATE statements for one variant of the exposures table (as in abflow's schema)."""
    primary = ", PRIMARY KEY (event_id)" if key else ""
    statements = [
        f"CREATE TABLE {name} (event_id VARCHAR(64) {collation} NOT NULL, ts DOUBLE PRECISION "
        "NOT NULL, experiment_key VARCHAR(128) NOT NULL, phase INTEGER NOT NULL, unit_id "
        f"VARCHAR(256) NOT NULL, variant VARCHAR(128) NOT NULL, attributes_json TEXT{primary})"
    ]
    if secondary:
        statements.append(f"CREATE INDEX ix_{name} ON {name} (experiment_key, phase, variant)")
    return statements


POSTGRES_VARIANTS: dict[str, list[str]] = {
    'as abflow creates it (key COLLATE "C" + secondary index)': table_ddl(
        "cost_abflow", key="pk", secondary=True, collation='COLLATE "C"'
    ),
    "key in the database collation (C.UTF-8), + secondary index": table_ddl(
        "cost_locale", key="pk", secondary=True
    ),
    'key COLLATE "C", no secondary index': table_ddl(
        "cost_nosecondary", key="pk", secondary=False, collation='COLLATE "C"'
    ),
    "no index at all (heap only)": table_ddl("cost_heap", key="", secondary=False),
}
SQLITE_VARIANTS: dict[str, list[str]] = {
    "as abflow creates it (key + secondary index)": table_ddl(
        "exposures", key="pk", secondary=True
    ),
    "no secondary index": table_ddl("exposures", key="pk", secondary=False),
    "no index at all (rowid table only)": table_ddl("exposures", key="", secondary=False),
}


def events(n: int, make_id: Callable[[], str]) -> list[tuple[Any, ...]]:
    """Exposure events shaped like bench/store.py's."""
    return [
        (
            make_id(),
            1.7e9 + i * 0.01,
            "checkout-button",
            1,
            f"user-{(i * 7919) % 1_000_003}",
            "control" if i % 2 else "treatment",
            None if i % 4 else '{"country":"FR"}',
        )
        for i in range(n)
    ]


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process on this machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- PostgreSQL ----------------------------------------------------------------------------


def copy_chunks(connection: Any, rows: list[tuple[Any, ...]], batch: int) -> list[bytes]:
    """Binary COPY data for each batch, sorted by key within the batch as the writer sends it."""
    connection.execute(
        "CREATE TEMPORARY TABLE cost_source (n INTEGER, event_id TEXT, ts DOUBLE PRECISION, "
        "experiment_key TEXT, phase INTEGER, unit_id TEXT, variant TEXT, attributes_json TEXT)"
    )
    with connection.cursor().copy(f"COPY cost_source (n, {NAMES}) FROM STDIN") as copy:
        for number, row in enumerate(rows):
            copy.write_row((number, *row))
    chunks = []
    for start in range(0, len(rows), batch):
        data = bytearray()
        query = (
            f"COPY (SELECT {NAMES} FROM cost_source WHERE n >= {start} AND n < {start + batch} "
            'ORDER BY event_id COLLATE "C") TO STDOUT (FORMAT BINARY)'
        )
        with connection.cursor().copy(query) as copy:
            for block in copy:
                data += block
        chunks.append(bytes(data))
    connection.execute("DROP TABLE cost_source")
    return chunks


def postgres_load(url: str, ddl: list[str], chunks: list[bytes]) -> tuple[float, float, float]:
    """Server CPU seconds, wall seconds and WAL bytes of loading the chunks into a new table."""
    import psycopg

    table = ddl[0].split()[2]
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"DROP TABLE IF EXISTS {table}")
        for statement in ddl:
            admin.execute(statement)
        admin.execute("CHECKPOINT")  # every variant starts with the same full-page-write state
        with psycopg.connect(url) as connection:
            pid = connection.info.backend_pid
            wal_before = admin.execute("SELECT pg_current_wal_lsn()").fetchone()
            cpu, start = process_cpu_seconds(pid), time.perf_counter()
            for chunk in chunks:
                with connection.cursor() as cursor:
                    copy_sql = f"COPY {table} ({NAMES}) FROM STDIN (FORMAT BINARY)"
                    with cursor.copy(copy_sql) as copy:
                        copy.write(chunk)
                connection.commit()
            wall, cpu = time.perf_counter() - start, process_cpu_seconds(pid) - cpu
        wal = admin.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", wal_before
        ).fetchone()
        admin.execute(f"DROP TABLE {table}")
    return cpu, wall, float(wal[0]) if wal else 0.0


# --- SQLite --------------------------------------------------------------------------------


def sqlite_load(ddl: list[str], rows: list[tuple[Any, ...]], batch: int) -> tuple[float, float]:
    """Process CPU seconds and wall seconds of loading the rows into a new database."""
    marks = ", ".join("?" * len(COLUMNS))
    insert = f"INSERT INTO exposures ({NAMES}) VALUES ({marks}) ON CONFLICT DO NOTHING"
    batches = [rows[k : k + batch] for k in range(0, len(rows), batch)]
    with tempfile.TemporaryDirectory(prefix="abflow-cost-") as folder:
        connection = sqlite3.connect(Path(folder) / "cost.db", isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "cache_size=-32000"):
            connection.execute(f"PRAGMA {pragma}")
        for statement in ddl:
            connection.execute(statement)
        cpu, start = time.process_time(), time.perf_counter()
        for rows_of_batch in batches:
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(insert, rows_of_batch)
            connection.execute("COMMIT")
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        connection.close()
    return cpu, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--postgres",
        default=os.environ.get("ABFLOW_COST_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="a PostgreSQL server on this machine (libpq URL); tables are created and dropped",
    )
    args = parser.parse_args()
    shapes: dict[str, Callable[[], str]] = {
        "gateway ids": new_id,
        "uuid4 ids": lambda: uuid.uuid4().hex,
    }
    data = {shape: events(args.events, make_id) for shape, make_id in shapes.items()}
    n = args.events

    print(f"\n{n:,} exposure events, batches of {args.batch:,}; best of {args.rounds} rounds\n")
    print(
        "| backend | ids | table | CPU µs per event | events per CPU-second | events/s "
        "(wall) | WAL bytes per event |"
    )
    print("|---|---|---|---:|---:|---:|---:|")

    try:
        import psycopg

        with psycopg.connect(args.postgres, autocommit=True) as connection:
            chunks = {
                shape: copy_chunks(connection, rows, args.batch) for shape, rows in data.items()
            }
    except Exception as exc:  # no server, no driver: SQLite only
        print(f"PostgreSQL skipped: {str(exc).splitlines()[0]}", file=sys.stderr)
        chunks = {}

    for shape, rows in data.items():
        best: dict[tuple[str, str], tuple[float, float, float]] = {}
        for _ in range(args.rounds):
            for label, ddl in POSTGRES_VARIANTS.items() if shape in chunks else ():
                cpu, wall, wal = postgres_load(args.postgres, ddl, chunks[shape])
                old = best.get(("PostgreSQL", label), (float("inf"), float("inf"), wal))
                best[("PostgreSQL", label)] = (min(old[0], cpu), min(old[1], wall), wal)
            for label, ddl in SQLITE_VARIANTS.items():
                cpu, wall = sqlite_load(ddl, rows, args.batch)
                old = best.get(("SQLite", label), (float("inf"), float("inf"), 0.0))
                best[("SQLite", label)] = (min(old[0], cpu), min(old[1], wall), 0.0)
        for (backend, label), (cpu, wall, wal) in best.items():
            wal_text = f"{wal / n:,.0f}" if backend == "PostgreSQL" else "-"
            print(
                f"| {backend} | {shape} | {label} | {cpu / n * 1e6:.2f} | {n / cpu:,.0f} | "
                f"{n / wall:,.0f} | {wal_text} |"
            )


if __name__ == "__main__":
    main()
