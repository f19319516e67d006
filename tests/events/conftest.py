"""The Kafka tests' broker: one Tansu process per session (see tests/kafka_broker.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kafka_broker import BrokerUnavailable, TansuBroker


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    """A running Kafka-API broker on a free loopback port; skipped where none can be had."""
    pytest.importorskip("confluent_kafka", reason="needs the kafka extra (confluent-kafka)")
    log = Path(tmp_path_factory.mktemp("tansu")) / "tansu.log"
    try:
        broker = TansuBroker(log_path=log).start()
    except BrokerUnavailable as exc:
        pytest.skip(f"no Kafka-API broker: {exc}")
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def topic_prefix() -> str:
    """Topics of their own for each test: the session's broker is shared."""
    return f"t{uuid.uuid4().hex[:10]}"
