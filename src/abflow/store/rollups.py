"""Per-unit rollups: fold new events into one row per unit, so analysis scans units, not events.

A GROUP BY over ten million raw events costs seconds in SQLite however it is written; the
per-unit values an analysis needs (sum, count or "any" of each outcome after first exposure,
and the pre-exposure sum for CUPED) change only where new events land. A rollup keeps them in
one wide table per experiment, phase and set of columns, and a watermark (``ts`` of the last
folded event). :func:`refresh_rollup` folds the events in ``(watermark, until]``:

1. new exposures, grouped by unit: existing units have their counts (and a second variant,
   if one appears) updated; new units are inserted with their pre-exposure values read from
   the outcomes table (a CUPED covariate predates the unit's first exposure by definition);
2. new outcomes after each unit's first exposure are summed per unit and added in place;
3. outcomes sent by request id alone are added to their unit once its prediction is in the
   store, which may be folds later (:mod:`abflow.store.rollup_requests`).

Everything is set-based SQL (temporary tables, ``UPDATE … FROM``), so a fold of a million
events is a few statements. :func:`rollup_moments` then aggregates the unit rows exactly as
:func:`abflow.store.aggregates.unit_moments` aggregates raw events, and returns the same
:class:`Moments`. Events are assumed to arrive in time order: an event stamped before the
watermark when it lands is missed until :func:`drop_rollup` and a rebuild (a prediction
that gives an outcome its unit is the exception: it may land late).
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

from abflow.errors import InvalidArgumentError, StoreError
from abflow.store.aggregates import (
    GroupKey,
    Moments,
    OutcomeColumn,
    StoreTarget,
    Window,
    attribute_expression,
    collect_moments,
    connect,
    first_exposures,
    moment_select,
)
from abflow.store.rollup_groups import (
    SCRATCH_PREFIXES,
    analyze_scratch,
    apply_fold,
    create_if_missing,
    create_scratch,
    drop_scratch,
    group_select,
    groups_table,
    probing_by_key,
    rebuild_groups,
)
from abflow.store.rollup_requests import (
    RequestFold,
    add_request_outcomes,
    gather_requests,
    has_pending,
    prepare_requests,
    requests_table,
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


def _unit_rows(name: str, width: int, *extra: sa.Column[Any]) -> sa.Table:
    """A scratch table shaped like the unit table (every column nullable)."""
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("unit_id", sa.String(256), primary_key=True),
        sa.Column("variant", sa.String(128)),
        sa.Column("variant_max", sa.String(128)),
        sa.Column("first_ts", sa.Double),
        sa.Column("rows", sa.BigInteger),
        sa.Column("attributes_json", sa.Text),
        *(sa.Column(f"c{i}", sa.Double) for i in range(width)),
        *extra,
        prefixes=SCRATCH_PREFIXES,
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


def _smaller(a: sa.ColumnElement[Any], b: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """The smaller of two values, either of which may be NULL (portable ``LEAST``)."""
    return sa.case((a.is_(None), b), (b.is_(None), a), (b < a, b), else_=a)


def _larger(a: sa.ColumnElement[Any], b: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    return sa.case((a.is_(None), b), (b.is_(None), a), (b > a, b), else_=a)


def _touched_units(
    connection: Connection,
    columns: Sequence[OutcomeColumn],
    experiment_key: str,
    phase: int,
    low: float,
    high: float,
    fresh: sa.Table | None = None,
) -> sa.Select[Any]:
    """Ids of the units whose row a fold of ``(low, high]`` may change (and a few others).

    ``fresh``: outcomes sent by request id that this fold resolved, whatever their ``ts``.
    """
    e, o = exposures, outcomes
    e_ts, o_ts = _exact(connection, e.c.ts), _exact(connection, o.c.ts)
    exposed = sa.select(e.c.unit_id.label("unit_id")).where(
        e.c.experiment_key == experiment_key, e.c.phase == phase, e_ts > low, e_ts <= high
    )
    events = sorted({c.event for c in columns})
    if not events:
        return exposed
    measured = sa.select(o.c.unit_id.label("unit_id")).where(
        o_ts > low, o_ts <= high, o.c.name.in_(events)
    )
    parts = [exposed, measured]
    if fresh is not None:
        parts.append(sa.select(fresh.c.unit_id.label("unit_id")))
    return sa.select(sa.union(*parts).subquery("window_units").c.unit_id)


def _fold(
    connection: Connection,
    units: sa.Table,
    groups: sa.Table,
    columns: Sequence[OutcomeColumn],
    experiment_key: str,
    phase: int,
    low: float,
    high: float,
    *,
    is_first: bool,
    requests: RequestFold | None,
) -> None:
    """Fold exposures and outcomes with ``low < ts <= high`` into ``units`` and ``groups``.

    Three scratch tables, each holding only the units this window touches: ``before`` (their
    rows as they were: none for a unit not seen yet), ``exposed`` (this window's exposures
    per unit) and ``after`` (their rows once the window is added). The unit table is read
    once (to fill ``before``) and written once (``after`` back into it), and the group table
    takes ``after`` minus ``before``. ``requests``: the rollup's request table, when outcomes
    sent by request id alone exist (:mod:`abflow.store.rollup_requests`); those resolved by
    this fold touch their units too.
    """
    e, o, u = exposures, outcomes, units
    width = len(columns)
    before = _unit_rows(u.name + "_before", width)
    after = _unit_rows(u.name + "_after", width, sa.Column("is_known", sa.Integer))
    exposed = _unit_rows(u.name + "_exposed", 0)
    scratch = [before, after, exposed]
    for table in scratch:
        create_scratch(connection, table)
    e_ts, o_ts = _exact(connection, e.c.ts), _exact(connection, o.c.ts)
    try:
        fresh = None
        if requests is not None:
            window = [o_ts <= high] if requests.from_start else [o_ts > low, o_ts <= high]
            fresh = gather_requests(
                connection, requests.table, columns, experiment_key, phase, window
            )
            scratch.append(fresh)
        touched = _touched_units(connection, columns, experiment_key, phase, low, high, fresh)
        ids = touched.subquery("ids")
        names = [c.name for c in before.columns]
        with probing_by_key(connection):
            connection.execute(
                before.insert().from_select(
                    names,
                    sa.select(ids.c.unit_id, *(u.c[n] for n in names[1:])).select_from(
                        ids.outerjoin(u, u.c.unit_id == ids.c.unit_id)
                    ),
                )
            )
        ranked = first_exposures(
            [e.c.experiment_key == experiment_key, e.c.phase == phase, e_ts > low, e_ts <= high]
        )
        connection.execute(
            exposed.insert().from_select(
                ["unit_id", "variant", "variant_max", "first_ts", "rows", "attributes_json"],
                sa.select(
                    ranked.c.unit_id,
                    sa.func.min(ranked.c.variant),
                    sa.func.max(ranked.c.variant),
                    sa.func.min(ranked.c.ts),
                    sa.func.count(),
                    sa.func.min(sa.case((ranked.c.rank == 1, ranked.c.attributes_json))),
                ).group_by(ranked.c.unit_id),
            )
        )
        analyze_scratch(connection, exposed)
        for query in (
            _known_after(before, exposed, columns, [o_ts > low, o_ts <= high]),
            _new_after(before, exposed, columns, [o_ts <= high]),
        ):
            connection.execute(after.insert().from_select([*names, "is_known"], query))
        if requests is not None and fresh is not None:
            add_request_outcomes(connection, after, requests.table, fresh, columns)
        _write_back(connection, u, after, width)
        if not is_first:
            apply_fold(connection, u, groups, before, after, width)
    finally:
        for table in scratch:
            drop_scratch(connection, table)


def _known_after(
    before: sa.Table,
    exposed: sa.Table,
    columns: Sequence[OutcomeColumn],
    window: list[sa.ColumnElement[bool]],
) -> sa.Select[Any]:
    """Rows of the touched units known before the window, once it is folded in.

    Their first exposure precedes the window, so every outcome in it is post-exposure: the
    window's outcomes are summed per unit in one pass over the time index (whatever the
    unit), then added to the units' old values. Joining outcomes to the units instead would
    read each unit's whole history through the unit index, row by row.
    """
    o, b, x = outcomes, before, exposed
    events = sorted({c.event for c in columns})
    post = {i: c for i, c in enumerate(columns) if c.period == "post"}
    added = (
        sa.select(
            o.c.unit_id,
            sa.func.count().label("n_rows"),
            *(_reduce(c, o.c.name == c.event).label(f"a{i}") for i, c in post.items()),
        )
        .where(*window, o.c.name.in_(events) if events else sa.false())
        .group_by(o.c.unit_id)
        .subquery("added")
    )
    values: list[sa.ColumnElement[Any]] = []
    for i, column in enumerate(columns):
        old = b.c[f"c{i}"]
        if i not in post:
            values.append(old)
            continue
        new = sa.func.coalesce(added.c[f"a{i}"], 0.0)
        values.append(sa.case((new > old, new), else_=old) if column.reduce == "any" else old + new)
    return (
        sa.select(
            b.c.unit_id,
            _smaller(b.c.variant, x.c.variant),
            _larger(b.c.variant_max, x.c.variant_max),
            b.c.first_ts,
            b.c.rows + sa.func.coalesce(x.c.rows, 0) + sa.func.coalesce(added.c.n_rows, 0),
            b.c.attributes_json,
            *values,
            sa.literal(1),
        )
        .select_from(
            b.outerjoin(x, x.c.unit_id == b.c.unit_id).outerjoin(
                added, added.c.unit_id == b.c.unit_id
            )
        )
        .where(b.c.variant.is_not(None))
    )


def _new_after(
    before: sa.Table,
    exposed: sa.Table,
    columns: Sequence[OutcomeColumn],
    window: list[sa.ColumnElement[bool]],
) -> sa.Select[Any]:
    """Rows of the units first exposed in the window: every outcome up to its end, at once.

    The pre-exposure ones (the CUPED covariate) are included, since a covariate predates
    exposure by definition; they are read through the unit index.
    """
    o, b, x = outcomes, before, exposed
    events = sorted({c.event for c in columns})
    join_on = [o.c.unit_id == b.c.unit_id, o.c.name.in_(events) if events else sa.false()]
    values = []
    for column in columns:
        timing = o.c.ts >= x.c.first_ts if column.period == "post" else o.c.ts < x.c.first_ts
        values.append(_reduce(column, sa.and_(o.c.name == column.event, timing)))
    return (
        sa.select(
            b.c.unit_id,
            sa.func.min(x.c.variant),
            sa.func.min(x.c.variant_max),
            sa.func.min(x.c.first_ts),
            sa.func.min(x.c.rows) + sa.func.count(o.c.event_id),
            sa.func.min(x.c.attributes_json),
            *values,
            sa.literal(0),
        )
        .select_from(b.join(x, x.c.unit_id == b.c.unit_id).outerjoin(o, sa.and_(*join_on, *window)))
        .where(b.c.variant.is_(None))
        .group_by(b.c.unit_id)
    )


def _write_back(connection: Connection, units: sa.Table, after: sa.Table, width: int) -> None:
    """Known units are updated in place (their first exposure and attributes never change)."""
    u, a = units, after
    changed = ["variant", "variant_max", "rows", *(f"c{i}" for i in range(width))]
    with probing_by_key(connection):
        connection.execute(
            sa.update(u)
            .where(u.c.unit_id == a.c.unit_id, a.c.is_known == 1)
            .values(**{name: a.c[name] for name in changed})
        )
    names = [c.name for c in u.columns]
    connection.execute(
        u.insert().from_select(names, sa.select(*(a.c[n] for n in names)).where(a.c.is_known == 0))
    )


def _serialise(connection: Connection, name: str) -> None:
    """One fold of a rollup at a time on PostgreSQL, where two could read the same watermark
    and both fold the same window (SQLite and DuckDB let only one writer of the same rows
    commit). The second fold waits, then reads the first one's watermark."""
    if connection.dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))


