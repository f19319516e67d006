"""The outage spool: an append-only, fsynced file of events the store could not take.

While the store is unreachable, the shipper keeps moving acknowledged events out of the
journal into the spool, so the journal can keep deleting segments and memory stays bounded.
When the store answers again, the spool is replayed first and in order, before any newer
event; the store's idempotent event ids make a replay after a crash store nothing twice.

Records use the journal's framing (length + CRC-32 + orjson payload), so a torn tail left by
a crash in the middle of a spool write is detected and skipped. A batch is fsynced before the
journal releases it: the spool never holds the only, unsynced copy of an event.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from abflow.errors import InvalidArgumentError, JournalError
from abflow.events.journal import (
    Entry,
    EventKind,
    Position,
    encode_frame,
    fsync_directory,
    read_frames,
)

__all__ = ["Spool"]

logger = logging.getLogger(__name__)

_SUFFIX: Final = ".spool"


class Spool:
    """Numbered append-only files with one read cursor; used by the shipper thread only.

    The cursor lives in memory: after a restart the whole spool is replayed from its first
    file, which is safe because writes to the store are idempotent by event id.
    """

    def __init__(self, directory: Path, *, file_bytes: int = 64 * 1024 * 1024) -> None:
        if file_bytes < 1024:
            msg = f"file_bytes must be at least 1024, got {file_bytes}"
            raise InvalidArgumentError(msg)
        self.directory = Path(directory)
        self.file_bytes = file_bytes
        self._sizes: dict[int, int] = {}
        self._fd = -1
        self._active = 0
        self._cursor: Position = (0, 0)
        self._bytes = 0

    def open(self) -> int:
        """Find the files a previous run left; return their size in bytes (not read yet).

        Appends always go to a new file, never after a tail a crash may have torn.
        """
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            msg = f"cannot create spool directory {self.directory}: {exc}"
            raise JournalError(msg) from exc
        numbers = sorted(
            int(path.name.removesuffix(_SUFFIX))
            for path in self.directory.glob(f"*{_SUFFIX}")
            if path.name.removesuffix(_SUFFIX).isdigit()
        )
        for number in numbers:
            size = self._path(number).stat().st_size
            self._sizes[number] = size
            self._bytes += size
        self._active = (numbers[-1] + 1) if numbers else 1
        self._cursor = (numbers[0], 0) if numbers else (self._active, 0)
        return self._bytes

    def close(self) -> None:
        """Close the file being written (everything in it is already fsynced)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _path(self, number: int) -> Path:
        return self.directory / f"{number:016d}{_SUFFIX}"

    @property
    def size_bytes(self) -> int:
        """Bytes on disk in spool files (replayed files are deleted)."""
        return self._bytes

    @property
    def has_pending(self) -> bool:
        """Whether some spooled event has not been confirmed by the store yet."""
        number, offset = self._cursor
        return any(n > number or (n == number and size > offset) for n, size in self._sizes.items())

    def append(self, entries: Sequence[Entry] | Sequence[tuple[EventKind, bytes]]) -> None:
        """Append events in order with one write and one fsync."""
        if not entries:
            return
        data = b"".join(encode_frame(entry[0], entry[1]) for entry in entries)
        try:
            if self._fd < 0 or self._sizes.get(self._active, 0) >= self.file_bytes:
                self._start_file()
            written = os.write(self._fd, data)
            if written != len(data):
                os.ftruncate(self._fd, self._sizes[self._active])
                msg = f"spool {self.directory}: short write ({written} of {len(data)} bytes)"
                raise JournalError(msg)
            # The records are in the file: book them first, so a failed fsync (the caller
            # then spools the batch again) cannot leave the sizes behind the file.
            self._sizes[self._active] += written
            self._bytes += written
            os.fsync(self._fd)
        except OSError as exc:
            msg = f"cannot write to spool {self.directory}: {exc}"
            raise JournalError(msg) from exc

    def _start_file(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            self._active += 1
        while self._active in self._sizes:
            self._active += 1
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC
        self._fd = os.open(self._path(self._active), flags, 0o600)  # events: this user's alone
        self._sizes[self._active] = 0
        fsync_directory(self.directory)

    def read(self, limit: int) -> tuple[list[Entry], Position]:
        """Up to ``limit`` spooled events from the cursor, oldest first, and where they end.

        The cursor moves only on :meth:`commit`, so a failed delivery reads the same again.
        """
        entries: list[Entry] = []
        number, offset = self._cursor
        while len(entries) < limit:
            size = self._sizes.get(number)
            if size is None or offset >= size:
                following = [n for n in self._sizes if n > number]
                if not following:
                    break
                number, offset = min(following), 0
                continue
            got, offset, lost = read_frames(
                self._path(number), number, offset, size, limit - len(entries)
            )
            if lost:
                logger.warning(
                    "spool file %s: skipped %d torn or corrupt bytes", self._path(number), lost
                )
            entries.extend(got)
        return entries, (number, offset)

    def commit(self, position: Position) -> None:
        """Mark everything before ``position`` as stored; delete files that are done."""
        self._cursor = position
        number, offset = position
        doomed = [
            n
            for n, size in self._sizes.items()
            if n < number or (n == number and offset >= size and n != self._active)
        ]
        if not self.has_pending and self._fd >= 0:
            # Fully replayed: drop the file being written too; the next append starts anew.
            os.close(self._fd)
            self._fd = -1
            doomed = list(self._sizes)
        for n in doomed:
            self._bytes -= self._sizes.pop(n)
            with contextlib.suppress(FileNotFoundError):
                self._path(n).unlink()
        if not self._sizes:
            self._active += 1
            self._cursor = (self._active, 0)
