"""Schema migrations: from empty, re-run, adoption, concurrency, and the open() policy."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from abflow.errors import StoreError
from abflow.store import SCHEMA_VERSION, EventStore, UpgradeResult, upgrade_store
from abflow.store import schema as store_schema
from abflow.store.engine import create_store_engine
from abflow.store.migrations import add_column_if_missing, read_version, upgrade

SCHEMA_TABLES = {
    "experiment_versions",
    "phases",
    "exposures",
    "predictions",
    "outcomes",
    "audit_log",
    "api_tokens",
}


def table_columns(url: str) -> dict[str, set[str]]:
    engine = sa.create_engine(url)
    try:
        inspector = sa.inspect(engine)
        return {
            name: {c["name"] for c in inspector.get_columns(name)}
            for name in inspector.get_table_names()
        }
    finally:
        engine.dispose()


def test_upgrade_from_empty_creates_every_table(store_url: str) -> None:
    result = upgrade_store(store_url)
    assert result == UpgradeResult(0, SCHEMA_VERSION, tuple(range(1, SCHEMA_VERSION + 1)))
    columns = table_columns(store_url)
    assert set(columns) == SCHEMA_TABLES | {"schema_version"}
    for name in SCHEMA_TABLES:
        assert columns[name] == set(store_schema.metadata.tables[name].columns.keys())


def test_upgrade_again_is_a_no_op(store_url: str) -> None:
    upgrade_store(store_url)
    again = upgrade_store(store_url)
    assert again == UpgradeResult(SCHEMA_VERSION, SCHEMA_VERSION, ())


def test_upgrade_adopts_tables_created_from_the_metadata(store_url: str) -> None:
    engine = create_store_engine(store_url)
    store_schema.metadata.create_all(engine, tables=[store_schema.exposures])
    with engine.begin() as connection:
        connection.execute(
            store_schema.exposures.insert().values(
                event_id="e1", ts=1.0, experiment_key="k", phase=1, unit_id="u", variant="a"
            )
        )
    assert upgrade(engine).applied == tuple(range(1, SCHEMA_VERSION + 1))
    engine.dispose()
    with EventStore.open(store_url) as opened:
        assert opened.count_events("exposure") == 1


def test_concurrent_upgrades_apply_each_step_once(store_url: str) -> None:
    results: list[UpgradeResult] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(upgrade_store(store_url))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    applied = sorted(step for result in results for step in result.applied)
    assert applied == list(range(1, SCHEMA_VERSION + 1))


def test_open_upgrades_sqlite_but_not_postgres(store_url: str) -> None:
    if store_url.startswith("sqlite"):
        with EventStore.open(store_url) as opened:
            assert opened.schema_version() == SCHEMA_VERSION
    else:
        with pytest.raises(StoreError, match=r"schema version 0.*run `abflow db upgrade --store"):
            EventStore.open(store_url)
        assert table_columns(store_url) == {}  # nothing was created behind the user's back


def test_open_without_upgrade_refuses_an_old_schema(store_url: str) -> None:
    with pytest.raises(StoreError, match="this abflow needs"):
        EventStore.open(store_url, upgrade=False)


def test_open_refuses_a_newer_schema(store_url: str) -> None:
    upgrade_store(store_url)
    engine = create_store_engine(store_url)
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "insert into schema_version (version, description, applied_at) "
                "values (:v, 'from the future', 0)"
            ),
            {"v": SCHEMA_VERSION + 1},
        )
    engine.dispose()
    with pytest.raises(StoreError, match="newer than this abflow knows"):
        EventStore.open(store_url)


def test_add_column_if_missing_is_idempotent(store_url: str) -> None:
    old = sa.MetaData()
    sa.Table("outcomes", old, sa.Column("event_id", sa.String(64), primary_key=True))
    engine = create_store_engine(store_url)
    old.create_all(engine)
    for _ in range(2):
        with engine.begin() as connection:
            add_column_if_missing(connection, store_schema.outcomes, "request_id")
    assert read_version(engine) == 0
    engine.dispose()
    assert table_columns(store_url)["outcomes"] == {"event_id", "request_id"}


def test_default_url_is_an_embedded_wal_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ABFLOW_STORE_URL", raising=False)
    with EventStore.open() as opened:
        assert opened.dialect == "sqlite"
        with opened.engine.connect() as connection:
            journal = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
            synchronous = connection.exec_driver_sql("PRAGMA synchronous").scalar()
    assert (tmp_path / ".abflow" / "abflow.db").is_file()
    assert journal == "wal"
    assert synchronous == 2  # FULL: a confirmed batch survives a power loss


def test_url_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "elsewhere" / "events.db"
    monkeypatch.setenv("ABFLOW_STORE_URL", f"sqlite:///{target}")
    with EventStore.open() as opened:
        assert opened.url == f"sqlite:///{target}"
    assert target.is_file()
