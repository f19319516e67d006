"""Time-ordered event ids: unique, fixed width, sorted by creation time."""

from __future__ import annotations

import re
import time

from abflow.store import new_event_id


def test_ids_are_unique_hex_of_fixed_width() -> None:
    ids = [new_event_id() for _ in range(50_000)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


def test_ids_sort_by_millisecond() -> None:
    earlier = [new_event_id() for _ in range(100)]
    time.sleep(0.003)
    later = [new_event_id() for _ in range(100)]
    assert max(earlier) < min(later)
    now_ms = time.time_ns() // 1_000_000
    assert abs(int(later[0][:12], 16) - now_ms) < 1_000
