"""The journal's framing, segments and checkpointing, and the outage spool, on real files."""

from __future__ import annotations

import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from abflow.errors import JournalError
from abflow.events.journal import (
    MAGIC,
    EventKind,
    Journal,
    encode_frame,
    parse_frames,
    read_frames,
)
from abflow.events.spool import Spool

KINDS: tuple[EventKind, ...] = ("exposure", "prediction", "outcome")


def naive_frame(kind: EventKind, payload: bytes) -> bytes:
    """The documented layout, written out by hand: magic, length, CRC-32, kind, payload."""
    body = {"exposure": b"E", "prediction": b"P", "outcome": b"O"}[kind] + payload
    return MAGIC + struct.pack("<I", len(body)) + struct.pack("<I", zlib.crc32(body)) + body


def make_events(rng: np.random.Generator, n: int) -> list[tuple[EventKind, bytes]]:
    events: list[tuple[EventKind, bytes]] = []
    for i in range(n):
        kind = KINDS[int(rng.integers(3))]
        # Payload sizes from 2 bytes to a few KiB, with arbitrary (non-UTF-8 too) content.
        size = int(rng.integers(0, 3000))
        noise = rng.integers(0, 256, size=size, dtype=np.uint8).tobytes()
        events.append((kind, orjson.dumps({"event_id": f"e{i}"}) + noise))
    return events


def test_frame_matches_documented_layout(rng: np.random.Generator) -> None:
    for kind, payload in make_events(rng, 50):
        assert encode_frame(kind, payload) == naive_frame(kind, payload)


def test_parse_returns_every_record_in_order(rng: np.random.Generator) -> None:
    events = make_events(rng, 200)
    buf = b"".join(naive_frame(k, p) for k, p in events)
    records, pos, skipped = parse_frames(buf, 10_000, is_complete=True)
    assert [(k, p) for k, p, _ in records] == events
    assert (pos, skipped) == (len(buf), 0)
    ends = np.cumsum([len(naive_frame(k, p)) for k, p in events])
    assert [end for _, _, end in records] == ends.tolist()


def test_corrupt_record_is_skipped_and_the_rest_is_read(rng: np.random.Generator) -> None:
    events = make_events(rng, 30)
    frames = [naive_frame(k, p) for k, p in events]
    for victim in (0, 13, 29):
        for where in ("body", "length", "crc", "magic"):
            damaged = bytearray(frames[victim])
            offset = {"magic": 1, "length": 5, "crc": 9, "body": len(damaged) - 1}[where]
            damaged[offset] ^= 0x5A
            buf = b"".join([*frames[:victim], bytes(damaged), *frames[victim + 1 :]])
            records, pos, skipped = parse_frames(buf, 10_000, is_complete=True)
            expected = events[:victim] + events[victim + 1 :]
            assert [(k, p) for k, p, _ in records] == expected, (victim, where)
            assert skipped == len(damaged)
            assert pos == len(buf)


