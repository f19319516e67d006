"""The Kafka message layout and URL, without a broker: URL parsing, keys, and the JSON Schema
of each kind checked by an independent validator (jsonschema) against the rows the gateway
makes."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from abflow.errors import ConfigError
from abflow.events.kafka import (
    CONSUMER_ONLY_SETTINGS,
    DEFAULT_TOPIC_PREFIX,
    PRODUCER_ONLY_SETTINGS,
    KafkaTarget,
    event_json_schema,
    message_key,
    parse_kafka_url,
    payload_key,
    schema_header_value,
)
from abflow.events.sink import exposure_row, outcome_row, prediction_row
from abflow.store.schema import UNRESOLVED_UNIT


def test_a_url_names_brokers_prefix_and_client_settings() -> None:
    target = parse_kafka_url(
        "kafka://k0:9092,k1:9093/acme.events?security.protocol=SASL_SSL&sasl.password=s3cret"
    )
    assert target.bootstrap_servers == "k0:9092,k1:9093"
    assert target.topic_prefix == "acme.events"
    assert target.topic("exposure") == "acme.events.exposure"
    assert target.kind_of("acme.events.outcome") == "outcome"
    assert target.kind_of("acme.events.dead-letter") is None
    assert target.kind_of("other.outcome") is None
    assert dict(target.options) == {"security.protocol": "SASL_SSL", "sasl.password": "s3cret"}
    assert "s3cret" not in target.display
    assert parse_kafka_url("kafka://k0:9092").topic_prefix == DEFAULT_TOPIC_PREFIX


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://k0:9092/x", "kafka://"),
        ("kafka:///abflow", "no broker"),
        ("kafka://k0/abflow", "port"),
        ("kafka://k0:99999/abflow", "port"),
        ("kafka://k0:9092/a b", "prefix"),
        ("kafka://k0:9092/abflow?acks=1", "acks"),
        ("kafka://k0:9092/abflow?enable.idempotence=false", "idempotence"),
        ("kafka://k0:9092/abflow?error_cb=print", "error_cb: it takes a Python function"),
        ("kafka://k0:9092/abflow?on_delivery=x", "on_delivery: it takes a Python function"),
        ("kafka://k0:9092/abflow?delivery.report.only.error=yes", "true or false, got 'yes'"),
    ],
)
def test_a_bad_url_is_refused_with_the_reason(url: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        parse_kafka_url(url)


def test_events_are_keyed_by_unit_then_request() -> None:
    exposure = exposure_row(
        experiment_key="e", phase=1, unit_id="user-7", variant="a", attributes=None
    )
    assert message_key(exposure) == b"user-7"
    unresolved = outcome_row(
        unit_id=UNRESOLVED_UNIT, name="click", value=1.0, request_id="req-9", experiment_key=None
    )
    assert message_key(unresolved) == b"req-9"
    assert schema_header_value("outcome") == b"outcome/1"


_TRICKY_TEXT = st.one_of(
    st.text(max_size=12),
    st.sampled_from(['"unit_id":"x', 'a\\"b', "\\", "", UNRESOLVED_UNIT, "ünït", "tab\there"]),
)


@given(
    unit=st.one_of(st.none(), _TRICKY_TEXT),
    request=st.one_of(st.none(), _TRICKY_TEXT),
    before=_TRICKY_TEXT,
    has_unit=st.booleans(),
)
def test_the_key_read_from_an_events_json_is_the_key_of_its_row(
    unit: str | None, request: str | None, before: str, has_unit: bool
) -> None:
    # Fields before and after the unit id hold text that looks like the unit field.
    row: dict[str, Any] = {"event_id": "e-1", "note": before}
    if has_unit:
        row["unit_id"] = unit
    row.update(request_id=request, attributes_json=before)
    assert payload_key(orjson.dumps(row)) == message_key(row)


def _rows() -> list[tuple[str, dict[str, Any]]]:
    return [
        (
            "exposure",
            exposure_row(
                experiment_key="fraud", phase=2, unit_id="u1", variant="b", attributes={"c": "de"}
            ),
        ),
        (
            "prediction",
            prediction_row(
                request_id="r1",
                experiment_key="fraud",
                phase=2,
                unit_id="u1",
                variant="b",
                model_version="7",
                latency_ms=3.5,
                outputs=[0.25],
                features_hash=None,
            ),
        ),
        (
            "outcome",
            outcome_row(
                unit_id="u1", name="fraud", value=1.0, request_id="r1", experiment_key=None
            ),
        ),
    ]


def test_the_gateways_rows_match_their_json_schema() -> None:
    for kind, row in _rows():
        validator = jsonschema.Draft202012Validator(event_json_schema(kind))
        assert list(validator.iter_errors(row)) == [], kind
        with pytest.raises(jsonschema.ValidationError):
            validator.validate({**row, "surprise": 1})
        with pytest.raises(jsonschema.ValidationError):
            validator.validate({k: v for k, v in row.items() if k != "event_id"})
    with pytest.raises(ConfigError, match="unknown event kind"):
        event_json_schema("click")


def test_abflow_ingest_refuses_a_bad_url_with_exit_code_2(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from abflow.cli.main import main

    with pytest.raises(SystemExit) as exited:
        main(["ingest", "--from", "kafka://k0/x", "--store", f"sqlite:///{tmp_path}/s.db"])
    assert exited.value.code == 2
    stderr = capsys.readouterr().err
    assert "--from" in stderr
    assert "needs a host and a port" in stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "s.db").exists()  # refused before the store was touched


def test_the_guide_names_every_event_topic() -> None:
    from pathlib import Path

    from abflow.store.schema import EVENT_TABLES

    guide = (Path(__file__).resolve().parents[2] / "docs" / "kafka.md").read_text("utf-8")
    assert [kind for kind in EVENT_TABLES if f"`<prefix>.{kind}`" not in guide] == []


class _Records(logging.Handler):
    """librdkafka's log lines, as confluent-kafka hands them to a ``logger`` setting."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def librdkafka_log() -> Iterator[tuple[logging.Logger, _Records]]:
    records = _Records()
    log = logging.getLogger(f"test-librdkafka-{id(records)}")
    log.propagate = False
    log.addHandler(records)
    yield log, records
    log.removeHandler(records)


