"""Errors at the store's boundary: unreachable servers, bad URLs, translated driver errors."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from abflow.errors import StoreError, StoreUnavailableError
from abflow.store import EventStore
from abflow.store.engine import (
    create_store_engine,
    display_url,
    is_unavailable,
    raise_store_error,
    resolve_url,
)


@pytest.fixture
def closed_port_url() -> str:
    """A PostgreSQL URL on a local port that nothing listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"postgresql+psycopg://postgres:secret@127.0.0.1:{port}/test?connect_timeout=2"


def test_open_unreachable_server_is_unavailable(closed_port_url: str) -> None:
    with pytest.raises(StoreUnavailableError, match="the store is unavailable") as caught:
        EventStore.open(closed_port_url)
    assert "secret" not in str(caught.value)


def test_write_to_unreachable_server_is_unavailable(closed_port_url: str) -> None:
    store = EventStore(create_store_engine(closed_port_url))
    row = {
        "event_id": "e1",
        "ts": 1.0,
        "experiment_key": "k",
        "phase": 1,
        "unit_id": "u",
        "variant": "a",
    }
    with pytest.raises(StoreUnavailableError, match="cannot write events"):
        store.write_events("exposure", [row])
    with pytest.raises(StoreUnavailableError):
        store.count_events("exposure")
    store.close()


def test_unavailable_is_a_store_error() -> None:
    assert issubclass(StoreUnavailableError, StoreError)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://root@localhost/db", "unsupported store backend 'mysql'"),
        ("postgresql+psycopg2://u@h/db", "must use psycopg 3"),
        ("not a url", "is not a store URL"),
    ],
)
def test_unusable_urls(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        create_store_engine(url)


@pytest.mark.parametrize(
    "url",
    [
        " postgresql+psycopg://postgres:s3cr3t@127.0.0.1:5432/test",  # a leading space
        "postgresql+psycopg//postgres:s3cr3t@127.0.0.1/test",  # no colon after the scheme
        "postgresql+psycopg://postgres:s3cr3t@127.0.0.1:54x2/test",  # not a port
    ],
)
def test_a_malformed_url_is_refused_without_its_password(url: str) -> None:
    with pytest.raises(StoreError, match="is not a store URL") as refused:
        create_store_engine(url)
    assert "s3cr3t" not in str(refused.value)
    assert "postgres:***@127.0.0.1" in str(refused.value)


def test_resolve_and_display_urls() -> None:
    assert resolve_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert resolve_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert resolve_url("sqlite:///x.db") == "sqlite:///x.db"
    assert display_url("postgresql+psycopg://u:pw@h/db") == "postgresql+psycopg://u:***@h/db"


class FakeDriverError(Exception):
    """A driver error carrying a SQLSTATE, as psycopg's do."""

    def __init__(self, sqlstate: str | None, text: str = "driver error") -> None:
        super().__init__(text)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("sqlstate", "text", "unavailable"),
    [
        ("08006", "connection failure", True),
        ("53300", "too many connections", True),
        ("53100", "disk full", True),
        ("57P01", "terminating connection due to administrator command", True),
        ("25006", "cannot execute INSERT in a read-only transaction", True),
        ("40P01", "deadlock detected", True),
        ("23505", "duplicate key value violates unique constraint", False),
        ("42P01", 'relation "exposures" does not exist', False),
        ("22P02", "invalid input syntax for type double precision", False),
        (None, "database is locked", True),
        (None, "no such table: exposures", False),
    ],
)
def test_driver_errors_are_classified(sqlstate: str | None, text: str, unavailable: bool) -> None:
    wrapped = sa.exc.OperationalError("INSERT ...", {}, FakeDriverError(sqlstate, text))
    expected = StoreUnavailableError if unavailable else StoreError
    with pytest.raises(StoreError) as caught:
        raise_store_error(wrapped, "write events")
    assert type(caught.value) is expected
    assert text in str(caught.value)
    assert is_unavailable(wrapped) is unavailable


def test_missing_driver_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # what an install without the extra sees
    with pytest.raises(StoreError, match=r"need psycopg 3: pip install 'abflow\[postgres\]'"):
        create_store_engine("postgresql+psycopg://u@127.0.0.1/db")


def test_a_new_sqlite_store_is_the_owners_alone_and_an_old_one_keeps_its_mode(
    tmp_path: Path,
) -> None:
    """Events hold unit ids and request attributes: a store abflow creates, and the WAL file
    SQLite makes beside it, are 0600; a store someone made readable on purpose stays so."""
    new = tmp_path / "new.db"
    with EventStore.open(f"sqlite:///{new}") as store:
        store.write_events("exposure", [])
        files = [new, *tmp_path.glob("new.db-*")]
        assert any(f.name.endswith("-wal") for f in files)
        for path in files:
            assert path.stat().st_mode & 0o077 == 0, path
    shared = tmp_path / "shared.db"
    with EventStore.open(f"sqlite:///{shared}"):
        pass
    shared.chmod(0o640)
    with EventStore.open(f"sqlite:///{shared}") as store:
        store.write_events("exposure", [])
    assert shared.stat().st_mode & 0o777 == 0o640
