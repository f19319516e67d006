"""EventLog: acknowledged events reach the store once, in order, through outages and restarts."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from abflow.errors import InvalidArgumentError, JournalError, StoreError, StoreUnavailableError
from abflow.events.eventlog import EventKind, EventLog
from abflow.events.journal import encode_frame

KINDS: tuple[EventKind, ...] = ("exposure", "prediction", "outcome")


class MemoryStore:
    """A real, idempotent in-memory store that can be switched off (and slowed down)."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.order: dict[str, list[str]] = {kind: [] for kind in KINDS}
        self.deliveries = 0
        self.is_down = False
        self.delay_seconds = 0.0
        self.gate = threading.Event()  # cleared: writes wait until it is set
        self.gate.set()
        self._lock = threading.Lock()

    def write_events(self, kind: EventKind, rows: list[dict[str, Any]]) -> int:
        self.gate.wait()
        if self.delay_seconds:
            time.sleep(self.delay_seconds)
        if self.is_down:
            msg = "memory store is down"
            raise StoreUnavailableError(msg)
        if any(row.get("is_poison") for row in rows):
            msg = "row breaks a constraint"
            raise StoreError(msg)
        new = 0
        with self._lock:
            for row in rows:
                self.deliveries += 1
                if row["event_id"] not in self.rows:
                    self.rows[row["event_id"]] = row
                    self.order[kind].append(row["event_id"])
                    new += 1
        return new


def event(i: int) -> tuple[EventKind, dict[str, Any]]:
    kind = KINDS[i % 3]
    return kind, {"event_id": f"ev-{i:06d}", "ts": 1_700_000_000.0 + i, "n": i}


def expected_order(ids: range) -> dict[str, list[str]]:
    order: dict[str, list[str]] = {kind: [] for kind in KINDS}
    for i in ids:
        kind, row = event(i)
        order[kind].append(row["event_id"])
    return order


