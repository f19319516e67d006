"""The Kafka pipeline against a real Kafka-API broker (Tansu, tests/kafka_broker.py).

Covered: idempotent produce (librdkafka's own statistics say the broker assigned a producer
id), the message layout as a plain consumer reads it, consumer groups, committed offsets,
resume after SIGKILL of the loader, a broker outage waited out in the journal, and journal →
Kafka → loader → store with every event stored exactly once (rows counted by event id in
SQL, not by the loader's own counters).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from abflow.errors import StoreError, StoreUnavailableError
from abflow.events.eventlog import EventLog
from abflow.events.ingest import IngestProgress, Loader
from abflow.events.kafka import KafkaEventWriter, KafkaTarget, ensure_topics, message_key
from abflow.events.sink import exposure_row, outcome_row, prediction_row
from abflow.store import EventStore
from kafka_broker import TansuBroker, free_port

confluent_kafka = pytest.importorskip("confluent_kafka")

GROUP_OPTIONS = {"session.timeout.ms": "3000", "heartbeat.interval.ms": "300"}
"""Tansu holds a group join for about half the session timeout: 3 s (below Apache Kafka's
6 s minimum, which Tansu does not enforce) keeps each join near 1.5 s instead of the
default's 22 s, and a killed loader's partitions move after 3 s."""

CATCH_UP_SECONDS = 120
"""Every ``run(until_caught_up=True)`` here stops after this long: a loader that never gets
its partitions (a broker gone) would otherwise loop for ever; the counts asserted after it
then fail instead."""

TABLES = {"exposure": "exposures", "prediction": "predictions", "outcome": "outcomes"}


def _target(broker: TansuBroker, prefix: str, **options: Any) -> KafkaTarget:
    return KafkaTarget(broker.bootstrap, prefix, {**GROUP_OPTIONS, **options})


def _publish_predictions(
    target: KafkaTarget, n: int, *, seed: int
) -> list[tuple[str, dict[str, Any]]]:
    """The prediction events of ``_events(n, seed)``, written to Kafka (flushed) and returned."""
    events = [e for e in _events(n, seed=seed) if e[0] == "prediction"]
    writer = KafkaEventWriter(target)
    writer.write_events("prediction", [row for _, row in events])
    writer.close()
    return events


def _events(n: int, seed: int = 0) -> list[tuple[str, dict[str, Any]]]:
    """n requests' events as the gateway makes them: exposure, prediction, every third an
    outcome (every ninth known only by its request id)."""
    events: list[tuple[str, dict[str, Any]]] = []
    for i in range(n):
        unit = f"user-{seed}-{i % 97}"
        request = f"req-{seed}-{i}"
        events.append(
            ("exposure", exposure_row(experiment_key="fraud", phase=1, unit_id=unit,
                                      variant="ab"[i % 2], attributes={"i": i}))
        )  # fmt: skip
        events.append(
            ("prediction", prediction_row(request_id=request, experiment_key="fraud", phase=1,
                                          unit_id=unit, variant="ab"[i % 2], model_version="3",
                                          latency_ms=1.5, outputs=[i / n], features_hash=None))
        )  # fmt: skip
        if i % 3 == 0:
            events.append(
                ("outcome", outcome_row(unit_id="" if i % 9 == 0 else unit, name="fraud",
                                        value=float(i % 2), request_id=request,
                                        experiment_key="fraud"))
            )  # fmt: skip
    return events


def _by_kind(events: list[tuple[str, dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for kind, row in events:
        groups.setdefault(kind, []).append(row)
    return groups


def _stored_ids(url: str) -> dict[str, Counter[str]]:
    """Rows per event id in each event table, straight from SQL."""
    engine = sa.create_engine(url)
    found: dict[str, Counter[str]] = {}
    try:
        with engine.connect() as connection:
            for kind, table in TABLES.items():
                query = sa.text(f"SELECT event_id, COUNT(*) FROM {table} GROUP BY event_id")
                found[kind] = Counter(dict(connection.execute(query).all()))
    finally:
        engine.dispose()
    return found


def _assert_exactly_once(url: str, events: list[tuple[str, dict[str, Any]]]) -> None:
    stored = _stored_ids(url)
    for kind, rows in _by_kind(events).items():
        wanted = {row["event_id"] for row in rows}
        lost = wanted - stored[kind].keys()
        extra = stored[kind].keys() - wanted
        doubled = [key for key, count in stored[kind].items() if count > 1]
        assert (len(lost), len(extra), len(doubled)) == (0, 0, 0), kind


def _read_all(target: KafkaTarget, kinds: list[str]) -> list[Any]:
    """Every message of the kinds' topics, read by a plain consumer without a group."""
    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": target.bootstrap_servers, "group.id": "reader",
         "enable.partition.eof": True, "auto.offset.reset": "earliest"}
    )  # fmt: skip
    try:
        metadata = consumer.list_topics(timeout=10)
        partitions = [
            confluent_kafka.TopicPartition(target.topic(kind), p, 0)
            for kind in kinds
            for p in metadata.topics[target.topic(kind)].partitions
        ]
        consumer.assign(partitions)
        at_end: set[tuple[str, int]] = set()
        messages: list[Any] = []
        deadline = time.monotonic() + 60
        while len(at_end) < len(partitions) and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):
                if message.error() is None:
                    messages.append(message)
                elif message.error().code() == confluent_kafka.KafkaError._PARTITION_EOF:
                    at_end.add((message.topic(), message.partition()))
        return messages
    finally:
        consumer.close()


