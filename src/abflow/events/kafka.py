"""Events to Kafka: the message layout, the ``kafka://`` URL, and the gateway's Kafka writer.

:class:`KafkaEventWriter` has the store writer's one method (``write_events``), so the event
log ships to Kafka exactly as it ships to the store: the journal keeps every event until
``write_events`` returns, and ``write_events`` returns only when the broker has acknowledged
every message of the batch (``acks=all``), so an event leaves the journal only once Kafka
holds it. A broker that cannot take a batch raises StoreUnavailableError: the event log
spools the batch and sends it again, and a repeat is harmless because the loader
(:mod:`abflow.events.ingest`) writes by event id.

Message layout, schema version :data:`SCHEMA_VERSION` (docs/kafka.md has the fields):

- **topic**: one per event kind, ``<prefix>.<kind>`` (``abflow.exposure``,
  ``abflow.prediction``, ``abflow.outcome``, ``abflow.sample``);
- **key**: the unit id (UTF-8), so that one unit's events stay in order on one partition; an
  event without one (an outcome known only by its request, a feature sample) is keyed by its
  request id;
- **value**: one JSON object whose fields are the columns of the kind's store table
  (:mod:`abflow.store.schema`), ``event_id`` included; :func:`event_json_schema` gives its
  JSON Schema;
- **header** ``abflow-schema``: ``<kind>/<version>``, e.g. ``exposure/1``. A change that a
  reader of version 1 could misread gets a new version.

The producer is confluent-kafka's (librdkafka) with ``enable.idempotence=true`` and
``acks=all``: its own retries never write a message twice or out of order within a
partition. confluent-kafka is an optional extra (``pip install abflow[kafka]``), imported
when a writer or loader is made.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal, NoReturn
from urllib.parse import parse_qsl, urlsplit

import orjson

from abflow.errors import ConfigError, StoreError, StoreUnavailableError
from abflow.events.journal import Entry
from abflow.store.schema import EVENT_TABLES, UNRESOLVED_UNIT

if TYPE_CHECKING:
    from confluent_kafka import KafkaError, Message, Producer

__all__ = [
    "CALLBACK_SETTINGS",
    "CONSUMER_ONLY_SETTINGS",
    "DEFAULT_TOPIC_PREFIX",
    "PRODUCER_ONLY_SETTINGS",
    "SCHEMA_HEADER",
    "SCHEMA_VERSION",
    "ClientRole",
    "KafkaEventWriter",
    "KafkaTarget",
    "ensure_topics",
    "event_json_schema",
    "message_key",
    "parse_kafka_url",
    "payload_key",
    "refuse_settings",
    "require_confluent_kafka",
    "schema_header_value",
]

logger = logging.getLogger(__name__)

SCHEMA_VERSION: Final = 1
"""Version of the message layout above; readers check it in the ``abflow-schema`` header."""
SCHEMA_HEADER: Final = "abflow-schema"
DEFAULT_TOPIC_PREFIX: Final = "abflow"
FIXED_PRODUCER_SETTINGS: Final[dict[str, Any]] = {"enable.idempotence": True, "acks": "all"}
"""What makes the journal's promise hold through Kafka: no URL option may change these."""
CALLBACK_SETTINGS: Final = frozenset(
    {"error_cb", "logger", "oauth_cb", "on_commit", "on_delivery", "stats_cb", "throttle_cb"}
)
"""confluent-kafka's settings that take a Python function: a URL cannot hold one."""
_BOOLEAN_SETTINGS: Final = frozenset({"delivery.report.only.error"})
"""Settings confluent-kafka reads itself, as a Python bool (librdkafka takes text)."""

_REJECTED_CODES: Final = frozenset(
    {"MSG_SIZE_TOO_LARGE", "INVALID_RECORD", "INVALID_MSG", "INVALID_MSG_SIZE", "CORRUPT_MESSAGE"}
)
"""Delivery errors that are about the message, not the broker: sending it again cannot help."""

_JSON_TYPES: Final = {"Boolean": "boolean", "Integer": "integer", "Double": "number"}

ClientRole = Literal["producer", "consumer"]