def test_torn_tail_is_never_returned(rng: np.random.Generator) -> None:
    events = make_events(rng, 5)
    frames = [naive_frame(k, p) for k, p in events]
    head = b"".join(frames[:-1])
    last = frames[-1]
    for cut in [1, 3, 4, 8, 12, 13, len(last) // 2, len(last) - 1]:
        buf = head + last[:cut]
        records, pos, skipped = parse_frames(buf, 10_000, is_complete=True)
        assert [(k, p) for k, p, _ in records] == events[:-1]
        assert (pos, skipped) == (len(buf), cut)
        # Not yet complete (a reader mid-file): stop at the torn record and wait for more.
        records, pos, skipped = parse_frames(buf, 10_000, is_complete=False)
        assert [(k, p) for k, p, _ in records] == events[:-1]
        assert pos == len(head)
        assert skipped == 0


def test_zero_filled_tail_after_power_loss_is_skipped(rng: np.random.Generator) -> None:
    events = make_events(rng, 10)
    buf = b"".join(naive_frame(k, p) for k, p in events) + bytes(4096)
    records, pos, skipped = parse_frames(buf, 10_000, is_complete=True)
    assert [(k, p) for k, p, _ in records] == events
    assert (pos, skipped) == (len(buf), 4096)


@pytest.mark.parametrize("chunk_bytes", [64, 1000, 1 << 20])
def test_read_frames_across_chunk_boundaries(
    rng: np.random.Generator, tmp_path: Path, chunk_bytes: int
) -> None:
    events = make_events(rng, 100)
    frames = [naive_frame(k, p) for k, p in events]
    damaged = bytearray(frames[40])
    damaged[20] ^= 0xFF
    frames[40] = bytes(damaged)
    path = tmp_path / "f"
    path.write_bytes(b"".join(frames) + frames[41][:7])
    size = path.stat().st_size
    got, pos, skipped = read_frames(path, 7, 0, size, 10_000, chunk_bytes=chunk_bytes)
    assert [(k, p) for k, p, _, _ in got] == events[:40] + events[41:]
    assert {number for _, _, number, _ in got} == {7}
    assert (pos, skipped) == (size, len(frames[40]) + 7)
    # Reading from a record's end position continues exactly after it.
    middle = got[60]
    rest, _, _ = read_frames(path, 7, middle[3], size, 10_000, chunk_bytes=chunk_bytes)
    assert [(k, p) for k, p, _, _ in rest] == [(k, p) for k, p, _, _ in got[61:]]


def test_journal_rotates_reads_in_order_and_releases(
    rng: np.random.Generator, tmp_path: Path
) -> None:
    events = make_events(rng, 120)
    journal = Journal(tmp_path, segment_bytes=4096, fsync_interval_seconds=0.01)
    assert journal.open() == []
    positions = [journal.append(encode_frame(k, p)) for k, p in events]
    assert journal.segment_count > 5
    start = (journal.first_new_segment, 0)
    got, reached, skipped = journal.read(start, journal.end(), 10_000)
    assert [(k, p) for k, p, _, _ in got] == events
    assert [(n, end) for _, _, n, end in got] == positions
    assert (reached, skipped) == (journal.end(), 0)
    # Partial reads resume where they stopped, across segment boundaries.
    first, middle, _ = journal.read(start, journal.end(), 37)
    second, _, _ = journal.read(middle, journal.end(), 10_000)
    assert [(k, p) for k, p, _, _ in first + second] == events
    # Releasing up to event 60 deletes exactly the segments all of whose events are <= 60.
    done = {n for n, _ in positions[:61]} - {n for n, _ in positions[61:]}
    before = {p.name for p in tmp_path.glob("*.journal")}
    journal.release(positions[60])
    after = {p.name for p in tmp_path.glob("*.journal")}
    assert before - after == {journal.path(n).name for n in done}
    rest, _, _ = journal.read(positions[60], journal.end(), 10_000)
    assert [(k, p) for k, p, _, _ in rest] == events[61:]
    journal.close()
    assert journal.sync_stats.synced_events == len(events)


def test_reopened_journal_starts_a_new_segment_and_keeps_old_ones(
    rng: np.random.Generator, tmp_path: Path
) -> None:
    events = make_events(rng, 20)
    journal = Journal(tmp_path, segment_bytes=1 << 20, fsync_interval_seconds=None)
    journal.open()
    for kind, payload in events[:10]:
        journal.append(encode_frame(kind, payload))
    journal.close()
    with pytest.raises(JournalError, match="closed"):
        journal.append(encode_frame("outcome", b"{}"))
    again = Journal(tmp_path, segment_bytes=1 << 20, fsync_interval_seconds=None)
    assert again.open() == [1]
    assert again.first_new_segment == 2
    for kind, payload in events[10:]:
        again.append(encode_frame(kind, payload))
    got, _, _ = again.read((1, 0), again.end(), 10_000)
    assert [(k, p) for k, p, _, _ in got] == events
    again.close()


def test_one_process_per_journal_directory(tmp_path: Path) -> None:
    first = Journal(tmp_path)
    first.open()
    with pytest.raises(JournalError, match="in use"):
        Journal(tmp_path).open()
    first.close()
    second = Journal(tmp_path)
    second.open()
    second.close()


def test_spool_replays_in_order_and_deletes_what_was_committed(
    rng: np.random.Generator, tmp_path: Path
) -> None:
    events = make_events(rng, 60)
    spool = Spool(tmp_path, file_bytes=8192)
    assert spool.open() == 0
    for start in range(0, 60, 7):
        spool.append(events[start : start + 7])
    assert len(list(tmp_path.glob("*.spool"))) > 3
    assert spool.size_bytes == sum(len(naive_frame(k, p)) for k, p in events)
    first, reached = spool.read(25)
    assert [(k, p) for k, p, _, _ in first] == events[:25]
    again, _ = spool.read(25)  # nothing committed: the same events again
    assert again == first
    spool.commit(reached)
    rest, reached = spool.read(1000)
    assert [(k, p) for k, p, _, _ in rest] == events[25:]
    assert spool.has_pending
    spool.commit(reached)
    assert not spool.has_pending
    assert (spool.size_bytes, list(tmp_path.glob("*.spool"))) == (0, [])
    spool.append(events[:3])
    got, _ = spool.read(10)
    assert [(k, p) for k, p, _, _ in got] == events[:3]
    spool.close()


def test_spool_after_a_crash_replays_everything_but_the_torn_tail(
    rng: np.random.Generator, tmp_path: Path
) -> None:
    events = make_events(rng, 30)
    spool = Spool(tmp_path)
    spool.open()
    spool.append(events[:20])
    spool.append(events[20:])
    spool.close()
    (path,) = tmp_path.glob("*.spool")
    with path.open("ab") as file:  # a batch cut short by the crash
        file.write(naive_frame("outcome", b'{"event_id":"torn"}')[:-3])
    reopened = Spool(tmp_path)
    assert reopened.open() == path.stat().st_size
    got, reached = reopened.read(1000)
    assert [(k, p) for k, p, _, _ in got] == events
    reopened.commit(reached)
    assert not reopened.has_pending
    reopened.close()


@settings(max_examples=100, deadline=None)
@given(
    payloads=st.lists(st.binary(min_size=0, max_size=300), min_size=1, max_size=30),
    damage=st.lists(
        st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 40), st.integers(1, 255)),
        max_size=3,
    ),
    chunk_bytes=st.sampled_from([16, 97, 1 << 20]),
)
def test_damage_anywhere_never_yields_garbage(
    tmp_path_factory: pytest.TempPathFactory,
    payloads: list[bytes],
    damage: list[tuple[float, int, int]],
    chunk_bytes: int,
) -> None:
    """Whatever bytes are damaged: the records read back are original records, in order,
    and every record the damage did not touch is among them."""
    events = [(KINDS[i % 3], p) for i, p in enumerate(payloads)]
    frames = [naive_frame(k, p) for k, p in events]
    buf = bytearray(b"".join(frames))
    hit = set()
    for where, length, xor in damage:
        start = int(where * len(buf))
        for offset in range(start, min(start + length, len(buf))):
            buf[offset] ^= xor
            hit.add(offset)
    path = tmp_path_factory.mktemp("damage") / "segment"
    path.write_bytes(bytes(buf))
    got, pos, skipped = read_frames(path, 1, 0, len(buf), 10_000, chunk_bytes=chunk_bytes)
    returned = [(k, p) for k, p, _, _ in got]
    remaining = iter(events)
    assert all(record in remaining for record in returned)  # a subsequence of the originals
    offset = 0
    for event, frame in zip(events, frames, strict=True):
        if not hit & set(range(offset, offset + len(frame))):
            assert event in returned
        offset += len(frame)
    assert pos == len(buf)
    assert skipped == len(buf) - sum(len(naive_frame(k, p)) for k, p in returned)