def test_the_writer_returns_once_an_idempotent_producer_had_every_event_acknowledged(
    kafka_broker: TansuBroker, topic_prefix: str
) -> None:
    stats: list[dict[str, Any]] = []
    target = _target(
        kafka_broker,
        topic_prefix,
        **{"statistics.interval.ms": "100", "stats_cb": lambda s: stats.append(orjson.loads(s))},
    )
    events = _events(300)
    writer = KafkaEventWriter(target, partitions=3)
    try:
        for kind, rows in _by_kind(events).items():
            assert writer.write_events(kind, rows) == len(rows)
        stats.clear()  # from here on, statistics taken after every acknowledgement
        deadline = time.monotonic() + 30
        while not stats and time.monotonic() < deadline:
            writer._client().poll(0.1)
    finally:
        writer.close()
    eos = stats[-1]["eos"]
    assert eos["idemp_state"] == "Assigned"
    assert eos["producer_id"] >= 0
    messages = _read_all(target, list(TABLES))
    sent = {row["event_id"]: (kind, row) for kind, row in events}
    assert len(messages) == len(sent)
    for message in messages:
        row = orjson.loads(message.value())
        kind, original = sent[row["event_id"]]
        assert row == original
        assert message.topic() == f"{topic_prefix}.{kind}"
        assert message.key() == message_key(original)
        assert dict(message.headers()) == {"abflow-schema": f"{kind}/1".encode()}
    # One unit's events share a partition (ordered per unit).
    partitions: dict[tuple[str, bytes], set[int]] = {}
    for message in messages:
        partitions.setdefault((message.topic(), message.key()), set()).add(message.partition())
    assert all(len(found) == 1 for found in partitions.values())


def test_a_repeated_batch_is_stored_once_and_offsets_are_committed_to_the_end(
    kafka_broker: TansuBroker, topic_prefix: str, tmp_path: Path
) -> None:
    target = _target(kafka_broker, topic_prefix)
    events = _events(400)
    writer = KafkaEventWriter(target, partitions=2)
    try:
        for _ in range(2):  # the gateway sends a batch again after a lost acknowledgement
            for kind, rows in _by_kind(events).items():
                writer.write_events(kind, rows)
    finally:
        writer.close()
    url = f"sqlite:///{tmp_path}/store.db"
    with EventStore.open(url) as store:
        totals = Loader(target, store, group_id="g1", batch_events=500).run(
            until_caught_up=True, max_seconds=CATCH_UP_SECONDS
        )
    assert (totals.consumed, totals.stored, totals.repeated) == (
        2 * len(events),
        len(events),
        len(events),
    )
    _assert_exactly_once(url, events)

    # Where each partition ends, as a reader sees it (Tansu 0.6.0's ListOffsets answers a
    # wrong high watermark, so the watermark is not the reference here; docs/kafka.md).
    ends: dict[tuple[str, int], int] = {}
    for message in _read_all(target, list(TABLES)):
        place = (message.topic(), message.partition())
        ends[place] = max(ends.get(place, 0), message.offset() + 1)
    consumer = confluent_kafka.Consumer({"bootstrap.servers": kafka_broker.bootstrap,
                                         "group.id": "g1"})  # fmt: skip
    try:
        places = [confluent_kafka.TopicPartition(t, p) for t, p in sorted(ends)]
        committed = consumer.committed(places, timeout=10)
    finally:
        consumer.close()
    assert len(ends) == 6
    assert {(tp.topic, tp.partition): tp.offset for tp in committed} == ends
    assert sum(ends.values()) == 2 * len(events)
    with EventStore.open(url) as store:  # the group has nothing left to read
        again = Loader(target, store, group_id="g1").run(
            until_caught_up=True, max_seconds=CATCH_UP_SECONDS
        )
    assert again.consumed == 0