CONSUMER_ONLY_SETTINGS: Final = frozenset(
    {
        "auto.commit.interval.ms",
        "auto.offset.reset",
        "check.crcs",
        "consume.callback.max.messages",
        "coordinator.query.interval.ms",
        "enable.auto.commit",
        "enable.auto.offset.store",
        "enable.partition.eof",
        "fetch.error.backoff.ms",
        "fetch.max.bytes",
        "fetch.message.max.bytes",
        "fetch.min.bytes",
        "fetch.queue.backoff.ms",
        "fetch.wait.max.ms",
        "group.id",
        "group.instance.id",
        "group.protocol",
        "group.protocol.type",
        "group.remote.assignor",
        "heartbeat.interval.ms",
        "isolation.level",
        "max.partition.fetch.bytes",
        "max.poll.interval.ms",
        "partition.assignment.strategy",
        "queued.max.messages.kbytes",
        "queued.min.messages",
        "session.timeout.ms",
    }
)
"""librdkafka settings of consumers only (``C`` in its CONFIGURATION.md): a producer given
one logs a CONFWARN and ignores it. tests/events/test_kafka.py checks each against
librdkafka."""
PRODUCER_ONLY_SETTINGS: Final = frozenset(
    {
        "acks",
        "batch.num.messages",
        "batch.size",
        "compression.codec",
        "compression.level",
        "compression.type",
        "delivery.report.only.error",
        "delivery.timeout.ms",
        "enable.idempotence",
        "linger.ms",
        "message.send.max.retries",
        "message.timeout.ms",
        "partitioner",
        "queue.buffering.backpressure.threshold",
        "queue.buffering.max.kbytes",
        "queue.buffering.max.messages",
        "queue.buffering.max.ms",
        "request.required.acks",
        "request.timeout.ms",
        "retries",
        "sticky.partitioning.linger.ms",
        "transaction.timeout.ms",
        "transactional.id",
    }
)
"""librdkafka settings of producers only (``P``): a consumer given one ignores it."""


def require_confluent_kafka() -> Any:
    """The confluent_kafka module, or a ConfigError that says how to install it."""
    try:
        import confluent_kafka
    except ImportError as exc:
        msg = "Kafka needs the confluent-kafka package: pip install 'abflow[kafka]'"
        raise ConfigError(msg) from exc
    return confluent_kafka


@dataclass(frozen=True, slots=True)
class KafkaTarget:
    """Where events go in Kafka: brokers, topic prefix, and extra librdkafka settings.

    Parsed from ``kafka://host:port[,host:port…]/prefix?setting=value&…``; each query
    parameter is a librdkafka setting (``security.protocol``, ``sasl.mechanism``,
    ``compression.type``, ``session.timeout.ms``, …). One URL serves the gateway's producer
    and the loader's consumer, so each client gets the settings librdkafka gives its role:
    a consumer's ``session.timeout.ms`` never reaches a producer, a producer's
    ``compression.type`` never reaches a consumer (librdkafka would ignore them with a
    warning at every start).
    """

    bootstrap_servers: str
    topic_prefix: str = DEFAULT_TOPIC_PREFIX
    options: Mapping[str, str] = field(default_factory=dict)

    def topic(self, kind: str) -> str:
        """The topic of one event kind."""
        return f"{self.topic_prefix}.{kind}"

    @property
    def dead_letter_topic(self) -> str:
        """Where the loader puts messages the store can never take (with the reason)."""
        return f"{self.topic_prefix}.dead-letter"

    def kind_of(self, topic: str) -> str | None:
        """The event kind a topic holds, or None if it is not one of this prefix's."""
        head, _, kind = topic.rpartition(".")
        return kind if head == self.topic_prefix and kind in EVENT_TABLES else None

    def client_config(self, role: ClientRole, **settings: Any) -> dict[str, Any]:
        """librdkafka settings of a ``role`` client: the brokers, the URL's options that
        librdkafka applies to that role, then ``settings``. An admin client is a producer
        to librdkafka."""
        foreign = CONSUMER_ONLY_SETTINGS if role == "producer" else PRODUCER_ONLY_SETTINGS
        options = {
            name: _as_bool(value) if name in _BOOLEAN_SETTINGS else value
            for name, value in self.options.items()
            if name not in foreign
        }
        return {"bootstrap.servers": self.bootstrap_servers, **options, **settings}

    @property
    def display(self) -> str:
        """The URL without its options (they may hold a SASL password)."""
        return f"kafka://{self.bootstrap_servers}/{self.topic_prefix}"