def test_a_journal_that_cannot_open_says_why_and_frees_the_directory(tmp_path: Path) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    with pytest.raises(JournalError, match="cannot open journal directory"):
        Journal(not_a_directory).open()
    dangling = tmp_path / "journal" / "0000000000000001.journal"
    dangling.parent.mkdir()
    dangling.symlink_to(tmp_path / "missing")
    with pytest.raises(JournalError, match="cannot read journal directory"):
        Journal(dangling.parent).open()
    dangling.unlink()
    journal = Journal(dangling.parent)  # the failed attempt released its lock
    assert journal.open() == []
    journal.close()


@pytest.mark.parametrize("interval", [0.0, 0.005, None])
def test_sync_stats_account_for_every_event(
    rng: np.random.Generator, tmp_path: Path, interval: float | None
) -> None:
    events = make_events(rng, 300)
    journal = Journal(tmp_path, segment_bytes=16 * 1024, fsync_interval_seconds=interval)
    journal.open()
    for i, (kind, payload) in enumerate(events):
        journal.append(encode_frame(kind, payload))
        if i % 50 == 0:
            time.sleep(0.01)  # let the group-fsync thread run between bursts
    journal.close()
    stats = journal.sync_stats
    assert stats.synced_events == len(events)  # every event was covered by exactly one fsync
    assert stats.syncs * stats.max_events_per_sync >= len(events)
    if interval == 0:
        assert (stats.syncs, stats.max_events_per_sync) == (len(events), 1)
    elif interval is None:
        assert stats.syncs == 1  # only the fsync at close
    else:
        assert stats.syncs > 1
    assert stats.max_window_seconds > 0
    assert stats.fsync_seconds_total > 0


