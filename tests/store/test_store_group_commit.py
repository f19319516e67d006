"""Group commit: under load the gateway's shipper writes its whole backlog in one store write."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from abflow.events.eventlog import MAX_BATCH_EVENTS, EventKind, EventLog
from abflow.store import EventStore


class GatedStore:
    """A real store whose writes wait at a gate, recording how many events each one carried."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.sizes: list[int] = []
        self.gate = threading.Event()
        self.entered = threading.Event()

    def write_events(self, kind: EventKind, rows: list[dict[str, Any]]) -> int:
        self.entered.set()
        self.gate.wait()
        self.sizes.append(len(rows))
        return self.store.write_events(kind, rows)


def exposure(i: int) -> dict[str, Any]:
    return {
        "event_id": f"ev-{i:08d}",
        "ts": 1.7e9 + i,
        "experiment_key": "checkout",
        "phase": 1,
        "unit_id": f"user-{i % 997}",
        "variant": "control" if i % 2 else "treatment",
        "attributes_json": None,
    }


def gated_log(tmp_path: Path, **tuning: Any) -> tuple[EventLog, GatedStore, EventStore]:
    store = EventStore.open(f"sqlite:///{tmp_path / 'store.db'}")
    gated = GatedStore(store)
    log = EventLog(None, tmp_path / "journal", store=gated, flush_interval_seconds=0.01, **tuning)
    log.start()
    return log, gated, store


def test_backlog_built_during_a_write_is_the_next_batch(tmp_path: Path) -> None:
    log, gated, store = gated_log(tmp_path, batch_size=500)
    try:
        log.append("exposure", exposure(0))
        assert gated.entered.wait(10), "the shipper never wrote"
        # The first write is stuck at the gate: everything appended now queues up behind it.
        for i in range(1, 3000):
            log.append("exposure", exposure(i))
        gated.gate.set()
        log.close()
        assert gated.sizes == [1, 2999]  # not six batches of 500
        assert store.count_events("exposure") == 3000
    finally:
        store.close()


def test_a_batch_never_exceeds_the_cap(tmp_path: Path) -> None:
    # 12,000 events: more than the cap, and more than the in-memory queue holds (the rest is
    # read back from the journal), so both ways of taking a batch are capped.
    log, gated, store = gated_log(tmp_path, batch_size=500, max_queue_events=10_000)
    try:
        log.append("exposure", exposure(0))
        assert gated.entered.wait(10), "the shipper never wrote"
        for i in range(1, 12_000):
            log.append("exposure", exposure(i))
        gated.gate.set()
        log.close()
        assert gated.sizes[0] == 1
        assert max(gated.sizes) == MAX_BATCH_EVENTS
        assert sum(gated.sizes) == 12_000
        assert store.count_events("exposure") == 12_000
    finally:
        store.close()


def test_a_larger_batch_size_raises_the_cap(tmp_path: Path) -> None:
    log, gated, store = gated_log(tmp_path, batch_size=2 * MAX_BATCH_EVENTS)
    try:
        log.append("exposure", exposure(0))
        assert gated.entered.wait(10), "the shipper never wrote"
        for i in range(1, 2 * MAX_BATCH_EVENTS + 1):
            log.append("exposure", exposure(i))
        gated.gate.set()
        log.close()
        assert gated.sizes == [1, 2 * MAX_BATCH_EVENTS]
    finally:
        store.close()
