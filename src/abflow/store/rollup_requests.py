"""Outcomes sent by request id alone, in a rollup fold: kept until their prediction lands.

Such an outcome is stored with ``unit_id`` :data:`~abflow.store.schema.UNRESOLVED_UNIT`;
it belongs to the unit of the non-shadow prediction with its request id in the experiment and
phase analysed, exactly as :func:`abflow.store.aggregates.unit_moments` joins it. But that
prediction may reach the store after the outcome was folded, stamped before the watermark
(it waited in another gateway's spool), so a time watermark alone would lose the outcome.

Each rollup therefore keeps a request table (``rollup_<hash>_r``): every such outcome of the
names its columns read, up to the watermark, with the unit once one is found (``NULL``:
pending). A fold adds its window's outcomes as pending, then looks up the prediction of
every pending one (an ``ix_predictions_request`` probe each): those resolved in this fold
are *fresh*. A known unit adds its fresh outcomes (before or after its first exposure, by
their ``ts``); a unit first exposed in the fold reads all of its resolved ones. The common
case, no such outcome in the store, costs one index probe and no table.

An outcome whose request was predicted elsewhere (another experiment or phase, or a shadow
call only) stays pending and is looked up again at every fold. A request id reused for two
units keeps the unit found first (the plain path takes the smaller of the two).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from abflow.store.aggregates import OutcomeColumn
from abflow.store.rollup_groups import (
    SCRATCH_PREFIXES,
    create_if_missing,
    create_scratch,
    drop_scratch,
)
from abflow.store.schema import UNRESOLVED_UNIT, outcomes, predictions

__all__ = [
    "RequestFold",
    "add_request_outcomes",
    "gather_requests",
    "has_pending",
    "prepare_requests",
    "requests_table",
]


@dataclass(frozen=True, slots=True)
class RequestFold:
    """A fold's request table, and whether it gathers from the first event (else its window)."""

    table: sa.Table
    from_start: bool


