"""Store writes in a child process, so that they never hold the gateway's GIL.

The event log's shipper thread turns journal payloads into rows and writes them to the store
(SQLAlchemy, the driver's parameter binding): Python work that holds the GIL while the event
loop waits to answer requests (docs/durability.md measured appends stalling 10-16 ms at
p99.9 with the shipper in the process, 3-6 ms without). With
:class:`SubprocessStore` the thread only joins the payloads it already has into one message
and passes it through a pipe (the GIL is released while it waits); a child process
(``python -m abflow.events.shipper``) decodes the rows and writes them.

Nothing about durability changes: the journal in the gateway process still holds every event
until the child's answer confirms the write, and writes are idempotent by event id. If the
child dies, the batch in hand counts as a store outage (spooled, retried) and the next batch
starts a new child. The child ignores SIGINT and SIGTERM (a terminal's Ctrl-C or a process
manager reaches the whole process group) and exits when the gateway closes the pipe, or dies.

The store URL reaches the child as the first message on its stdin, never on its command
line: a URL may carry a database password, and every local user can read any process's
arguments (``ps``, ``/proc/PID/cmdline``), while the pipe is private to the two processes.

Protocol, both ways: a 4-byte little-endian length, then the message. To the child: first
the store URL (UTF-8), then write requests: entries joined by newlines, each one byte of
event kind and its orjson payload (orjson output never contains a raw newline). Back: an
orjson object, ``{"rejected": [[index, message], ...]}`` after a write, or
``{"unavailable": message}``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import struct
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import IO, Any, Final

import orjson

from abflow.errors import StoreError, StoreUnavailableError
from abflow.events.journal import KIND_CODES, Entry, EventKind

__all__ = ["SHIPPER_SQLITE_CACHE_KIB", "SubprocessStore", "open_shipper_store"]

logger = logging.getLogger(__name__)

SHIPPER_SQLITE_CACHE_KIB: Final = 2048
"""SQLite page cache of the shipper's own store connection (SQLite's default size).

