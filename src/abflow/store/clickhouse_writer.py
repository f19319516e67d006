"""Events into ClickHouse, idempotently by event id: the loader's store side for a warehouse.

:class:`ClickHouseWriter` has the one method ``abflow ingest``'s loader writes through
(``write_events``, see :class:`abflow.events.ingest.RowWriter`), so the loader can fill a
ClickHouse store as it fills PostgreSQL. ClickHouse has no ``ON CONFLICT``: a batch first
asks which of its event ids are stored and inserts the others, which is what makes the count
of new rows exact for one loader. Two loaders racing on the same ids (a rebalance) may both
insert a row; the tables are ReplacingMergeTree on the event id and every read collapses
duplicates (``final=1``, see :mod:`abflow.store.clickhouse`), so analysis counts it once.

Rows are checked and completed by the store writer's own layouts (required columns, defaults),
so a row the SQLite or PostgreSQL store would refuse is refused here too, with the same message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from abflow.errors import StoreError
from abflow.store.clickhouse import clickhouse_engine, create_tables
from abflow.store.engine import raise_store_error
from abflow.store.schema import EVENT_TABLES
from abflow.store.writer import layout_for, rows_to_tuples

__all__ = ["ClickHouseWriter"]

_LOOKUP_CHUNK = 10_000
"""Event ids asked for per query (the IN list stays a few hundred kilobytes)."""


class ClickHouseWriter:
    """Writes event batches to a ClickHouse store (``chdb:///PATH`` or ``clickhouse://…``)."""

    def __init__(self, target: str | Engine, *, create: bool = True) -> None:
        self.engine = target if isinstance(target, Engine) else clickhouse_engine(target)
        if self.engine.dialect.name != "clickhousedb":
            msg = f"ClickHouseWriter needs a ClickHouse engine, got {self.engine.dialect.name}"
            raise StoreError(msg)
        if create:
            create_tables(self.engine, EVENT_TABLES.values())

    def write_events(self, kind: Any, rows: Sequence[Mapping[str, Any]]) -> int:
        """Store the rows whose event ids are new; return how many that was."""
        layout = layout_for(str(kind))
        values = rows_to_tuples(layout, rows)
        required = layout.n_required
        for row in values:
            missing = [n for n, v in zip(layout.columns[:required], row, strict=False) if v is None]
            if missing:
                msg = f"{kind} event is missing required column {missing[0]!r}"
                raise StoreError(msg)
        position = layout.columns.index("event_id")
        batch: dict[str, tuple[Any, ...]] = {}
        for row in values:
            batch.setdefault(str(row[position]), row)  # a batch repeating an id stores it once
        table = layout.table
        try:
            with self.engine.begin() as connection:
                ids = list(batch)
                for start in range(0, len(ids), _LOOKUP_CHUNK):
                    chunk = ids[start : start + _LOOKUP_CHUNK]
                    query = sa.select(table.c.event_id).where(table.c.event_id.in_(chunk))
                    for (known,) in connection.execute(query):
                        batch.pop(str(known), None)
                if batch:
                    fresh = [dict(zip(layout.columns, row, strict=True)) for row in batch.values()]
                    connection.execute(table.insert(), fresh)
        except SQLAlchemyError as exc:
            raise_store_error(exc, f"write {kind} events")
        return len(batch)

    def close(self) -> None:
        """Release the engine's connections (as ``EventStore.close``)."""
        self.engine.dispose()