def requests_table(units_name: str) -> sa.Table:
    """The request table of the per-unit rollup ``units_name`` (``unit_id`` NULL: pending)."""
    return sa.Table(
        units_name + "_r",
        sa.MetaData(),
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("ts", sa.Double, nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("value", sa.Double, nullable=False),
        sa.Column("unit_id", sa.String(256)),
        sa.Index(f"ix_{units_name}_r_unit", "unit_id"),
    )


def _has_request_outcomes(connection: Connection, columns: Sequence[OutcomeColumn]) -> bool:
    """Whether any outcome the columns read was stored by request id (an index probe)."""
    events = sorted({c.event for c in columns})
    if not events:
        return False
    o = outcomes
    query = sa.select(o.c.event_id).where(o.c.unit_id == UNRESOLVED_UNIT, o.c.name.in_(events))
    return connection.execute(query.limit(1)).first() is not None


def prepare_requests(
    connection: Connection, units_name: str, columns: Sequence[OutcomeColumn], *, is_first: bool
) -> RequestFold | None:
    """The request table for this fold, created if needed; None when no such outcome exists.

    A first build starts it empty. A table created for a rollup folded before (one built
    before request tables existed, or before the first such outcome) gathers from the first
    event too: none of those outcomes was counted yet.
    """
    if not _has_request_outcomes(connection, columns):
        return None
    table = requests_table(units_name)
    is_new = not sa.inspect(connection).has_table(table.name)
    create_if_missing(connection, table)
    for index in table.indexes:
        connection.execute(sa.schema.CreateIndex(index, if_not_exists=True))
    if is_first and not is_new:
        connection.execute(table.delete())
    return RequestFold(table, from_start=is_first or is_new)


def has_pending(connection: Connection, table: sa.Table) -> bool:
    query = sa.select(table.c.event_id).where(table.c.unit_id.is_(None)).limit(1)
    return connection.execute(query).first() is not None


def _fresh_table(table: sa.Table) -> sa.Table:
    return sa.Table(
        table.name + "_fresh",
        sa.MetaData(),
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("unit_id", sa.String(256)),
        sa.Column("ts", sa.Double),
        sa.Column("name", sa.String(128)),
        sa.Column("value", sa.Double),
        prefixes=SCRATCH_PREFIXES,
    )


def gather_requests(
    connection: Connection,
    table: sa.Table,
    columns: Sequence[OutcomeColumn],
    experiment_key: str,
    phase: int,
    window: Sequence[sa.ColumnElement[bool]],
) -> sa.Table:
    """Add the window's outcomes sent by request id, resolve what can be: the fresh rows.

    Returns a scratch table of the outcomes resolved by this fold, with their unit (the
    caller drops it). ``window`` is the fold's condition on ``outcomes.ts``.
    """
    o, p, r = outcomes, predictions, table
    events = sorted({c.event for c in columns})
    connection.execute(
        r.insert().from_select(
            ["event_id", "request_id", "ts", "name", "value"],
            sa.select(o.c.event_id, o.c.request_id, o.c.ts, o.c.name, o.c.value).where(
                o.c.unit_id == UNRESOLVED_UNIT,
                o.c.name.in_(events),
                o.c.request_id.is_not(None),
                *window,
            ),
        )
    )
    match = [
        p.c.request_id == r.c.request_id,
        p.c.experiment_key == experiment_key,
        p.c.phase == phase,
        ~p.c.is_shadow,
    ]
    unit = sa.select(sa.func.min(p.c.unit_id)).where(*match).scalar_subquery()
    fresh = _fresh_table(table)
    create_scratch(connection, fresh)
    connection.execute(
        fresh.insert().from_select(
            ["event_id", "unit_id", "ts", "name", "value"],
            sa.select(r.c.event_id, unit, r.c.ts, r.c.name, r.c.value).where(
                r.c.unit_id.is_(None), sa.exists().where(*match)
            ),
        )
    )
    connection.execute(
        sa.update(r).where(r.c.event_id == fresh.c.event_id).values(unit_id=fresh.c.unit_id)
    )
    return fresh


def _value(column: OutcomeColumn, rows: sa.Subquery) -> sa.ColumnElement[Any]:
    """One column's value of a unit's outcomes (``rows`` carries the unit's ``first_ts``)."""
    timing = (
        rows.c.ts >= rows.c.first_ts if column.period == "post" else rows.c.ts < rows.c.first_ts
    )
    match = sa.and_(rows.c.name == column.event, timing)
    if column.reduce == "sum":
        return sa.func.coalesce(sa.func.sum(sa.case((match, rows.c.value), else_=0.0)), 0.0)
    if column.reduce == "count":
        return sa.func.coalesce(sa.func.sum(sa.case((match, 1.0), else_=0.0)), 0.0)
    positive = sa.and_(match, rows.c.value > 0)
    return sa.func.coalesce(sa.func.max(sa.case((positive, 1.0), else_=0.0)), 0.0)


def add_request_outcomes(
    connection: Connection,
    after: sa.Table,
    table: sa.Table,
    fresh: sa.Table,
    columns: Sequence[OutcomeColumn],
) -> None:
    """Add the resolved outcomes to the touched units' rows ``after`` the fold.

    A known unit (``is_known`` 1) adds the fresh ones only (the older ones were added when
    they were resolved, or when it was first exposed); a new unit adds every resolved one.
    """
    a, r, f = after, table, fresh
    picked = [a.c.unit_id, a.c.first_ts]
    rows = sa.union_all(
        sa.select(*picked, f.c.ts, f.c.name, f.c.value)
        .select_from(a.join(f, f.c.unit_id == a.c.unit_id))
        .where(a.c.is_known == 1),
        sa.select(*picked, r.c.ts, r.c.name, r.c.value)
        .select_from(a.join(r, r.c.unit_id == a.c.unit_id))
        .where(a.c.is_known == 0),
    ).subquery("request_rows")
    width = len(columns)
    added = sa.Table(
        table.name + "_added",
        sa.MetaData(),
        sa.Column("unit_id", sa.String(256), primary_key=True),
        sa.Column("n_rows", sa.BigInteger),
        *(sa.Column(f"a{i}", sa.Double) for i in range(width)),
        prefixes=SCRATCH_PREFIXES,
    )
    create_scratch(connection, added)
    try:
        connection.execute(
            added.insert().from_select(
                [c.name for c in added.columns],
                sa.select(
                    rows.c.unit_id,
                    sa.func.count(),
                    *(_value(column, rows) for column in columns),
                ).group_by(rows.c.unit_id),
            )
        )
        values: dict[str, Any] = {"rows": a.c["rows"] + added.c.n_rows}
        for i, column in enumerate(columns):
            old, new = a.c[f"c{i}"], added.c[f"a{i}"]
            values[f"c{i}"] = (
                sa.case((new > old, new), else_=old) if column.reduce == "any" else old + new
            )
        connection.execute(sa.update(a).where(a.c.unit_id == added.c.unit_id).values(**values))
    finally:
        drop_scratch(connection, added)
