"""Per-unit rollups: fold new events into one row per unit, so analysis scans units, not events.

A GROUP BY over ten million raw events costs seconds in SQLite however it is written; the
per-unit values an analysis needs (sum, count or "any" of each outcome after first exposure,
and the pre-exposure sum for CUPED) change only where new events land. A rollup keeps them in
one wide table per experiment, phase and set of columns, and a watermark (``ts`` of the last
folded event). :func:`refresh_rollup` folds the events in ``(watermark, until]``:

1. new exposures, grouped by unit: existing units have their counts (and a second variant,
   if one appears) updated; new units are inserted with their pre-exposure values read from
   the outcomes table (a CUPED covariate predates the unit's first exposure by definition);
2. new outcomes after each unit's first exposure are summed per unit and added in place.

Everything is set-based SQL (temporary tables, ``UPDATE … FROM``), so a fold of a million
events is a few statements. :func:`rollup_moments` then aggregates the unit rows exactly as
:func:`abflow.store.aggregates.unit_moments` aggregates raw events, and returns the same
:class:`Moments`. Events are assumed to arrive in time order: an event stamped before the
watermark when it lands is missed until :func:`drop_rollup` and a rebuild.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from abflow.errors import StoreError
from abflow.store.aggregates import (
    GroupKey,
    Moments,
    OutcomeColumn,
    Window,
    attribute_expression,
    collect_moments,
    connect,
    day_of,
    moment_select,
)
from abflow.store.schema import exposures, outcomes

__all__ = ["drop_rollup", "refresh_rollup", "rollup_moments", "rollup_state"]

_state_metadata = sa.MetaData()
rollup_state = sa.Table(
    "rollup_state",
    _state_metadata,
    sa.Column("table_name", sa.String(64), primary_key=True),
    sa.Column("experiment_key", sa.String(128), nullable=False),
    sa.Column("phase", sa.Integer, nullable=False),
    sa.Column("columns_json", sa.Text, nullable=False),
    sa.Column("watermark", sa.Double, nullable=False),
)


_TIME_INDEXES = (
    "CREATE INDEX IF NOT EXISTS ix_rollup_exposures_ts ON exposures (experiment_key, phase, ts)",
    "CREATE INDEX IF NOT EXISTS ix_rollup_outcomes_ts ON outcomes (ts)",
)
"""Time indexes that make a fold read only the new window (and the watermark a lookup).

Plain DDL rather than ``sa.Index`` objects, which would attach to the shared schema tables.
"""


def _ensure_time_indexes(connection: Connection) -> None:
    for statement in _TIME_INDEXES:
        connection.exec_driver_sql(statement)


def _table_name(experiment_key: str, phase: int, columns: Sequence[OutcomeColumn]) -> str:
    signature = orjson.dumps(
        [experiment_key, phase, [[c.name, c.event, c.reduce, c.period] for c in columns]]
    )
    return "rollup_" + hashlib.sha256(signature).hexdigest()[:16]


def _units_table(name: str, columns: Sequence[OutcomeColumn]) -> sa.Table:
    metadata = sa.MetaData()
    return sa.Table(
        name,
        metadata,
        sa.Column("unit_id", sa.String(256), primary_key=True),
        sa.Column("variant", sa.String(128), nullable=False),
        sa.Column("variant_max", sa.String(128), nullable=False),
        sa.Column("first_ts", sa.Double, nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("attributes_json", sa.Text),
        *(sa.Column(f"c{i}", sa.Double, nullable=False) for i in range(len(columns))),
    )


def _scratch(name: str, width: int) -> sa.Table:
    metadata = sa.MetaData()
    return sa.Table(
        name,
        metadata,
        sa.Column("unit_id", sa.String(256), primary_key=True),
        sa.Column("variant", sa.String(128)),
        sa.Column("variant_max", sa.String(128)),
        sa.Column("first_ts", sa.Double),
        sa.Column("rows", sa.BigInteger),
        sa.Column("attributes_json", sa.Text),
        *(sa.Column(f"d{i}", sa.Double) for i in range(width)),
    )


def _exact(connection: Connection, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """``ts`` compared in double precision: DuckDB stores FLOAT as 32 bits and would round
    the watermark to the column's type, dropping events that sit exactly on it."""
    if connection.dialect.name == "duckdb":
        return sa.cast(column, sa.Double)
    return column


