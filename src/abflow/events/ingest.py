"""The loader: events from Kafka into the store, idempotently, offsets committed after the store.

``abflow ingest --from kafka://… --store URL`` runs a :class:`Loader`. It reads the event
topics of one prefix as a member of a consumer group (run several for more partitions'
throughput: the group spreads the partitions), gathers messages into a group commit of up to
``batch_events`` events or ``batch_seconds``, writes each kind's rows with the store's
idempotent writer, and only then commits the batch's offsets.

Why nothing is lost or doubled after a crash: an offset is committed only after the store
committed every message before it, so a loader killed at any point resumes from a committed
offset whose messages are all stored; whatever it had read past that point is read again, and
the store keeps one row per event id, so the second copy stores nothing. The same holds for
the gateway's repeats (a batch sent again after a broker timeout) and for a rebalance: a
partition taken away mid-batch is written and committed on the way out when the store
answers, else left uncommitted for its next owner.

A message the store can never take (not JSON, a wrong field, an unknown schema version) goes
to the dead-letter topic ``<prefix>.dead-letter`` with the reason in its headers, so that it
never blocks the partition behind it. A store outage is waited out: the batch in hand is
retried with backoff, and nothing is committed meanwhile.

A commit is bounded and never blocks a stop. librdkafka gives a synchronous commit no
timeout (against a broker that accepts connections and never answers it waited minutes, out
of reach of a stop or SIGTERM), so the loader commits asynchronously and waits for the
broker's answer (``on_commit``) in consume calls of 0.1 s, for at most
``commit_timeout_seconds``, and for at most :data:`_STOP_SECONDS` once stopped. A commit that
fails or is not answered in time is logged and left behind: the next batch's commit covers
its offsets, and a restart re-reads what it covered and stores nothing twice. The messages
those consume calls return are taken into the next batch exactly as the main loop takes them,
so none is skipped: the consumer's position only moves past a message the loader holds, and
an offset is only committed for a batch the store committed.
"""

from __future__ import annotations

import logging
import operator
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from abflow.errors import ConfigError, StoreError, StoreUnavailableError
from abflow.events.kafka import (
    FIXED_PRODUCER_SETTINGS,
    SCHEMA_HEADER,
    SCHEMA_VERSION,
    KafkaTarget,
    ensure_topics,
    refuse_settings,
    release_producer,
    require_confluent_kafka,
)
from abflow.store.schema import EVENT_TABLES

if TYPE_CHECKING:
    from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

__all__ = ["IngestProgress", "Loader", "RowWriter", "summary_line"]

logger = logging.getLogger(__name__)

_EVENT_ID = operator.itemgetter("event_id")


class RowWriter(Protocol):
    """The store side: :class:`abflow.store.EventStore` or anything that writes alike."""

    def write_events(self, kind: Any, rows: list[dict[str, Any]]) -> int:
        """Store ``rows`` idempotently by event id; return how many were new."""
        ...


@dataclass(frozen=True, slots=True)
class IngestProgress:
    """What the loader has done so far; ``lag`` is None until the group assigned partitions."""

    consumed: int = 0
    stored: int = 0
    """Rows new to the store."""
    repeated: int = 0
    """Messages whose event id the store already held (redelivery, gateway repeats)."""
    dead_lettered: int = 0
    commits: int = 0
    seconds: float = 0.0
    lag: int | None = None
    partitions: int = 0

    @property
    def events_per_second(self) -> float:
        return self.consumed / self.seconds if self.seconds > 0 else 0.0


_CONSUME_MESSAGES = 100
"""Messages asked of one consume call. The consumer's messages are objects the cyclic garbage
collector tracks; a batch keeps only rows and bytes (which it does not), and a call's
messages are dropped once read. Asked for 10,000 at a time, they outlived the collector's
young passes inside the call and reached its oldest generation, where they set off a
collection of the whole heap: four per 200,000 events in bench/kafka.py's loader stage, about
0.75 CPU s. A hundred at a time, few are alive when a young pass runs and full collections
are rare, while a consume call costs little next to the messages it returns."""