# Values librdkafka accepts for the settings whose range excludes the default test value.
_VALUES = {
    "auto.offset.reset": "earliest",
    "compression.codec": "lz4",
    "compression.level": "1",
    "compression.type": "lz4",
    "group.protocol": "classic",
    "group.protocol.type": "consumer",
    "group.remote.assignor": "uniform",
    "isolation.level": "read_committed",
    "partition.assignment.strategy": "range",
    "partitioner": "murmur2",
    "request.required.acks": "-1",
    "acks": "all",
}
_BOOLEANS = {
    "check.crcs",
    "delivery.report.only.error",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.idempotence",
    "enable.partition.eof",
}


def _ignored(lines: list[str]) -> list[str]:
    return [line for line in lines if "will be ignored by this" in line]


@pytest.mark.parametrize(
    ("role", "names"),
    [("producer", sorted(CONSUMER_ONLY_SETTINGS)), ("consumer", sorted(PRODUCER_ONLY_SETTINGS))],
)
def test_librdkafka_ignores_each_setting_the_table_keeps_from_a_role(
    role: str, names: list[str], librdkafka_log: tuple[logging.Logger, _Records]
) -> None:
    """The role tables against librdkafka itself: every name in them is one it ignores (with
    a warning) in a client of the other role."""
    kafka = pytest.importorskip("confluent_kafka")
    log, records = librdkafka_log
    for name in names:
        value = _VALUES.get(name, "true" if name in _BOOLEANS else "1000")
        records.lines.clear()
        config = {"bootstrap.servers": "127.0.0.1:1", name: value, "logger": log}
        if role == "producer":
            kafka.Producer(config).flush(0)
        else:
            kafka.Consumer({**config, "group.id": "g"}).close()
        ignored = _ignored(records.lines)
        assert len(ignored) == 1, (name, records.lines)
        other = "consumer" if role == "producer" else "producer"
        assert f"is a {other} property" in ignored[0], name


def test_each_client_gets_only_the_url_settings_of_its_role(
    librdkafka_log: tuple[logging.Logger, _Records],
) -> None:
    from abflow.events.ingest import Loader
    from abflow.events.kafka import KafkaEventWriter

    log, records = librdkafka_log
    target = parse_kafka_url(
        "kafka://127.0.0.1:1/x?session.timeout.ms=6000&heartbeat.interval.ms=500"
        "&compression.type=zstd&linger.ms=20&client.id=gw&socket.timeout.ms=5000"
    )
    producer = target.client_config("producer")
    consumer = target.client_config("consumer")
    shared = {"bootstrap.servers": "127.0.0.1:1", "client.id": "gw", "socket.timeout.ms": "5000"}
    assert producer == {**shared, "compression.type": "zstd", "linger.ms": "20"}
    assert consumer == {**shared, "session.timeout.ms": "6000", "heartbeat.interval.ms": "500"}

    # The control: every URL setting given to a producer, as before, draws the warnings.
    kafka = pytest.importorskip("confluent_kafka")
    kafka.Producer({**target.client_config("consumer"), "logger": log}).flush(0)
    assert len(_ignored(records.lines)) == 2
    records.lines.clear()
    # The real clients, as the writer and the loader make them: librdkafka warns of nothing.
    target = KafkaTarget(target.bootstrap_servers, "x", {**target.options, "logger": log})
    writer = KafkaEventWriter(target, create_topics=False)
    writer._client().flush(0)
    writer.close(0)
    loader = Loader(target, _NoStore(), create_topics=False)
    loader._open()
    loader._close()
    assert _ignored(records.lines) == []


