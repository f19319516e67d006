"""What a fault test finds in the store afterwards: rows per id, so that an acknowledged
event that is missing, or one stored twice, is counted."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa


@dataclass(frozen=True)
class Stored:
    predictions: dict[str, int]  # request id -> rows
    exposures: dict[str, int]  # unit id -> rows
    outcomes: dict[str, int]  # event id -> rows
    outcomes_by_request: dict[str, int]  # request id -> rows


def read_store(url: str) -> Stored:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:

            def counts(sql: str) -> dict[str, int]:
                return {str(k): int(n) for k, n in connection.execute(sa.text(sql)).all()}

            return Stored(
                counts("SELECT request_id, COUNT(*) FROM predictions GROUP BY request_id"),
                counts("SELECT unit_id, COUNT(*) FROM exposures GROUP BY unit_id"),
                counts("SELECT event_id, COUNT(*) FROM outcomes GROUP BY event_id"),
                counts("SELECT request_id, COUNT(*) FROM outcomes GROUP BY request_id"),
            )
    finally:
        engine.dispose()


def missing(predictions: Iterable[str], outcomes: Iterable[str], stored: Stored) -> int:
    """Acknowledged events not in the store: each prediction's row and its unit's exposure
    (the tests use unit ``unit-<request id>``), and each outcome by event id."""
    predictions = list(predictions)
    return (
        sum(1 for r in predictions if r not in stored.predictions)
        + sum(1 for r in predictions if f"unit-{r}" not in stored.exposures)
        + sum(1 for e in outcomes if e not in stored.outcomes)
    )


def duplicated(stored: Stored) -> int:
    """Rows beyond the first of any prediction, exposure or outcome."""
    tables = (stored.predictions, stored.exposures, stored.outcomes)
    return sum(n - 1 for table in tables for n in table.values() if n > 1)