def test_two_loaders_in_one_group_split_the_partitions(
    kafka_broker: TansuBroker, topic_prefix: str, tmp_path: Path
) -> None:
    target = _target(kafka_broker, topic_prefix)
    ensure_topics(target, ["prediction"], partitions=4)
    url = f"sqlite:///{tmp_path}/store.db"
    stores = [EventStore.open(url), EventStore.open(url)]
    loaders = [
        Loader(target, store, group_id="pair", kinds=["prediction"], batch_events=200)
        for store in stores
    ]
    results: list[IngestProgress] = []
    threads = [
        threading.Thread(target=lambda lo=lo: results.append(lo.run(max_seconds=90)))
        for lo in loaders
    ]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
            all(lo.assigned_partitions for lo in loaders)
            and sum(lo.assigned_partitions for lo in loaders) == 4
        ):
            time.sleep(0.1)
        shares = [lo.assigned_partitions for lo in loaders]
        events = _publish_predictions(target, 600, seed=1)
        while time.monotonic() < deadline and sum(_stored_ids(url)["prediction"].values()) < 600:
            time.sleep(0.1)
    finally:
        for loader in loaders:
            loader.stop()
        for thread in threads:
            thread.join(60)
        for store in stores:
            store.close()
    assert shares == [2, 2]
    assert sorted(r.consumed > 0 for r in results) == [True, True]
    assert sum(r.consumed for r in results) == 600  # no message read by both
    _assert_exactly_once(url, events)


