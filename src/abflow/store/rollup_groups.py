"""Group rollups: the moments of the per-unit rollup, kept per (variant, day) by the same fold.

An analysis needs, per variant and cohort day, the number of units and the sums, squares and
cross products of their per-unit values. Those are additive, so they need not be recomputed
from every unit: a fold changes only the units its new events touch, and for those units the
group table subtracts their contribution before the fold and adds it after. An analysis with
the rollup current then reads a handful of rows, and a fold costs time in proportion to the
units it touches, not to all units.

The one change that is not a plain add is a unit leaving its group (a second variant makes it
"mixed"). A minimum or maximum cannot be subtracted, so the groups it left are recomputed
from the unit rows of that day: exact, and rare (a unit switching variant within a phase),
but that fold then scans the unit table (there is no index on ``first_ts``).

All of it is set-based SQL in the fold's transaction (scratch tables, ``UPDATE … FROM``);
no unit row travels to Python.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import combinations
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from abflow.store.aggregates import SECONDS_PER_DAY, OutcomeColumn, day_of

__all__ = [
    "SCRATCH_PREFIXES",
    "analyze_scratch",
    "apply_fold",
    "create_if_missing",
    "create_scratch",
    "drop_scratch",
    "group_select",
    "groups_table",
    "probing_by_key",
    "rebuild_groups",
]

_KEY = ("variant", "day", "mixed")

SCRATCH_PREFIXES = ["TEMPORARY"]
"""Scratch tables are temporary: private to the fold's connection, and not logged or synced
(PostgreSQL writes no WAL for them, SQLite keeps them out of the main file's journal)."""


def analyze_scratch(connection: Connection, table: sa.Table) -> None:
    """Give PostgreSQL's planner the statistics of a freshly filled scratch table.

    Only where a plan depends on them: the newly exposed units are joined to ``outcomes``
    through its unit index, which is right for a few units and wrong for a first build. The
    touched-unit tables are not analysed (0.5 s at 10M events): their joins with the unit
    table probe its key (:func:`probing_by_key`) and the others are hash joins either way.
    """
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"ANALYZE {table.name}")


@contextmanager
def probing_by_key(connection: Connection) -> Iterator[None]:
    """Join a few touched units to the unit table by probing its key (PostgreSQL).

    PostgreSQL's planner prices a probe as a random read from disk and so prefers to hash
    join by scanning every unit row (1.5M at 10M events: about a second per statement),
    while the probes of a fold hit cached pages. Only for statements whose other side is
    the touched units; ``SET LOCAL`` values end with the transaction, and are reset here.
    """
    if connection.dialect.name != "postgresql":
        yield
        return
    connection.exec_driver_sql("SET LOCAL enable_hashjoin = off")
    connection.exec_driver_sql("SET LOCAL enable_mergejoin = off")
    try:
        yield
    finally:
        connection.exec_driver_sql("SET LOCAL enable_hashjoin = on")
        connection.exec_driver_sql("SET LOCAL enable_mergejoin = on")


def create_scratch(connection: Connection, table: sa.Table) -> None:
    """(Re)create a scratch table without a catalog lookup (slow on DuckDB: ~20 ms each)."""
    drop_scratch(connection, table)
    table.create(connection, checkfirst=False)


def drop_scratch(connection: Connection, table: sa.Table) -> None:
    connection.exec_driver_sql(f"DROP TABLE IF EXISTS {table.name}")


def create_if_missing(connection: Connection, table: sa.Table) -> None:
    connection.execute(sa.schema.CreateTable(table, if_not_exists=True))


def _pairs(width: int) -> list[tuple[int, int]]:
    return list(combinations(range(width), 2))