def _groups_missing(connection: Connection, units: sa.Table, groups: sa.Table) -> bool:
    """A unit table with rows and an empty group table: a rollup built before group tables."""
    if connection.execute(sa.select(groups.c.n).limit(1)).first() is not None:
        return False
    return connection.execute(sa.select(units.c.unit_id).limit(1)).first() is not None


def _retry_requests(
    connection: Connection,
    state: float | None,
    low: float,
    high: float,
    requests: RequestFold | None,
) -> bool:
    """Whether a rollup with no new event still folds: to look up pending request ids (a
    prediction may have landed since, stamped before the watermark)."""
    if state is None or high > low or requests is None:
        return False
    return requests.from_start or has_pending(connection, requests.table)


def refresh_rollup(
    target: StoreTarget,
    experiment_key: str,
    phase: int,
    columns: Sequence[OutcomeColumn],
    *,
    window: Window | None = None,
) -> str:
    """Fold events up to ``window.end`` (default: the latest event) and return the table name."""
    engine = connect(target)
    if engine.dialect.name == "clickhousedb":
        msg = (
            "--rollups is not available on a ClickHouse store (its fold rewrites rows, which "
            "MergeTree tables are not made for): analyse the raw events, without --rollups"
        )
        raise InvalidArgumentError(msg)
    window = window or Window()
    name = _table_name(experiment_key, phase, columns)
    table = _units_table(name, columns)
    try:
        with engine.begin() as connection:
            _serialise(connection, name)
            create_if_missing(connection, rollup_state)
            create_if_missing(connection, table)
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
            groups = groups_table(name, columns)
            create_if_missing(connection, groups)
            if state is not None and _groups_missing(connection, table, groups):
                rebuild_groups(connection, table, groups, len(columns))  # an older rollup
            built = high > low and state is None
            if built and connection.dialect.name == "postgresql":
                # room on each page for a row's next version: updates stay on the page (HOT)
                # and leave the key index alone
                connection.exec_driver_sql(f"ALTER TABLE {name} SET (fillfactor = 80)")
            requests = (
                prepare_requests(connection, name, columns, is_first=state is None)
                if high > low or state is not None
                else None
            )
            retry = _retry_requests(connection, state, low, high, requests)
            if retry:
                high = low  # no new event: the window stays empty, the watermark where it is
            if high > low or retry:
                _fold(
                    connection,
                    table,
                    groups,
                    columns,
                    experiment_key,
                    phase,
                    low,
                    high,
                    is_first=state is None,
                    requests=requests,
                )
                if state is None:
                    rebuild_groups(connection, table, groups, len(columns))
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
        if built and engine.dialect.name == "postgresql":
            _vacuum(engine, name)
    except SQLAlchemyError as exc:
        msg = f"cannot refresh the rollup of {experiment_key!r}: {exc.__class__.__name__}"
        raise StoreError(msg) from exc
    return name