def _committed_total(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    consumer = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        places = [confluent_kafka.TopicPartition(topic, p) for p in range(partitions)]
        return sum(max(tp.offset, 0) for tp in consumer.committed(places, timeout=10))
    finally:
        consumer.close()


@pytest.mark.slow
def test_a_loader_killed_with_sigkill_resumes_and_loses_or_doubles_nothing(
    kafka_broker: TansuBroker, topic_prefix: str, tmp_path: Path
) -> None:
    target = _target(kafka_broker, topic_prefix)
    ensure_topics(target, ["prediction"], partitions=3)
    events = _publish_predictions(target, 30_000, seed=2)
    url = f"sqlite:///{tmp_path}/store.db"
    options = "&".join(f"{k}={v}" for k, v in GROUP_OPTIONS.items())
    source = f"kafka://{kafka_broker.bootstrap}/{topic_prefix}?{options}"
    command = [sys.executable, "-m", "abflow.cli.main", "ingest", "--from", source,
               "--store", url, "--group", "crash", "--kind", "prediction", "--quiet"]  # fmt: skip
    log = tmp_path / "ingest.log"
    with log.open("wb") as stderr:
        first = subprocess.Popen([*command, "--batch-events", "200"], stderr=stderr)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if sum(_stored_ids(url)["prediction"].values()) >= 2_000:
                    break
            except sa.exc.OperationalError:  # the loader has not made the tables yet
                pass
            assert first.poll() is None, log.read_text()
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
    finally:
        first.kill()
        first.wait()
    stored_at_kill = sum(_stored_ids(url)["prediction"].values())
    committed = _committed_total(kafka_broker.bootstrap, "crash", target.topic("prediction"), 3)
    assert 0 < stored_at_kill < len(events), "the kill must land mid-stream"
    assert committed <= stored_at_kill  # no offset ahead of the store

    # The second loader runs until it has stored everything, then gets SIGTERM (a rollout
    # or a scale-down): it finishes its batch, commits, prints its totals and exits 0.
    second = subprocess.Popen([*command, "--json"], stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while sum(_stored_ids(url)["prediction"].values()) < len(events):
            assert second.poll() is None
            assert time.monotonic() < deadline
            time.sleep(0.1)
        second.send_signal(signal.SIGTERM)
        out, _ = second.communicate(timeout=120)
    finally:
        second.kill()
        second.wait()
    assert second.returncode == 0
    totals = orjson.loads(out.strip().splitlines()[-1])
    assert totals["consumed"] == len(events) - committed  # resumed at the committed offsets
    assert totals["stored"] == len(events) - stored_at_kill
    _assert_exactly_once(url, events)
    final = _committed_total(kafka_broker.bootstrap, "crash", target.topic("prediction"), 3)
    assert final == len(events)  # a stop commits what was stored


def test_journal_to_kafka_to_store_loses_and_doubles_nothing_across_a_broker_outage(
    tmp_path: Path, topic_prefix: str
) -> None:
    """The broker is down while the gateway logs: events wait in the journal and spool, and
    reach the store once a broker listens on that address."""
    port = free_port()
    target = KafkaTarget(f"127.0.0.1:{port}", topic_prefix, GROUP_OPTIONS)
    events = _events(1_000, seed=3)
    journal = tmp_path / "journal"
    unreachable = KafkaEventWriter(target, delivery_timeout_seconds=1.0, partitions=2)
    down = EventLog(None, journal, store=unreachable, retry_max_seconds=0.5)
    down.start()
    for start in range(0, len(events), 50):
        down.append_many(events[start : start + 50])  # type: ignore[arg-type]
    time.sleep(1.5)
    assert not down.is_store_reachable
    down.close(timeout_seconds=1.0)
    unreachable.close(0)

    with TansuBroker(log_path=tmp_path / "tansu.log", port=port):
        writer = KafkaEventWriter(target, partitions=2)
        with EventLog(None, journal, store=writer) as up:
            more = _events(500, seed=4)
            for start in range(0, len(more), 50):
                up.append_many(more[start : start + 50])  # type: ignore[arg-type]
        assert up.queue_depth == 0
        assert up.spool_bytes == 0
        writer.close()
        url = f"sqlite:///{tmp_path}/store.db"
        with EventStore.open(url) as store:
            totals = Loader(target, store, group_id="g").run(
                until_caught_up=True, max_seconds=CATCH_UP_SECONDS
            )
    assert totals.dead_lettered == 0
    _assert_exactly_once(url, events + more)


def test_messages_the_store_cannot_take_go_to_the_dead_letter_topic(
    kafka_broker: TansuBroker, topic_prefix: str, tmp_path: Path
) -> None:
    target = _target(kafka_broker, topic_prefix)
    ensure_topics(target, ["exposure"], partitions=1)
    good = [row for kind, row in _events(2, seed=5) if kind == "exposure"]
    header = [("abflow-schema", b"exposure/1")]
    bad = [
        (b"not json", header, "not JSON"),
        (orjson.dumps(good[0] | {"event_id": "v2"}), [("abflow-schema", b"exposure/2")], "schema"),
        (orjson.dumps(good[0] | {"event_id": "x", "surprise": 1}), header, "surprise"),
    ]
    producer = confluent_kafka.Producer({"bootstrap.servers": kafka_broker.bootstrap})
    topic = target.topic("exposure")
    producer.produce(topic, orjson.dumps(good[0]), b"u", headers=header)
    for value, headers, _ in bad:
        producer.produce(topic, value, b"u", headers=headers)
    producer.produce(topic, orjson.dumps(good[1]), b"u", headers=header)
    assert producer.flush(30) == 0
    url = f"sqlite:///{tmp_path}/store.db"
    with EventStore.open(url) as store:
        totals = Loader(target, store, group_id="dlq").run(
            until_caught_up=True, max_seconds=CATCH_UP_SECONDS
        )
        again = Loader(target, store, group_id="dlq").run(
            until_caught_up=True, max_seconds=CATCH_UP_SECONDS
        )
    assert (totals.consumed, totals.stored, totals.dead_lettered) == (5, 2, 3)
    assert again.consumed == 0
    assert _stored_ids(url)["exposure"] == Counter({row["event_id"]: 1 for row in good})

    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": kafka_broker.bootstrap, "group.id": "dlq-reader",
         "enable.partition.eof": True}
    )  # fmt: skip
    consumer.assign([confluent_kafka.TopicPartition(target.dead_letter_topic, 0, 0)])
    letters: list[Any] = []
    deadline = time.monotonic() + 30
    while len(letters) < 3 and time.monotonic() < deadline:
        letters += [m for m in consumer.consume(10, 0.5) if m.error() is None]
    consumer.close()
    assert [m.value() for m in letters] == [value for value, _, _ in bad]
    for message, (_, _, reason) in zip(letters, bad, strict=True):
        headers = dict(message.headers())
        assert reason in headers["abflow-error"].decode()
        assert headers["abflow-source"].decode().startswith(f"{topic}/0/")