class _NoStore:
    def write_events(self, kind: Any, rows: list[dict[str, Any]]) -> int:
        raise AssertionError


class _RefusingListener:
    """A TCP port that accepts each connection and closes it at once, counting them: a
    stand-in for a broker that is going away, to see whether a client still tries it."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.mark.parametrize("value", ["true", "False"])
def test_a_boolean_setting_confluent_kafka_reads_itself_reaches_it_as_a_bool(value: str) -> None:
    """``delivery.report.only.error`` from a URL is text; confluent-kafka refused it with a
    TypeError at the first batch, and the shipper retried that batch for ever."""
    pytest.importorskip("confluent_kafka")
    from abflow.events.kafka import KafkaEventWriter

    target = parse_kafka_url(f"kafka://127.0.0.1:9/x?delivery.report.only.error={value}")
    assert target.client_config("producer")["delivery.report.only.error"] is (value == "true")
    writer = KafkaEventWriter(target, create_topics=False)
    try:
        writer.check_settings()  # no broker needed: the producer is made, not connected
    finally:
        writer.close(0.0)


def test_a_setting_librdkafka_refuses_stops_the_writer_and_the_loader_at_start(
    tmp_path: Path,
) -> None:
    """Both made their client on the first batch (the loader: its first dead letter), so a
    gateway with such a setting started, then failed every batch with a traceback."""
    pytest.importorskip("confluent_kafka")
    from abflow.events.eventlog import EventLog
    from abflow.events.ingest import Loader

    url = "kafka://127.0.0.1:9/x?compression.type=bogus"
    with pytest.raises(ConfigError, match=r'producer for kafka://127\.0\.0\.1:9/x: .*"bogus"'):
        EventLog(url, tmp_path / "journal").start()
    loader = Loader(parse_kafka_url(url), _NoStore(), create_topics=False)
    with pytest.raises(ConfigError, match=r'dead-letter producer .*"bogus"'):
        loader.run(max_seconds=5)


@pytest.mark.parametrize("close", ["writer", "loader"])
def test_a_closed_client_lets_its_producer_go_at_once(close: str) -> None:
    """Closing the writer (or the loader, its dead-letter producer) while the broker is gone
    closes the producer: it stops reconnecting, and messages it still queues (events still in
    the journal, or messages not committed) do not hold the close up. A producer left to the
    garbage collector kept reconnecting for the life of the process, and one that a traceback
    still referenced was never collected."""
    pytest.importorskip("confluent_kafka")
    from abflow.events.ingest import Loader
    from abflow.events.kafka import KafkaEventWriter

    broker = _RefusingListener()
    try:
        fast_retries = {"reconnect.backoff.ms": "20", "reconnect.backoff.max.ms": "50"}
        target = KafkaTarget(broker.address, "x", fast_retries)
        writer = KafkaEventWriter(target, create_topics=False, delivery_timeout_seconds=120)
        loader = Loader(target, _NoStore(), create_topics=False)
        if close == "writer":
            producer = writer._client()
        else:
            import confluent_kafka

            from abflow.events.kafka import FIXED_PRODUCER_SETTINGS

            producer = loader._producer = confluent_kafka.Producer(
                {**target.client_config("producer", **fast_retries), **FIXED_PRODUCER_SETTINGS}
            )
        producer.produce("x-exposure", b"{}", b"u")
        deadline = time.monotonic() + 10
        while broker.accepted < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert broker.accepted >= 2  # the control: it does keep trying while open

        started = time.monotonic()
        writer.close(0.2) if close == "writer" else loader._close()
        assert time.monotonic() - started < 2
        time.sleep(0.3)  # connections already on their way
        settled = broker.accepted
        time.sleep(1.0)
        assert broker.accepted == settled
        with pytest.raises(RuntimeError, match="closed"):
            producer.produce("x-exposure", b"{}", b"u")
    finally:
        broker.close()


def test_a_producer_that_fails_to_purge_is_closed_all_the_same(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Letting a producer go must not depend on its flush or purge succeeding."""
    kafka = pytest.importorskip("confluent_kafka")
    from abflow.events.kafka import release_producer

    class FailingPurge(kafka.Producer):  # type: ignore[misc]
        def purge(self, *args: object, **kwargs: object) -> None:
            raise kafka.KafkaException(kafka.KafkaError(kafka.KafkaError._FAIL))

    producer = FailingPurge({"bootstrap.servers": "127.0.0.1:1", "message.timeout.ms": 1000})
    producer.produce("x-exposure", b"{}", b"u")
    with caplog.at_level(logging.WARNING, logger="abflow.events.kafka"):
        left = release_producer(producer)
    assert left >= 1  # the message, and any connection errors queued for the application
    assert f"not emptied before closing ({left} queued)" in caplog.text
    with pytest.raises(RuntimeError, match="closed"):
        producer.produce("x-exposure", b"{}", b"u")
