"""Analysis fixtures: an empty store on every backend the analysis runs on."""

from __future__ import annotations

from pathlib import Path

import pytest

_FILE_STORES = {
    "sqlite": "sqlite:///{}/store.db",
    "duckdb": "duckdb:///{}/store.duckdb",
    "clickhouse": "chdb:///{}/store.chdb",  # embedded ClickHouse
}


@pytest.fixture(
    params=[*_FILE_STORES, pytest.param("postgres", marks=pytest.mark.postgres)],
)
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty store: a file for SQLite, DuckDB and chDB, a fresh schema on the
    PostgreSQL server (``pg_url``); tests taking it run once per backend."""
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_url"))
    return _FILE_STORES[request.param].format(tmp_path)