def groups_table(units_name: str, columns: Sequence[OutcomeColumn]) -> sa.Table:
    """The group table of the per-unit rollup ``units_name``: one row per (variant, day, mixed).

    Every pair of columns has its cross product, so any metric built on these columns can be
    read without knowing in advance which products it needs.
    """
    width = len(columns)
    return sa.Table(
        units_name + "_g",
        sa.MetaData(),
        sa.Column("variant", sa.String(128), nullable=False),
        sa.Column("day", sa.Double, nullable=False),
        sa.Column("mixed", sa.Integer, nullable=False),
        sa.Column("n", sa.BigInteger, nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("first_ts", sa.Double),
        sa.Column("last_ts", sa.Double),
        *(sa.Column(f"s{i}", sa.Double, nullable=False) for i in range(width)),
        *(sa.Column(f"q{i}", sa.Double, nullable=False) for i in range(width)),
        *(sa.Column(f"p{i}_{j}", sa.Double, nullable=False) for i, j in _pairs(width)),
    )


def _value_columns(width: int) -> list[str]:
    return (
        [f"s{i}" for i in range(width)]
        + [f"q{i}" for i in range(width)]
        + [f"p{i}_{j}" for i, j in _pairs(width)]
    )


def _mixed(units: sa.Table | sa.Subquery) -> sa.ColumnElement[Any]:
    return sa.case((units.c.variant != units.c.variant_max, 1), else_=0)


def _aggregate(
    units: sa.Table,
    width: int,
    sign: int,
    source: sa.FromClause | None = None,
    where: sa.ColumnElement[bool] | None = None,
) -> sa.Select[Any]:
    """Moments of unit rows (``units``, or ``source`` joined to it), per (variant, day, mixed).

    ``units`` is any table shaped like the unit table. ``sign`` -1 gives the contribution to
    subtract; its extremes are NULL (a minimum cannot be subtracted).
    """
    u = units
    day, mixed = day_of(u.c.first_ts), _mixed(u)
    values: list[sa.ColumnElement[Any]] = []
    for i in range(width):
        values.append(sa.func.sum(u.c[f"c{i}"]))
    for i in range(width):
        values.append(sa.func.sum(u.c[f"c{i}"] * u.c[f"c{i}"]))
    for i, j in _pairs(width):
        values.append(sa.func.sum(u.c[f"c{i}"] * u.c[f"c{j}"]))
    extremes: list[sa.ColumnElement[Any]] = (
        [sa.func.min(u.c.first_ts), sa.func.max(u.c.first_ts)]
        if sign > 0
        else [sa.null(), sa.null()]
    )
    counts: list[sa.ColumnElement[Any]] = [sa.func.count(), sa.func.sum(u.c.rows)]
    if sign < 0:
        counts = [-value for value in counts]
        values = [-value for value in values]
    query = (
        sa.select(u.c.variant, day, mixed, *counts, *extremes, *values)
        .select_from(source if source is not None else u)
        .group_by(u.c.variant, day, mixed)
    )
    return query if where is None else query.where(where)


def _group_columns(width: int) -> list[str]:
    return [*_KEY, "n", "rows", "first_ts", "last_ts", *_value_columns(width)]


def rebuild_groups(connection: Connection, units: sa.Table, groups: sa.Table, width: int) -> None:
    """Fill the group table from every unit row (a first build, or an older rollup adopted)."""
    connection.execute(groups.delete())
    query = _aggregate(units, width, 1)
    connection.execute(groups.insert().from_select(_group_columns(width), query))


def _scratch(name: str, width: int) -> sa.Table:
    """Signed contributions to add to the group table (no key: a group appears up to twice)."""
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("variant", sa.String(128)),
        sa.Column("day", sa.Double),
        sa.Column("mixed", sa.Integer),
        sa.Column("n", sa.BigInteger),
        sa.Column("rows", sa.BigInteger),
        sa.Column("first_ts", sa.Double),
        sa.Column("last_ts", sa.Double),
        *(sa.Column(name, sa.Double) for name in _value_columns(width)),
        prefixes=SCRATCH_PREFIXES,
    )


def apply_fold(
    connection: Connection,
    units: sa.Table,
    groups: sa.Table,
    before: sa.Table,
    after: sa.Table,
    width: int,
) -> None:
    """Move ``groups`` from the touched units' rows ``before`` a fold to their rows ``after``.

    ``units`` must already hold the ``after`` rows: it is read only to rebuild a group that a
    unit left.
    """
    delta = _scratch(units.name + "_delta", width)
    create_scratch(connection, delta)
    try:
        names = _group_columns(width)
        old = _aggregate(before, width, -1, where=before.c.variant.is_not(None))
        connection.execute(delta.insert().from_select(names, old))
        connection.execute(delta.insert().from_select(names, _aggregate(after, width, 1)))
        _merge(connection, groups, delta, width)
        _recompute_left_groups(connection, units, groups, before, after, width)
    finally:
        drop_scratch(connection, delta)


def _same_key(a: sa.Table | sa.Subquery, b: sa.Table | sa.Subquery) -> sa.ColumnElement[bool]:
    return sa.and_(*(a.c[k] == b.c[k] for k in _KEY))


