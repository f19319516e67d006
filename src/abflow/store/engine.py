"""Engines for the store's URLs, and the one place SQLAlchemy errors become abflow errors.

SQLite is the embedded default: WAL so readers never block the writer, ``synchronous=FULL``
(the WAL is synced at every commit, so a confirmed batch survives a power loss too: the
gateway's journal deletes what the store confirmed, and must be able to trust it), and a
busy timeout so concurrent writers queue instead of failing. Write transactions on SQLite
start with ``BEGIN IMMEDIATE``: taking the write lock up front means two read-then-write
transactions can never deadlock on a lock upgrade, they simply take turns. An in-memory
database (``sqlite://``) lives in one shared connection: fine for a test in one thread, not
for concurrent writers.

PostgreSQL connections never wait forever (:class:`StoreTimeouts`): a connect timeout, TCP
keepalives (a peer that vanished while a pooled connection sat idle), a TCP user timeout
(sent data never acknowledged: a dropped route), and, when ``statement_seconds`` is set, a
server-side ``statement_timeout`` plus a client-side watchdog that cuts any checkout of a
connection held one second longer. The watchdog is what ends a black-holed connection,
where the peer's TCP stack still acknowledges everything but no answer ever comes: no
socket option sees that, so the watchdog shuts the socket down and the call fails as
StoreUnavailableError. Connections are checked on checkout
with a ping under the same watchdog (bounded by ``connect_seconds``), so that a pool of
connections to a silent server cannot hang the first call after an outage either.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.pool import StaticPool

from abflow.errors import ConfigError, StoreError, StoreUnavailableError
from abflow.security.secrets import is_secret_reference, resolve_secret
from abflow.settings import settings

__all__ = [
    "DEFAULT_STORE_URL",
    "NO_STORE_HINT",
    "STORE_URL_ENV",
    "StoreTimeouts",
    "create_store_engine",
    "display_url",
    "is_unavailable",
    "raise_store_error",
    "require_existing_store",
    "resolve_url",
    "translating",
    "write_transaction",
]

DEFAULT_STORE_URL = "sqlite:///.abflow/abflow.db"
STORE_URL_ENV = "ABFLOW_STORE_URL"
"""Read through :class:`abflow.settings.Settings` (its ``store_url``), named here for messages."""
SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_MIN_VERSION = (3, 24, 0)
"""The first SQLite with ``ON CONFLICT … DO NOTHING``, which the event writer relies on."""


@dataclass(frozen=True, slots=True)
class StoreTimeouts:
    """How long a PostgreSQL store may keep a caller waiting (ignored for SQLite files).

    ``statement_seconds=None`` lets statements run as long as they need (analysis, bulk
    loads); processes that call the store on behalf of a request (the gateway) set it.
    """

    connect_seconds: float = 5.0
    keepalive_idle_seconds: int = 10
    keepalive_interval_seconds: int = 5
    keepalive_count: int = 3
    tcp_user_timeout_seconds: float = 30.0
    statement_seconds: float | None = None

    def __post_init__(self) -> None:
        numbers = {
            "connect_seconds": self.connect_seconds,
            "keepalive_idle_seconds": self.keepalive_idle_seconds,
            "keepalive_interval_seconds": self.keepalive_interval_seconds,
            "keepalive_count": self.keepalive_count,
            "tcp_user_timeout_seconds": self.tcp_user_timeout_seconds,
            "statement_seconds": self.statement_seconds or 1.0,
        }
        for name, value in numbers.items():
            if not value > 0:
                msg = f"StoreTimeouts.{name} must be positive, got {value}"
                raise ConfigError(msg)


WATCHDOG_GRACE_SECONDS = 1.0
"""The client-side watchdog fires this long after the server's own statement_timeout, so
that a server that can answer reports the timeout itself (SQLSTATE 57014)."""

_WRITE_OPTION = "abflow_write"
_WATCHDOG_TICKET = "abflow_watchdog"
# SQLSTATEs that mean "try again later" rather than "this statement is wrong": connection
# exceptions, insufficient resources (disk full, too many connections), shutdown, a cancelled
# statement, a read-only server (a failover in progress), lock timeouts, and deadlocks or
# serialization failures that outlasted the writer's own retries. Callers that get
# StoreUnavailableError keep the events (the gateway spools them) instead of dropping them.
_UNAVAILABLE_SQLSTATES = ("08", "53", "57P01", "57P02", "57P03", "57014", "25006", "55P03", "40")


SQLITE_CACHE_KIB = 32_000
"""Default SQLite page cache (SQLite's own is 2 MB): keeps a busy day's event_id index in
memory for analysis. A process that only appends events needs far less."""


def resolve_url(url: str | None = None) -> str:
    """The URL to open: ``url``, else ``$ABFLOW_STORE_URL``, else the embedded SQLite file.

    Either may be a secret reference (``vault:secret/abflow/db#url``, ``env:NAME``,
    ``file:PATH``; see :mod:`abflow.security.secrets`), resolved once per process.
    """
    chosen = url or settings().store_url or DEFAULT_STORE_URL
    if is_secret_reference(chosen):
        chosen = _resolved_secret(chosen)
    for prefix in ("postgres://", "postgresql://"):
        if chosen.startswith(prefix):
            chosen = "postgresql+psycopg://" + chosen.removeprefix(prefix)
    return chosen


@functools.lru_cache(maxsize=16)
def _resolved_secret(reference: str) -> str:
    """A referenced store URL, looked up once: Vault is not asked on every analysis."""
    try:
        return resolve_secret(reference)
    except ConfigError as exc:
        raise StoreError(str(exc)) from None


NO_STORE_HINT = "pass --store or set ABFLOW_STORE_URL"


def require_existing_store(url: str | None = None) -> str:
    """The resolved URL, refusing a SQLite file that does not exist (read-only callers).

    Opening a missing SQLite file creates it, folder and all: a read-only command run in the
    wrong directory would leave an empty store behind and then blame its schema.
    """
    resolved = resolve_url(url)
    try:
        parsed = make_url(resolved)
    except (sa.exc.ArgumentError, ValueError):
        return resolved  # create_store_engine reports the malformed URL
    if parsed.get_backend_name() != "sqlite":
        return resolved
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return resolved
    if not Path(database).expanduser().is_file():
        msg = f"no store here ({database} does not exist); {NO_STORE_HINT}"
        raise StoreError(msg)
    return resolved


_USER_INFO = re.compile(r"//(?P<user>[^/@:\s]*):[^@\s]*@")


def _masked(text: str) -> str:
    """``text`` with every ``//user:password@`` shown as ``//user:***@``."""
    return _USER_INFO.sub(lambda m: f"//{m['user']}:***@", text)


def display_url(url: str | URL) -> str:
    """The URL with its password masked, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError):  # malformed, or a port that is no number
        return _masked(str(url))


def create_store_engine(
    url: str | None = None,
    *,
    sqlite_cache_kib: int = SQLITE_CACHE_KIB,
    timeouts: StoreTimeouts | None = None,
) -> Engine:
    """An engine for a SQLite or PostgreSQL store URL (creates the SQLite file's folder).

    ``sqlite_cache_kib`` is each SQLite connection's page cache (ignored on PostgreSQL);
    ``timeouts`` bound every PostgreSQL call (default :class:`StoreTimeouts`).
    """
    resolved = resolve_url(url)
    try:
        parsed = make_url(resolved)
    except (sa.exc.ArgumentError, ValueError) as exc:  # ValueError: a port such as "54x2"
        given = url or settings().store_url or ""
        # never print a secret: a reference as given, else the text with what may be a
        # password masked (a malformed URL, "postgresql+psycopg//user:pw@host/db", has one)
        shown = given if is_secret_reference(given) else _masked(resolved)
        msg = f"{shown!r} is not a store URL; use sqlite:///PATH or postgresql+psycopg://…"
        raise StoreError(msg) from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed, sqlite_cache_kib)
    if backend == "postgresql":
        if parsed.get_driver_name() != "psycopg":
            msg = f"PostgreSQL store URLs must use psycopg 3: postgresql+psycopg://, got {display_url(parsed)}"
            raise StoreError(msg)
        return _postgres_engine(parsed, timeouts or StoreTimeouts())
    msg = f"unsupported store backend {backend!r}: use sqlite:///PATH or postgresql+psycopg://…"
    raise StoreError(msg)


def _private_if_new(path: Path) -> None:
    """Make a store file SQLite has just created (still empty) the owner's alone, before its
    tables and its WAL files (which take its permissions) exist: it will hold unit ids and
    request attributes. A store that exists keeps the permissions its owner gave it."""
    with contextlib.suppress(OSError):  # a file: URI, or a path this process cannot change
        if path.stat().st_size == 0:
            path.chmod(0o600)


def _sqlite_engine(url: URL, cache_kib: int) -> Engine:
    if sqlite3.sqlite_version_info < SQLITE_MIN_VERSION:
        needed = ".".join(map(str, SQLITE_MIN_VERSION))
        msg = (
            f"SQLite stores need SQLite {needed} or newer (for INSERT … ON CONFLICT DO "
            f"NOTHING); this Python's sqlite3 module has {sqlite3.sqlite_version}"
        )
        raise StoreError(msg)
    database = url.database or ""
    in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
    kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": 30.0}}
    if in_memory:
        # One shared connection, or every checkout would see a different empty database.
        kwargs["poolclass"] = StaticPool
    else:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = sa.create_engine(url, **kwargs)
    except (ValueError, TypeError) as exc:  # a query option SQLite cannot take (timeout=abc)
        msg = f"store URL {display_url(url)} has an option SQLite cannot use: {exc}"
        raise StoreError(msg) from exc

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The driver's own transaction handling would issue a deferred BEGIN behind our back;
        # take it over so that write transactions can say BEGIN IMMEDIATE.
        dbapi_connection.isolation_level = None
        if not in_memory:
            _private_if_new(Path(database).expanduser())
        cursor = dbapi_connection.cursor()
        try:
            if not in_memory:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            # A negative size is in KiB; allocated only as pages are read.
            cursor.execute(f"PRAGMA cache_size=-{int(cache_kib)}")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get(_WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _postgres_engine(url: URL, timeouts: StoreTimeouts) -> Engine:
    connect_args: dict[str, Any] = {
        "keepalives": 1,
        "keepalives_idle": timeouts.keepalive_idle_seconds,
        "keepalives_interval": timeouts.keepalive_interval_seconds,
        "keepalives_count": timeouts.keepalive_count,
        "tcp_user_timeout": round(timeouts.tcp_user_timeout_seconds * 1000),
    }
    connect_args = {k: v for k, v in connect_args.items() if k not in url.query}
    if "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = max(1, round(timeouts.connect_seconds))
    if timeouts.statement_seconds is not None:
        # Appended to the URL's own server options (e.g. a search_path), which connect_args
        # would otherwise replace.
        given = url.query.get("options", "")
        options = " ".join(given) if isinstance(given, tuple) else given
        limit_ms = round(timeouts.statement_seconds * 1000)
        connect_args["options"] = f"{options} -c statement_timeout={limit_ms}".strip()
    try:
        # The checkout ping below replaces pool_pre_ping: SQLAlchemy's own ping has no timeout.
        engine = sa.create_engine(url, connect_args=connect_args, pool_pre_ping=False)
    except ImportError as exc:
        msg = "PostgreSQL stores need psycopg 3: pip install 'abflow[postgres]'"
        raise StoreError(msg) from exc
    _install_watchdog(engine, timeouts)
    return engine


def _install_watchdog(engine: Engine, timeouts: StoreTimeouts) -> None:
    """Bound checkout pings, and (when set) each use of a connection, by cutting its socket.

    The limit covers a whole checkout (every statement, and COPY, which the event writer
    runs on the driver's connection where no statement event sees it): each store call
    checks a connection out for one short transaction.
    """
    watchdog = _Watchdog(_sever)
    limit = timeouts.statement_seconds

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        # The ping replaces a connection that a server restart or an outage left dead, so
        # that the first call after an outage succeeds instead of failing once more.
        ticket = watchdog.arm(dbapi_connection, timeouts.connect_seconds)
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise sa.exc.DisconnectionError(_first_line(exc)) from exc
        finally:
            watchdog.disarm(ticket)
        if limit is not None:
            record.info[_WATCHDOG_TICKET] = watchdog.arm(
                dbapi_connection, limit + WATCHDOG_GRACE_SECONDS
            )

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        ticket = record.info.pop(_WATCHDOG_TICKET, None)
        if ticket is not None:
            watchdog.disarm(ticket)


def _sever(dbapi_connection: Any) -> None:
    """Shut a psycopg connection's socket down: its blocked call then fails at once."""
    try:
        fd = dbapi_connection.pgconn.socket
    except Exception:  # already closed: nothing waits on it
        return
    with contextlib.suppress(OSError):
        duplicate = socket.socket(fileno=os.dup(fd))
        try:
            duplicate.shutdown(socket.SHUT_RDWR)
        finally:
            duplicate.close()


class _Watchdog:
    """One thread per engine that calls ``expire(connection)`` on calls past their deadline.

    Arming is a dict insert under a lock (no thread per statement); the thread sleeps until
    the earliest deadline, and runs only while some call is armed.
    """

    def __init__(self, expire: Callable[[Any], None]) -> None:
        self._expire = expire
        self._armed: dict[int, tuple[float, Any]] = {}
        self._next_ticket = 0
        self._wakeup = threading.Condition()
        self._thread: threading.Thread | None = None

    def arm(self, connection: Any, seconds: float) -> int:
        """Expire ``connection`` in ``seconds`` unless disarmed first; returns the ticket."""
        with self._wakeup:
            self._next_ticket += 1
            ticket = self._next_ticket
            self._armed[ticket] = (time.monotonic() + seconds, connection)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="abflow-store-watchdog", daemon=True
                )
                self._thread.start()
            self._wakeup.notify()
        return ticket

    def disarm(self, ticket: int) -> None:
        with self._wakeup:
            self._armed.pop(ticket, None)

    def _run(self) -> None:
        while True:
            with self._wakeup:
                now = time.monotonic()
                due = [t for t, (deadline, _) in self._armed.items() if deadline <= now]
                expired = [self._armed.pop(t)[1] for t in due]
                if not expired:
                    if not self._armed:  # idle: end the thread; the next arm starts another
                        self._thread = None
                        return
                    earliest = min(d for d, _ in self._armed.values())
                    self._wakeup.wait(max(0.0, earliest - now))
                    continue
            for connection in expired:
                self._expire(connection)


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection in a write transaction: BEGIN IMMEDIATE on SQLite, plain BEGIN elsewhere."""
    with translating("write to the store"):
        connection = engine.connect().execution_options(**{_WRITE_OPTION: True})
        try:
            with connection.begin():
                yield connection
        finally:
            connection.close()


@contextmanager
def translating(action: str) -> Iterator[None]:
    """Turn SQLAlchemy and driver errors raised inside into StoreError/StoreUnavailableError."""
    try:
        yield
    except sa.exc.SQLAlchemyError as exc:
        raise_store_error(exc, action)


def raise_store_error(exc: Exception, action: str) -> NoReturn:
    """Raise the abflow error for a SQLAlchemy or driver error: unavailable when a retry may work."""
    detail = _first_line(exc)
    if is_unavailable(exc):
        msg = f"cannot {action}: the store is unavailable ({detail})"
        raise StoreUnavailableError(msg) from exc
    if _is_missing_table(exc):
        msg = (
            f"cannot {action}: the store has no abflow tables yet ({detail}); "
            "create them with `abflow db upgrade --store URL`"
        )
        raise StoreError(msg) from exc
    msg = f"cannot {action}: {detail}"
    raise StoreError(msg) from exc


def _is_missing_table(exc: Exception) -> bool:
    original = getattr(exc, "orig", None) or exc
    if getattr(original, "sqlstate", None) == "42P01":  # PostgreSQL: undefined_table
        return True
    text = str(original).lower()
    return "no such table" in text or ("table with name" in text and "does not exist" in text)


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the server cannot be reached now (rather than a wrong statement)."""
    if isinstance(exc, sa.exc.TimeoutError):  # no pooled connection came free in time
        return True
    if isinstance(exc, sa.exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        original: BaseException = exc.orig if exc.orig is not None else exc
    else:
        original = exc
    sqlstate = getattr(original, "sqlstate", None)
    if isinstance(sqlstate, str):
        return sqlstate.startswith(_UNAVAILABLE_SQLSTATES)
    if type(original).__module__.startswith("psycopg"):
        # psycopg reports a failed, timed-out or lost connection without a SQLSTATE, as an
        # OperationalError or a subclass of it (ConnectionTimeout).
        return any(cls.__name__ == "OperationalError" for cls in type(original).__mro__)
    text = str(original).lower()
    return any(
        phrase in text for phrase in ("database is locked", "database is busy", "disk is full")
    )


def _first_line(exc: Exception) -> str:
    original = getattr(exc, "orig", None)
    text = str(original if original is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
