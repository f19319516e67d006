"""Schema migrations: from empty, re-run, adoption, concurrency, and the open() policy."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from abflow.errors import StoreError
from abflow.store import (
    SCHEMA_VERSION,
    EventStore,
    UpgradeResult,
    read_store_version,
    upgrade_store,
)
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
    "feature_samples",
    "monitor_results",
    "sticky_buckets",
    "leases",
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
    assert set(columns) == SCHEMA_TABLES | {"alembic_version"}
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
    with engine.begin() as connection:  # a revision a newer abflow applied
        connection.execute(
            sa.text("update alembic_version set version_num = :v"),
            {"v": f"{SCHEMA_VERSION + 1:04d}"},
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


def make_legacy_store(url: str, version: int) -> None:
    """A store as the hand-written runner left it at ``version``: tables, ``schema_version``."""
    engine = create_store_engine(url)
    try:
        store_schema.metadata.create_all(engine)
        with engine.begin() as connection:
            if version == 1 and connection.dialect.name == "postgresql":
                for table in store_schema.EVENT_TABLES.values():  # before revision 2
                    connection.exec_driver_sql(
                        f"ALTER TABLE {table.name} ALTER COLUMN event_id "
                        'TYPE VARCHAR(64) COLLATE "default"'
                    )
            connection.exec_driver_sql(
                "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, "
                "description TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
            )
            for step in range(1, version + 1):
                connection.execute(
                    sa.text("INSERT INTO schema_version VALUES (:v, 'step', 0)"), {"v": step}
                )
            connection.execute(
                store_schema.exposures.insert().values(
                    event_id="e1", ts=1.0, experiment_key="k", phase=1, unit_id="u", variant="a"
                )
            )
    finally:
        engine.dispose()


def alembic_revision(url: str) -> str | None:
    engine = create_store_engine(url)
    try:
        with engine.connect() as connection:
            if not sa.inspect(connection).has_table("alembic_version"):
                return None
            return connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()


@pytest.mark.parametrize("version", [1, 2])
def test_a_store_from_the_hand_written_runner_is_adopted(store_url: str, version: int) -> None:
    make_legacy_store(store_url, version)
    assert read_store_version(store_url) == version
    assert alembic_revision(store_url) is None
    result = upgrade_store(store_url)
    assert result == UpgradeResult(
        version, SCHEMA_VERSION, tuple(range(version + 1, SCHEMA_VERSION + 1))
    )
    assert alembic_revision(store_url) == f"{SCHEMA_VERSION:04d}"
    assert upgrade_store(store_url) == UpgradeResult(SCHEMA_VERSION, SCHEMA_VERSION, ())
    with EventStore.open(store_url, upgrade=False) as opened:
        assert opened.count_events("exposure") == 1
        assert opened.schema_version() == SCHEMA_VERSION


def test_db_upgrade_and_status_on_a_store_from_the_hand_written_runner(store_url: str) -> None:
    from typer.testing import CliRunner

    from abflow.cli.main import app

    make_legacy_store(store_url, 1)
    runner = CliRunner()
    status = runner.invoke(app, ["db", "status", "--store", store_url])
    assert status.exit_code == 0, status.output
    assert f"schema version 1, this abflow needs {SCHEMA_VERSION}" in status.output
    upgraded = runner.invoke(app, ["db", "upgrade", "--store", store_url])
    assert upgraded.exit_code == 0, upgraded.output
    steps = ", ".join(str(version) for version in range(2, SCHEMA_VERSION + 1))
    assert f"from schema version 1 to {SCHEMA_VERSION} (applied {steps})" in upgraded.output
    status = runner.invoke(app, ["db", "status", "--store", store_url])
    assert f"schema version {SCHEMA_VERSION}, this abflow needs {SCHEMA_VERSION}" in status.output


def test_schema_version_is_alembics_head_and_importing_the_store_loads_no_alembic() -> None:
    import subprocess
    import sys

    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from abflow.store.migrations import SCRIPTS

    config = Config()
    config.set_main_option("script_location", str(SCRIPTS))
    scripts = ScriptDirectory.from_config(config)
    assert scripts.get_current_head() == f"{SCHEMA_VERSION:04d}"
    linear = [f"{v:04d}" for v in range(1, SCHEMA_VERSION + 1)]
    assert [s.revision for s in scripts.walk_revisions()][::-1] == linear
    code = "import sys, abflow.store; print('alembic' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert loaded.stdout.strip() == "False", loaded.stderr


BATCH_REVISION = """
import sqlalchemy as sa
from alembic import op

revision = "{next:04d}"
down_revision = "{head:04d}"


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:  # SQLite: copy, drop, rename
        batch.alter_column("name", existing_type=sa.String(128), nullable=True)
"""


def test_a_later_revision_can_rewrite_a_sqlite_table_in_batch_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What SQLite cannot ALTER in place, Alembic's batch mode does inside the upgrade."""
    import shutil

    from abflow.store import migrations

    scripts = tmp_path / "scripts"
    shutil.copytree(migrations.SCRIPTS, scripts)
    revision = BATCH_REVISION.format(next=SCHEMA_VERSION + 1, head=SCHEMA_VERSION)
    (scripts / "versions" / f"v{SCHEMA_VERSION + 1:04d}_batch.py").write_text(
        revision, encoding="utf-8"
    )
    monkeypatch.setattr(migrations, "SCRIPTS", scripts)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade_store(url)
    engine = create_store_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(
                store_schema.api_tokens.insert().values(
                    token_id="t1", token_hash="h", name="ci", role="viewer", created_at=1.0
                )
            )
        target = SCHEMA_VERSION + 1
        assert upgrade(engine, target=target) == UpgradeResult(SCHEMA_VERSION, target, (target,))
        columns = {c["name"]: c for c in sa.inspect(engine).get_columns("api_tokens")}
        with engine.connect() as connection:
            names = connection.execute(sa.text("SELECT name FROM api_tokens")).scalars().all()
    finally:
        engine.dispose()
    assert columns["name"]["nullable"] is True
    assert names == ["ci"]
