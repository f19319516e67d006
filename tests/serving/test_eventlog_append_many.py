"""EventLog.append_many: several events, one journal write, the same guarantees as append."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_eventlog import MemoryStore, event, expected_order, fast_log, segments

from abflow.errors import InvalidArgumentError
from abflow.events.eventlog import EventLog
from abflow.events.journal import Journal


def test_groups_reach_the_store_once_in_order(tmp_path: Path) -> None:
    store = MemoryStore()
    log = fast_log(store, tmp_path, batch_size=64)
    log.start()
    for start in range(0, 3000, 3):
        log.append_many([event(i) for i in range(start, start + 3)])
    log.close()
    assert store.order == expected_order(range(3000))
    assert store.deliveries == 3000
    assert segments(tmp_path) == []
    assert log.sync_stats.synced_events == 3000  # events, not writes


def test_a_full_queue_mid_group_hands_the_rest_to_the_journal(tmp_path: Path) -> None:
    store = MemoryStore()
    store.gate.clear()  # nothing leaves the queue until the gate opens
    log = fast_log(store, tmp_path, batch_size=4, max_queue_events=10, segment_bytes=2048)
    log.start()
    for start in range(0, 700, 7):  # groups of 7 cross the queue's cap of 10
        log.append_many([event(i) for i in range(start, start + 7)])
    assert log.queue_depth == 700
    store.gate.set()
    log.close()
    assert store.order == expected_order(range(700))
    assert store.deliveries == 700


def test_one_write_holds_the_whole_group(tmp_path: Path) -> None:
    # No store: events stay in the journal; a new journal reader finds each one, framed.
    log = EventLog(None, tmp_path, fsync_interval_seconds=None)
    log.start()
    log.append_many([event(0), event(1)])
    log.append_many([event(2)])
    log.close()
    journal = Journal(tmp_path, fsync_interval_seconds=None)
    older = journal.open()
    try:
        entries, _, skipped = journal.read((older[0], 0), journal.end(), 100)
    finally:
        journal.close()
    assert skipped == 0
    assert [entry[0] for entry in entries] == [event(i)[0] for i in range(3)]
    assert [entry[1] for entry in entries] == [
        b'{"event_id":"ev-00000%d","ts":%.1f,"n":%d}' % (i, 1_700_000_000.0 + i, i)
        for i in range(3)
    ]


def test_a_bad_row_refuses_the_whole_group(tmp_path: Path) -> None:
    store = MemoryStore()
    log = fast_log(store, tmp_path)
    log.start()
    with pytest.raises(InvalidArgumentError, match="cannot be serialised"):
        log.append_many([event(0), ("outcome", {"event_id": "x", "value": object()})])
    log.append_many([])  # nothing to do
    log.close()
    assert store.rows == {}
    assert log.queue_depth == 0