def parse_kafka_url(url: str) -> KafkaTarget:
    """A :class:`KafkaTarget` from ``kafka://host:port[,…]/prefix?setting=value``.

    ConfigError names what is wrong: another scheme, no broker, a broker without a port, a
    prefix Kafka cannot name topics with, or an option that would weaken the producer's
    guarantees (``acks``, ``enable.idempotence``).
    """
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # an unclosed [ of an IPv6 address
        msg = f"not a Kafka URL ({exc}): kafka://host:port/prefix"
        raise ConfigError(msg) from None
    if parts.scheme != "kafka":
        msg = f"a Kafka URL starts with kafka://, got {url.split('://')[0]!r}"
        raise ConfigError(msg)
    # urlsplit cannot read several host:port pairs, so split the network part by hand.
    servers = [server.strip() for server in parts.netloc.split(",") if server.strip()]
    if not servers:
        msg = "the Kafka URL names no broker: kafka://host:port/prefix"
        raise ConfigError(msg)
    for server in servers:
        host, _, port = server.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            msg = f"Kafka broker {server!r} needs a host and a port (host:9092)"
            raise ConfigError(msg)
    prefix = parts.path.strip("/") or DEFAULT_TOPIC_PREFIX
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    if not set(prefix) <= allowed or len(prefix) > 200:
        msg = (
            f"Kafka topic prefix {prefix!r} may hold only letters, digits, '.', '_' and '-' "
            "(at most 200 of them)"
        )
        raise ConfigError(msg)
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    for name in FIXED_PRODUCER_SETTINGS:
        if name in options:
            msg = f"the Kafka URL may not set {name}: abflow always uses acks=all with idempotence"
            raise ConfigError(msg)
    for name in sorted(CALLBACK_SETTINGS & options.keys()):
        msg = f"the Kafka URL may not set {name}: it takes a Python function, not text"
        raise ConfigError(msg)
    for name in _BOOLEAN_SETTINGS & options.keys():
        if options[name].lower() not in ("true", "false"):
            msg = f"Kafka URL option {name} is true or false, got {options[name]!r}"
            raise ConfigError(msg)
    return KafkaTarget(",".join(servers), prefix, options)


def _as_bool(value: object) -> object:
    """``"true"`` / ``"false"`` of a URL as the bool confluent-kafka expects; else as is."""
    return value.lower() == "true" if isinstance(value, str) else value


def refuse_settings(role: str, target: KafkaTarget, exc: Exception) -> NoReturn:
    """ConfigError for a client librdkafka or confluent-kafka would not make: a setting it
    does not know, a value out of range, or a value of the wrong type."""
    reason = exc.args[0].str() if exc.args and hasattr(exc.args[0], "str") else str(exc)
    msg = f"cannot configure the Kafka {role} for {target.display}: {reason}"
    raise ConfigError(msg) from exc


def message_key(row: Mapping[str, Any]) -> bytes:
    """The partitioning key of an event: its unit id, else its request id, else its id."""
    unit = row.get("unit_id")
    if isinstance(unit, str) and unit != UNRESOLVED_UNIT:
        return unit.encode()
    request = row.get("request_id")
    if isinstance(request, str) and request:
        return request.encode()
    return str(row.get("event_id", "")).encode()


_UNIT_FIELD: Final = b'"unit_id":"'
_UNRESOLVED_UNIT_BYTES: Final = UNRESOLVED_UNIT.encode()


def payload_key(payload: bytes) -> bytes:
    """:func:`message_key` of an event's JSON, read without decoding it when it can be.

    In compact JSON of a flat object, ``"unit_id":"`` can only open that field: a quote inside
    a string is escaped, so no value can hold the sequence. A unit id with an escape in it,
    or none, goes the long way.
    """
    start = payload.find(_UNIT_FIELD)
    if start >= 0:
        start += len(_UNIT_FIELD)
        unit = payload[start : payload.find(b'"', start)]
        if b"\\" not in unit and unit != _UNRESOLVED_UNIT_BYTES:
            return unit
    return message_key(orjson.loads(payload))


def schema_header_value(kind: str) -> bytes:
    """The ``abflow-schema`` header of a message of ``kind``: ``b"exposure/1"``."""
    return f"{kind}/{SCHEMA_VERSION}".encode()