@pytest.mark.slow
def test_a_gateway_with_abflow_events_url_logs_to_kafka(
    kafka_broker: TansuBroker, topic_prefix: str, tmp_path: Path
) -> None:
    """ABFLOW_EVENTS_URL sends the gateway's events to Kafka; abflow ingest loads them."""
    import anyio
    import httpx

    from abflow.serving import GatewaySettings, create_app
    from abflow.serving.demo_models import N_FEATURES

    options = "&".join(f"{k}={v}" for k, v in GROUP_OPTIONS.items())
    source = f"kafka://{kafka_broker.bootstrap}/{topic_prefix}?{options}"
    gateway_store = f"sqlite:///{tmp_path}/gateway.db"
    settings = GatewaySettings(
        store_url=gateway_store,
        events_url=source,
        journal_dir=tmp_path / "journal",
        auth_enabled=False,
        ship_in_subprocess=False,
    )
    request_ids: list[str] = []

    async def predict() -> None:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
                for i in range(20):
                    response = await client.post(
                        "/v1/predict",
                        json={"unit_id": f"user-{i}", "features": [0.5] * N_FEATURES},
                    )
                    assert response.status_code == 200, response.text
                    request_ids.append(response.json()["request_id"])

    anyio.run(predict)
    assert sum(_stored_ids(gateway_store)[kind].total() for kind in TABLES) == 0

    loaded = f"sqlite:///{tmp_path}/loaded.db"
    target = _target(kafka_broker, topic_prefix)
    with EventStore.open(loaded) as store:
        totals = Loader(target, store, group_id="gw").run(
            until_caught_up=True, max_seconds=CATCH_UP_SECONDS
        )
    assert totals.consumed == totals.stored >= 40  # and the monitoring samples, if any
    engine = sa.create_engine(loaded)
    with engine.connect() as connection:
        stored = connection.execute(sa.text("SELECT request_id FROM predictions")).scalars().all()
        units = connection.execute(sa.text("SELECT unit_id FROM exposures")).scalars().all()
    engine.dispose()
    assert sorted(stored) == sorted(request_ids)
    assert sorted(units) == sorted(f"user-{i}" for i in range(20))


def test_an_event_kafka_refuses_as_too_large_is_set_aside_and_the_rest_shipped(
    kafka_broker: TansuBroker, topic_prefix: str, tmp_path: Path
) -> None:
    target = _target(kafka_broker, topic_prefix, **{"message.max.bytes": "4000"})
    events = _events(30, seed=6)
    huge = exposure_row(
        experiment_key="fraud", phase=1, unit_id="u", variant="a", attributes={"x": "y" * 5000}
    )
    writer = KafkaEventWriter(target)
    with EventLog(None, tmp_path / "journal", store=writer) as log:
        log.append_many([*events[:10], ("exposure", huge), *events[10:]])  # type: ignore[list-item]
    writer.close()
    assert log.rejected_events == 1
    assert log.queue_depth == 0
    read = {orjson.loads(m.value())["event_id"] for m in _read_all(target, list(TABLES))}
    assert huge["event_id"] not in read
    assert {row["event_id"] for _, row in events} <= read


class _StoreDownFor:
    """The real store behind an outage: its first ``failures`` writes are refused as a store
    outage is (StoreUnavailableError), the rest go through."""

    def __init__(self, store: EventStore, failures: int) -> None:
        self.store = store
        self.failures = failures
        self.calls = 0

    def write_events(self, kind: Any, rows: list[dict[str, Any]]) -> int:
        self.calls += 1
        if self.calls <= self.failures:
            msg = "store down (test)"
            raise StoreUnavailableError(msg)
        return self.store.write_events(kind, rows)


