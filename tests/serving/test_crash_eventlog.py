"""SIGKILL a process appending events under load: every acknowledged event is kept, once.

The child process (this file run as a script) appends from several threads and, only after
``append`` returns, writes the event id to an acknowledgement file. The test kills it with
SIGKILL mid-run, restarts an EventLog on the same journal, and checks the store.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from abflow.errors import StoreError
from abflow.events.eventlog import EventKind, EventLog
from abflow.store.schema import EVENT_TABLES

KINDS: tuple[EventKind, ...] = ("exposure", "prediction", "outcome")
THREADS = 4
ACKS_BEFORE_KILL = 15_000


def row_for(event_id: str) -> dict[str, Any]:
    """Each event's content follows from its id, so garbage could never pass as an event."""
    digest = hashlib.sha256(event_id.encode()).hexdigest()
    number = int(digest[16:24], 16)
    row: dict[str, Any] = {"event_id": event_id, "ts": number / 7, "unit_id": digest[:16]}
    kind = kind_for(event_id)
    if kind == "outcome":
        return {**row, "name": "chargeback", "value": float(number % 2)}
    row.update(experiment_key="crash", phase=1, variant=("a", "b")[number % 2])
    if kind == "exposure":
        return row
    return {
        **row,
        "request_id": event_id,
        "model_version": "7",
        "latency_ms": number / 1e6,
        "is_fallback": number % 11 == 0,
    }


def kind_for(event_id: str) -> EventKind:
    return KINDS[int(event_id.rsplit("-", 1)[1]) % 3]


def child_main(journal_dir: str, ack_path: str, store_url: str, run: str) -> None:
    """Append until killed; acknowledge each event after its append returned."""
    log = EventLog(store_url or None, Path(journal_dir), segment_bytes=256 * 1024)
    log.start()
    ack_fd = os.open(ack_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def work(thread: int) -> None:
        i = 0
        while True:
            event_id = f"{run}t{thread}-{i}"
            log.append(kind_for(event_id), row_for(event_id))
            os.write(ack_fd, f"{event_id}\n".encode())
            i += 1

    for thread in range(THREADS):
        threading.Thread(target=work, args=(thread,), daemon=True).start()
    threading.Event().wait()


class CountingStore:
    """Idempotent in-memory store that also counts how often each id was delivered."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[EventKind, dict[str, Any]]] = {}
        self.deliveries: dict[str, int] = {}

    def write_events(self, kind: EventKind, rows: list[dict[str, Any]]) -> int:
        for row in rows:
            if not isinstance(row.get("event_id"), str):
                msg = f"row without an event id: {row!r}"
                raise StoreError(msg)
            self.deliveries[row["event_id"]] = self.deliveries.get(row["event_id"], 0) + 1
            self.rows.setdefault(row["event_id"], (kind, row))
        return len(rows)


def read_acks(path: Path) -> list[str]:
    text = path.read_text()
    lines = text.split("\n")
    return [line for line in lines[:-1] if line]  # a last line without "\n" was not finished


def run_and_kill(
    journal_dir: Path, ack_path: Path, store_url: str, run: str = "", acks: int = ACKS_BEFORE_KILL
) -> list[str]:
    """Start the writer, SIGKILL it once enough events were acknowledged; return their ids."""
    ack_path.touch()
    child = subprocess.Popen(
        [sys.executable, __file__, str(journal_dir), str(ack_path), store_url, run],
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120  # generous: a loaded machine writes slowly
        while ack_path.stat().st_size < acks * (8 + len(run)):
            assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
            assert time.monotonic() < deadline, "the writer was too slow"
            time.sleep(0.01)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        if child.stderr:
            child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    acked = read_acks(ack_path)
    assert len(acked) >= acks
    assert len(set(acked)) == len(acked)
    return acked


def assert_gap_free_per_thread(event_ids: Iterable[str], runs: tuple[str, ...] = ("",)) -> None:
    """Per writer thread, stored ids are a prefix 0..k: the journal kept append order."""
    ids = list(event_ids)
    for run in runs:
        for thread in range(THREADS):
            prefix = f"{run}t{thread}-"
            numbers = sorted(int(e.removeprefix(prefix)) for e in ids if e.startswith(prefix))
            assert numbers == list(range(len(numbers)))


def test_sigkill_under_load_loses_no_acknowledged_event(tmp_path: Path) -> None:
    journal_dir = tmp_path / "journal"
    acked = run_and_kill(journal_dir, tmp_path / "acks", "")
    store = CountingStore()
    log = EventLog(None, journal_dir, store=store)
    log.start()
    log.close()
    missing = set(acked) - set(store.rows)
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:3]}"
    assert all(count == 1 for count in store.deliveries.values())
    for event_id, (kind, row) in store.rows.items():  # nothing stored that was not sent
        assert (kind, row) == (kind_for(event_id), row_for(event_id))
    assert_gap_free_per_thread(store.rows)
    assert not list(journal_dir.glob("*.journal"))


def assert_sqlite_holds_every_acked_event_once(
    url: str, acked: list[str], runs: tuple[str, ...] = ("",)
) -> None:
    engine = sa.create_engine(url)
    stored: dict[str, list[dict[str, Any]]] = {}
    with engine.connect() as connection:
        for kind, table in EVENT_TABLES.items():
            for found in connection.execute(sa.select(table)):
                row = dict(found._mapping)
                stored.setdefault(row["event_id"], []).append(row)
                sent = row_for(row["event_id"])
                assert kind == kind_for(row["event_id"])
                assert {k: row[k] for k in sent} == sent
    engine.dispose()
    missing = set(acked) - set(stored)
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:3]}"
    assert all(len(rows) == 1 for rows in stored.values())
    assert_gap_free_per_thread(stored, runs)


def count_stored(url: str) -> int:
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        total = sum(
            connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            for table in EVENT_TABLES.values()
        )
    engine.dispose()
    return int(total)


def test_sigkill_while_shipping_to_sqlite(tmp_path: Path) -> None:
    """The killed writer was shipping (and deleting confirmed segments) when it died."""
    journal_dir = tmp_path / "journal"
    url = f"sqlite:///{tmp_path / 'events.db'}"
    acked = run_and_kill(journal_dir, tmp_path / "acks", url)
    assert count_stored(url) > 0  # the writer had shipped some events before it was killed
    log = EventLog(url, journal_dir)
    log.start()
    log.close()
    assert_sqlite_holds_every_acked_event_once(url, acked)
    assert not list(journal_dir.glob("*.journal"))


def test_sigkill_again_while_replaying_what_the_first_kill_left(tmp_path: Path) -> None:
    """Killed while spooling through a store outage, then killed again while replaying the
    spool and journal it left (into a store that is back) under new load."""
    journal_dir = tmp_path / "journal"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dead = f"postgresql+psycopg://postgres@127.0.0.1:{port}/test"
    url = f"sqlite:///{tmp_path / 'events.db'}"
    first = run_and_kill(journal_dir, tmp_path / "acks-1", dead, run="a", acks=8_000)
    assert list((journal_dir / "spool").glob("*.spool"))  # it died while spooling
    second = run_and_kill(journal_dir, tmp_path / "acks-2", url, run="b", acks=8_000)
    log = EventLog(url, journal_dir)
    log.start()
    log.close()
    assert_sqlite_holds_every_acked_event_once(url, first + second, runs=("a", "b"))
    assert (log.spool_bytes, list(journal_dir.glob("*.journal"))) == (0, [])


if __name__ == "__main__":
    child_main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4])
