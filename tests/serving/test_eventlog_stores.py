"""EventLog against the real stores: SQLite in a temporary folder and PostgreSQL."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from abflow.errors import StoreUnavailableError
from abflow.events.eventlog import EventKind, EventLog
from abflow.store import EventStore, upgrade_store
from abflow.store.schema import EVENT_TABLES

KINDS: tuple[EventKind, ...] = ("exposure", "prediction", "outcome")


def make_row(kind: EventKind, i: int) -> dict[str, Any]:
    base = {"event_id": f"{kind[0]}-{i:06d}", "ts": 1_750_000_000.0 + i / 8}
    if kind == "exposure":
        return {
            **base,
            "experiment_key": "fraud",
            "phase": 1,
            "unit_id": f"u{i % 97}",
            "variant": ("control", "challenger")[i % 2],
            "attributes_json": '{"country": "FR"}' if i % 5 == 0 else None,
        }
    if kind == "prediction":
        return {
            **base,
            "request_id": f"r-{i:06d}",
            "experiment_key": "fraud",
            "phase": 1,
            "unit_id": f"u{i % 97}",
            "variant": ("control", "challenger")[i % 2],
            "model_version": ("3", "4")[i % 2],
            "latency_ms": 1.0 + (i % 13) / 4,
            "is_fallback": i % 17 == 0,
            "is_shadow": False,
            "score": (i % 100) / 100,
            "output_json": None,
            "features_hash": None,
            "error": None,
        }
    return {
        **base,
        "unit_id": f"u{i % 97}",
        "name": "chargeback",
        "value": float(i % 2),
        "request_id": f"r-{i:06d}",
        "experiment_key": "fraud",
    }


def all_events(n: int) -> list[tuple[EventKind, dict[str, Any]]]:
    return [(KINDS[i % 3], make_row(KINDS[i % 3], i)) for i in range(n)]


def stored_rows(url: str) -> dict[EventKind, list[dict[str, Any]]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return {
                kind: [
                    dict(row._mapping)
                    for row in connection.execute(sa.select(table).order_by(table.c.event_id))
                ]
                for kind, table in EVENT_TABLES.items()
            }
    finally:
        engine.dispose()


def assert_stored_exactly(url: str, events: list[tuple[EventKind, dict[str, Any]]]) -> None:
    expected: dict[EventKind, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    for kind, row in events:
        expected[kind].append(row)
    stored = stored_rows(url)
    for kind in KINDS:
        want = sorted(expected[kind], key=lambda r: r["event_id"])
        assert len(stored[kind]) == len(want), kind
        for got, sent in zip(stored[kind], want, strict=True):
            assert {k: got[k] for k in sent} == sent


def wait_until(condition: Callable[[], bool], timeout_seconds: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SwitchableStore:
    """A real store behind a switch: while off, writes fail as if the server were gone."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.is_down = False

    def write_events(self, kind: EventKind, rows: list[dict[str, Any]]) -> int:
        if self.is_down:
            msg = "store switched off"
            raise StoreUnavailableError(msg)
        return self.store.write_events(kind, rows)


TUNING: dict[str, Any] = {
    "flush_interval_seconds": 0.01,
    "retry_initial_seconds": 0.02,
    "retry_max_seconds": 0.1,
    "batch_size": 200,
}


def test_sqlite_store_gets_every_event_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    events = all_events(3000)
    log = EventLog(url, tmp_path / "journal", **TUNING)
    log.start()
    for kind, row in events[:2000]:
        log.append(kind, row)
    log.close()
    # A second run re-sends some events (as a replay after a crash would): still once each.
    again = EventLog(url, tmp_path / "journal", **TUNING)
    again.start()
    for kind, row in events[1500:]:
        again.append(kind, row)
    again.close()
    assert_stored_exactly(url, events)
    assert not list((tmp_path / "journal").glob("*.journal"))


def test_outage_of_a_real_store_is_spooled_and_replayed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    store = SwitchableStore(EventStore.open(url))
    events = all_events(1500)
    log = EventLog(None, tmp_path / "journal", store=store, **TUNING)
    log.start()
    for kind, row in events[:500]:
        log.append(kind, row)
    wait_until(lambda: log.queue_depth == 0)
    store.is_down = True
    for kind, row in events[500:1000]:
        log.append(kind, row)
    wait_until(lambda: log.queue_depth == 0 and log.spool_bytes > 0)
    store.is_down = False
    for kind, row in events[1000:]:
        log.append(kind, row)
    log.close()
    store.store.close()
    assert log.spool_bytes == 0
    assert_stored_exactly(url, events)


def test_invalid_rows_are_set_aside_by_the_real_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    events = all_events(300)
    log = EventLog(url, tmp_path / "journal", **TUNING)
    log.start()
    for kind, row in events:
        log.append(kind, row)
    log.append("exposure", {"event_id": "broken", "ts": 1.0})  # no experiment, unit, variant
    log.close()
    assert log.rejected_events == 1
    assert_stored_exactly(url, events)


@pytest.mark.postgres
def test_postgres_down_at_start_then_back(tmp_path: Path, pg_url: str) -> None:
    upgrade_store(pg_url)
    events = all_events(2400)
    dead_url = f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/test"
    log = EventLog(dead_url, tmp_path / "journal", **TUNING)
    log.start()  # the gateway must come up while its store is down
    for kind, row in events[:1200]:
        log.append(kind, row)
    wait_until(lambda: log.queue_depth == 0 and log.spool_bytes > 0)
    assert not log.is_store_reachable
    log.close()
    back = EventLog(pg_url, tmp_path / "journal", **TUNING)
    back.start()
    for kind, row in events[1200:]:
        back.append(kind, row)
    back.close()
    assert back.spool_bytes == 0
    assert not list((tmp_path / "journal").glob("*.journal"))
    assert_stored_exactly(pg_url, events)


class TcpProxy:
    """Forwards a local port to PostgreSQL; ``cut()`` makes the server vanish mid-run."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = closed_port()
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Refuse new connections and break the open ones, as a crashed server would."""
        with self._lock:
            doomed = [s for s in [self._listener, *self._sockets] if s is not None]
            self._listener, self._sockets = None, []
        for sock in doomed:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            with self._lock:
                self._sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@pytest.mark.postgres
def test_postgres_vanishes_mid_run_and_comes_back(tmp_path: Path, pg_url: str) -> None:
    upgrade_store(pg_url)
    url = make_url(pg_url)
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
    proxy.start()
    proxied = url.set(port=proxy.port).render_as_string(hide_password=False)
    events = all_events(3000)
    log = EventLog(proxied, tmp_path / "journal", **TUNING)
    log.start()
    try:
        for kind, row in events[:1000]:
            log.append(kind, row)
        wait_until(lambda: log.queue_depth == 0)
        proxy.cut()
        for kind, row in events[1000:2000]:
            log.append(kind, row)
        wait_until(lambda: log.queue_depth == 0 and log.spool_bytes > 0)
        assert not log.is_store_reachable
        proxy.start()
        for kind, row in events[2000:]:
            log.append(kind, row)
        wait_until(lambda: log.spool_bytes == 0 and log.queue_depth == 0)
        assert log.is_store_reachable
    finally:
        log.close()
        proxy.cut()
    assert_stored_exactly(pg_url, events)
    assert not list((tmp_path / "journal").glob("*.journal"))