def test_nothing_is_committed_while_the_store_is_down(
    kafka_broker: TansuBroker, topic_prefix: str, tmp_path: Path
) -> None:
    target = _target(kafka_broker, topic_prefix)
    ensure_topics(target, ["prediction"], partitions=2)
    events = _publish_predictions(target, 500, seed=7)
    url = f"sqlite:///{tmp_path}/store.db"
    with EventStore.open(url) as store:
        down = _StoreDownFor(store, failures=10**9)
        loader = Loader(
            target, down, group_id="outage", kinds=["prediction"], retry_max_seconds=0.2
        )
        thread = threading.Thread(target=loader.run)
        thread.start()
        deadline = time.monotonic() + 60
        while down.calls < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        loader.stop()  # a stop during the outage returns without committing
        thread.join(60)
        assert not thread.is_alive()
        assert down.calls >= 3
        topic = target.topic("prediction")
        assert _committed_total(kafka_broker.bootstrap, "outage", topic, 2) == 0

        flaky = _StoreDownFor(store, failures=2)
        totals = Loader(
            target, flaky, group_id="outage", kinds=["prediction"], retry_max_seconds=0.2
        ).run(until_caught_up=True, max_seconds=CATCH_UP_SECONDS)
    assert flaky.calls > 2
    assert totals.consumed == totals.stored == len(events)
    assert _committed_total(kafka_broker.bootstrap, "outage", topic, 2) == len(events)
    _assert_exactly_once(url, events)


class _PauseBrokerAfterStoring:
    """The real store; once it has stored a batch, the broker is paused (SIGSTOP): it keeps
    accepting connections and answers nothing, so the commit of that batch meets a
    black-holed broker."""

    def __init__(self, store: EventStore, broker_pid: int) -> None:
        self.store = store
        self.broker_pid = broker_pid
        self.paused = threading.Event()

    def write_events(self, kind: Any, rows: list[dict[str, Any]]) -> int:
        stored = self.store.write_events(kind, rows)
        if not self.paused.is_set():
            os.kill(self.broker_pid, signal.SIGSTOP)
            self.paused.set()
        return stored


STOP_BOUND_SECONDS = 10.0


def _stop_once_paused(loader: Loader, paused: threading.Event, broker_pid: int) -> float:
    """Run ``loader`` until ``paused`` (the broker is then stopped), give it a second to
    block on the broker, stop it; the seconds ``stop()`` took to end the run. The broker
    is resumed either way."""
    thread = threading.Thread(target=loader.run, daemon=True)
    thread.start()
    assert paused.wait(60), "the broker was never paused"
    time.sleep(1.0)  # the loader now waits for the broker's answer
    stopped = time.monotonic()
    loader.stop()
    thread.join(STOP_BOUND_SECONDS)
    waited = time.monotonic() - stopped
    hung = thread.is_alive()
    os.kill(broker_pid, signal.SIGCONT)
    thread.join(120)  # the old code returns once the broker answers again
    assert not hung, f"stop() did not return within {STOP_BOUND_SECONDS} s"
    return waited