def _reduce(column: OutcomeColumn, match: sa.ColumnElement[bool]) -> sa.ColumnElement[Any]:
    o = outcomes
    if column.reduce == "sum":
        return sa.func.coalesce(sa.func.sum(sa.case((match, o.c.value), else_=0.0)), 0.0)
    if column.reduce == "count":
        return sa.func.coalesce(sa.func.sum(sa.case((match, 1.0), else_=0.0)), 0.0)
    positive = sa.and_(match, o.c.value > 0)
    return sa.func.coalesce(sa.func.max(sa.case((positive, 1.0), else_=0.0)), 0.0)


def _fold(
    connection: Connection,
    table: sa.Table,
    columns: Sequence[OutcomeColumn],
    experiment_key: str,
    phase: int,
    low: float,
    high: float,
) -> None:
    """Fold exposures and outcomes with ``low < ts <= high`` into ``table``."""
    e, o = exposures, outcomes
    events = sorted({c.event for c in columns})
    scratch = _scratch(table.name + "_new", len(columns))
    scratch.drop(connection, checkfirst=True)
    scratch.create(connection)
    try:
        # 1. this window's exposures, one row per unit
        e_ts, o_ts = _exact(connection, e.c.ts), _exact(connection, o.c.ts)
        window = [e.c.experiment_key == experiment_key, e.c.phase == phase, e_ts > low]
        window.append(e_ts <= high)
        connection.execute(
            scratch.insert().from_select(
                ["unit_id", "variant", "variant_max", "first_ts", "rows", "attributes_json"],
                sa.select(
                    e.c.unit_id,
                    sa.func.min(e.c.variant),
                    sa.func.max(e.c.variant),
                    sa.func.min(e.c.ts),
                    sa.func.count(),
                    sa.func.min(e.c.attributes_json),
                )
                .where(*window)
                .group_by(e.c.unit_id),
            )
        )
        s, t = scratch, table
        connection.execute(
            sa.update(t)
            .where(t.c.unit_id == s.c.unit_id)
            .values(
                variant=sa.case((s.c.variant < t.c.variant, s.c.variant), else_=t.c.variant),
                variant_max=sa.case(
                    (s.c.variant_max > t.c.variant_max, s.c.variant_max), else_=t.c.variant_max
                ),
                rows=t.c.rows + s.c.rows,
            )
        )
        # new units: every value read at once (pre-exposure ones predate this window)
        fresh = sa.select(s).where(~sa.exists().where(t.c.unit_id == s.c.unit_id)).subquery("fresh")
        join_on = [o.c.unit_id == fresh.c.unit_id, o.c.name.in_(events) if events else sa.false()]
        join_on.append(o_ts <= high)
        values = []
        for column in columns:
            timing = (
                o.c.ts >= fresh.c.first_ts if column.period == "post" else o.c.ts < fresh.c.first_ts
            )
            values.append(_reduce(column, sa.and_(o.c.name == column.event, timing)))
        matched = sa.func.count(o.c.event_id)
        connection.execute(
            t.insert().from_select(
                ["unit_id", "variant", "variant_max", "first_ts", "rows", "attributes_json"]
                + [f"c{i}" for i in range(len(columns))],
                sa.select(
                    fresh.c.unit_id,
                    sa.func.min(fresh.c.variant),
                    sa.func.min(fresh.c.variant_max),
                    sa.func.min(fresh.c.first_ts),
                    sa.func.min(fresh.c.rows) + matched,
                    sa.func.min(fresh.c.attributes_json),
                    *values,
                )
                .select_from(fresh.outerjoin(o, sa.and_(*join_on)))
                .group_by(fresh.c.unit_id),
            )
        )
        # 2. this window's outcomes after the first exposure of units known before it
        connection.execute(scratch.delete())
        post = [c for c in columns if c.period == "post"]
        if post:
            old = [o.c.unit_id == t.c.unit_id, o_ts > low, o_ts <= high]
            old.append(o.c.ts >= t.c.first_ts)
            old.append(t.c.first_ts <= low)  # units inserted above already hold these
            old.append(o.c.name.in_(events))
            deltas = {
                f"d{i}": _reduce(c, o.c.name == c.event)
                for i, c in enumerate(columns)
                if c.period == "post"
            }
            connection.execute(
                scratch.insert().from_select(
                    ["unit_id", "rows", *deltas],
                    sa.select(o.c.unit_id, sa.func.count(), *deltas.values())
                    .select_from(o.join(t, sa.and_(*old)))
                    .group_by(o.c.unit_id),
                )
            )
            updates: dict[str, Any] = {"rows": t.c.rows + s.c.rows}
            for i, c in enumerate(columns):
                if c.period != "post":
                    continue
                current, delta = t.c[f"c{i}"], s.c[f"d{i}"]
                updates[f"c{i}"] = (
                    sa.case((delta > current, delta), else_=current)
                    if c.reduce == "any"
                    else current + delta
                )
            connection.execute(sa.update(t).where(t.c.unit_id == s.c.unit_id).values(**updates))
    finally:
        scratch.drop(connection, checkfirst=True)


