"""The loader's batch handling without a broker: confluent-kafka builds the messages a
consumer would return, and the test works out by hand what the loader should make of them."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from abflow.errors import StoreError
from abflow.events.ingest import Loader, _decode, _in_key_order
from abflow.events.kafka import KafkaTarget

kafka = pytest.importorskip("confluent_kafka")

TARGET = KafkaTarget("127.0.0.1:1", "t")


def _message(topic: str, partition: int, offset: int, value: bytes, header: bytes) -> Any:
    return kafka.Message(
        topic=topic,
        partition=partition,
        offset=offset,
        key=b"k",
        value=value,
        headers=[("abflow-schema", header)],
    )


def _row(i: int) -> dict[str, Any]:
    return {"event_id": f"e{i}", "unit_id": f"u{i % 3}", "variant": "ab"[i % 2]}


def test_a_batch_is_decoded_by_kind_with_the_offset_after_each_partitions_last_message() -> None:
    messages = []
    for i in range(30):
        kind = ("exposure", "prediction")[i % 2]
        value = orjson.dumps(_row(i))
        header = f"{kind}/1".encode()
        if i == 7:
            header = b"prediction/2"  # a version this loader does not read
        if i == 12:
            value = b"{not json"
        messages.append(_message(f"t.{kind}", i % 3, 100 + i, value, header))
    messages.append(_message("t.dead-letter", 0, 5, b"{}", b"exposure/1"))

    decoded = _decode(TARGET, messages)

    rejected_at = {7, 12, 30}
    for kind in ("exposure", "prediction"):
        wanted = [
            orjson.loads(m.value())
            for i, m in enumerate(messages)
            if i not in rejected_at and m.topic() == f"t.{kind}"
        ]
        assert decoded.rows[kind] == wanted
        assert [orjson.loads(m.value()) for m in decoded.messages[kind]] == wanted
    assert sorted(m.offset() for m, _ in decoded.rejected) == sorted(
        messages[i].offset() for i in rejected_at
    )
    reasons = " ".join(reason for _, reason in decoded.rejected)
    assert "prediction/2" in reasons
    assert "not JSON" in reasons
    assert "holds no event kind" in reasons
    ends: dict[tuple[str, int], int] = {}
    for m in messages:  # rejected messages count: they go to the dead-letter topic first
        place = (m.topic(), m.partition())
        ends[place] = max(ends.get(place, 0), m.offset() + 1)
    assert decoded.ends == ends


class _NoStore:
    def write_events(self, kind: Any, rows: list[dict[str, Any]]) -> int:
        raise AssertionError


def _end(topic: str, partition: int) -> Any:
    error = kafka.KafkaError(kafka.KafkaError._PARTITION_EOF)
    return kafka.Message(topic=topic, partition=partition, offset=0, error=error)


def test_a_partition_is_read_to_its_end_only_while_no_message_of_it_follows() -> None:
    loader = Loader(TARGET, _NoStore(), create_topics=False)
    p0, p1 = ("t.exposure", 0), ("t.exposure", 1)

    loader._take([_message(*p0, 1, b"{}", b"exposure/1"), _end(*p0)])
    assert loader._at_end == {p0}
    loader._take([_message(*p1, 1, b"{}", b"exposure/1")])  # no event in this call
    assert loader._at_end == {p0}
    loader._take([_message(*p0, 2, b"{}", b"exposure/1")])
    assert loader._at_end == set()
    loader._take([_end(*p1), _message(*p1, 2, b"{}", b"exposure/1")])
    assert loader._at_end == set()
    loader._take([_end(*p0), _end(*p1)])
    assert loader._at_end == {p0, p1}
    assert [m.offset() for m in loader._batch.messages] == [1, 1, 2, 2]


class _Recording:
    """A store that notes the ids of each write and refuses any batch holding a 'bad' row."""

    def __init__(self) -> None:
        self.writes: list[list[str]] = []

    def write_events(self, kind: Any, rows: list[dict[str, Any]]) -> int:
        self.writes.append([row["event_id"] for row in rows])
        if any(row["variant"] == "bad" for row in rows):
            msg = "variant 'bad' is too long"
            raise StoreError(msg)
        return len(rows)


def test_rows_go_to_the_store_in_key_order_and_a_refused_row_keeps_its_message() -> None:
    messages = []
    for partition in range(3):  # three partitions' runs, their ids interleaved
        for i in range(4):
            row = {"event_id": f"id-{i}-{partition}", "variant": "a"}
            if (partition, i) == (1, 2):
                row["variant"] = "bad"
            messages.append(_message("t.exposure", partition, i, orjson.dumps(row), b"exposure/1"))
    decoded = _decode(TARGET, messages)
    store = _Recording()
    loader = Loader(TARGET, store, create_topics=False)

    assert loader._write(decoded) == len(messages) - 1
    read_order = [orjson.loads(m.value())["event_id"] for m in messages]
    assert store.writes[0] == sorted(read_order)
    assert store.writes[1:] == [[event_id] for event_id in read_order]  # then one by one
    [(message, reason)] = decoded.rejected
    assert (message.partition(), message.offset()) == (1, 2)
    assert "too long" in reason


def test_rows_without_comparable_ids_keep_their_order() -> None:
    rows: list[dict[str, Any]] = [{"event_id": "b"}, {"event_id": "a"}]
    assert _in_key_order(rows) == [{"event_id": "a"}, {"event_id": "b"}]
    for odd in ({"event_id": 3}, {"variant": "a"}):
        assert _in_key_order([*rows, odd]) == [*rows, odd]