_COMMIT_SLICE_SECONDS = 0.1
"""Longest consume call while a commit is awaited: how soon a stop is seen."""
_STOP_SECONDS = 2.0
"""Once stopped, the longest the loader still waits for commits or dead letters in flight (a
healthy broker answers in milliseconds; one that does not answer must not hold the stop)."""
_DEAD_LETTER_SECONDS = 30.0
"""The longest a batch waits for its dead letters to be acknowledged before it counts as not
stored (it is then read again: nothing is committed past a letter the broker may not have)."""
_CLOSE_SECONDS = 3.0
"""The longest the loader waits for its consumer to leave the group. ``Consumer.close()``
has no timeout either: it waits for every commit in flight, which a broker that does not
answer holds for minutes. Past this, the consumer is left to close in a daemon thread; its
partitions move after the group's session timeout, and nothing it read past the committed
offsets is lost (it is read again)."""


@dataclass(frozen=True, slots=True)
class _Letter:
    """A message for the dead-letter topic: where it was read, as it was read, and why."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Any
    reason: str

    @classmethod
    def of(cls, message: Message, reason: str) -> _Letter:
        return cls(
            message.topic() or "",
            message.partition() or 0,
            message.offset() or 0,
            message.key(),
            message.value(),
            message.headers(),
            reason,
        )


class _Part:
    """One topic's share of a batch: the offset after each partition's last message read
    (what the commit sends) and, on an event topic, its rows in the order read, with what a
    row the store refuses needs to go to the dead-letter topic as it was read."""

    __slots__ = ("ends", "expected", "headers", "kind", "rows", "sources", "topic")

    def __init__(self, topic: str, kind: str | None) -> None:
        self.topic = topic
        self.kind = kind
        self.expected = [(SCHEMA_HEADER, f"{kind}/{SCHEMA_VERSION}".encode())] if kind else []
        """The headers the gateway writes: a message with exactly these needs no other check."""
        self.ends: dict[int, int] = {}
        self.rows: list[dict[str, Any]] = []
        self.sources: list[Any] = []
        """Four items per row: its message's partition, offset, key and value."""
        self.headers: dict[int, Any] = {}
        """By row index, the headers of a row's message when they are not ``expected``."""

    def letter(self, index: int, reason: str) -> _Letter:
        """Row ``index``'s message, to set aside for ``reason``."""
        partition, offset, key, value = self.sources[4 * index : 4 * index + 4]
        headers = self.headers.get(index, self.expected)
        return _Letter(self.topic, partition, offset, key, value, headers, reason)


@dataclass
class _Batch:
    """A group commit in the making, decoded as it is read."""

    parts: dict[str, _Part] = field(default_factory=dict)
    """By topic, in the order first read."""
    rejected: list[_Letter] = field(default_factory=list)
    size: int = 0
    """Messages taken (every one of them is committed with the batch)."""
    started: float = 0.0


