"""Outcomes stored by request id alone reach their prediction through the request-id index.

SQLite's planner, with no statistics, preferred the experiment index for that join and
scanned every prediction of the experiment once per outcome: 1,122 s for 40,000 such
outcomes at 1M events. The query plan is checked, not a time.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from abflow.store import EventStore
from abflow.store.aggregates import Window, _resolved_outcomes


def test_the_request_id_join_uses_the_request_index_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    EventStore.open(url, upgrade=True).close()
    resolved = _resolved_outcomes("checkout", 1, ["purchase"], Window(end=1e12))
    engine = sa.create_engine(url)
    sql = str(sa.select(resolved).compile(engine, compile_kwargs={"literal_binds": True}))
    with engine.connect() as connection:
        plan = [row[3] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")]
    engine.dispose()
    lookups = [step for step in plan if "predictions" in step]
    assert lookups == ["SEARCH predictions USING INDEX ix_predictions_request (request_id=?)"]