def _merge(connection: Connection, groups: sa.Table, delta: sa.Table, width: int) -> None:
    """Add the signed contributions to the group rows; new groups are inserted, empty ones go."""
    d, g = delta, groups
    additive = ["n", "rows", *_value_columns(width)]
    summed = (
        sa.select(
            *(d.c[k] for k in _KEY),
            *(sa.func.sum(d.c[name]).label(name) for name in additive),
            sa.func.min(d.c.first_ts).label("first_ts"),
            sa.func.max(d.c.last_ts).label("last_ts"),
        )
        .group_by(*(d.c[k] for k in _KEY))
        .subquery("summed")
    )
    changes: dict[str, Any] = {name: g.c[name] + summed.c[name] for name in additive}
    changes["first_ts"] = sa.case(
        (sa.or_(g.c.first_ts.is_(None), summed.c.first_ts < g.c.first_ts), summed.c.first_ts),
        else_=g.c.first_ts,
    )
    changes["last_ts"] = sa.case(
        (sa.or_(g.c.last_ts.is_(None), summed.c.last_ts > g.c.last_ts), summed.c.last_ts),
        else_=g.c.last_ts,
    )
    connection.execute(sa.update(g).where(_same_key(g, summed)).values(**changes))
    columns = _group_columns(width)
    connection.execute(
        g.insert().from_select(
            columns,
            sa.select(*(summed.c[name] for name in columns)).where(
                ~sa.exists().where(_same_key(g, summed))
            ),
        )
    )
    connection.execute(g.delete().where(g.c.n == 0))


def _recompute_left_groups(
    connection: Connection,
    units: sa.Table,
    groups: sa.Table,
    before: sa.Table,
    after: sa.Table,
    width: int,
) -> None:
    """Groups a unit left (it became mixed) are rebuilt from that day's unit rows."""
    u, b, a = units, before, after
    old_mixed = _mixed(b)
    moved = sa.or_(b.c.variant != a.c.variant, old_mixed != _mixed(a))
    left = (
        sa.select(b.c.variant, day_of(b.c.first_ts).label("day"), old_mixed.label("mixed"))
        .select_from(b.join(a, a.c.unit_id == b.c.unit_id))
        .where(b.c.variant.is_not(None), moved)
        .distinct()
        .subquery("left_groups")
    )
    if connection.execute(sa.select(sa.func.count()).select_from(left)).scalar_one() == 0:
        return
    # the day as a range on first_ts (a day of slack either side for float rounding) first,
    # then exactly; an index on first_ts would make this a range read instead of a scan
    day_start = left.c.day * float(SECONDS_PER_DAY)
    in_group = sa.and_(
        u.c.variant == left.c.variant,
        _mixed(u) == left.c.mixed,
        u.c.first_ts >= day_start - float(SECONDS_PER_DAY),
        u.c.first_ts < day_start + 2.0 * float(SECONDS_PER_DAY),
        day_of(u.c.first_ts) == left.c.day,
    )
    g = groups
    connection.execute(g.delete().where(sa.exists().where(_same_key(g, left))))
    rebuilt = _aggregate(u, width, 1, u.join(left, in_group))
    connection.execute(g.insert().from_select(_group_columns(width), rebuilt))


def group_select(
    groups: sa.Table,
    columns: Sequence[OutcomeColumn],
    names: Sequence[str],
    products: Sequence[tuple[str, str]],
) -> sa.Select[Any]:
    """The group rows labelled as :func:`abflow.store.aggregates.collect_moments` reads them."""
    index = {column.name: i for i, column in enumerate(columns)}
    g = groups
    labelled: list[sa.ColumnElement[Any]] = [
        g.c.variant,
        g.c.day.label("grp"),
        g.c.n,
        g.c.rows,
        g.c.first_ts,
        g.c.last_ts,
        g.c.mixed,
    ]
    for k, name in enumerate(names):
        labelled.append(g.c[f"s{index[name]}"].label(f"s{k}"))
        labelled.append(g.c[f"q{index[name]}"].label(f"q{k}"))
    for k, (a, b) in enumerate(products):
        i, j = sorted((index[a], index[b]))
        source = g.c[f"q{i}"] if i == j else g.c[f"p{i}_{j}"]
        labelled.append(source.label(f"p{k}"))
    return sa.select(*labelled)
