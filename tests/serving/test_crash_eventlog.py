"""SIGKILL a process appending events under load: every acknowledged event is kept, once.

The child process (this file run as a script) appends from several threads and, only after
``append`` returns, writes the event id to an acknowledgement file. The test kills it with
SIGKILL mid-run, restarts an EventLog on the same journal, and checks the store.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from abflow.errors import StoreError
from abflow.serving.eventlog import EventKind, EventLog

KINDS: tuple[EventKind, ...] = ("exposure", "prediction", "outcome")
THREADS = 4
ACKS_BEFORE_KILL = 20_000


def row_for(event_id: str) -> dict[str, Any]:
    """Each event's content follows from its id, so garbage could never pass as an event."""
    digest = hashlib.sha256(event_id.encode()).hexdigest()
    return {
        "event_id": event_id,
        "ts": 1.0,
        "unit_id": digest[:16],
        "value": int(digest[16:24], 16),
    }


def kind_for(event_id: str) -> EventKind:
    return KINDS[int(event_id.rsplit("-", 1)[1]) % 3]


def child_main(journal_dir: str, ack_path: str) -> None:
    """Append until killed; acknowledge each event after its append returned."""
    log = EventLog(None, Path(journal_dir), segment_bytes=256 * 1024)
    log.start()
    ack_fd = os.open(ack_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def work(thread: int) -> None:
        i = 0
        while True:
            event_id = f"t{thread}-{i}"
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


def test_sigkill_under_load_loses_no_acknowledged_event(tmp_path: Path) -> None:
    journal_dir = tmp_path / "journal"
    ack_path = tmp_path / "acks"
    ack_path.touch()
    child = subprocess.Popen(
        [sys.executable, __file__, str(journal_dir), str(ack_path)],
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while ack_path.stat().st_size < ACKS_BEFORE_KILL * 8:
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
    assert len(acked) >= ACKS_BEFORE_KILL
    assert len(set(acked)) == len(acked)

    store = CountingStore()
    log = EventLog(None, journal_dir, store=store)
    log.start()
    log.close()
    missing = set(acked) - set(store.rows)
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:3]}"
    assert all(count == 1 for count in store.deliveries.values())
    for event_id, (kind, row) in store.rows.items():  # nothing stored that was not sent
        assert (kind, row) == (kind_for(event_id), row_for(event_id))
    # Per thread, the stored ids are a gap-free prefix: the journal kept append order.
    for thread in range(THREADS):
        numbers = sorted(int(e.split("-")[1]) for e in store.rows if e.startswith(f"t{thread}-"))
        assert numbers == list(range(len(numbers)))
    assert not list(journal_dir.glob("*.journal"))


if __name__ == "__main__":
    child_main(sys.argv[1], sys.argv[2])
