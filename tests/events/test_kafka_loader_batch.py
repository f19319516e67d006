"""The loader's batch handling without a broker: confluent-kafka builds the messages a
consumer would return, and the test works out by hand what the loader should make of them."""

from __future__ import annotations

import gc
import sys
from typing import Any

import orjson
import pytest

from abflow.errors import StoreError, StoreUnavailableError
from abflow.events.ingest import Loader, _Batch, _in_key_order
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


class _NoStore:
    def write_events(self, kind: Any, rows: list[dict[str, Any]]) -> int:
        raise AssertionError


def _decode(messages: list[Any]) -> _Batch:
    """The batch a loader makes of ``messages`` read in one consume call."""
    loader = Loader(TARGET, _NoStore(), create_topics=False)
    loader._take(messages)
    return loader._batch


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

    batch = _decode(messages)

    rejected_at = {7, 12, 30}
    for kind in ("exposure", "prediction"):
        kept = [
            m for i, m in enumerate(messages) if i not in rejected_at and m.topic() == f"t.{kind}"
        ]
        part = batch.parts[f"t.{kind}"]
        assert part.rows == [orjson.loads(m.value()) for m in kept]
        assert part.sources == [
            x for m in kept for x in (m.partition(), m.offset(), b"k", m.value())
        ]
        assert part.headers == {}  # every kept message had exactly the writer's header
    assert batch.size == len(messages)
    assert [(r.topic, r.partition, r.offset) for r in batch.rejected] == [
        (messages[i].topic(), messages[i].partition(), messages[i].offset())
        for i in sorted(rejected_at)
    ]
    assert [r.value for r in batch.rejected] == [messages[i].value() for i in sorted(rejected_at)]
    reasons = " ".join(r.reason for r in batch.rejected)
    assert "prediction/2" in reasons
    assert "not JSON" in reasons
    assert "holds no event kind" in reasons
    ends: dict[tuple[str, int], int] = {}
    for m in messages:  # rejected messages count: they go to the dead-letter topic first
        place = (m.topic(), m.partition())
        ends[place] = max(ends.get(place, 0), m.offset() + 1)
    assert {(p.topic, n): end for p in batch.parts.values() for n, end in p.ends.items()} == ends


def test_headers_other_than_the_writers_are_read_for_the_schema_and_kept_for_a_dead_letter() -> (
    None
):
    def message(offset: int, headers: Any) -> Any:
        return kafka.Message(
            topic="t.exposure", partition=0, offset=offset, key=None, value=b"{}", headers=headers
        )

    extra = [("trace", b"t1"), ("abflow-schema", b"exposure/1")]
    messages = [
        message(0, None),  # a producer that sets no header writes the current layout
        message(1, extra),
        message(2, [("abflow-schema", b"exposure/1")]),
        message(3, [("trace", b"t2"), ("abflow-schema", b"outcome/1")]),
        message(4, [("abflow-schema", "exposure/1")]),
    ]
    batch = _decode(messages)

    part = batch.parts["t.exposure"]
    assert part.rows == [{}, {}, {}, {}]
    assert part.headers == {0: None, 1: extra, 3: [("abflow-schema", "exposure/1")]}
    [letter] = batch.rejected
    assert (letter.offset, letter.headers) == (
        3,
        [("trace", b"t2"), ("abflow-schema", b"outcome/1")],
    )
    assert "'outcome/1'" in letter.reason
    assert "'exposure/1'" in letter.reason
    assert part.letter(1, "why").headers == extra
    assert part.letter(2, "why").headers == [("abflow-schema", b"exposure/1")]
    last = part.letter(3, "why")
    assert (last.offset, last.key, last.headers) == (4, None, [("abflow-schema", "exposure/1")])


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
    assert loader._batch.size == 4
    assert loader._batch.parts["t.exposure"].sources[1::4] == [1, 1, 2, 2]


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
    store = _Recording()
    loader = Loader(TARGET, store, create_topics=False)
    loader._take(messages)

    stored, [letter] = loader._write(loader._batch)
    assert stored == len(messages) - 1
    read_order = [orjson.loads(m.value())["event_id"] for m in messages]
    assert store.writes[0] == sorted(read_order)
    assert store.writes[1:] == [[event_id] for event_id in read_order]  # then one by one
    assert loader._batch.rejected == []  # decoding set nothing aside
    bad = messages[4 + 2]
    assert (letter.topic, letter.partition, letter.offset) == ("t.exposure", 1, 2)
    assert (letter.key, letter.value, letter.headers) == (bad.key(), bad.value(), bad.headers())
    assert "too long" in letter.reason