class Loader:
    """One consumer-group member that loads events into a store; see the module docstring.

    ``kinds`` limits the topics read (default: every event kind). ``retry_max_seconds``
    caps the backoff while the store is down. ``commit_timeout_seconds`` is the longest a
    batch waits for the broker to answer its offset commit before the loader moves on.
    """

    def __init__(
        self,
        target: KafkaTarget,
        store: RowWriter,
        *,
        group_id: str = "abflow-ingest",
        kinds: Iterable[str] | None = None,
        batch_events: int = 20_000,
        batch_seconds: float = 0.5,
        retry_max_seconds: float = 5.0,
        create_topics: bool = True,
        commit_timeout_seconds: float = 10.0,
    ) -> None:
        if batch_events < 1:
            msg = f"batch_events must be at least 1, got {batch_events}"
            raise ConfigError(msg)
        if batch_seconds <= 0:
            msg = f"batch_seconds must be > 0, got {batch_seconds}"
            raise ConfigError(msg)
        if commit_timeout_seconds <= 0:
            msg = f"commit_timeout_seconds must be > 0, got {commit_timeout_seconds}"
            raise ConfigError(msg)
        self.kinds = list(kinds) if kinds is not None else list(EVENT_TABLES)
        unknown = [kind for kind in self.kinds if kind not in EVENT_TABLES]
        if unknown:
            msg = f"unknown event kind {unknown[0]!r}; kinds are {', '.join(EVENT_TABLES)}"
            raise ConfigError(msg)
        self.target = target
        self.store = store
        self.group_id = group_id
        self.batch_events = batch_events
        self.batch_seconds = batch_seconds
        self.retry_max_seconds = retry_max_seconds
        self.create_topics = create_topics
        self.commit_timeout_seconds = commit_timeout_seconds
        self._kafka = require_confluent_kafka()
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._assigned: set[tuple[str, int]] = set()
        self._has_assignment = False
        self._at_end: set[tuple[str, int]] = set()
        self._batch = _Batch()
        self._progress = IngestProgress()
        self._stop = threading.Event()
        self._stopped_at: float | None = None
        """When a commit wait first saw the stop: waits end :data:`_STOP_SECONDS` after."""
        self._in_flight: deque[tuple[int, float]] = deque()
        """Commits sent and not answered yet, oldest first: (number, when sent)."""
        self._sent = 0
        self._overdue = 0
        """The number of the last commit logged as unanswered (each is logged once)."""
        self._is_closing = False

    @property
    def assigned_partitions(self) -> int:
        """How many partitions the group has given this loader now."""
        return len(self._assigned)

    # -- lifecycle ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask :meth:`run` to finish its batch, commit and return (thread- and signal-safe).

        A commit the broker does not answer holds :meth:`run` for at most
        :data:`_STOP_SECONDS` after this, and closing the consumer for :data:`_CLOSE_SECONDS`.
        """
        self._stop.set()

    def run(
        self,
        *,
        until_caught_up: bool = False,
        max_seconds: float | None = None,
        progress: Callable[[IngestProgress], None] | None = None,
        progress_seconds: float = 2.0,
    ) -> IngestProgress:
        """Load until stopped, ``max_seconds`` passed, or (``until_caught_up``) every assigned
        partition is read to its end and stored; return the totals."""
        started = time.monotonic()
        consumer = self._open()
        next_report = started + progress_seconds
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if max_seconds is not None and now - started >= max_seconds:
                    break
                room = self.batch_events - self._batch.size
                messages = consumer.consume(min(room, _CONSUME_MESSAGES), timeout=0.1)
                is_idle = not messages
                self._take(messages)
                del messages  # before the next call: see _CONSUME_MESSAGES
                batch = self._batch
                now = time.monotonic()
                if batch.size and (
                    batch.size >= self.batch_events
                    or now - batch.started >= self.batch_seconds
                    or is_idle
                ):
                    self._flush()
                if until_caught_up and self._is_caught_up():
                    break
                if progress is not None and now >= next_report:
                    next_report = now + progress_seconds
                    progress(self._snapshot(started, with_lag=True))
            if self._batch.size:
                self._flush()
            # One left unanswered by an earlier wait, if any. What this reads is neither
            # stored nor committed: the group reads it again.
            self._await_commits()
        except StoreUnavailableError as exc:
            if not self._stop.is_set():
                raise
            # Stopped while the store (or the dead-letter topic) was down: nothing of this
            # batch was committed, so the group reads it again; leaving now loses nothing.
            logger.warning(
                "stopped with %d events not committed (they will be read again, and stored "
                "once): %s",
                self._batch.size,
                exc,
            )
        finally:
            self._close()
        return self._snapshot(started, with_lag=False)

    def _open(self) -> Consumer:
        if self.create_topics:
            ensure_topics(self.target, self.kinds, extra_topics=[self.target.dead_letter_topic])
        config = self.target.client_config(
            "consumer",
            **{
                "group.id": self.group_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": True,
                "isolation.level": "read_committed",
                "on_commit": self._on_commit,
            },
        )
        try:
            consumer = self._kafka.Consumer(config)
        except (self._kafka.KafkaException, TypeError, ValueError) as exc:
            refuse_settings("consumer", self.target, exc)
        try:  # made now, so that a producer setting librdkafka refuses stops the start
            self._dead_letter_producer()
        except ConfigError:
            _close_consumer(consumer)
            raise
        consumer.subscribe(
            [self.target.topic(kind) for kind in self.kinds],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        self._consumer = consumer
        return consumer  # type: ignore[no-any-return]

    def _close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            # Leaves the group at once, so its partitions move without waiting; in a thread of
            # its own, as close() waits without a timeout for commits in flight (_CLOSE_SECONDS).
            self._is_closing = True
            closing = threading.Thread(
                target=_close_consumer, args=(consumer,), name="abflow-ingest-close", daemon=True
            )
            closing.start()
            closing.join(_CLOSE_SECONDS)
            if closing.is_alive():
                logger.warning(
                    "Kafka consumer did not leave its group within %.0f s (a broker is not "
                    "answering); it is left to close in the background and its partitions move "
                    "after the session timeout",
                    _CLOSE_SECONDS,
                )
        producer, self._producer = self._producer, None
        if producer is not None:
            # Letters still unacknowledged belong to a batch not committed: it is read again.
            release_producer(producer)

    # -- the group ---------------------------------------------------------------------------

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned = {(tp.topic, tp.partition) for tp in partitions}
        self._at_end.clear()
        self._has_assignment = True

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Store and commit what was read from these partitions before they move.

        Not while closing (the batch then holds only what was read after the last flush,
        uncommitted, so the group reads it again), and without waiting for the commit's
        answer: this runs inside a consume call, which must not consume again.
        """
        if self._batch.size and not self._is_closing:
            try:
                self._flush(retry=False, wait=False)
            except StoreUnavailableError as exc:
                logger.warning(
                    "store unavailable during a rebalance; batch left to re-read: %s", exc
                )
                self._batch = _Batch()
        self._assigned.clear()
        self._has_assignment = False

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """The partitions are already someone else's: committing now would be refused."""
        self._batch = _Batch()
        self._assigned.clear()
        self._has_assignment = False

    def _take(self, messages: Sequence[Message]) -> None:
        """Decode a consume call's messages into the batch, in one pass and in the order the
        consumer returned them, so that a partition counts as read to its end only if no
        message of it follows its end-of-partition event.

        A message whose headers are exactly the writer's costs one comparison for them; only
        other headers are read for their schema version.
        """
        batch = self._batch
        if not batch.size:
            batch.started = time.monotonic()
        parts, rejected, at_end = batch.parts, batch.rejected, self._at_end
        loads = orjson.loads
        taken = 0
        for message in messages:
            error = message.error()
            if error is not None:
                self._event(message, error)
                continue
            taken += 1
            topic = message.topic() or ""
            partition = message.partition() or 0
            offset = message.offset() or 0
            part = parts.get(topic)
            if part is None:
                part = parts[topic] = _Part(topic, self.target.kind_of(topic))
            part.ends[partition] = offset + 1
            if at_end:
                at_end.discard((topic, partition))
            if part.kind is None:
                rejected.append(_Letter.of(message, f"topic {topic} holds no event kind"))
                continue
            headers = message.headers()
            is_odd = headers != part.expected
            if is_odd:
                reason = _schema_problem(part.kind, headers)
                if reason is not None:
                    rejected.append(_Letter.of(message, reason))
                    continue
            value = message.value()
            try:
                row = loads(value or b"")
            except orjson.JSONDecodeError as exc:
                rejected.append(_Letter.of(message, f"not JSON: {exc}"))
                continue
            if type(row) is not dict:
                rejected.append(_Letter.of(message, "not a JSON object"))
                continue
            if is_odd:  # kept by the row's index, so only once the row is kept
                part.headers[len(part.rows)] = headers
            part.rows.append(row)
            part.sources += (partition, offset, message.key(), value)
        batch.size += taken

    def _event(self, message: Message, error: KafkaError) -> None:
        """An end of partition, or an error the consumer reports in place of a message."""
        if error.code() == self._kafka.KafkaError._PARTITION_EOF:
            self._at_end.add((message.topic() or "", message.partition() or 0))
        elif error.fatal():
            msg = f"Kafka consumer failed: {error.str()}"
            raise StoreUnavailableError(msg)
        else:
            logger.warning("Kafka consumer: %s", error.str())

    def _is_caught_up(self) -> bool:
        return self._has_assignment and not self._batch.size and self._assigned <= self._at_end

    # -- the group commit --------------------------------------------------------------------

    def _flush(self, *, retry: bool = True, wait: bool = True) -> None:
        """Store the batch, then commit its offsets; while the store is down, wait and retry.

        With ``wait``, then wait for the broker's answer to the commit (:meth:`_await_commits`),
        taking what the consumer returns meanwhile into the next batch.
        """
        batch = self._batch
        backoff = 0.1
        while True:
            try:
                stored, refused = self._write(batch)
                break
            except StoreUnavailableError as exc:
                if not retry or self._stop.is_set():
                    raise
                logger.warning("store unavailable, retrying in %.1f s: %s", backoff, exc)
                self._stop.wait(backoff)
                if self._stop.is_set():
                    raise
                backoff = min(2 * backoff, self.retry_max_seconds)
        rejected = batch.rejected + refused  # a batch flushed again refuses its rows again
        self._dead_letter(rejected)
        self._commit(batch.parts.values())
        p = self._progress
        self._progress = replace(
            p,
            consumed=p.consumed + batch.size,
            stored=p.stored + stored,
            repeated=p.repeated + batch.size - len(rejected) - stored,
            dead_lettered=p.dead_lettered + len(rejected),
        )
        self._batch = _Batch()
        if wait:
            self._await_commits()

    def _write(self, batch: _Batch) -> tuple[int, list[_Letter]]:
        """Each kind's rows in one idempotent write; a refused write is retried row by row
        so that only the rows at fault are set aside. Returns the rows stored and the
        letters of those the store refused (``batch`` keeps only what decoding set aside)."""
        stored = 0
        refused: list[_Letter] = []
        for part in batch.parts.values():
            if part.kind is None or not part.rows:
                continue
            try:
                stored += self.store.write_events(part.kind, _in_key_order(part.rows))
            except StoreUnavailableError:
                raise
            except StoreError:
                for index, row in enumerate(part.rows):
                    try:
                        stored += self.store.write_events(part.kind, [row])
                    except StoreUnavailableError:
                        raise
                    except StoreError as exc:
                        refused.append(part.letter(index, str(exc)))
        return stored, refused

    def _dead_letter_producer(self) -> Producer:
        if self._producer is None:
            config = self.target.client_config("producer", **FIXED_PRODUCER_SETTINGS)
            try:
                self._producer = self._kafka.Producer(config)
            except (self._kafka.KafkaException, TypeError, ValueError) as exc:
                refuse_settings("dead-letter producer", self.target, exc)
        return self._producer

    def _dead_letter(self, rejected: list[_Letter]) -> None:
        """Send refused messages to the dead-letter topic, acknowledged before the commit."""
        if not rejected:
            return
        producer = self._dead_letter_producer()
        failures: list[Any] = []

        def on_delivery(error: Any, _message: Any) -> None:
            if error is not None:
                failures.append(error)

        for letter in rejected:
            source = f"{letter.topic}/{letter.partition}/{letter.offset}"
            logger.error(
                "event at %s[%s]@%s set aside in %s: %s",
                letter.topic,
                letter.partition,
                letter.offset,
                self.target.dead_letter_topic,
                letter.reason,
            )
            originals = letter.headers or []
            headers = [
                ("abflow-error", letter.reason.encode()[:1000]),
                ("abflow-source", source.encode()),
                *(originals.items() if isinstance(originals, dict) else originals),
            ]
            producer.produce(
                self.target.dead_letter_topic,
                letter.value,
                letter.key,
                headers=headers,
                on_delivery=on_delivery,
            )
        if self._await_deliveries(producer) or failures:
            msg = f"cannot write to the dead-letter topic {self.target.dead_letter_topic}"
            raise StoreUnavailableError(msg)

    def _await_deliveries(self, producer: Producer) -> int:
        """Wait for the broker to acknowledge the dead letters: at most
        :data:`_DEAD_LETTER_SECONDS`, and at most :data:`_STOP_SECONDS` after a stop is first
        seen; return how many are still unacknowledged (the batch is then not committed)."""
        deadline = time.monotonic() + _DEAD_LETTER_SECONDS
        while True:
            left = int(producer.flush(_COMMIT_SLICE_SECONDS))
            now = time.monotonic()
            if not left or now >= self._bounded_by_stop(deadline, now):
                return left

    def _bounded_by_stop(self, deadline: float, now: float) -> float:
        """``deadline``, or :data:`_STOP_SECONDS` after a stop was first seen if sooner."""
        if not self._stop.is_set():
            return deadline
        if self._stopped_at is None:
            self._stopped_at = now
        return min(deadline, self._stopped_at + _STOP_SECONDS)

    def _commit(self, parts: Iterable[_Part]) -> None:
        """Send, asynchronously, a commit of the offset after the last message of each
        partition; :meth:`_on_commit` hears the answer."""
        consumer = self._consumer
        offsets = [
            self._kafka.TopicPartition(part.topic, partition, end)
            for part in parts
            for partition, end in part.ends.items()
        ]
        if consumer is None or not offsets:
            return
        try:
            consumer.commit(offsets=offsets, asynchronous=True)
        except self._kafka.KafkaException as exc:
            # The rows are stored; the next owner reads them again and stores nothing twice.
            logger.warning("offset commit refused (rows are stored; they will be re-read): %s", exc)
            return
        self._sent += 1
        self._in_flight.append((self._sent, time.monotonic()))

    def _on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """The broker's answer to a commit, served inside a consume call, oldest first."""
        if self._in_flight:
            self._in_flight.popleft()
        failed = [tp for tp in partitions or () if tp.error is not None]
        if error is None and not failed:
            self._progress = replace(self._progress, commits=self._progress.commits + 1)
            return
        first = error if error is not None else failed[0].error
        reason = first.str() if first is not None else "unknown error"
        logger.warning(
            "offset commit failed: %s. The rows are stored; the next commit covers these "
            "offsets, and whatever a restart re-reads is stored once.",
            reason,
        )

    def _await_commits(self) -> None:
        """Wait until the broker answered every commit in flight: at most
        ``commit_timeout_seconds`` after the oldest was sent, and at most :data:`_STOP_SECONDS`
        after a stop is first seen.

        librdkafka hands the answers to ``on_commit`` inside a consume call, and a consume call
        also returns messages: each call's are taken into the batch (the next one: the batch
        just committed is already replaced), as the main loop would take them, so none is
        skipped. When that batch is full the wait ends early: the main loop stores it, and
        its commit covers these offsets too. A commit still unanswered at its deadline is
        logged once and not waited for again; its answer is heard whenever it comes.
        """
        consumer = self._consumer
        while self._in_flight and consumer is not None:
            number, sent = self._in_flight[0]
            now = time.monotonic()
            deadline = self._bounded_by_stop(sent + self.commit_timeout_seconds, now)
            if now >= deadline:
                if number > self._overdue:
                    self._overdue = self._in_flight[-1][0]
                    logger.warning(
                        "Kafka has not answered an offset commit after %.1f s; not waiting "
                        "longer. The rows are stored; the next commit covers these offsets, "
                        "and whatever a restart re-reads is stored once.",
                        now - sent,
                    )
                return
            room = self.batch_events - self._batch.size
            if room <= 0:
                return
            timeout = min(_COMMIT_SLICE_SECONDS, deadline - now)
            messages = consumer.consume(min(room, _CONSUME_MESSAGES), timeout=timeout)
            self._take(messages)
            del messages  # see _CONSUME_MESSAGES

    # -- progress ----------------------------------------------------------------------------

    def _snapshot(self, started: float, *, with_lag: bool) -> IngestProgress:
        lag = self._lag() if with_lag else None
        return replace(
            self._progress,
            seconds=time.monotonic() - started,
            lag=lag,
            partitions=len(self._assigned),
        )

    def _lag(self) -> int | None:
        """Messages in the assigned partitions not yet read (high watermark minus position)."""
        consumer = self._consumer
        if consumer is None or not self._has_assignment:
            return None
        places = [self._kafka.TopicPartition(t, p) for t, p in sorted(self._assigned)]
        total = 0
        try:
            for tp in consumer.position(places):
                # The high watermark of the last fetch: no request to the broker per tick.
                _, high = consumer.get_watermark_offsets(tp, cached=True)
                position = tp.offset if tp.offset >= 0 else 0
                total += max(0, high - position)
        except self._kafka.KafkaException:
            return None
        return total


