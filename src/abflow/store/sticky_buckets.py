"""Sticky buckets in the store: the assignment documents every gateway replica shares.

:class:`StoreStickyBuckets` is the :class:`~abflow.routing.sticky.StickyBucketStore` the
gateway uses for experiments with ``sticky`` in their spec. Each entry of a document is one
row of ``sticky_buckets`` (attribute, value, bucket key → variant), written with an upsert,
so two replicas recording two experiments of the same unit at once both keep theirs; the
same entry written twice keeps the last variant (both replicas hashed the same unit with
the same spec, so they agree).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from abflow.store.aggregates import StoreTarget, connect
from abflow.store.engine import raise_store_error
from abflow.store.schema import sticky_buckets

__all__ = ["StoreStickyBuckets"]

_KEY = ("attribute", "value", "bucket_key")


class StoreStickyBuckets:
    """Assignment documents in the store's ``sticky_buckets`` table (schema 4 and later)."""

    def __init__(self, target: StoreTarget, *, clock: Callable[[], float] = time.time) -> None:
        self.engine: Engine = connect(target)
        self._clock = clock

    def get_assignments(self, attribute: str, value: str) -> Mapping[str, str]:
        """``{bucket key: variant}`` of one attribute value (empty when none is stored)."""
        t = sticky_buckets
        query = sa.select(t.c.bucket_key, t.c.variant).where(
            t.c.attribute == attribute, t.c.value == value
        )
        try:
            with self.engine.connect() as connection:
                return {str(key): str(variant) for key, variant in connection.execute(query)}
        except SQLAlchemyError as exc:
            raise_store_error(exc, "read sticky buckets")

    def save_assignments(self, attribute: str, value: str, assignments: Mapping[str, str]) -> None:
        """Write every entry of ``assignments`` (entries not named are kept)."""
        if not assignments:
            return
        now = self._clock()
        rows = [
            {"attribute": attribute, "value": value, "bucket_key": key, "variant": variant,
             "updated_at": now}
            for key, variant in assignments.items()
        ]  # fmt: skip
        try:
            with self.engine.begin() as connection:
                self._upsert(connection, rows)
        except SQLAlchemyError as exc:
            raise_store_error(exc, "save sticky buckets")

    def _upsert(self, connection: sa.Connection, rows: list[dict[str, Any]]) -> None:
        t = sticky_buckets
        dialect = self.engine.dialect.name
        if dialect in ("sqlite", "postgresql"):
            module: Any = sqlite if dialect == "sqlite" else postgresql
            insert = module.insert(t)
            statement = insert.on_conflict_do_update(
                index_elements=list(_KEY),
                set_={"variant": insert.excluded.variant, "updated_at": insert.excluded.updated_at},
            )
            connection.execute(statement, rows)
            return
        for row in rows:  # any other dialect: update, else insert
            match = [t.c[name] == row[name] for name in _KEY]
            changed = connection.execute(
                sa.update(t)
                .where(*match)
                .values(variant=row["variant"], updated_at=row["updated_at"])
            ).rowcount
            if not changed:
                connection.execute(sa.insert(t), [row])
