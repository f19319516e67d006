"""The gateway's local append-only journal: checksummed records in numbered segment files.

An event is acknowledged once its record has been handed to the OS with one ``write(2)`` on a
file opened with ``O_APPEND``: the page cache outlives a SIGKILL of the process, and the call
costs microseconds. A background thread fsyncs in groups every ``fsync_interval_seconds``,
which bounds what a power loss can take (measured in :class:`SyncStats`). Segments whose
events the store (or the spool) has confirmed are deleted, so the journal does not grow
without bound; while the store is slow, the journal is the buffer.

Record framing, shared with the spool::

    magic   4 bytes   b"\\xffEL\\xfe" (0xFF and 0xFE never occur in UTF-8, so no JSON fakes it)
    length  uint32    length of the body, little-endian
    crc32   uint32    CRC-32 of the body
    body    1 byte event kind + orjson payload

A reader checks every record; a torn or corrupt record is skipped by scanning for the next
magic whose record checks out, so damage never replays as garbage and never blocks the rest.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from abflow.errors import InvalidArgumentError, JournalError

__all__ = [
    "KIND_CODES",
    "MAX_BODY_BYTES",
    "Entry",
    "EventKind",
    "Journal",
    "Position",
    "SyncStats",
    "encode_frame",
    "fsync_directory",
    "parse_frames",
    "read_frames",
]

logger = logging.getLogger(__name__)

EventKind = Literal["exposure", "prediction", "outcome", "sample"]
Position = tuple[int, int]
"""(segment number, byte offset): a place in a sequence of numbered files."""
Entry = tuple[EventKind, bytes, int, int]
"""(kind, orjson payload, file number, offset just past the record)."""

MAGIC: Final = b"\xffEL\xfe"
_HEADER: Final = struct.Struct("<4sII")
HEADER_BYTES: Final = _HEADER.size
MAX_BODY_BYTES: Final = 8 * 1024 * 1024
KIND_CODES: Final[dict[EventKind, bytes]] = {
    "exposure": b"E",
    "prediction": b"P",
    "outcome": b"O",
    "sample": b"S",
}
_KIND_BY_CODE: Final[dict[int, EventKind]] = {code[0]: kind for kind, code in KIND_CODES.items()}
_SUFFIX: Final = ".journal"
_READ_CHUNK_BYTES: Final = 1 << 20


def encode_frame(kind: EventKind, payload: bytes) -> bytes:
    """One framed record: header (magic, length, CRC-32) followed by kind and payload."""
    body = KIND_CODES[kind] + payload
    return _HEADER.pack(MAGIC, len(body), zlib.crc32(body)) + body


def parse_frames(
    buf: bytes, limit: int, *, is_complete: bool
) -> tuple[list[tuple[EventKind, bytes, int]], int, int]:
    """Records in ``buf`` as (kind, payload, end offset), the offset reached, and bytes skipped.

    ``is_complete`` says that ``buf`` reaches the end of the range being read: a record cut
    short there is torn and skipped; otherwise parsing stops before it so the caller can read
    more. Anything that fails its checks is skipped up to the next magic.
    """
    records: list[tuple[EventKind, bytes, int]] = []
    pos = 0
    skipped = 0
    size = len(buf)
    while len(records) < limit:
        if pos + HEADER_BYTES > size:
            if is_complete and pos < size:
                skipped += size - pos
                pos = size
            break
        magic, length, crc = _HEADER.unpack_from(buf, pos)
        if magic == MAGIC and 0 < length <= MAX_BODY_BYTES:
            end = pos + HEADER_BYTES + length
            if end > size and not is_complete:
                break
            if end <= size:
                body = buf[pos + HEADER_BYTES : end]
                kind = _KIND_BY_CODE.get(body[0])
                if kind is not None and zlib.crc32(body) == crc:
                    records.append((kind, body[1:], end))
                    pos = end
                    continue
        found = buf.find(MAGIC, pos + 1)
        if found < 0:
            # Keep a possible magic cut by the end of the buffer for the next read.
            keep = size if is_complete else max(pos + 1, size - len(MAGIC) + 1)
            skipped += keep - pos
            pos = keep
            break
        skipped += found - pos
        pos = found
    return records, pos, skipped


def read_frames(
    path: Path,
    number: int,
    start: int,
    end: int,
    limit: int,
    *,
    chunk_bytes: int = _READ_CHUNK_BYTES,
) -> tuple[list[Entry], int, int]:
    """Up to ``limit`` records of file ``path`` between offsets ``start`` and ``end``.

    Returns the entries (tagged with file ``number``), the offset reached and the bytes
    skipped as torn or corrupt.
    """
    entries: list[Entry] = []
    skipped = 0
    pos = start
    chunk = chunk_bytes
    with path.open("rb") as file:
        while len(entries) < limit and pos < end:
            file.seek(pos)
            want = min(end - pos, chunk)
            buf = file.read(want)
            if len(buf) < want:  # the file is shorter than promised: read what is there
                end = pos + len(buf)
            complete = pos + len(buf) >= end
            records, used, lost = parse_frames(buf, limit - len(entries), is_complete=complete)
            entries.extend((kind, payload, number, pos + stop) for kind, payload, stop in records)
            skipped += lost
            if used == 0 and not complete:
                chunk *= 2  # one record longer than the chunk: read it whole next time
                continue
            pos += used
    return entries, pos, skipped


def fsync_directory(directory: Path) -> None:
    """Make file creations and deletions in ``directory`` survive a power loss."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class SyncStats:
    """What group fsync has covered: the power-loss window, measured rather than assumed.

    ``max_window_seconds`` is the longest time an acknowledged event waited before an fsync
    made it durable: a power loss could take at most the events of one such window.
    """

    syncs: int
    synced_events: int
    max_events_per_sync: int
    max_window_seconds: float
    last_window_seconds: float
    fsync_seconds_total: float