def event_json_schema(kind: str) -> dict[str, Any]:
    """JSON Schema of the message value of one event kind, read from its store table."""
    table = EVENT_TABLES.get(kind)
    if table is None:
        msg = f"unknown event kind {kind!r}; kinds are {', '.join(EVENT_TABLES)}"
        raise ConfigError(msg)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for column in table.columns:
        json_type = _JSON_TYPES.get(type(column.type).__name__, "string")
        spec: dict[str, Any] = {"type": json_type}
        length = getattr(column.type, "length", None)
        if json_type == "string" and length is not None:
            spec["maxLength"] = length
        if column.nullable:
            spec["type"] = [json_type, "null"]
        elif column.default is None:
            required.append(column.name)
        properties[column.name] = spec
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"abflow:event:{kind}:{SCHEMA_VERSION}",
        "title": f"abflow {kind} event, schema version {SCHEMA_VERSION}",
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def release_producer(producer: Producer, timeout_seconds: float = 0.0) -> int:
    """Wait up to ``timeout_seconds`` for messages in flight, drop the rest, close; return how
    many were still queued (messages, and events for the application such as errors).

    Closing at once matters: a producer left to the garbage collector keeps its threads
    reconnecting to a broker that is gone, and ``close()`` alone waits for every queued
    message to time out. Dropping is safe for abflow's producers: an event leaves the
    journal (or a Kafka offset is committed) only after the broker acknowledged it.
    """
    left = len(producer)
    try:
        if timeout_seconds > 0:
            left = int(producer.flush(timeout_seconds))
        if left:
            producer.purge()
            producer.flush(0)
    except Exception as exc:  # it is let go either way; a closed producer is the point
        logger.warning("Kafka producer not emptied before closing (%d queued): %s", left, exc)
    producer.close()
    return left


def ensure_topics(
    target: KafkaTarget,
    kinds: Iterable[str],
    *,
    partitions: int | None = None,
    timeout_seconds: float = 10.0,
    extra_topics: Iterable[str] = (),
) -> list[str]:
    """Create the topics of ``kinds`` (and ``extra_topics``) that do not exist yet; return
    the ones created.

    ``partitions`` None takes the broker's default (``num.partitions``). Clusters that
    manage topics themselves (and refuse CreateTopics) are fine: a refusal is logged and
    the topics are expected to exist.
    """
    kafka = require_confluent_kafka()
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    try:
        admin = AdminClient(target.client_config("producer"))
    except (kafka.KafkaException, TypeError, ValueError) as exc:
        refuse_settings("admin client", target, exc)
    wanted = [target.topic(kind) for kind in kinds] + list(extra_topics)
    try:
        existing = set(admin.list_topics(timeout=timeout_seconds).topics)
    except kafka.KafkaException as exc:
        msg = f"Kafka at {target.display} is not reachable: {exc}"
        raise StoreUnavailableError(msg) from exc
    missing = [topic for topic in wanted if topic not in existing]
    if not missing:
        return []
    count = -1 if partitions is None else partitions
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=count) for topic in missing],
        operation_timeout=timeout_seconds,
    )
    created: list[str] = []
    for topic, future in futures.items():
        try:
            future.result(timeout=timeout_seconds)
            created.append(topic)
        except Exception as exc:  # the admin client's futures raise KafkaException or their own
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                logger.warning("cannot create Kafka topic %s: %s", topic, exc)
    return created


