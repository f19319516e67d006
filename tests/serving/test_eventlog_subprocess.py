"""EventLog shipping through a child process (``ship_in_subprocess``) into a real SQLite store."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from test_eventlog_stores import (
    TUNING,
    all_events,
    assert_stored_exactly,
    closed_port,
    wait_until,
)

from abflow.errors import StoreError
from abflow.events.eventlog import EventLog
from abflow.events.shipper import SubprocessStore


def _child_pid(log: EventLog) -> int | None:
    sink = log._sink
    assert isinstance(sink, SubprocessStore)
    return sink.pid


def test_every_event_is_stored_once_through_the_child(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    events = all_events(3000)
    log = EventLog(url, tmp_path / "journal", ship_in_subprocess=True, **TUNING)
    log.start()
    pid = _child_pid(log)
    assert pid is not None  # started with the log, not on the first batch
    assert pid != os.getpid()
    for kind, row in events[:2000]:
        log.append(kind, row)
    wait_until(lambda: log.queue_depth == 0)
    assert _child_pid(log) == pid
    log.close()
    assert _child_pid(log) is None  # closing the pipe ends the child
    again = EventLog(url, tmp_path / "journal", ship_in_subprocess=True, **TUNING)
    again.start()
    for kind, row in events[1500:]:  # re-sent, as a replay after a crash would: still once
        again.append(kind, row)
    again.close()
    assert_stored_exactly(url, events)
    assert not list((tmp_path / "journal").glob("*.journal"))


def test_a_killed_child_is_an_outage_then_a_new_child_ships_the_rest(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    events = all_events(2400)
    log = EventLog(url, tmp_path / "journal", ship_in_subprocess=True, **TUNING)
    log.start()
    for kind, row in events[:800]:
        log.append(kind, row)
    wait_until(lambda: log.queue_depth == 0)
    first = _child_pid(log)
    assert first is not None
    os.kill(first, signal.SIGKILL)
    for kind, row in events[800:1600]:
        log.append(kind, row)
    wait_until(lambda: log.queue_depth == 0 and log.spool_bytes == 0)
    for kind, row in events[1600:]:
        log.append(kind, row)
    wait_until(lambda: log.queue_depth == 0)
    second = _child_pid(log)
    log.close()
    assert second is not None
    assert second != first
    assert_stored_exactly(url, events)


def test_the_child_ignores_sigterm_until_the_log_is_closed(tmp_path: Path) -> None:
    # A process manager signals the whole group; the gateway's flush must still reach the store.
    url = f"sqlite:///{tmp_path / 'events.db'}"
    events = all_events(600)
    log = EventLog(url, tmp_path / "journal", ship_in_subprocess=True, **TUNING)
    log.start()
    for kind, row in events[:300]:
        log.append(kind, row)
    wait_until(lambda: log.queue_depth == 0)
    pid = _child_pid(log)
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    for kind, row in events[300:]:
        log.append(kind, row)
    wait_until(lambda: log.queue_depth == 0)
    assert _child_pid(log) == pid  # the same child shipped them: it did not stop
    log.close()
    assert log.rejected_events == 0
    assert_stored_exactly(url, events)


def test_invalid_rows_are_set_aside_through_the_child(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    events = all_events(300)
    log = EventLog(url, tmp_path / "journal", ship_in_subprocess=True, **TUNING)
    log.start()
    for kind, row in events:
        log.append(kind, row)
    log.append("exposure", {"event_id": "broken", "ts": 1.0})  # no experiment, unit, variant
    log.close()
    assert log.rejected_events == 1
    assert_stored_exactly(url, events)


def test_rows_written_directly_through_the_child(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    events = all_events(30)
    store = SubprocessStore(url)
    try:
        for kind, row in events:
            assert store.write_events(kind, [row]) == 1
        with pytest.raises(StoreError, match="experiment_key"):
            store.write_events("exposure", [{"event_id": "broken", "ts": 1.0}])
        assert store.pid is not None  # a refused row is not an outage: the child carries on
    finally:
        store.close()
    assert store.pid is None
    assert_stored_exactly(url, events)


def test_an_unreachable_store_at_start_spools_until_one_answers(tmp_path: Path) -> None:
    down = f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/test"
    events = all_events(90)
    log = EventLog(down, tmp_path / "journal", ship_in_subprocess=True, **TUNING)
    log.start()  # the gateway still starts; the child keeps trying on each batch
    for kind, row in events:
        log.append(kind, row)
    wait_until(lambda: log.queue_depth == 0 and log.spool_bytes > 0)
    assert not log.is_store_reachable
    log.close(timeout_seconds=2.0)
    url = f"sqlite:///{tmp_path / 'events.db'}"
    again = EventLog(url, tmp_path / "journal", ship_in_subprocess=True, **TUNING)
    again.start()
    again.close()
    assert again.spool_bytes == 0
    assert_stored_exactly(url, events)
