"""Durable event logging for the gateway: journal first, then group commit into the store.

``append`` writes the event to the local journal (one ``write(2)``, microseconds) before it
returns, so an acknowledged event survives a SIGKILL of the gateway. A shipper thread sends
events to the store in batches (group commit); a store outage spills them to the spool,
which is replayed in order when the store is back, before any newer event. Event ids make
every write idempotent, so replays after a crash store nothing twice. Memory is bounded: the
in-memory queue has a cap, and past it the journal itself is the buffer.

Rows the store rejects as invalid (not as unavailable) go to a dead-letter file under
``journal_dir/rejected`` instead of blocking everything behind them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

import orjson

from abflow.errors import InvalidArgumentError, JournalError, StoreError, StoreUnavailableError
from abflow.events.journal import (
    KIND_CODES,
    MAX_BODY_BYTES,
    Entry,
    EventKind,
    Journal,
    Position,
    SyncStats,
    encode_frame,
)
from abflow.events.shipper import SubprocessStore, open_shipper_store
from abflow.events.spool import Spool

__all__ = ["MAX_BATCH_EVENTS", "EventKind", "EventLog", "StoreWriter", "SyncStats"]

logger = logging.getLogger(__name__)

MAX_BATCH_EVENTS = 5_000
"""Most events one store write carries (group commit).