class Journal:
    """Numbered segment files of framed records, written by many threads, read by one.

    ``fsync_interval_seconds``: ``> 0`` fsyncs in groups from a background thread, ``0``
    fsyncs inside every append (durable against power loss, costs milliseconds), ``None``
    leaves flushing to the OS (and to :meth:`close`).
    """

    def __init__(
        self,
        directory: Path,
        *,
        segment_bytes: int = 8 * 1024 * 1024,
        fsync_interval_seconds: float | None = 0.05,
    ) -> None:
        if segment_bytes < 1024:
            msg = f"segment_bytes must be at least 1024, got {segment_bytes}"
            raise InvalidArgumentError(msg)
        if fsync_interval_seconds is not None and fsync_interval_seconds < 0:
            msg = f"fsync_interval_seconds must be >= 0 or None, got {fsync_interval_seconds}"
            raise InvalidArgumentError(msg)
        self.directory = Path(directory)
        self.segment_bytes = segment_bytes
        self.fsync_interval_seconds = fsync_interval_seconds
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._sizes: dict[int, int] = {}
        self._active = -1
        self._fd = -1
        self._lock_fd = -1
        self._retired: list[int] = []
        self._is_directory_dirty = False
        self._unsynced = 0
        self._first_unsynced_at = 0.0
        self._stats = SyncStats(0, 0, 0, 0.0, 0.0, 0.0)
        self._stop = threading.Event()
        self._has_unsynced = threading.Event()  # set on the first write after a sync
        self._flusher: threading.Thread | None = None
        self.first_new_segment = -1

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self) -> list[int]:
        """Lock the directory, start a fresh segment, and return the older segments' numbers.

        A fresh segment is never appended after a tail a crash may have torn.
        """
        try:
            # Events hold unit ids and request attributes: this user's alone, like the store.
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._lock_fd = os.open(self.directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(self._lock_fd)
            self._lock_fd = -1
            msg = f"journal directory {self.directory} is in use by another process"
            raise JournalError(msg) from exc
        except OSError as exc:
            msg = f"cannot open journal directory {self.directory}: {exc}"
            raise JournalError(msg) from exc
        try:
            older = sorted(
                int(path.name.removesuffix(_SUFFIX))
                for path in self.directory.glob(f"*{_SUFFIX}")
                if path.name.removesuffix(_SUFFIX).isdigit()
            )
            for number in older:
                self._sizes[number] = self.path(number).stat().st_size
            self.first_new_segment = (older[-1] + 1) if older else 1
            with self._lock:
                self._start_segment(self.first_new_segment)
        except (OSError, JournalError) as exc:
            os.close(self._lock_fd)  # let a later attempt take the directory
            self._lock_fd = -1
            if isinstance(exc, JournalError):
                raise
            msg = f"cannot read journal directory {self.directory}: {exc}"
            raise JournalError(msg) from exc
        if self.fsync_interval_seconds:
            self._flusher = threading.Thread(
                target=self._flush_loop, name="abflow-journal-fsync", daemon=True
            )
            self._flusher.start()
        return older

    def close(self) -> None:
        """Stop the fsync thread, make everything durable, close the files, unlock."""
        self._stop.set()
        self._has_unsynced.set()
        if self._flusher is not None:
            self._flusher.join()
            self._flusher = None
        if self._fd >= 0:
            self.sync()
            with self._lock:
                os.close(self._fd)
                self._fd = -1
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = -1

    def path(self, number: int) -> Path:
        """The file of segment ``number``."""
        return self.directory / f"{number:016d}{_SUFFIX}"

    # -- writing -----------------------------------------------------------------------------

    def append(self, frame: bytes, *, records: int = 1) -> Position:
        """Write framed records (``records`` of them, one write); return the position just past
        them. Thread-safe."""
        with self._lock:
            if self._fd < 0:
                msg = f"journal {self.directory} is closed; the event was not recorded"
                raise JournalError(msg)
            try:
                written = os.write(self._fd, frame)
                if written != len(frame):  # a short write (disk full): cut it off, fail
                    os.ftruncate(self._fd, self._sizes[self._active])
                    msg = f"journal {self.directory}: short write ({written} of {len(frame)} bytes)"
                    raise JournalError(msg)
            except OSError as exc:
                msg = f"cannot write to journal {self.directory}: {exc}"
                raise JournalError(msg) from exc
            # From here the record is in the file: book it before anything else can fail.
            size = self._sizes[self._active] + written
            self._sizes[self._active] = size
            position = (self._active, size)
            if self._unsynced == 0:
                self._first_unsynced_at = time.monotonic()
                if self._flusher is not None:
                    self._has_unsynced.set()
            self._unsynced += records
            if self.fsync_interval_seconds == 0:
                started = time.monotonic()
                try:
                    os.fsync(self._fd)
                except OSError as exc:
                    msg = f"cannot fsync journal {self.directory}: {exc}"
                    raise JournalError(msg) from exc
                finished = time.monotonic()
                self._unsynced = 0
                self._record_sync(records, finished - self._first_unsynced_at, finished - started)
            if size >= self.segment_bytes:
                try:
                    self._rotate()
                except JournalError:  # keep writing to the current segment; retry next time
                    logger.exception("journal %s: cannot start a new segment", self.directory)
            return position

    def end(self) -> Position:
        """The position just past the last record written."""
        with self._lock:
            return (self._active, self._sizes[self._active])

    def _start_segment(self, number: int) -> None:
        try:
            self._fd = os.open(
                self.path(number), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o600
            )
        except OSError as exc:
            msg = f"cannot create journal segment {self.path(number)}: {exc}"
            raise JournalError(msg) from exc
        self._active = number
        self._sizes[number] = 0
        self._is_directory_dirty = True
        if self.fsync_interval_seconds == 0:  # strict mode: the new name is durable at once
            try:
                fsync_directory(self.directory)
                self._is_directory_dirty = False
            except OSError:  # stays dirty: retried by the next sync
                logger.exception("fsync of journal directory %s failed", self.directory)

    def _rotate(self) -> None:
        old = self._fd
        self._start_segment(self._active + 1)
        if self.fsync_interval_seconds:
            self._retired.append(old)  # the fsync thread makes it durable, then closes it
        else:
            os.close(old)

    # -- durability --------------------------------------------------------------------------

    def sync(self) -> None:
        """fsync everything written so far (and new file names), and record the window."""
        with self._sync_lock:
            with self._lock:
                fd = self._fd
                retired, self._retired = self._retired, []
                events, first_at = self._unsynced, self._first_unsynced_at
                self._unsynced = 0
                is_dirty, self._is_directory_dirty = self._is_directory_dirty, False
            started = time.monotonic()
            try:
                for old in retired:
                    os.fsync(old)
                    os.close(old)
                if events and fd >= 0:
                    os.fsync(fd)
                if is_dirty:
                    fsync_directory(self.directory)
            except OSError:
                logger.exception("fsync of journal %s failed", self.directory)
                return
            finished = time.monotonic()
            if events:
                self._record_sync(events, finished - first_at, finished - started)

    def _record_sync(self, events: int, window: float, spent: float) -> None:
        old = self._stats
        self._stats = SyncStats(
            syncs=old.syncs + 1,
            synced_events=old.synced_events + events,
            max_events_per_sync=max(old.max_events_per_sync, events),
            max_window_seconds=max(old.max_window_seconds, window),
            last_window_seconds=window,
            fsync_seconds_total=old.fsync_seconds_total + spent,
        )

    @property
    def sync_stats(self) -> SyncStats:
        """Group-fsync counters since :meth:`open`."""
        return self._stats

    def _flush_loop(self) -> None:
        """fsync one interval after the first write not yet synced; sleep while none is.

        An idle gateway then wakes this thread never, instead of every interval.
        """
        interval = self.fsync_interval_seconds or 0.05
        # close() sets _stop before it wakes this thread: when the clear below swallows that
        # wake-up, the loop's own test still sees _stop (waiting again would wait forever).
        while not self._stop.is_set():
            self._has_unsynced.wait()
            due_in = self._first_unsynced_at + interval - time.monotonic()
            if self._stop.is_set() or (due_in > 0 and self._stop.wait(due_in)):
                return  # close() makes everything durable
            self._has_unsynced.clear()  # before sync() takes the count: no write is missed
            self.sync()

    # -- reading and checkpointing -----------------------------------------------------------

    def read(self, start: Position, end: Position, limit: int) -> tuple[list[Entry], Position, int]:
        """Up to ``limit`` records from ``start`` towards ``end``, the position reached, bytes skipped.

        Single reader: called by the shipper only.
        """
        entries: list[Entry] = []
        skipped = 0
        number, offset = start
        while len(entries) < limit and (number, offset) < end:
            with self._lock:
                size = self._sizes.get(number)
                following = [n for n in self._sizes if n > number]
            stop = end[1] if number == end[0] else size
            if size is None or stop is None or offset >= stop:
                if number >= end[0] or not following:
                    break
                number, offset = min(following), 0
                continue
            try:
                got, offset, lost = read_frames(
                    self.path(number), number, offset, stop, limit - len(entries)
                )
            except OSError as exc:
                msg = f"cannot read journal segment {self.path(number)}: {exc}"
                raise JournalError(msg) from exc
            if lost:
                logger.warning(
                    "journal segment %s: skipped %d torn or corrupt bytes", self.path(number), lost
                )
            entries.extend(got)
            skipped += lost
        return entries, self._normalize((number, offset)), skipped

    def _normalize(self, position: Position) -> Position:
        """Move past the ends of finished segments (empty ones included) to the next record."""
        number, offset = position
        with self._lock:
            while number != self._active or self._fd < 0:
                if offset < self._sizes.get(number, 0):
                    break
                following = [n for n in self._sizes if n > number]
                if not following:
                    break
                number, offset = min(following), 0
            return (number, offset)

    def release(self, position: Position) -> int:
        """Delete the segments wholly before ``position`` (the store confirmed them)."""
        number, offset = self._normalize(position)
        with self._lock:
            doomed = [
                n
                for n, size in self._sizes.items()
                if n < number or (n == number and offset >= size and self._fd < 0)
            ]
            for n in doomed:
                del self._sizes[n]
        for n in doomed:
            with contextlib.suppress(FileNotFoundError):
                self.path(n).unlink()
        return len(doomed)

    @property
    def segment_count(self) -> int:
        """Segments on disk, the active one included."""
        with self._lock:
            return len(self._sizes)

    @property
    def size_bytes(self) -> int:
        """Bytes on disk in all segments."""
        with self._lock:
            return sum(self._sizes.values())
