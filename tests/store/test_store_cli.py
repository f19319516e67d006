"""``abflow db upgrade`` and ``abflow db status`` on a real database."""

from __future__ import annotations

from typer.testing import CliRunner

from abflow.cli.main import app
from abflow.store import SCHEMA_VERSION, read_store_version


def test_db_upgrade_then_again(store_url: str) -> None:
    runner = CliRunner()
    before = runner.invoke(app, ["db", "status", "--store", store_url])
    assert before.exit_code == 0, before.output
    assert "schema version 0" in before.output
    assert "abflow db upgrade" in before.output

    first = runner.invoke(app, ["db", "upgrade", "--store", store_url])
    assert first.exit_code == 0, first.output
    assert f"from schema version 0 to {SCHEMA_VERSION}" in first.output
    assert read_store_version(store_url) == SCHEMA_VERSION

    second = runner.invoke(app, ["db", "upgrade", "--store", store_url])
    assert second.exit_code == 0, second.output
    assert "is up to date" in second.output

    after = runner.invoke(app, ["db", "status", "--store", store_url])
    assert f"schema version {SCHEMA_VERSION}, this abflow needs {SCHEMA_VERSION}" in after.output