The store asks for 32 MB so that analysis keeps a busy day's index in memory. The shipper
only appends: inserts touch the right-hand edges of a few B-trees (event ids grow within a
process), so a large cache only fills with pages already written, and resident memory would
grow by the cache size over the first minutes.
"""

SHIPPER_STATEMENT_SECONDS: Final = 30.0
"""Longest one event write may take on PostgreSQL (a batch normally takes milliseconds)."""
_LENGTH: Final = struct.Struct("<I")
_KIND_BY_CODE: Final[dict[int, EventKind]] = {code[0]: kind for kind, code in KIND_CODES.items()}


def open_shipper_store(url: str) -> Any:
    """The event store at ``url`` for appending events (a small SQLite page cache)."""
    # Imported on first use: the store package pulls in SQLAlchemy, which a process that only
    # journals (or a test with its own store) never needs.
    from abflow.store import EventStore
    from abflow.store.engine import StoreTimeouts

    # Bounded, so that a store that stops answering is an outage (spool, retry), not a hang.
    timeouts = StoreTimeouts(statement_seconds=SHIPPER_STATEMENT_SECONDS)
    return EventStore.open(url, sqlite_cache_kib=SHIPPER_SQLITE_CACHE_KIB, timeouts=timeouts)


# --- the gateway's side ----------------------------------------------------------------------


class SubprocessStore:
    """Writes journal entries through a child process; see the module docstring for the why.

    Used by one shipper thread at a time. Raises StoreUnavailableError when the store (or
    the child) is down; the caller spools and retries.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._child: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs (benchmarks read its memory)."""
        child = self._child
        return child.pid if child is not None and child.poll() is None else None

    def start(self) -> None:
        """Start the child and have it open the store now, not on the first batch.

        The child's imports and the store's schema check take about a second of CPU: better
        paid while the gateway starts than while it answers. Raises StoreUnavailableError
        if the store cannot be reached (the child stays up and retries on each batch).
        """
        self._exchange(b"")

    def write_entries(self, entries: Sequence[Entry]) -> list[tuple[int, str]]:
        """Write ``entries`` idempotently; return (index, reason) of rows the store refused."""
        if not entries:
            return []
        return self._exchange(b"\n".join(KIND_CODES[entry[0]] + entry[1] for entry in entries))

    def _exchange(self, message: bytes) -> list[tuple[int, str]]:
        with self._lock:
            child = self._start()
            try:
                assert child.stdin is not None
                assert child.stdout is not None
                child.stdin.write(_frame(message))
                child.stdin.flush()
                reply = _read_message(child.stdout)
            except (OSError, EOFError) as exc:
                self._stop(child)
                msg = f"event shipper process stopped: {exc}"
                raise StoreUnavailableError(msg) from exc
        answer = orjson.loads(reply)
        if "unavailable" in answer:
            raise StoreUnavailableError(str(answer["unavailable"]))
        return [(int(index), str(reason)) for index, reason in answer["rejected"]]

    def write_events(self, kind: EventKind, rows: list[dict[str, Any]]) -> int:
        """The :class:`~abflow.events.eventlog.StoreWriter` call, for callers with rows."""
        entries: list[Entry] = [(kind, orjson.dumps(row), 0, 0) for row in rows]
        rejected = self.write_entries(entries)
        if rejected:
            raise StoreError(rejected[0][1])
        return len(rows)

    def close(self) -> None:
        """Close the pipe; the child finishes its write, closes the store and exits."""
        with self._lock:
            if self._child is not None:
                self._stop(self._child)

    def _start(self) -> subprocess.Popen[bytes]:
        child = self._child
        if child is not None:
            if child.poll() is None:
                return child
            self._stop(child)  # died between batches: release its pipes
        try:
            child = subprocess.Popen(
                [sys.executable, "-m", "abflow.events.shipper"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                close_fds=True,
            )
        except OSError as exc:
            msg = f"cannot start the event shipper process: {exc}"
            raise StoreUnavailableError(msg) from exc
        self._child = child
        try:  # the URL goes through the pipe: it may hold a password (see the module docstring)
            assert child.stdin is not None
            child.stdin.write(_frame(self.url.encode()))
            child.stdin.flush()
        except OSError as exc:
            self._stop(child)
            msg = f"event shipper process stopped: {exc}"
            raise StoreUnavailableError(msg) from exc
        return child

    def _stop(self, child: subprocess.Popen[bytes]) -> None:
        for pipe in (child.stdin, child.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            logger.warning("event shipper process %d did not exit; killing it", child.pid)
            child.kill()
            child.wait()
        self._child = None


def _frame(message: bytes) -> bytes:
    return _LENGTH.pack(len(message)) + message


def _read_message(stream: IO[bytes]) -> bytes:
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        msg = "end of stream"
        raise EOFError(msg)
    (length,) = _LENGTH.unpack(head)
    body = stream.read(length)
    if len(body) < length:
        msg = "end of stream inside a message"
        raise EOFError(msg)
    return body


# --- the child's side ------------------------------------------------------------------------


def _decode(message: bytes) -> list[tuple[EventKind, dict[str, Any]]]:
    if not message:  # a start-up call: open the store, write nothing
        return []
    return [(_KIND_BY_CODE[line[0]], orjson.loads(line[1:])) for line in message.split(b"\n")]


def _write(store: Any, rows: list[tuple[EventKind, dict[str, Any]]]) -> list[list[Any]]:
    """Rows by kind in one write each; if the store refuses one, row by row to find it."""
    groups: dict[EventKind, list[dict[str, Any]]] = {}
    for kind, row in rows:
        groups.setdefault(kind, []).append(row)
    try:
        for kind, group in groups.items():
            store.write_events(kind, group)
    except StoreUnavailableError:
        raise
    except StoreError:
        rejected: list[list[Any]] = []
        for index, (kind, row) in enumerate(rows):
            try:
                store.write_events(kind, [row])
            except StoreUnavailableError:
                raise
            except StoreError as exc:
                rejected.append([index, str(exc)])
        return rejected
    return []


def main(argv: Sequence[str] | None = None) -> int:
    """Serve write requests from stdin until it closes (the gateway's side of the pipe).

    The store URL is the first message on stdin; arguments are refused, so that no caller
    puts a password where every local user can read it.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args:
        print(
            "usage: python -m abflow.events.shipper (the store URL is the first message on "
            "stdin, never an argument)",
            file=sys.stderr,
        )
        return 2
    # The gateway decides when this process ends: by closing the pipe after its last batch.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    requests = os.fdopen(os.dup(sys.stdin.fileno()), "rb")
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout = sys.stderr  # nothing else may write into the reply pipe
    logging.basicConfig(level=logging.WARNING, format="abflow shipper: %(message)s")
    try:
        url = _read_message(requests).decode()
    except EOFError:
        return 0  # the gateway closed the pipe before sending anything
    store: Any = None
    try:
        while True:
            try:
                message = _read_message(requests)
            except EOFError:
                return 0
            try:
                if store is None:
                    store = open_shipper_store(url)
                answer: dict[str, Any] = {"rejected": _write(store, _decode(message))}
            except StoreUnavailableError as exc:
                answer = {"unavailable": str(exc)}
            replies.write(_frame(orjson.dumps(answer)))
            replies.flush()
    except BrokenPipeError:
        return 0  # the gateway is gone; everything unconfirmed is still in its journal
    finally:
        if store is not None:
            store.close()


if __name__ == "__main__":
    sys.exit(main())
