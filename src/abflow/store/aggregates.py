"""Sufficient statistics of an experiment, computed where the events live (SQL aggregation).

Analysis never reads raw rows: for one experiment and one phase it asks for moments
(unit counts, sums, sums of squares and cross products of per-unit values) grouped by
variant and by cohort day (the day a unit was first exposed), or by one attribute of the
exposure. Those few rows are all the statistics engine needs for means, proportions, ratios
(delta method) and CUPED, and days add up to the whole phase, which is what the cumulative
plots use.

Everything is SQLAlchemy Core, so the same query runs on SQLite, PostgreSQL, DuckDB and
ClickHouse; the only dialect-specific piece, reading one key of ``attributes_json`` for
breakdowns, is in :mod:`abflow.store.dialects`.

An outcome logged by request id alone (``unit_id`` is ``UNRESOLVED_UNIT``: a gateway process
that had not answered the request took it) belongs to the unit of the non-shadow prediction
with that request id in the analysed experiment and phase; it is joined here, at analysis,
because that prediction may reach the store later than the outcome (another replica's
spool). A cheap indexed probe skips that join when there are no such outcomes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeAlias, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from abflow.errors import InvalidArgumentError, StoreError
from abflow.store.clickhouse import clickhouse_engine, is_clickhouse_url
from abflow.store.dialects import json_text
from abflow.store.engine import create_store_engine, raise_store_error
from abflow.store.experiments import Phase, phase_records
from abflow.store.schema import (
    MAX_OUTCOME_VALUE,
    UNRESOLVED_UNIT,
    experiment_versions,
    exposures,
    outcomes,
    predictions,
)

__all__ = [
    "CELL_SEPARATOR",
    "PREDICTION_COLUMNS",
    "ExperimentHistory",
    "HasEngine",
    "Moments",
    "OutcomeColumn",
    "PhaseInfo",
    "StoreTarget",
    "Window",
    "attribute_expression",
    "collect_moments",
    "connect",
    "day_of",
    "experiment_history",
    "exposure_conditions",
    "first_exposures",
    "histogram",
    "moment_select",
    "outcome_timing",
    "prediction_moments",
    "unit_moments",
    "version_in_force",
]

SECONDS_PER_DAY = 86400

K = TypeVar("K")

GroupKey = tuple[str, int | str | None]
"""(variant, day or attribute value): how moments are grouped."""


@dataclass(frozen=True, slots=True)
class Window:
    """The slice of time analysed: ``[start, end)`` in epoch seconds; None leaves it open.

    ``until`` is a data cutoff (``abflow analyze --until``): no event stamped at or after it
    is read, not even a label or an outcome, which otherwise may arrive after ``end`` (the
    phase's end) and still count for the predictions and units of the window.
    """

    start: float | None = None
    end: float | None = None
    until: float | None = None

    def before_cutoff(self, ts: sa.ColumnElement[Any]) -> list[sa.ColumnElement[bool]]:
        """The condition that keeps events stamped ``ts`` before the cutoff (none if none)."""
        return [] if self.until is None else [ts < self.until]


@dataclass(frozen=True, slots=True)
class OutcomeColumn:
    """One per-unit value built from the outcomes of one name.

    ``reduce``: ``sum`` of values, ``count`` of events, or ``any`` (1 if some value > 0).
    ``period``: ``post`` reads outcomes from the unit's first exposure on; ``pre`` reads the
    ones before it (the CUPED covariate). A post column with a conversion window reads only
    ``first + delay_seconds <= ts <= first + delay_seconds + length_seconds`` (``first``: the
    unit's first exposure in the phase; no length: to the end of the analysis window).
    """

    name: str
    event: str
    reduce: Literal["sum", "count", "any"] = "sum"
    period: Literal["post", "pre"] = "post"
    delay_seconds: float = 0.0
    length_seconds: float | None = None

    @property
    def has_window(self) -> bool:
        return self.period == "post" and (
            self.delay_seconds != 0 or self.length_seconds is not None
        )


@dataclass(slots=True)
class Moments:
    """Per-group totals of per-unit values: ``n`` units, sums, squares and cross products."""

    n: int = 0
    rows: int = 0
    first_ts: float = math.inf
    last_ts: float = -math.inf
    sums: dict[str, float] = field(default_factory=dict)
    squares: dict[str, float] = field(default_factory=dict)
    products: dict[tuple[str, str], float] = field(default_factory=dict)

    def __add__(self, other: Moments) -> Moments:
        return Moments(
            n=self.n + other.n,
            rows=self.rows + other.rows,
            first_ts=min(self.first_ts, other.first_ts),
            last_ts=max(self.last_ts, other.last_ts),
            sums=_add(self.sums, other.sums),
            squares=_add(self.squares, other.squares),
            products=_add(self.products, other.products),
        )

    def total(self, name: str) -> float:
        """Sum of ``name`` over units (0 for a group with no rows)."""
        return self.sums.get(name, 0.0)

    def product(self, a: str, b: str) -> float:
        """Sum of ``a * b`` over units, whichever order the pair was requested in."""
        if a == b:
            return self.squares.get(a, 0.0)
        return self.products.get((a, b), self.products.get((b, a), 0.0))


def _add(left: Mapping[K, float], right: Mapping[K, float]) -> dict[K, float]:
    out = dict(left)
    for key, value in right.items():
        out[key] = out.get(key, 0.0) + value
    return out


class HasEngine(Protocol):
    """Anything that carries the store's engine, such as an ``EventStore``."""

    @property
    def engine(self) -> Engine: ...


StoreTarget: TypeAlias = str | Engine | HasEngine | None
"""Where the store's readers read: a store URL (None: the default store, ``$ABFLOW_STORE_URL``
or the embedded SQLite file), an engine, or an object that holds one (an ``EventStore``)."""


def connect(target: StoreTarget) -> Engine:
    """An engine from a URL (None: the default store), an engine, or an object with ``engine``."""
    if isinstance(target, Engine):
        return target
    inner = getattr(target, "engine", None)
    if isinstance(inner, Engine):
        return inner
    if target is None or isinstance(target, str):
        if target is not None and is_clickhouse_url(target):
            return clickhouse_engine(target)
        if target is not None and target.startswith("duckdb"):
            try:
                return sa.create_engine(target)
            except (SQLAlchemyError, ImportError) as exc:
                msg = f"cannot open DuckDB store {target!r}: {exc}"
                raise StoreError(msg) from exc
        return create_store_engine(target)
    msg = f"expected a store URL or engine, got {type(target).__name__}"
    raise InvalidArgumentError(msg)


def day_of(ts: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    return ts // float(SECONDS_PER_DAY)


CELL_SEPARATOR = "\x1f"
"""Between the attribute values of a cell key (ASCII unit separator: not in real values)."""


def attribute_expression(
    engine: Engine, column: sa.ColumnElement[Any], key: str | Sequence[str]
) -> sa.ColumnElement[Any]:
    """``attributes_json ->> key`` in the engine's dialect (the one non-portable expression).

    Several keys give one cell key: their values as text joined by :data:`CELL_SEPARATOR`
    (a missing attribute is the empty string), so units group by the cross of attributes.
    """
    if not isinstance(key, str):
        keys = list(key)
        if len(keys) == 1:
            return attribute_expression(engine, column, keys[0])
        parts = [
            sa.func.coalesce(sa.cast(attribute_expression(engine, column, k), sa.String), "")
            for k in keys
        ]
        joined: sa.ColumnElement[Any] = parts[0]
        for part in parts[1:]:
            joined = joined.concat(CELL_SEPARATOR).concat(part)
        return joined
    if not key.replace("_", "").isalnum():
        msg = f"breakdown attribute {key!r} must be letters, digits and underscores"
        raise InvalidArgumentError(msg)
    return json_text(engine.dialect.name, column, key)


def exposure_conditions(
    experiment_key: str, phase: int, window: Window
) -> list[sa.ColumnElement[bool]]:
    """The exposures of one phase of an experiment within ``window``."""
    e = exposures
    conditions = [e.c.experiment_key == experiment_key, e.c.phase == phase]
    if window.start is not None:
        conditions.append(e.c.ts >= window.start)
    if window.end is not None:
        conditions.append(e.c.ts < window.end)
    return conditions


def first_exposures(conditions: Sequence[sa.ColumnElement[bool]]) -> sa.Subquery:
    """The exposures that meet ``conditions``, each with ``rank`` 1 for its unit's first
    (earliest; ties broken by event id).

    A unit's breakdown attributes are those of its first exposure: one exposure's, so that
    a post-stratification cell of several attributes never mixes two exposures, and the
    same whether the analysis reads raw events or a rollup, which folds the first exposure
    and keeps it.
    """
    e = exposures
    rank = sa.func.row_number().over(partition_by=e.c.unit_id, order_by=(e.c.ts, e.c.event_id))
    return (
        sa.select(e.c.unit_id, e.c.variant, e.c.ts, e.c.attributes_json, rank.label("rank"))
        .where(*conditions)
        .subquery("ranked_exposures")
    )


def _mixed_units(experiment_key: str, phase: int, window: Window) -> sa.Select[Any]:
    """The units exposed to more than one variant in the phase (and window): left out of
    every metric, those read from predictions too, as the unit metrics leave them out."""
    e = exposures
    return (
        sa.select(e.c.unit_id)
        .where(*exposure_conditions(experiment_key, phase, window))
        .group_by(e.c.unit_id)
        .having(sa.func.min(e.c.variant) != sa.func.max(e.c.variant))
    )


def _units(
    engine: Engine,
    experiment_key: str,
    phase: int,
    window: Window,
    dimension: str | Sequence[str] | None,
    *,
    shared: bool = False,
) -> sa.Subquery | sa.CTE:
    """One row per exposed unit: its variant, first exposure and (optionally) an attribute,
    the one its first exposure carried (see :func:`first_exposures`)."""
    conditions = exposure_conditions(experiment_key, phase, window)
    e: Any = exposures
    if dimension is not None:
        e = first_exposures(conditions)
        conditions = []
    columns: list[sa.ColumnElement[Any]] = [
        e.c.unit_id.label("unit_id"),
        sa.func.min(e.c.variant).label("variant"),
        sa.func.max(e.c.variant).label("variant_max"),
        sa.func.min(e.c.ts).label("first_ts"),
        sa.func.count().label("n_exposures"),
    ]
    if dimension is not None:
        first_value = sa.case(
            (e.c.rank == 1, attribute_expression(engine, e.c.attributes_json, dimension))
        )
        columns.append(sa.func.min(first_value).label("dim"))
    query = sa.select(*columns).where(*conditions).group_by(e.c.unit_id)
    # Read twice (outcomes stored by request id alone are joined to it too): a common table
    # expression, which SQLite and PostgreSQL compute once when it is referenced twice.
    return query.cte("units") if shared else query.subquery("units")


def _has_unresolved(engine: Engine, events: Sequence[str]) -> bool:
    """Whether any outcome named in ``events`` waits for its unit (one ``ix_outcomes_unit`` probe)."""
    if not events:
        return False
    o = outcomes
    query = (
        sa.select(o.c.event_id)
        .where(o.c.unit_id == UNRESOLVED_UNIT, o.c.name.in_(list(events)))
        .limit(1)
    )
    try:
        with engine.connect() as connection:
            return connection.execute(query).first() is not None
    except SQLAlchemyError as exc:
        raise_store_error(exc, "look for outcomes sent by request id")


def _resolved_outcomes(
    experiment_key: str, phase: int, events: Sequence[str], window: Window
) -> sa.Subquery:
    """Outcomes stored by request id alone, each with the unit of its request's prediction."""
    o, p = outcomes, predictions
    conditions = [
        o.c.unit_id == UNRESOLVED_UNIT,
        o.c.name.in_(list(events)),
        # Wrapped so that no index can serve them: each outcome must reach its prediction
        # through ix_predictions_request. SQLite's planner, without statistics, preferred
        # ix_predictions_experiment and scanned the experiment's predictions once per outcome.
        sa.func.coalesce(p.c.experiment_key, "") == experiment_key,
        p.c.phase + 0 == phase,
        ~p.c.is_shadow,
    ]
    if window.end is not None:
        conditions.append(o.c.ts < window.end)
    conditions += window.before_cutoff(p.c.ts)
    return (
        sa.select(
            o.c.event_id,
            o.c.ts,
            o.c.name,
            o.c.value,
            sa.func.min(p.c.unit_id).label("unit_id"),  # one unit even if a caller reused ids
        )
        .select_from(o.join(p, p.c.request_id == o.c.request_id))
        .where(*conditions)
        .group_by(o.c.event_id, o.c.ts, o.c.name, o.c.value)
        .subquery("resolved_outcomes")
    )


def _late_values(
    columns: Sequence[OutcomeColumn], units: sa.Subquery | sa.CTE, resolved: sa.Subquery
) -> sa.Subquery:
    """Per-unit values of the outcomes joined by request id: one row per unit that has some."""
    return (
        sa.select(
            units.c.unit_id,
            sa.func.count(resolved.c.event_id).label("late_rows"),
            *(_outcome_value(column, units, resolved).label(column.name) for column in columns),
        )
        .select_from(units.join(resolved, resolved.c.unit_id == units.c.unit_id))
        .group_by(units.c.unit_id)
        .subquery("late_values")
    )


def _with_late(
    column: OutcomeColumn, value: sa.ColumnElement[Any], late: sa.Subquery
) -> sa.ColumnElement[Any]:
    """``value`` (from outcomes stored with their unit) combined with the late ones' value."""
    extra = sa.func.coalesce(sa.func.max(late.c[column.name]), 0)
    if column.reduce == "any":
        return sa.case((extra > 0, 1), else_=value)
    return value + extra


def outcome_timing(
    column: OutcomeColumn, ts: sa.ColumnElement[Any], first_ts: sa.ColumnElement[Any]
) -> sa.ColumnElement[bool]:
    """Whether an outcome at ``ts`` counts for a unit first exposed at ``first_ts``."""
    if column.period == "pre":
        return ts < first_ts
    start = first_ts + column.delay_seconds if column.delay_seconds else first_ts
    if column.length_seconds is None:
        return ts >= start
    return sa.and_(ts >= start, ts <= first_ts + (column.delay_seconds + column.length_seconds))


def _outcome_value(
    column: OutcomeColumn, units: sa.Subquery | sa.CTE, source: sa.FromClause | None = None
) -> sa.ColumnElement[Any]:
    o = outcomes if source is None else source
    match = sa.and_(o.c.name == column.event, outcome_timing(column, o.c.ts, units.c.first_ts))
    if column.reduce == "sum":
        return sa.func.coalesce(sa.func.sum(sa.case((match, o.c.value), else_=0.0)), 0.0)
    if column.reduce == "count":
        return sa.func.coalesce(sa.func.sum(sa.case((match, 1), else_=0)), 0)
    positive = sa.and_(match, o.c.value > 0)
    return sa.func.coalesce(sa.func.max(sa.case((positive, 1), else_=0)), 0)


def moment_select(
    per_unit: sa.Subquery,
    names: Sequence[str],
    products: Sequence[tuple[str, str]],
    group: sa.ColumnElement[Any],
) -> sa.Select[Any]:
    c = per_unit.c
    aggregates: list[sa.ColumnElement[Any]] = [
        c.variant,
        group.label("grp"),
        sa.func.count().label("n"),
        sa.func.sum(c.rows).label("rows"),
        sa.func.min(c.first_ts).label("first_ts"),
        sa.func.max(c.first_ts).label("last_ts"),
    ]
    for index, name in enumerate(names):
        value = c[name]
        aggregates.append(sa.func.sum(value).label(f"s{index}"))
        aggregates.append(sa.func.sum(value * value).label(f"q{index}"))
    for index, (a, b) in enumerate(products):
        aggregates.append(sa.func.sum(c[a] * c[b]).label(f"p{index}"))
    if "mixed" in c:
        aggregates.append(c.mixed)
        return sa.select(*aggregates).group_by(c.variant, group, c.mixed)
    return sa.select(*aggregates).group_by(c.variant, group)


def collect_moments(
    engine: Engine,
    query: sa.Select[Any],
    names: Sequence[str],
    products: Sequence[tuple[str, str]],
) -> tuple[dict[GroupKey, Moments], int]:
    """Run a :func:`moment_select`; units seen in two variants are counted, not kept."""
    result: dict[GroupKey, Moments] = {}
    mixed = 0
    try:
        with engine.connect() as connection:
            rows = connection.execute(query).all()
    except SQLAlchemyError as exc:
        raise_store_error(exc, "aggregate events")
    for row in rows:
        mapping = row._mapping
        if mapping.get("mixed"):
            mixed += int(mapping["n"])
            continue
        group = mapping["grp"]
        key: GroupKey = (
            str(mapping["variant"]),
            int(group) if isinstance(group, int | float) else group,
        )
        result[key] = Moments(
            n=int(mapping["n"]),
            rows=int(mapping["rows"] or 0),
            first_ts=float(mapping["first_ts"]),
            last_ts=float(mapping["last_ts"]),
            sums={name: float(mapping[f"s{i}"] or 0.0) for i, name in enumerate(names)},
            squares={name: float(mapping[f"q{i}"] or 0.0) for i, name in enumerate(names)},
            products={pair: float(mapping[f"p{i}"] or 0.0) for i, pair in enumerate(products)},
        )
    return result, mixed


def unit_moments(
    target: StoreTarget,
    experiment_key: str,
    phase: int,
    columns: Sequence[OutcomeColumn] = (),
    products: Iterable[tuple[str, str]] = (),
    *,
    window: Window | None = None,
    dimension: str | Sequence[str] | None = None,
) -> tuple[dict[GroupKey, Moments], int]:
    """Moments of per-unit outcome values, grouped by (variant, cohort day | attribute).

    Several attributes as ``dimension`` group by their cells (see :func:`attribute_expression`).

    Units seen in more than one variant within the phase are left out (their outcomes cannot
    be attributed); their count is the second item returned. Outcomes count from the unit's
    first exposure in this phase to the end of the window, so phases never mix.
    ``rows`` of each group is exposures plus matched outcome rows (for the report).
    """
    engine = connect(target)
    window = window or Window()
    pairs = list(dict.fromkeys(products))
    events = sorted({column.event for column in columns})
    has_late = _has_unresolved(engine, events)
    units = _units(engine, experiment_key, phase, window, dimension, shared=has_late)
    o = outcomes
    values = [_outcome_value(column, units) for column in columns]
    join_on: list[sa.ColumnElement[bool]] = [o.c.unit_id == units.c.unit_id]
    join_on.append(o.c.name.in_(events) if events else sa.false())
    if window.end is not None:
        join_on.append(o.c.ts < window.end)
    joined = units.outerjoin(o, sa.and_(*join_on))
    rows = sa.func.min(units.c.n_exposures) + sa.func.count(o.c.event_id)
    if has_late:
        resolved = _resolved_outcomes(experiment_key, phase, events, window)
        late = _late_values(columns, units, resolved)
        joined = joined.outerjoin(late, late.c.unit_id == units.c.unit_id)
        values = [
            _with_late(column, value, late) for column, value in zip(columns, values, strict=True)
        ]
        rows = rows + sa.func.coalesce(sa.func.max(late.c.late_rows), 0)
    per_unit = (
        sa.select(
            units.c.unit_id,
            units.c.variant,
            units.c.first_ts,
            rows.label("rows"),
            *(
                [sa.func.min(units.c.dim).label("dim")]
                if dimension is not None
                else [sa.literal(None).label("dim")]
            ),
            sa.case((units.c.variant != units.c.variant_max, 1), else_=0).label("mixed"),
            *(value.label(column.name) for column, value in zip(columns, values, strict=True)),
        )
        .select_from(joined)
        .group_by(units.c.unit_id, units.c.variant, units.c.variant_max, units.c.first_ts)
        .subquery("per_unit")
    )
    group = per_unit.c.dim if dimension is not None else day_of(per_unit.c.first_ts)
    names = [column.name for column in columns]
    return collect_moments(engine, moment_select(per_unit, names, pairs, group), names, pairs)


PREDICTION_COLUMNS = (
    "n_pred",
    "n_error",
    "n_fallback",
    "latency_sum",
    "cost",
    "n_labeled",
    "correct",
    "tp",
    "fp",
    "positives",
    "negatives",
    "predicted_positives",
    "bias",
    "abs_error",
    "sq_error",
)
"""Per-unit prediction values: counts, classifier confusion cells and regression errors."""

PREDICTION_PRODUCTS = (
    ("n_error", "n_pred"),
    ("n_fallback", "n_pred"),
    ("cost", "n_pred"),
    ("latency_sum", "n_pred"),
    ("correct", "n_labeled"),
    ("tp", "predicted_positives"),
    ("tp", "positives"),
    ("fp", "negatives"),
    ("bias", "n_labeled"),
    ("abs_error", "n_labeled"),
    ("sq_error", "n_labeled"),
)
"""The (numerator, denominator) pairs whose cross products the delta method needs."""


def prediction_moments(
    target: StoreTarget,
    experiment_key: str,
    phase: int,
    *,
    label_event: str = "label",
    threshold: float = 0.5,
    cost_per_prediction: float = 0.0,
    cost_per_second: float = 0.0,
    window: Window | None = None,
) -> dict[GroupKey, Moments]:
    """Moments of per-unit prediction values, grouped by (variant, first prediction day).

    Shadow predictions are left out. A prediction is labeled when an outcome named
    ``label_event`` carries its request id; it is positive when ``score >= threshold`` and the
    label is positive when its value is at least 0.5. The cost of a prediction is
    ``cost_per_prediction + latency_ms / 1000 * cost_per_second``.
    """
    engine = connect(target)
    window = window or Window()
    p = predictions
    label = outcomes.alias("label")
    conditions = [
        p.c.experiment_key == experiment_key,
        p.c.phase == phase,
        ~p.c.is_shadow,
        p.c.unit_id.not_in(_mixed_units(experiment_key, phase, window)),
    ]
    if window.start is not None:
        conditions.append(p.c.ts >= window.start)
    if window.end is not None:
        conditions.append(p.c.ts < window.end)
    has_label = label.c.value.is_not(None)
    is_positive = label.c.value >= 0.5
    predicted = p.c.score >= threshold
    error = p.c.score - label.c.value

    def count(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[Any]:
        return sa.func.sum(sa.case((condition, 1), else_=0))

    def total(condition: sa.ColumnElement[bool], value: sa.ColumnElement[Any]) -> Any:
        return sa.func.sum(sa.case((condition, value), else_=0.0))

    scored = sa.and_(has_label, p.c.score.is_not(None))
    per_unit = (
        sa.select(
            p.c.unit_id,
            p.c.variant,
            sa.func.min(p.c.ts).label("first_ts"),
            sa.literal(None).label("dim"),
            (sa.func.count() + sa.func.count(label.c.event_id)).label("rows"),
            sa.func.count().label("n_pred"),
            count(p.c.error.is_not(None)).label("n_error"),
            count(p.c.is_fallback).label("n_fallback"),
            sa.func.sum(p.c.latency_ms).label("latency_sum"),
            sa.func.sum(cost_per_prediction + p.c.latency_ms * (cost_per_second / 1000.0)).label(
                "cost"
            ),
            count(scored).label("n_labeled"),
            count(sa.and_(scored, predicted == is_positive)).label("correct"),
            count(sa.and_(scored, predicted, is_positive)).label("tp"),
            count(sa.and_(scored, predicted, ~is_positive)).label("fp"),
            count(sa.and_(scored, is_positive)).label("positives"),
            count(sa.and_(scored, ~is_positive)).label("negatives"),
            count(sa.and_(scored, predicted)).label("predicted_positives"),
            total(scored, error).label("bias"),
            total(scored, sa.func.abs(error)).label("abs_error"),
            total(scored, error * error).label("sq_error"),
        )
        .select_from(
            p.outerjoin(
                label,
                sa.and_(
                    label.c.request_id == p.c.request_id,
                    label.c.name == label_event,
                    *window.before_cutoff(label.c.ts),
                ),
            )
        )
        .where(*conditions)
        .group_by(p.c.unit_id, p.c.variant)
        .subquery("per_unit")
    )
    names = list(PREDICTION_COLUMNS)
    pairs = list(PREDICTION_PRODUCTS)
    query = moment_select(per_unit, names, pairs, day_of(per_unit.c.first_ts))
    moments, _ = collect_moments(engine, query, names, pairs)
    return moments


def histogram(
    target: StoreTarget,
    experiment_key: str,
    phase: int,
    *,
    source: Literal["latency", "outcome"] = "latency",
    event: str | None = None,
    bin_width: float = 0.25,
    window: Window | None = None,
) -> dict[str, list[tuple[float, int]]]:
    """Counts of values in bins of ``bin_width`` per variant: ``{variant: [(lower, count)]}``.

    ``latency`` reads ``predictions.latency_ms`` (shadow calls excluded); ``outcome`` reads
    the values of outcomes named ``event`` from each unit's first exposure on. Quantiles are
    read off these bins, so their resolution is ``bin_width`` while the transfer stays small.
    Values beyond :data:`MAX_OUTCOME_VALUE` in magnitude are counted in a bin whose lower
    edge is ``inf``.
    """
    if not bin_width > 0:
        msg = f"bin_width must be positive, got {bin_width}"
        raise InvalidArgumentError(msg)
    engine = connect(target)
    window = window or Window()
    if source == "latency":
        p = predictions
        value = p.c.latency_ms
        conditions = [
            p.c.experiment_key == experiment_key,
            p.c.phase == phase,
            ~p.c.is_shadow,
            p.c.unit_id.not_in(_mixed_units(experiment_key, phase, window)),
        ]
        if window.start is not None:
            conditions.append(p.c.ts >= window.start)
        if window.end is not None:
            conditions.append(p.c.ts < window.end)
        base = sa.select(p.c.variant.label("variant"), value.label("value")).where(*conditions)
    else:
        if event is None:
            msg = "an outcome histogram needs the outcome name (event)"
            raise InvalidArgumentError(msg)
        units = _units(engine, experiment_key, phase, window, None)
        o = outcomes
        join_on = [o.c.unit_id == units.c.unit_id, o.c.name == event, o.c.ts >= units.c.first_ts]
        if window.end is not None:
            join_on.append(o.c.ts < window.end)
        base = (
            sa.select(units.c.variant.label("variant"), o.c.value.label("value"))
            .select_from(units.join(o, sa.and_(*join_on)))
            .where(units.c.variant == units.c.variant_max)
        )
        if _has_unresolved(engine, [event]):
            r = _resolved_outcomes(experiment_key, phase, [event], window)
            late = (
                sa.select(units.c.variant.label("variant"), r.c.value.label("value"))
                .select_from(
                    units.join(
                        r, sa.and_(r.c.unit_id == units.c.unit_id, r.c.ts >= units.c.first_ts)
                    )
                )
                .where(units.c.variant == units.c.variant_max)
            )
            base = sa.union_all(base, late)  # type: ignore[assignment]
    values = base.subquery("values")
    # Past the bound the bin index outgrows a 64-bit integer (SQLite's FLOOR then fails): such
    # values land in one bin whose lower edge is infinite, and their quantile is undefined.
    bucket = sa.case(
        (sa.func.abs(values.c.value) <= MAX_OUTCOME_VALUE, values.c.value // bin_width),
        else_=None,
    )
    query = (
        sa.select(values.c.variant, bucket.label("bucket"), sa.func.count().label("n"))
        .group_by(values.c.variant, bucket)
        .order_by(values.c.variant, bucket)
    )
    out: dict[str, list[tuple[float, int]]] = {}
    try:
        with engine.connect() as connection:
            for variant, index, n in connection.execute(query):
                lower = math.inf if index is None else int(index) * bin_width
                out.setdefault(str(variant), []).append((lower, int(n)))
    except SQLAlchemyError as exc:
        raise_store_error(exc, "build a histogram of events")
    return out


@dataclass(frozen=True, slots=True)
class PhaseInfo:
    """One phase of an experiment: its weights and when it ran (``ended_at`` None: running)."""

    phase: int
    spec_version: int | None
    weights: list[float] | None
    coverage: float | None
    started_at: float | None
    ended_at: float | None

    @classmethod
    def of(cls, phase: Phase) -> PhaseInfo:
        """A registered phase (a row of the phases table) as analysis reads it."""
        return cls(
            phase.phase,
            phase.spec_version,
            list(phase.weights),
            phase.coverage,
            phase.started_at,
            phase.ended_at,
        )


@dataclass(frozen=True, slots=True)
class ExperimentHistory:
    """What the store knows of an experiment: its latest spec and its phases, oldest first."""

    spec_json: str | None
    spec_version: int | None
    spec_hash: str | None
    phases: list[PhaseInfo]
    in_force: tuple[float, float] | None = None
    """For a version asked by number: from its registration until the next one (``inf`` for
    the latest), the time the phases it governed overlap."""


def _phases_seen(connection: Connection, experiment_key: str) -> list[int]:
    """Distinct phases in the exposures, one index lookup each (a DISTINCT scans them all)."""
    e = exposures
    found: list[int] = []
    while True:
        query = sa.select(sa.func.min(e.c.phase)).where(e.c.experiment_key == experiment_key)
        if found:
            query = query.where(e.c.phase > found[-1])
        number = connection.execute(query).scalar()
        if number is None:
            return found
        found.append(int(number))


def version_in_force(target: StoreTarget, experiment_key: str, before: float) -> int | None:
    """The newest spec version registered before ``before`` (epoch seconds), or None: the
    spec that governed an event logged just before that instant."""
    engine = connect(target)
    v = experiment_versions
    query = sa.select(sa.func.max(v.c.version)).where(
        v.c.experiment_key == experiment_key, v.c.created_at < before
    )
    try:
        with engine.connect() as connection:
            found = connection.execute(query).scalar()
    except SQLAlchemyError as exc:
        raise_store_error(exc, f"read experiment {experiment_key!r} from the store")
    return None if found is None else int(found)


def experiment_history(
    target: StoreTarget, experiment_key: str, spec_version: int | None = None
) -> ExperimentHistory:
    """The latest registered spec (or version ``spec_version``; None if there is no such
    version) and every phase; phases seen only in exposures are included."""
    engine = connect(target)
    v = experiment_versions
    query = sa.select(v.c.version, v.c.spec_json, v.c.spec_hash, v.c.created_at).where(
        v.c.experiment_key == experiment_key
    )
    if spec_version is not None:
        query = query.where(v.c.version == spec_version)
    in_force = None
    try:
        with engine.connect() as connection:
            latest = connection.execute(query.order_by(v.c.version.desc()).limit(1)).first()
            if spec_version is not None and latest is not None:
                replaced_at = connection.execute(
                    sa.select(sa.func.min(v.c.created_at)).where(
                        v.c.experiment_key == experiment_key, v.c.version > spec_version
                    )
                ).scalar()
                until = math.inf if replaced_at is None else float(replaced_at)
                in_force = (float(latest.created_at), until)
            registered = phase_records(connection, experiment_key)
            seen = _phases_seen(connection, experiment_key)
    except SQLAlchemyError as exc:
        raise_store_error(exc, f"read experiment {experiment_key!r} from the store")
    known = {p.phase: PhaseInfo.of(p) for p in registered}
    for number in seen:
        known.setdefault(int(number), PhaseInfo(int(number), None, None, None, None, None))
    return ExperimentHistory(
        spec_json=None if latest is None else str(latest.spec_json),
        spec_version=None if latest is None else int(latest.version),
        spec_hash=None if latest is None else str(latest.spec_hash),
        phases=[known[k] for k in sorted(known)],
        in_force=in_force,
    )