def wait_until(condition: Callable[[], bool], timeout_seconds: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def fast_log(store: MemoryStore | None, journal_dir: Path, **tuning: Any) -> EventLog:
    options: dict[str, Any] = {
        "flush_interval_seconds": 0.01,
        "retry_initial_seconds": 0.01,
        "retry_max_seconds": 0.05,
        "fsync_interval_seconds": 0.01,
    }
    options.update(tuning)
    return EventLog(None, journal_dir, store=store, **options)


def segments(journal_dir: Path) -> list[Path]:
    return sorted(journal_dir.glob("*.journal"))


def test_events_reach_the_store_once_in_order_and_the_journal_is_emptied(
    tmp_path: Path,
) -> None:
    store = MemoryStore()
    log = fast_log(store, tmp_path, batch_size=64)
    log.start()
    for i in range(3000):
        log.append(*event(i))
    log.close()
    assert store.order == expected_order(range(3000))
    assert store.rows["ev-000007"] == event(7)[1]
    assert store.deliveries == 3000
    assert segments(tmp_path) == []
    assert log.queue_depth == 0
    assert log.sync_stats.synced_events >= 1


def test_an_idle_log_wakes_neither_thread_and_the_next_event_still_ships(
    tmp_path: Path,
) -> None:
    store = MemoryStore()
    log = fast_log(store, tmp_path)  # 10 ms flush and fsync intervals
    log.start()
    log.append(*event(0))
    wait_until(lambda: len(store.rows) == 1)
    time.sleep(0.1)  # the event's fsync is done and the shipper has found nothing more
    calls = {"take": 0, "sync": 0}
    take, sync = log._take, log._journal.sync

    def counted_take() -> Any:
        calls["take"] += 1
        return take()

    def counted_sync() -> None:
        calls["sync"] += 1
        sync()

    log._take = counted_take  # type: ignore[method-assign]
    log._journal.sync = counted_sync  # type: ignore[method-assign]
    time.sleep(0.5)  # fifty intervals
    assert calls == {"take": 0, "sync": 0}
    log.append(*event(1))
    wait_until(lambda: len(store.rows) == 2, timeout_seconds=5)
    wait_until(lambda: calls["sync"] == 1, timeout_seconds=5)
    log.close()
    assert store.order == expected_order(range(2))


def test_appends_from_many_threads(tmp_path: Path) -> None:
    store = MemoryStore()
    log = fast_log(store, tmp_path, batch_size=100, max_queue_events=500)
    log.start()

    def work(offset: int) -> None:
        for i in range(offset, 20_000, 4):
            log.append(*event(i))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    assert sorted(store.rows) == sorted(event(i)[1]["event_id"] for i in range(20_000))
    assert store.deliveries == 20_000


def test_store_outage_spills_to_the_spool_and_replays_in_order(tmp_path: Path) -> None:
    store = MemoryStore()
    store.is_down = True
    log = fast_log(store, tmp_path, batch_size=50, segment_bytes=4096)
    log.start()
    for i in range(1000):
        log.append(*event(i))
    wait_until(lambda: log.queue_depth == 0)
    assert not log.is_store_reachable
    assert log.spool_bytes > 0
    assert store.rows == {}
    # The journal released what the spool now holds: only the active segment remains.
    assert len(segments(tmp_path)) == 1
    store.is_down = False
    for i in range(1000, 1500):
        log.append(*event(i))
    # the recovery is noted just after the write that brought the rows in: wait for both
    wait_until(lambda: len(store.rows) == 1500 and log.is_store_reachable)
    log.close()
    assert store.order == expected_order(range(1500))
    assert log.spool_bytes == 0
    assert segments(tmp_path) == []


def test_restart_replays_spool_then_journal_without_duplicates(tmp_path: Path) -> None:
    store = MemoryStore()
    store.is_down = True
    log = fast_log(store, tmp_path, batch_size=40)
    log.start()
    for i in range(400):
        log.append(*event(i))
    wait_until(lambda: log.queue_depth == 0)  # all spooled
    log.close()
    # Written without a store: these stay in the journal only.
    offline = fast_log(None, tmp_path)
    offline.start()
    for i in range(400, 700):
        offline.append(*event(i))
    offline.close()
    assert segments(tmp_path)
    store.is_down = False
    store.gate.clear()  # hold deliveries until the backlog has been counted
    replay = fast_log(store, tmp_path, batch_size=40)
    replay.start()
    assert replay.queue_depth == 300  # the journal's backlog; the spool holds the rest
    for i in range(700, 800):
        replay.append(*event(i))
    assert replay.queue_depth == 400
    store.gate.set()
    replay.close()
    assert store.order == expected_order(range(800))
    assert segments(tmp_path) == []
    assert replay.spool_bytes == 0


def test_slow_store_makes_the_journal_the_buffer(tmp_path: Path) -> None:
    store = MemoryStore()
    store.gate.clear()  # a store that does not answer yet
    log = fast_log(store, tmp_path, batch_size=50, max_queue_events=100, segment_bytes=2048)
    log.start()
    for i in range(2000):
        log.append(*event(i))
    assert log.queue_depth == 2000  # far more than memory holds: the journal is the buffer
    assert log.journal_bytes > 20 * 2048
    store.delay_seconds = 0.002  # then answers, slowly
    store.gate.set()
    log.close()
    assert store.order == expected_order(range(2000))
    assert segments(tmp_path) == []


def test_invalid_rows_go_to_rejected_without_blocking_the_rest(tmp_path: Path) -> None:
    store = MemoryStore()
    log = fast_log(store, tmp_path, batch_size=100)
    log.start()
    for i in range(300):
        kind, row = event(i)
        log.append(kind, {**row, "is_poison": i in (5, 150)})
    log.close()
    assert len(store.rows) == 298
    assert {"ev-000005", "ev-000150"}.isdisjoint(store.rows)
    assert log.rejected_events == 2
    assert list((tmp_path / "rejected").glob("*.spool"))


def test_append_refuses_what_it_cannot_keep(tmp_path: Path) -> None:
    log = fast_log(MemoryStore(), tmp_path)
    with pytest.raises(JournalError, match="not open"):
        log.append(*event(0))
    log.start()
    with pytest.raises(InvalidArgumentError, match="unknown event kind"):
        log.append("click", {"event_id": "x"})  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="cannot be serialised"):
        log.append("outcome", {"event_id": "x", "value": object()})
    log.close()
    with pytest.raises(JournalError, match="not open"):
        log.append(*event(1))
    with pytest.raises(JournalError, match="already started"):
        log.start()


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("batch_size", 0),
        ("max_queue_events", 0),
        ("flush_interval_seconds", 0.0),
        ("retry_initial_seconds", 10.0),
        ("fsync_interval_seconds", -1.0),
        ("segment_bytes", 10),
    ],
)
def test_impossible_tuning_is_refused(tmp_path: Path, option: str, value: float) -> None:
    with pytest.raises(InvalidArgumentError, match=option.split("_")[0]):
        EventLog(None, tmp_path, **{option: value})