def _vacuum(engine: Engine, name: str) -> None:
    """VACUUM ANALYZE a freshly built unit table (PostgreSQL, outside a transaction).

    Without it, the first fold pays for setting the visibility hints of every row the build
    wrote, and plans its joins without knowing the table's size.
    """
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql(f"VACUUM ANALYZE {name}")


def drop_rollup(
    target: StoreTarget, experiment_key: str, phase: int, columns: Sequence[OutcomeColumn]
) -> None:
    """Forget a rollup (the next refresh rebuilds it from the raw events)."""
    engine = connect(target)
    name = _table_name(experiment_key, phase, columns)
    with engine.begin() as connection:
        _state_metadata.create_all(connection)
        _units_table(name, columns).drop(connection, checkfirst=True)
        groups_table(name, columns).drop(connection, checkfirst=True)
        requests_table(name).drop(connection, checkfirst=True)
        connection.execute(rollup_state.delete().where(rollup_state.c.table_name == name))


def rollup_moments(
    target: StoreTarget,
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
    pairs = list(dict.fromkeys(products))
    names = [c.name for c in columns]
    if dimension is None:  # per (variant, day): the group rows, a handful
        query = group_select(groups_table(name, columns), columns, names, pairs)
        return collect_moments(engine, query, names, pairs)
    table = _units_table(name, columns)
    renamed = [table.c[f"c{i}"].label(c.name) for i, c in enumerate(columns)]
    dim = attribute_expression(engine, table.c.attributes_json, dimension).label("dim")
    per_unit = sa.select(
        table.c.unit_id,
        table.c.variant,
        table.c.first_ts,
        table.c.rows,
        dim,
        sa.case((table.c.variant != table.c.variant_max, 1), else_=0).label("mixed"),
        *renamed,
    ).subquery("per_unit")
    query = moment_select(per_unit, names, pairs, per_unit.c.dim)
    return collect_moments(engine, query, names, pairs)