@pytest.mark.slow
def test_a_stop_during_a_commit_to_a_broker_that_does_not_answer_returns_in_bounded_time(
    tmp_path: Path, topic_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """librdkafka's synchronous commit has no timeout: against a paused broker it waited
    minutes, and a stop could not end it. The commit is now awaited in slices a stop ends;
    after the broker is back, a fresh loader stores every event exactly once."""
    caplog.set_level(logging.WARNING, logger="abflow.events.ingest")
    with TansuBroker(log_path=tmp_path / "tansu.log") as broker:
        assert broker.pid is not None
        target = _target(broker, topic_prefix)
        ensure_topics(target, ["prediction"], partitions=2)
        events = _publish_predictions(target, 2_000, seed=9)
        url = f"sqlite:///{tmp_path}/store.db"
        try:
            with EventStore.open(url) as store:
                pausing = _PauseBrokerAfterStoring(store, broker.pid)
                loader = Loader(target, pausing, group_id="paused", kinds=["prediction"],
                                batch_events=500)  # fmt: skip
                waited = _stop_once_paused(loader, pausing.paused, broker.pid)
            assert waited < STOP_BOUND_SECONDS
            assert "has not answered an offset commit" in caplog.text
            stored_before = sum(_stored_ids(url)["prediction"].values())
            assert stored_before > 0  # read ahead of the unanswered commits, maybe all of it

            with EventStore.open(url) as store:
                totals = Loader(target, store, group_id="paused", kinds=["prediction"]).run(
                    until_caught_up=True, max_seconds=CATCH_UP_SECONDS
                )
        finally:
            os.kill(broker.pid, signal.SIGCONT)  # harmless when running
        assert totals.stored == len(events) - stored_before
        _assert_exactly_once(url, events)
        topic = target.topic("prediction")
        assert _committed_total(broker.bootstrap, "paused", topic, 2) == len(events)


class _RefuseOneRowAndPauseTheBroker:
    """The real store, except that it refuses the row with event id ``poison`` (StoreError:
    a dead letter) and, the first time, pauses the broker (SIGSTOP) just before refusing it,
    so the dead letter meets a broker that accepts connections and answers nothing."""

    def __init__(self, store: EventStore, broker_pid: int) -> None:
        self.store = store
        self.broker_pid = broker_pid
        self.paused = threading.Event()

    def write_events(self, kind: Any, rows: list[dict[str, Any]]) -> int:
        if any(row["event_id"] == "poison" for row in rows):
            if not self.paused.is_set():
                os.kill(self.broker_pid, signal.SIGSTOP)
                self.paused.set()
            msg = "this store refuses the poison row"
            raise StoreError(msg)
        return self.store.write_events(kind, rows)


@pytest.mark.slow
def test_a_stop_while_a_dead_letter_awaits_a_broker_that_does_not_answer_returns_in_bounded_time(
    tmp_path: Path, topic_prefix: str
) -> None:
    """The dead letter's acknowledgement was awaited with flush(30), which a stop could not
    end. It is now awaited in slices a stop ends; the batch (its good rows stored) is not
    committed, so after the broker is back a fresh loader reads it all again, stores nothing
    twice and sets the poison row aside."""
    with TansuBroker(log_path=tmp_path / "tansu.log") as broker:
        assert broker.pid is not None
        target = _target(broker, topic_prefix)
        ensure_topics(target, ["prediction"], partitions=1)
        events = _publish_predictions(target, 200, seed=10)
        poison = {**events[0][1], "event_id": "poison", "request_id": "poison"}
        KafkaEventWriter(target).write_events("prediction", [poison])
        url = f"sqlite:///{tmp_path}/store.db"
        try:
            with EventStore.open(url) as store:
                refusing = _RefuseOneRowAndPauseTheBroker(store, broker.pid)
                loader = Loader(target, refusing, group_id="letters", kinds=["prediction"])
                waited = _stop_once_paused(loader, refusing.paused, broker.pid)
            assert waited < STOP_BOUND_SECONDS
            _assert_exactly_once(url, events)  # stored, but not committed: read again below

            with EventStore.open(url) as store:
                refusing = _RefuseOneRowAndPauseTheBroker(store, broker.pid)
                refusing.paused.set()  # no more pauses
                totals = Loader(target, refusing, group_id="letters", kinds=["prediction"]).run(
                    until_caught_up=True, max_seconds=CATCH_UP_SECONDS
                )
        finally:
            os.kill(broker.pid, signal.SIGCONT)  # harmless when running
        assert (totals.consumed, totals.stored, totals.dead_lettered) == (len(events) + 1, 0, 1)
        _assert_exactly_once(url, events)


def test_a_running_loader_commits_its_last_batch_while_nothing_more_comes(
    kafka_broker: TansuBroker, topic_prefix: str, tmp_path: Path
) -> None:
    """The store thread's last batch is committed without waiting for a next batch."""
    target = _target(kafka_broker, topic_prefix)
    ensure_topics(target, ["prediction"], partitions=2)
    events = _publish_predictions(target, 300, seed=8)
    topic = target.topic("prediction")
    with EventStore.open(f"sqlite:///{tmp_path}/store.db") as store:
        loader = Loader(target, store, group_id="idle", kinds=["prediction"])
        thread = threading.Thread(target=loader.run)
        thread.start()
        try:
            deadline = time.monotonic() + 60
            committed = 0
            while committed < len(events) and time.monotonic() < deadline:
                time.sleep(0.2)
                committed = _committed_total(kafka_broker.bootstrap, "idle", topic, 2)
        finally:
            loader.stop()
            thread.join(60)
    assert not thread.is_alive()
    assert committed == len(events)