def test_a_close_arriving_just_before_the_flush_thread_clears_its_flag_returns(
    tmp_path: Path,
) -> None:
    """The interleaving that once hung a whole run: close() sets the stop flag and wakes the
    fsync thread after that thread decided to sync but before it cleared its wake-up flag,
    so the clear swallows close()'s wake-up. The thread must still stop, and close() return."""
    journal = Journal(tmp_path, fsync_interval_seconds=0.001)
    racing = threading.Event()  # the flush thread is about to clear: close() runs now
    close_woke_it = threading.Event()
    closer_started = threading.Event()
    closer = threading.Thread(target=journal.close, daemon=True)

    class CloseComesFirst(threading.Event):
        def set(self) -> None:
            super().set()
            if racing.is_set():
                close_woke_it.set()  # close() has set both flags and goes on to join

        def clear(self) -> None:
            if not racing.is_set():
                racing.set()
                closer.start()
                closer_started.set()
                close_woke_it.wait(5)
            super().clear()

    journal._has_unsynced = CloseComesFirst()
    journal.open()
    journal.append(b"x" * 10)
    assert closer_started.wait(5)
    assert close_woke_it.wait(5)
    closer.join(5)
    assert not closer.is_alive(), "close() waited for a flush thread that never woke"


def test_journal_and_spool_files_are_the_owners_alone(tmp_path: Path) -> None:
    """Events hold unit ids and request attributes: no other local user may read them."""
    journal = Journal(tmp_path / "journal", fsync_interval_seconds=None)
    journal.open()
    journal.append(b"x" * 10)
    journal.close()
    spool = Spool(tmp_path / "spool")
    spool.open()
    spool.append([("exposure", b"{}")])
    spool.close()
    for folder in (tmp_path / "journal", tmp_path / "spool"):
        assert folder.stat().st_mode & 0o777 == 0o700, folder
        files = [p for p in folder.iterdir() if p.is_file()]
        assert files
        for path in files:
            assert path.stat().st_mode & 0o077 == 0, path
