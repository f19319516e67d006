"""The shipper's SQLite connection keeps a small page cache: it only appends."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from abflow.events import eventlog
from abflow.events.shipper import SHIPPER_SQLITE_CACHE_KIB
from abflow.store import EventStore


def _cache_size(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        value = connection.exec_driver_sql("PRAGMA cache_size").scalar_one()
    return int(value)


def test_shipper_store_has_a_small_page_cache_and_the_store_keeps_its_own(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    shipper_store = eventlog._open_store(url)  # in this process: its engine is inspected
    analysis_store = EventStore.open(url)
    try:
        assert isinstance(shipper_store, EventStore)
        assert _cache_size(shipper_store.engine) == -SHIPPER_SQLITE_CACHE_KIB
        assert _cache_size(analysis_store.engine) == -32000
        rows = [
            {
                "event_id": f"e{i}",
                "ts": 1.0,
                "experiment_key": "exp",
                "phase": 1,
                "unit_id": "u",
                "variant": "control",
                "attributes_json": None,
            }
            for i in range(3)
        ]
        assert shipper_store.write_events("exposure", rows) == 3
        assert analysis_store.count_events("exposure") == 3
    finally:
        analysis_store.close()
        close = getattr(shipper_store, "close", None)
        if callable(close):
            close()
