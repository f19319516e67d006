"""The recent-request memo behaves like a bounded insertion-ordered dict, in fixed memory."""

from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from abflow.errors import InvalidArgumentError
from abflow.serving.recent import SLOT_BYTES, RecentRequests


class ReferenceMemo:
    """The rules spelled out naively: entries that fit keep the last ``capacity`` ids first
    remembered (a repeat updates in place); the others live in an ordered dict of the same
    bound; an id is in one place only."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.ring: list[str | None] = []
        self.values: dict[str, tuple[str, str]] = {}
        self.overflow: OrderedDict[str, tuple[str, str]] = OrderedDict()

    def remember(self, request_id: str, unit_id: str, experiment_key: str) -> None:
        fits = 0 < len(request_id.encode()) <= SLOT_BYTES and len(unit_id.encode()) <= SLOT_BYTES
        if not fits:
            if request_id in self.values:
                del self.values[request_id]
                self.ring[self.ring.index(request_id)] = None
            self.overflow[request_id] = (unit_id, experiment_key)
            if len(self.overflow) > self.capacity:
                self.overflow.popitem(last=False)
            return
        self.overflow.pop(request_id, None)
        if request_id not in self.values:
            self.ring.append(request_id)
            if len(self.ring) > self.capacity:
                oldest = self.ring.pop(0)
                if oldest is not None:
                    del self.values[oldest]
        self.values[request_id] = (unit_id, experiment_key)

    def recall(self, request_id: str) -> tuple[str, str] | None:
        return self.values.get(request_id) or self.overflow.get(request_id)


# Few distinct ids (so repeats and probe collisions happen), some longer than a slot.
_ids = st.one_of(
    st.integers(0, 60).map(str),
    st.integers(0, 5).map(lambda i: f"long-{i}-" + "x" * SLOT_BYTES),
    st.text(max_size=8),
)
_units = st.sampled_from(["u1", "u2", "ü" * 32, "u" * 70])
_operation = st.tuples(_ids, _units, st.sampled_from(["exp-a", "exp-b"]))


@settings(max_examples=400, deadline=None)
@given(capacity=st.integers(1, 12), operations=st.lists(_operation, max_size=200))
def test_memo_follows_the_reference_rules(
    capacity: int, operations: list[tuple[str, str, str]]
) -> None:
    memo = RecentRequests(capacity)
    reference = ReferenceMemo(capacity)
    for request_id, unit_id, key in operations:
        memo.remember(request_id, unit_id, key)
        reference.remember(request_id, unit_id, key)
        assert memo.recall(request_id) == (unit_id, key)
    for request_id, _, _ in operations:
        assert memo.recall(request_id) == reference.recall(request_id)
    assert len(memo) == len(reference.values) + len(reference.overflow)


def test_ring_keeps_exactly_the_last_capacity_ids() -> None:
    memo = RecentRequests(1000)
    for i in range(5000):
        memo.remember(f"req-{i}", f"user-{i % 77}", "exp-a" if i % 2 else "exp-b")
    assert len(memo) == 1000
    for i in range(4000):
        assert memo.recall(f"req-{i}") is None
    for i in range(4000, 5000):
        assert memo.recall(f"req-{i}") == (f"user-{i % 77}", "exp-a" if i % 2 else "exp-b")


def test_colliding_hashes_are_told_apart_and_removed_cleanly() -> None:
    # 40 ids through an index of 16 positions: probe runs collide, wrap and shift back.
    memo = RecentRequests(8)
    ids = [str(i) for i in range(40)]
    for n, request_id in enumerate(ids):
        memo.remember(request_id, f"u{n}", "e")
    for n, request_id in enumerate(ids):
        assert memo.recall(request_id) == ((f"u{n}", "e") if n >= 32 else None)


def test_a_repeated_id_takes_the_new_values_without_a_new_slot() -> None:
    memo = RecentRequests(2)
    memo.remember("a", "u1", "e1")
    memo.remember("b", "u2", "e1")
    memo.remember("a", "u3", "e2")
    assert len(memo) == 2
    assert memo.recall("a") == ("u3", "e2")
    assert memo.recall("b") == ("u2", "e1")


def test_long_ids_and_units_fall_back_to_the_bounded_dict() -> None:
    memo = RecentRequests(3)
    long_unit = "ü" * SLOT_BYTES  # 128 bytes in UTF-8
    memo.remember("r1", long_unit, "e")
    memo.remember("x" * (SLOT_BYTES + 1), "u", "e")
    assert memo.recall("r1") == (long_unit, "e")
    assert memo.recall("x" * (SLOT_BYTES + 1)) == ("u", "e")
    for i in range(5):
        memo.remember(f"long-{i}", long_unit, "e")
    assert memo.recall("r1") is None  # the overflow dict is bounded too
    assert len(memo) == 3


def test_capacity_must_be_positive() -> None:
    with pytest.raises(InvalidArgumentError, match="capacity"):
        RecentRequests(0)


def _rss_kib() -> int:
    status = Path("/proc/self/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    assert match is not None
    return int(match.group(1))


def test_memory_is_taken_at_start_not_while_filling() -> None:
    memo = RecentRequests(50_000)
    ids = [f"{i:032x}" for i in range(150_000)]
    units = [f"user-{i}" for i in range(150_000)]
    before = _rss_kib()
    for request_id, unit_id in zip(ids, units, strict=True):
        memo.remember(request_id, unit_id, "exp")
    grown_mib = (_rss_kib() - before) / 1024
    # An OrderedDict of 50,000 such entries takes about 14 MiB; the memo takes none here.
    assert grown_mib < 1.0