def test_rows_without_comparable_ids_keep_their_order() -> None:
    rows: list[dict[str, Any]] = [{"event_id": "b"}, {"event_id": "a"}]
    assert _in_key_order(rows) == [{"event_id": "a"}, {"event_id": "b"}]
    for odd in ({"event_id": 3}, {"variant": "a"}):
        assert _in_key_order([*rows, odd]) == [*rows, odd]


class _DownMidway:
    """Refuses any batch holding a 'bad' row; the first time it is given the row after it,
    the store is down."""

    def __init__(self) -> None:
        self.is_down_once = True

    def write_events(self, kind: Any, rows: list[dict[str, Any]]) -> int:
        if any(row["variant"] == "bad" for row in rows):
            msg = "variant 'bad' is too long"
            raise StoreError(msg)
        if len(rows) == 1 and rows[0]["event_id"] == "e3" and self.is_down_once:
            self.is_down_once = False
            msg = "connection refused"
            raise StoreUnavailableError(msg)
        return len(rows)


def test_a_write_interrupted_by_an_outage_sets_nothing_aside_twice() -> None:
    messages = [
        _message("t.exposure", 0, i, orjson.dumps({**_row(i), "variant": v}), b"exposure/1")
        for i, v in enumerate(["a", "b", "bad", "a"])
    ]
    messages.append(_message("t.exposure", 0, 4, b"{not json", b"exposure/1"))
    loader = Loader(TARGET, _DownMidway(), create_topics=False)
    loader._take(messages)
    batch = loader._batch

    with pytest.raises(StoreUnavailableError):
        loader._write(batch)  # the row-by-row pass had set row 2 aside when the store went down
    assert [letter.offset for letter in batch.rejected] == [4]  # what decoding set aside
    stored, refused = loader._write(batch)
    assert stored == 3
    assert [letter.offset for letter in refused] == [2]
    assert [letter.offset for letter in loader._write(batch)[1]] == [2]  # written again: once
    assert [letter.offset for letter in batch.rejected] == [4]


def test_a_row_after_a_dropped_message_with_other_headers_keeps_its_own_headers() -> None:
    odd = [("abflow-schema", b"exposure/1"), ("trace", b"T0")]
    messages = [
        kafka.Message(topic="t.exposure", partition=0, offset=0, value=b"{no", headers=odd),
        _message("t.exposure", 0, 1, orjson.dumps({**_row(1), "variant": "bad"}), b"exposure/1"),
    ]
    loader = Loader(TARGET, _Recording(), create_topics=False)
    loader._take(messages)

    _, [letter] = loader._write(loader._batch)
    assert letter.offset == 1
    assert letter.headers == messages[1].headers()


def test_a_batch_holds_no_message_and_nothing_the_garbage_collector_tracks_per_row() -> None:
    messages = [
        _message("t.exposure", i % 2, i, orjson.dumps(_row(i)), b"exposure/1") for i in range(6)
    ]
    messages.append(_message("t.exposure", 0, 6, b"[1]", b"exposure/1"))
    references = [sys.getrefcount(m) for m in messages]
    batch = _decode(messages)

    assert [sys.getrefcount(m) for m in messages] == references
    part = batch.parts["t.exposure"]
    assert len(part.rows) == 6
    assert [batch.rejected[0].reason, batch.rejected[0].value] == ["not a JSON object", b"[1]"]
    assert not any(gc.is_tracked(x) for x in [*part.rows, *part.sources])