def refresh_rollup(
    target: Any,
    experiment_key: str,
    phase: int,
    columns: Sequence[OutcomeColumn],
    *,
    window: Window | None = None,
) -> str:
    """Fold events up to ``window.end`` (default: the latest event) and return the table name."""
    engine = connect(target)
    window = window or Window()
    name = _table_name(experiment_key, phase, columns)
    table = _units_table(name, columns)
    try:
        with engine.begin() as connection:
            _state_metadata.create_all(connection)
            table.create(connection, checkfirst=True)
            state = connection.execute(
                sa.select(rollup_state.c.watermark).where(rollup_state.c.table_name == name)
            ).scalar_one_or_none()
            low = (
                state
                if state is not None
                else (
                    math.nextafter(window.start, -math.inf)
                    if window.start is not None
                    else -math.inf
                )
            )
            _ensure_time_indexes(connection)
            e, o = exposures, outcomes
            newest_exposure = (
                sa.select(sa.func.max(e.c.ts))
                .where(e.c.experiment_key == experiment_key, e.c.phase == phase)
                .scalar_subquery()
            )
            newest_outcome = sa.select(sa.func.max(o.c.ts)).scalar_subquery()
            latest = connection.execute(sa.select(newest_exposure, newest_outcome)).one()
            newest = max((v for v in latest if v is not None), default=low)
            if window.end is not None and state is not None and state >= window.end:
                msg = (
                    f"the rollup of {experiment_key!r} already holds events past the window's "
                    "end; analyse this window without rollups"
                )
                raise StoreError(msg)
            high = (
                newest if window.end is None else min(newest, math.nextafter(window.end, -math.inf))
            )
            if high > low:
                _fold(connection, table, columns, experiment_key, phase, low, high)
                values = {"watermark": high}
                if state is None:
                    connection.execute(
                        rollup_state.insert().values(
                            table_name=name,
                            experiment_key=experiment_key,
                            phase=phase,
                            columns_json=orjson.dumps([c.name for c in columns]).decode(),
                            **values,
                        )
                    )
                else:
                    connection.execute(
                        rollup_state.update()
                        .where(rollup_state.c.table_name == name)
                        .values(**values)
                    )
    except SQLAlchemyError as exc:
        msg = f"cannot refresh the rollup of {experiment_key!r}: {exc.__class__.__name__}"
        raise StoreError(msg) from exc
    return name


def drop_rollup(
    target: Any, experiment_key: str, phase: int, columns: Sequence[OutcomeColumn]
) -> None:
    """Forget a rollup (the next refresh rebuilds it from the raw events)."""
    engine = connect(target)
    name = _table_name(experiment_key, phase, columns)
    with engine.begin() as connection:
        _state_metadata.create_all(connection)
        _units_table(name, columns).drop(connection, checkfirst=True)
        connection.execute(rollup_state.delete().where(rollup_state.c.table_name == name))


def rollup_moments(
    target: Any,
    experiment_key: str,
    phase: int,
    columns: Sequence[OutcomeColumn] = (),
    products: Iterable[tuple[str, str]] = (),
    *,
    window: Window | None = None,
    dimension: str | None = None,
) -> tuple[dict[GroupKey, Moments], int]:
    """:func:`~abflow.store.aggregates.unit_moments`, read from the refreshed rollup."""
    engine: Engine = connect(target)
    columns = list(columns)
    name = refresh_rollup(engine, experiment_key, phase, columns, window=window)
    table = _units_table(name, columns)
    renamed = [table.c[f"c{i}"].label(c.name) for i, c in enumerate(columns)]
    dim = (
        attribute_expression(engine, table.c.attributes_json, dimension).label("dim")
        if dimension is not None
        else sa.literal(None).label("dim")
    )
    per_unit = sa.select(
        table.c.unit_id,
        table.c.variant,
        table.c.first_ts,
        table.c.rows,
        dim,
        sa.case((table.c.variant != table.c.variant_max, 1), else_=0).label("mixed"),
        *renamed,
    ).subquery("per_unit")
    pairs = list(dict.fromkeys(products))
    names = [c.name for c in columns]
    group = per_unit.c.dim if dimension is not None else day_of(per_unit.c.first_ts)
    return collect_moments(engine, moment_select(per_unit, names, pairs, group), names, pairs)