class KafkaEventWriter:
    """Writes events to Kafka and returns once the broker acknowledged all of them.

    The event log's store writer for a ``kafka://`` sink. Used by one shipper thread at a
    time. ``delivery_timeout_seconds`` bounds how long a batch waits for the broker
    (librdkafka's ``message.timeout.ms``) before the batch counts as an outage.
    """

    def __init__(
        self,
        target: KafkaTarget,
        *,
        delivery_timeout_seconds: float = 30.0,
        create_topics: bool = True,
        partitions: int | None = None,
    ) -> None:
        if delivery_timeout_seconds <= 0:
            msg = f"delivery_timeout_seconds must be > 0, got {delivery_timeout_seconds}"
            raise ConfigError(msg)
        self.target = target
        self.delivery_timeout_seconds = delivery_timeout_seconds
        self.create_topics = create_topics
        self.partitions = partitions
        self._kafka = require_confluent_kafka()
        self._producer: Producer | None = None
        self._has_topics = not create_topics
        self._lock = threading.Lock()

    def check_settings(self) -> None:
        """Make the producer now: librdkafka checks every setting when it is made, and a
        gateway with a setting it refuses should not start, rather than fail each batch."""
        with self._lock:
            self._client()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> KafkaEventWriter:
        """A writer for ``kafka://host:port/prefix?…`` (see :func:`parse_kafka_url`)."""
        return cls(parse_kafka_url(url), **options)

    def _client(self) -> Producer:
        if self._producer is None:
            # Defaults first, so that the URL can change them (compression.type=zstd); the
            # delivery timeout is the constructor's, as write_events waits on it.
            config = {
                "linger.ms": 5,
                "compression.type": "lz4",
                "queue.buffering.max.messages": 1_000_000,
                **self.target.client_config("producer"),
                "message.timeout.ms": int(self.delivery_timeout_seconds * 1000),
                **FIXED_PRODUCER_SETTINGS,
            }
            try:
                self._producer = self._kafka.Producer(config)
            except (self._kafka.KafkaException, TypeError, ValueError) as exc:
                refuse_settings("producer", self.target, exc)
        assert self._producer is not None
        return self._producer

    def write_events(self, kind: str, rows: Sequence[Mapping[str, Any]]) -> int:
        """Send ``rows`` to ``kind``'s topic and wait until the broker acknowledged each.

        Returns how many were sent. StoreUnavailableError if the broker did not take them
        all (the caller keeps the batch and sends it again); StoreError if a message can
        never be taken (too large), so that the caller can set that one row aside.
        """
        if kind not in EVENT_TABLES:
            msg = f"unknown event kind {kind!r}; kinds are {', '.join(EVENT_TABLES)}"
            raise StoreError(msg)
        messages: list[tuple[str, bytes, bytes]] = []
        for row in rows:
            try:
                value = orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY)
            except TypeError as exc:
                msg = f"{kind} event cannot be serialised as JSON: {exc}"
                raise StoreError(msg) from exc
            messages.append((kind, value, message_key(row)))
        self._send(messages)
        return len(rows)

    def write_entries(self, entries: Sequence[Entry]) -> list[tuple[int, str]]:
        """Send journal entries as they are, their JSON untouched; return (index, reason) of
        those Kafka refuses for good (too large), so that the event log sets them aside.

        The event log's path: the journal already holds each event's JSON, so decoding it
        here only to encode it again would double the shipper's work per event.
        """
        # The journal holds only known kinds (it refuses others on append): no check here.
        try:
            self._send([(kind, payload, payload_key(payload)) for kind, payload, _, _ in entries])
        except StoreUnavailableError:
            raise
        except StoreError:  # refused for good: find the entries at fault, one at a time
            rejected: list[tuple[int, str]] = []
            for index, (kind, payload, _, _) in enumerate(entries):
                try:
                    self._send([(kind, payload, payload_key(payload))])
                except StoreUnavailableError:
                    raise
                except StoreError as exc:
                    rejected.append((index, str(exc)))
            return rejected
        return []

    def _send(self, messages: Sequence[tuple[str, bytes, bytes]]) -> None:
        """Produce (kind, value, key) messages and wait until the broker acknowledged all."""
        if not messages:
            return
        with self._lock:
            if not self._has_topics:
                ensure_topics(
                    self.target,
                    EVENT_TABLES,
                    partitions=self.partitions,
                    timeout_seconds=min(10.0, self.delivery_timeout_seconds),
                )
                self._has_topics = True
            producer = self._client()
            failures: list[KafkaError] = []

            def on_delivery(error: KafkaError | None, _message: Message) -> None:
                if error is not None:
                    failures.append(error)

            self._produce(producer, messages, on_delivery)
            left = producer.flush(self.delivery_timeout_seconds + 5.0)
            if left:
                msg = f"Kafka at {self.target.display} did not acknowledge {left} events in time"
                raise StoreUnavailableError(msg)
            if failures:
                self._raise_for(failures)

    def _produce(
        self, producer: Producer, messages: Sequence[tuple[str, bytes, bytes]], callback: Any
    ) -> None:
        Headers = list[tuple[str, str | bytes | None]]
        topics: dict[str, tuple[str, Headers]] = {}
        produce = producer.produce
        for kind, value, key in messages:
            routed = topics.get(kind)
            if routed is None:
                header: Headers = [(SCHEMA_HEADER, schema_header_value(kind))]
                routed = topics[kind] = (self.target.topic(kind), header)
            topic, headers = routed
            while True:
                try:
                    produce(topic, value, key, on_delivery=callback, headers=headers)
                    break
                except BufferError:  # the local queue is full: let deliveries drain it
                    producer.poll(0.05)
                except self._kafka.KafkaException as exc:
                    self._raise_for([exc.args[0]])

    def _raise_for(self, failures: Sequence[KafkaError]) -> None:
        first = failures[0]
        if any(error.fatal() for error in failures):
            # An idempotent producer that hit a fatal error must be replaced.
            logger.warning("Kafka producer failed fatally (%s); starting a new one", first)
            self._close_producer()
        if all(error.name() in _REJECTED_CODES for error in failures):
            msg = f"Kafka refused {len(failures)} event(s): {first.str()}"
            raise StoreError(msg)
        msg = f"Kafka at {self.target.display} did not take {len(failures)} event(s): {first.str()}"
        raise StoreUnavailableError(msg)

    def _close_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            release_producer(producer)

    def close(self, timeout_seconds: float = 10.0) -> None:
        """Wait up to ``timeout_seconds`` for messages in flight, then close the producer."""
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            release_producer(producer, timeout_seconds)