class FlakyStore(MemoryStore):
    """Fails with an error the shipper does not know, a few times, then works."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def write_events(self, kind: EventKind, rows: list[dict[str, Any]]) -> int:
        if self.failures > 0:
            self.failures -= 1
            msg = "driver bug"
            raise RuntimeError(msg)
        return super().write_events(kind, rows)


def test_unexpected_store_errors_lose_nothing_and_keep_order(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = FlakyStore(failures=3)
    log = fast_log(store, tmp_path, batch_size=30)
    log.start()
    for i in range(600):
        log.append(*event(i))
    wait_until(lambda: len(store.rows) == 600)
    log.close()
    assert store.order == expected_order(range(600))
    assert "event shipper failed" in caplog.text


def test_close_tries_once_more_despite_the_backoff(tmp_path: Path) -> None:
    store = MemoryStore()
    store.is_down = True
    log = fast_log(store, tmp_path, retry_initial_seconds=30.0, retry_max_seconds=30.0)
    log.start()
    for i in range(200):
        log.append(*event(i))
    wait_until(lambda: log.queue_depth == 0 and log.spool_bytes > 0)
    store.is_down = False
    for i in range(200, 300):
        log.append(*event(i))
    log.close()  # the next retry is 30 s away; close does not wait for it, it tries now
    assert store.order == expected_order(range(300))
    assert (log.spool_bytes, segments(tmp_path)) == (0, [])


OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(1, 80)),
        st.tuples(st.sampled_from(["down", "up", "restart", "settle"]), st.just(0)),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=20, deadline=None)
@given(operations=OPERATIONS, batch_size=st.sampled_from([1, 7, 50]))
def test_any_mix_of_outages_and_restarts_delivers_everything_once_in_order(
    tmp_path_factory: pytest.TempPathFactory, operations: list[tuple[str, int]], batch_size: int
) -> None:
    journal_dir = tmp_path_factory.mktemp("journal")
    store = MemoryStore()
    tuning = {"batch_size": batch_size, "max_queue_events": 20, "segment_bytes": 1024}
    log = fast_log(store, journal_dir, **tuning)
    log.start()
    appended = 0
    try:
        for name, count in operations:
            if name == "append":
                for i in range(appended, appended + count):
                    log.append(*event(i))
                appended += count
            elif name in ("down", "up"):
                store.is_down = name == "down"
            elif name == "restart":
                log.close()
                log = fast_log(store, journal_dir, **tuning)
                log.start()
            else:
                wait_until(lambda current=log: current.queue_depth == 0)  # type: ignore[misc]
    finally:
        store.is_down = False
        log.close()
    assert store.order == expected_order(range(appended))
    assert (log.spool_bytes, segments(journal_dir)) == (0, [])


def test_numpy_scalars_from_models_are_stored_as_numbers(tmp_path: Path) -> None:
    store = MemoryStore()
    log = fast_log(store, tmp_path)
    log.start()
    row = {"event_id": "np", "ts": 1.0, "score": np.float32(0.25), "n": np.int64(3)}
    log.append("prediction", row)
    log.close()
    stored = store.rows["np"]
    assert stored == {"event_id": "np", "ts": 1.0, "score": 0.25, "n": 3}
    assert (type(stored["score"]), type(stored["n"])) == (float, int)


def test_restart_skips_a_torn_tail_and_a_damaged_record(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    offline = fast_log(None, tmp_path)
    offline.start()
    for i in range(100):
        offline.append(*event(i))
    offline.close()
    (segment,) = segments(tmp_path)
    data = bytearray(segment.read_bytes())
    data[data.index(b"ev-000040")] ^= 0x01  # bit rot inside one record
    torn = encode_frame("outcome", orjson.dumps({"event_id": "torn", "ts": 1.0}))[:-5]
    segment.write_bytes(bytes(data) + torn)  # and a write cut short by a crash
    store = MemoryStore()
    store.gate.clear()  # hold deliveries until the backlog has been counted
    log = fast_log(store, tmp_path)
    log.start()
    assert log.queue_depth == 99
    store.gate.set()
    log.close()
    kept = [i for i in range(100) if i != 40]
    assert store.order == {
        kind: [e for e in ids if int(e[3:]) in kept]
        for kind, ids in expected_order(range(100)).items()
    }
    assert "torn" not in store.rows
    assert "skipped" in caplog.text
    assert segments(tmp_path) == []