The shipper wakes when ``batch_size`` events are queued and then takes everything queued, up
to this many. At low load batches stay small (an event waits at most the flush interval);
under load the backlog that builds up during one write is the next batch, so each commit
(one fsync) covers more events and the store keeps up: on SQLite, batches of 5,000 write
about twice as fast as batches of 500 (bench/store.py).
"""


class StoreWriter(Protocol):
    """Where events end up: :class:`abflow.store.EventStore` or anything that writes alike."""

    def write_events(self, kind: EventKind, rows: list[dict[str, Any]]) -> int:
        """Store ``rows`` idempotently by ``event_id``; raise StoreUnavailableError if down."""
        ...


@runtime_checkable
class EntryWriter(Protocol):
    """A writer that takes journal entries as they are, their JSON not decoded: the shipper
    process (:class:`~abflow.events.shipper.SubprocessStore`) and Kafka."""

    def write_entries(self, entries: Sequence[Entry]) -> list[tuple[int, str]]:
        """Write ``entries`` idempotently; (index, reason) of those refused for good."""
        ...


def _open_store(url: str, *, in_subprocess: bool = False) -> StoreWriter:
    # Events to Kafka (docs/kafka.md): in this process, as librdkafka has threads of its own.
    if url.startswith("kafka://"):
        from abflow.events.kafka import KafkaEventWriter

        writer = KafkaEventWriter.from_url(url)
        writer.check_settings()
        return writer
    if in_subprocess:
        sink = SubprocessStore(url)
        try:
            sink.start()
        except StoreUnavailableError as exc:  # each batch tries again (and spools meanwhile)
            logger.warning("event store not reachable from the shipper process yet: %s", exc)
        return sink
    store: StoreWriter = open_shipper_store(url)
    return store


def _encode(kind: EventKind, row: dict[str, Any]) -> bytes:
    if kind not in KIND_CODES:
        msg = f"unknown event kind {kind!r}; expected exposure, prediction or outcome"
        raise InvalidArgumentError(msg)
    try:
        payload = orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError as exc:
        msg = f"{kind} row cannot be serialised: {exc}"
        raise InvalidArgumentError(msg) from exc
    if len(payload) >= MAX_BODY_BYTES:
        msg = f"{kind} row is {len(payload)} bytes; the limit is {MAX_BODY_BYTES - 1}"
        raise InvalidArgumentError(msg)
    return payload


class EventLog:
    """Journal + shipper + spool behind ``append``; see the module docstring for the why.

    ``store_url`` (or an already open ``store``) says where events go; with neither, events
    stay in the journal until an EventLog with a store replays it. Tuning:
    ``batch_size`` queued events that wake the shipper (a store write then carries everything
    queued, up to ``max(batch_size, MAX_BATCH_EVENTS)``); ``flush_interval_seconds`` the
    longest an event waits before a partial batch is sent; ``max_queue_events`` the in-memory cap;
    ``fsync_interval_seconds`` group fsync period (0: fsync every append, None: never);
    ``segment_bytes`` journal segment size; ``retry_*`` backoff while the store is down;
    ``ship_in_subprocess`` writes to ``store_url`` from a child process
    (:mod:`abflow.events.shipper`), so that store writes never hold this process's GIL.
    """

    def __init__(
        self,
        store_url: str | None,
        journal_dir: Path,
        *,
        store: StoreWriter | None = None,
        batch_size: int = 500,
        flush_interval_seconds: float = 0.05,
        max_queue_events: int = 10_000,
        fsync_interval_seconds: float | None = 0.05,
        segment_bytes: int = 8 * 1024 * 1024,
        spool_file_bytes: int = 64 * 1024 * 1024,
        retry_initial_seconds: float = 0.1,
        retry_max_seconds: float = 5.0,
        ship_in_subprocess: bool = False,
    ) -> None:
        for name, value in (("batch_size", batch_size), ("max_queue_events", max_queue_events)):
            if value < 1:
                msg = f"{name} must be at least 1, got {value}"
                raise InvalidArgumentError(msg)
        if not 0 < flush_interval_seconds <= 60:
            msg = f"flush_interval_seconds must be in (0, 60], got {flush_interval_seconds}"
            raise InvalidArgumentError(msg)
        if not 0 < retry_initial_seconds <= retry_max_seconds:
            msg = f"retry seconds must satisfy 0 < initial <= max, got {retry_initial_seconds} and {retry_max_seconds}"
            raise InvalidArgumentError(msg)
        self.store_url = store_url
        self.ship_in_subprocess = ship_in_subprocess
        self.journal_dir = Path(journal_dir)
        self.batch_size = batch_size
        self.max_batch_events = max(batch_size, MAX_BATCH_EVENTS)
        self.flush_interval_seconds = flush_interval_seconds
        self.max_queue_events = max_queue_events
        self.retry_initial_seconds = retry_initial_seconds
        self.retry_max_seconds = retry_max_seconds
        self._sink = store
        self._owns_sink = store is None
        self._is_shipping = store is not None or store_url is not None
        self._journal = Journal(
            self.journal_dir,
            segment_bytes=segment_bytes,
            fsync_interval_seconds=fsync_interval_seconds,
        )
        self._spool = Spool(self.journal_dir / "spool", file_bytes=spool_file_bytes)
        self._rejected = Spool(self.journal_dir / "rejected", file_bytes=spool_file_bytes)
        self._lock = threading.Lock()
        self._queue: deque[Entry] = deque()
        self._taken_at = 0.0  # when the shipper last took a batch from the queue
        self._held: list[Entry] = []
        self._held_until: Position = (0, 0)
        self._overflow: Position | None = None
        self._confirmed: Position = (0, 0)
        self._pending = 0
        self._rejected_events = 0
        self._is_open = False
        self._is_store_down = False
        self._is_idle = False  # the shipper sleeps until an append wakes it
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._abort = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Open the journal, queue what earlier runs left (spool first), start the shipper."""
        if self._is_open or self._stopping.is_set():
            msg = f"event log {self.journal_dir} was already started"
            raise JournalError(msg)
        older = self._journal.open()
        try:
            self._spool.open()
            self._rejected.open()
            first = older[0] if older else self._journal.first_new_segment
            self._confirmed = (first, 0)
            if older:
                self._overflow = (first, 0)
                self._pending = self._count_records((first, 0))
            if self._sink is None and self.store_url is not None:
                self._connect()
        except BaseException:
            self._journal.close()
            raise
        self._is_open = True
        if self._is_shipping:
            self._thread = threading.Thread(
                target=self._run, name="abflow-event-shipper", daemon=True
            )
            self._thread.start()

    def close(self, timeout_seconds: float = 10.0) -> None:
        """Ship what the store will take within ``timeout_seconds``, make the rest durable, stop.

        Events the store could not take stay in the journal or spool for the next start.
        """
        with self._lock:
            if not self._is_open:
                return
            self._is_open = False
        self._stopping.set()
        self._wake.set()
        is_clean = True
        if self._thread is not None:
            self._thread.join(timeout_seconds)
            if self._thread.is_alive():
                is_clean = False
                self._abort.set()
                logger.warning(
                    "event shipper still busy after %.1f s; %d events stay in the journal",
                    timeout_seconds,
                    self._pending,
                )
        self._journal.close()
        if is_clean and self._is_shipping:
            self._journal.release(self._confirmed)
        self._spool.close()
        self._rejected.close()
        close_sink = getattr(self._sink, "close", None)
        if self._owns_sink and is_clean and callable(close_sink):
            close_sink()

    def __enter__(self) -> EventLog:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- the hot path ------------------------------------------------------------------------

    def append(self, kind: EventKind, row: dict[str, Any]) -> None:
        """Record one event; when this returns the event survives a SIGKILL of the process.

        Thread-safe. Raises JournalError if the journal cannot be written (the event is then
        not acknowledged), InvalidArgumentError for an unknown kind or a row orjson cannot
        serialise. Numpy scalars (model outputs) are stored as plain numbers.
        """
        self.append_many(((kind, row),))

    def append_many(self, events: Sequence[tuple[EventKind, dict[str, Any]]]) -> None:
        """Record several events with one ``write(2)``, as :meth:`append` records one.

        A request's exposure and prediction are acknowledged together, so they need not pay
        for two system calls. All or none: an error leaves none of them recorded.
        """
        encoded = [(kind, _encode(kind, row)) for kind, row in events]
        if not encoded:
            return
        frames = [encode_frame(kind, payload) for kind, payload in encoded]
        blob = frames[0] if len(frames) == 1 else b"".join(frames)
        with self._lock:
            if not self._is_open:
                msg = f"event log {self.journal_dir} is not open; the event was not recorded"
                raise JournalError(msg)
            number, end = self._journal.append(blob, records=len(frames))
            self._pending += len(frames)
            offset = end - len(blob)
            for (kind, payload), frame in zip(encoded, frames, strict=True):
                if self._overflow is not None or not self._is_shipping:
                    break
                if len(self._queue) < self.max_queue_events:
                    offset += len(frame)
                    self._queue.append((kind, payload, number, offset))
                else:  # the queue is full: from here on the shipper reads the journal
                    self._overflow = (number, offset)
            depth = len(self._queue)
            was_idle, self._is_idle = self._is_idle, False
        if (
            was_idle or depth >= self.batch_size or self._overflow is not None
        ) and not self._wake.is_set():
            self._wake.set()

    # -- observability -----------------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        """Acknowledged events not yet written to the store or the spool."""
        return self._pending

    @property
    def spool_bytes(self) -> int:
        """Bytes held in the outage spool."""
        return self._spool.size_bytes

    @property
    def journal_bytes(self) -> int:
        """Bytes in journal segments not yet deleted."""
        return self._journal.size_bytes

    @property
    def rejected_events(self) -> int:
        """Events the store refused as invalid, kept under ``journal_dir/rejected``."""
        return self._rejected_events

    @property
    def is_store_reachable(self) -> bool:
        """False while the store is failing and events go to the spool."""
        return not self._is_store_down

    @property
    def sync_stats(self) -> SyncStats:
        """Group-fsync counters: the measured power-loss window."""
        return self._journal.sync_stats

    # -- shipper -----------------------------------------------------------------------------

    def _count_records(self, start: Position) -> int:
        count = 0
        end = self._journal.end()
        while start < end:
            entries, start, _ = self._journal.read(start, end, 10_000)
            if not entries:
                break
            count += len(entries)
        return count

    def _run(self) -> None:
        backoff = self.retry_initial_seconds
        retry_at = 0.0
        while not self._abort.is_set():
            try:
                is_stopping = self._stopping.is_set()
                now = time.monotonic()
                if now < retry_at and not is_stopping:
                    # The store is down: move new events to the spool so the journal shrinks.
                    batch = self._next_batch()
                    if batch:
                        self._spool.append(batch)
                        self._confirm(batch)
                    else:
                        self._wait(min(retry_at - now, self.flush_interval_seconds))
                    continue
                if self._spool.has_pending:
                    chunk, reached = self._spool.read(self.max_batch_events)
                    if self._deliver(chunk):
                        self._spool.commit(reached)
                        backoff, retry_at = self.retry_initial_seconds, 0.0
                    elif is_stopping:  # one last try failed: the spool keeps them
                        return
                    else:
                        retry_at = time.monotonic() + backoff
                        backoff = min(2 * backoff, self.retry_max_seconds)
                    continue
                if not self._held and not is_stopping:
                    due_in = self._due_in()
                    if due_in > 0:
                        self._wait(due_in)
                        continue
                batch = self._next_batch()
                if not batch:
                    if is_stopping:
                        return
                    self._idle()
                    continue
                if self._deliver(batch):
                    backoff, retry_at = self.retry_initial_seconds, 0.0
                else:
                    self._spool.append(batch)
                    retry_at = time.monotonic() + backoff
                    backoff = min(2 * backoff, self.retry_max_seconds)
                self._confirm(batch)
                if is_stopping and retry_at > time.monotonic():
                    return
            except Exception:
                # Never let the shipper die: the batch in hand is kept and retried, and every
                # event is still in the journal.
                logger.exception("event shipper failed; retrying in %.1f s", backoff)
                retry_at = time.monotonic() + backoff
                backoff = min(2 * backoff, self.retry_max_seconds)
                if self._stopping.is_set():
                    return

    def _due_in(self) -> float:
        """Seconds until the next batch is due: at once for a full batch (``batch_size``)
        or a backlog in the journal, else ``flush_interval_seconds`` after the last one was
        taken (so no event queued since waits longer). A partial batch is not sent sooner,
        even when events queued during the last write: at low load that made one store
        write per event or two, each a wake-up of this thread and a commit."""
        with self._lock:
            if self._overflow is not None or len(self._queue) >= self.batch_size:
                return 0.0
            return self._taken_at + self.flush_interval_seconds - time.monotonic()

    def _next_batch(self) -> list[Entry]:
        """The batch in hand if the last attempt failed, else a new one; held until confirmed."""
        if not self._held:
            self._held = self._take()
        return self._held

    def _wait(self, timeout: float) -> None:
        self._wake.wait(timeout)
        self._wake.clear()

    def _idle(self) -> None:
        """Nothing to ship: sleep until the next append (an idle gateway never wakes this
        thread), then give the events that follow it one flush interval to gather."""
        with self._lock:
            if self._queue or self._overflow is not None:
                return
            self._is_idle = True
        self._wake.wait()
        self._wake.clear()
        with self._lock:
            self._is_idle = False
            self._taken_at = time.monotonic()

    def _take(self) -> list[Entry]:
        """The next batch in journal order: from the queue, else read back from the journal.

        Only called with no batch in hand, so everything before it has been confirmed.
        """
        with self._lock:
            if self._queue:
                if len(self._queue) <= self.max_batch_events:  # the common case: take all
                    batch = list(self._queue)
                    self._queue.clear()
                else:
                    batch = [self._queue.popleft() for _ in range(self.max_batch_events)]
                self._taken_at = time.monotonic()
                self._held_until = (batch[-1][2], batch[-1][3])
                return batch
            start = self._overflow
        if start is None:
            return []
        entries, reached, _ = self._journal.read(start, self._journal.end(), self.max_batch_events)
        with self._lock:
            # Caught up with the writer: new appends go through the queue again.
            self._overflow = None if reached == self._journal.end() else reached
        # Confirming the batch also releases torn or corrupt bytes read past on the way.
        self._held_until = reached
        if not entries and reached != start:
            self._confirmed = reached
            self._journal.release(reached)
        return entries

    def _confirm(self, batch: list[Entry]) -> None:
        """The batch is in the store or the spool: let the journal delete what precedes it."""
        self._confirmed = self._held_until
        self._journal.release(self._confirmed)
        with self._lock:
            self._pending = max(0, self._pending - len(batch))
        self._held = []

    def _connect(self) -> StoreWriter | None:
        if self._sink is None and self.store_url is not None:
            try:
                self._sink = _open_store(self.store_url, in_subprocess=self.ship_in_subprocess)
            except StoreUnavailableError as exc:
                self._note_outage(exc)
        return self._sink

    def _deliver(self, entries: list[Entry]) -> bool:
        """Write entries to the store; False if it is unavailable (the caller spools)."""
        if not entries:
            return True
        sink = self._connect()
        if sink is None:
            return False
        if isinstance(sink, EntryWriter):
            return self._deliver_through(sink, entries)
        groups: dict[EventKind, list[dict[str, Any]]] = {}
        for kind, payload, _, _ in entries:
            groups.setdefault(kind, []).append(orjson.loads(payload))
        try:
            for group, rows in groups.items():
                sink.write_events(group, rows)
        except StoreUnavailableError as exc:
            self._note_outage(exc)
            return False
        except StoreError:
            return self._deliver_each(sink, entries)
        self._note_recovery()
        return True

    def _deliver_through(self, sink: EntryWriter, entries: list[Entry]) -> bool:
        """Entries as they are (no decoding here): the child process or Kafka takes them."""
        try:
            rejected = sink.write_entries(entries)
        except StoreUnavailableError as exc:
            self._note_outage(exc)
            return False
        for index, reason in rejected:
            self._reject(entries[index], reason)
        self._note_recovery()
        return True

    def _reject(self, entry: Entry, reason: object) -> None:
        logger.error("store rejected a %s event, kept in rejected/: %s", entry[0], reason)
        self._rejected.append([entry])
        self._rejected_events += 1

    def _deliver_each(self, sink: StoreWriter, entries: list[Entry]) -> bool:
        """One row at a time, so that one invalid row cannot hold back the others."""
        for entry in entries:
            kind, payload = entry[0], entry[1]
            try:
                sink.write_events(kind, [orjson.loads(payload)])
            except StoreUnavailableError as exc:
                self._note_outage(exc)
                return False
            except StoreError as exc:
                self._reject(entry, exc)
        self._note_recovery()
        return True

    def _note_outage(self, exc: Exception) -> None:
        if not self._is_store_down:
            logger.warning("event store unavailable, spooling events: %s", exc)
            self._is_store_down = True

    def _note_recovery(self) -> None:
        if self._is_store_down:
            logger.warning("event store reachable again, replaying the spool")
            self._is_store_down = False