def _close_consumer(consumer: Consumer) -> None:
    """Close ``consumer`` (in the thread :meth:`Loader._close` gives it), logging a failure."""
    try:
        consumer.close()
    except Exception as exc:  # a thread's exception would only reach stderr
        logger.warning("Kafka consumer did not close cleanly: %s", exc)


def _in_key_order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows sorted by event id, or as they are if some have no comparable id (the store
    then names the bad row).

    A batch interleaves runs of several partitions; SQLite inserts them into its primary key
    with about 8% less CPU in key order (the sort itself included), and PostgreSQL's writer
    sorts anyway.
    """
    try:
        return sorted(rows, key=_EVENT_ID)
    except (KeyError, TypeError):
        return rows


def _schema_problem(kind: str | None, headers: Any) -> str | None:
    """None if the schema header (when present) names this kind at a version we read."""
    if not headers:
        return None  # a producer that sets no header writes the current layout
    pairs = headers.items() if isinstance(headers, dict) else headers
    for name, value in pairs:
        if name == SCHEMA_HEADER:
            raw = value.encode() if isinstance(value, str) else (value or b"")
            text = raw.decode("utf-8", "replace")
            expected = f"{kind}/{SCHEMA_VERSION}"
            if text != expected:
                return f"schema header {text!r}; this loader reads {expected!r}"
    return None


def summary_line(progress: IngestProgress) -> str:
    """One line for a terminal or a log: counts, rate and lag."""
    lag = "?" if progress.lag is None else f"{progress.lag:,}"
    return (
        f"{progress.consumed:,} read, {progress.stored:,} new, {progress.repeated:,} already "
        f"stored, {progress.dead_lettered:,} dead-lettered; {progress.events_per_second:,.0f} "
        f"events/s; lag {lag} over {progress.partitions} partitions"
    )
