"""SQL aggregates of shadow predictions paired with the served prediction of the same request.

A shadow variant's prediction row carries the served prediction's ``request_id``: joining
the two gives one pair per request that both models answered, in the analysed experiment
and phase. Per shadow variant this module sums what paired inference needs (counts of the
2x2 decision and correctness tables, sums and squares of score and Brier differences,
error and timeout counts) and bins score differences and both latencies, so a few rows
leave the database whatever the traffic. Labels are outcomes named ``label_event`` with
the request's id (the largest value when one was sent twice). SQLAlchemy Core only: the
same queries run on SQLite, PostgreSQL and DuckDB.

:func:`shadow_segment_totals` groups the same sums by an exposure attribute of the served
request's unit (its first value in the phase), so that a shadow model worse on one segment
only is seen there; requests whose unit has no exposure in the phase form the ``None``
segment. :func:`served_request_count` counts the requests the served model answered, the
denominator of the share that was mirrored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from abflow.errors import InvalidArgumentError
from abflow.store.aggregates import (
    StoreTarget,
    Window,
    attribute_expression,
    connect,
    exposure_conditions,
    first_exposures,
)
from abflow.store.dialects import has_correlated_lookups
from abflow.store.engine import raise_store_error
from abflow.store.schema import exposures, outcomes, predictions

__all__ = [
    "ShadowPairTotals",
    "served_request_count",
    "shadow_join",
    "shadow_pair_totals",
    "shadow_segment_totals",
]


@dataclass(frozen=True, slots=True)
class ShadowPairTotals:
    """Sums over the requests one shadow variant and the served model both received.

    "scored" pairs are those where both calls returned a score without error; decisions are
    ``score >= threshold``; a label is positive when its value is at least 0.5. ``*_only``
    counts are the discordant cells: the first model named does it, the other does not.
    """

    variant: str
    model_version: str
    pairs: int = 0
    served_errors: int = 0
    shadow_errors: int = 0
    served_timeouts: int = 0
    shadow_timeouts: int = 0
    served_only_errors: int = 0
    shadow_only_errors: int = 0
    served_latency_sum: float = 0.0
    latency_diff_sum: float = 0.0
    latency_diff_squares: float = 0.0
    scored: int = 0
    served_score_sum: float = 0.0
    diff_sum: float = 0.0
    diff_squares: float = 0.0
    both_positive: int = 0
    served_only_positive: int = 0
    shadow_only_positive: int = 0
    labeled: int = 0
    served_correct: int = 0
    shadow_correct: int = 0
    served_only_correct: int = 0
    shadow_only_correct: int = 0
    positives: int = 0
    served_tp: int = 0
    shadow_tp: int = 0
    served_only_tp: int = 0
    shadow_only_tp: int = 0
    negatives: int = 0
    served_fp: int = 0
    shadow_fp: int = 0
    served_only_fp: int = 0
    shadow_only_fp: int = 0
    served_predicted_positive: int = 0
    shadow_predicted_positive: int = 0
    served_bias: float = 0.0
    shadow_bias: float = 0.0
    served_brier_sum: float = 0.0
    brier_diff_sum: float = 0.0
    brier_diff_squares: float = 0.0
    diff_bins: list[tuple[float, int]] = field(default_factory=list)
    """``(lower edge, count)`` of shadow minus served score, in ``diff_bin_width`` bins."""
    served_latency_bins: list[tuple[float, int]] = field(default_factory=list)
    shadow_latency_bins: list[tuple[float, int]] = field(default_factory=list)


_NUMBERS = {
    f.name: int if f.type == "int" else float
    for f in fields(ShadowPairTotals)
    if f.type in ("int", "float")
}
"""Summed columns and the type each is read as (PostgreSQL sums come back as Decimal)."""


def shadow_join(
    served: sa.FromClause, shadow: sa.FromClause, experiment_key: str, phase: int, window: Window
) -> tuple[list[sa.ColumnElement[bool]], sa.ColumnElement[bool]]:
    """The filters and the join condition that pair each shadow prediction of a phase with
    its served prediction (the window applies to the served prediction's time, the data
    cutoff to the shadow's as well).

    Literal filters on the shadow side only, and the served side's experiment and phase
    behind coalesce(), so that each shadow row finds its served row through the request-id
    index: SQLite otherwise propagates the literals and loops over both experiment ranges
    (quadratic in the phase's predictions).
    """
    conditions = [
        shadow.c.experiment_key == experiment_key,
        shadow.c.phase == phase,
        shadow.c.is_shadow,
    ]
    if window.start is not None:
        conditions.append(served.c.ts >= window.start)
    if window.end is not None:
        conditions.append(served.c.ts < window.end)
    conditions += window.before_cutoff(shadow.c.ts)
    join_on = sa.and_(
        served.c.request_id == shadow.c.request_id,
        sa.func.coalesce(served.c.experiment_key, "") == shadow.c.experiment_key,
        sa.func.coalesce(served.c.phase, -1) == shadow.c.phase,
        ~served.c.is_shadow,
    )
    return conditions, join_on


def _pairs(
    experiment_key: str,
    phase: int,
    label_event: str,
    window: Window,
    segment: Callable[[Any], sa.ColumnElement[Any]] | None = None,
    *,
    correlated: bool = True,
    segments: sa.Subquery | None = None,
) -> sa.Subquery:
    """One row per request both models answered; ``segment`` builds a column from the
    served prediction's alias (:func:`shadow_segment_totals`). ``correlated=False`` joins
    the labels grouped by request id instead, and ``segments`` (``unit_id``, ``seg``) in
    place of ``segment``: for dialects without correlated lookups here (ClickHouse)."""
    served = predictions.alias("served")
    shadow = predictions.alias("shadow")
    # A correlated lookup (indexed by request id), not a grouped subquery: SQLite would
    # otherwise scan the grouped labels once per pair.
    label: sa.ColumnElement[Any]
    labels: sa.Subquery | None = None
    if correlated:
        label = (
            sa.select(sa.func.max(outcomes.c.value))
            .where(
                outcomes.c.request_id == served.c.request_id,
                outcomes.c.name == label_event,
                *window.before_cutoff(outcomes.c.ts),
            )
            .scalar_subquery()
        )
    else:
        labels = (
            sa.select(outcomes.c.request_id, sa.func.max(outcomes.c.value).label("y"))
            .where(outcomes.c.name == label_event, *window.before_cutoff(outcomes.c.ts))
            .group_by(outcomes.c.request_id)
            .subquery("labels")
        )
        label = labels.c.y
    conditions, join_on = shadow_join(served, shadow, experiment_key, phase, window)
    source = shadow.join(served, join_on)
    if labels is not None:
        source = source.outerjoin(labels, labels.c.request_id == served.c.request_id)
    if segments is not None:
        source = source.outerjoin(segments, segments.c.unit_id == served.c.unit_id)
    return (
        sa.select(
            shadow.c.variant.label("variant"),
            shadow.c.model_version.label("model_version"),
            served.c.score.label("s0"),
            shadow.c.score.label("s1"),
            served.c.latency_ms.label("l0"),
            shadow.c.latency_ms.label("l1"),
            served.c.error.label("e0"),
            shadow.c.error.label("e1"),
            label.label("y"),
            *([] if segment is None else [segment(served).label("seg")]),
            *([] if segments is None else [segments.c.seg.label("seg")]),
        )
        .select_from(source)
        .where(*conditions)
        .subquery("pairs")
    )


def _totals_query(
    pairs: sa.Subquery, threshold: float, *, by_segment: bool = False
) -> sa.Select[Any]:
    c = pairs.c

    def count(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[Any]:
        return sa.func.sum(sa.case((condition, 1), else_=0))

    def total(condition: sa.ColumnElement[bool], value: sa.ColumnElement[Any]) -> Any:
        return sa.func.sum(sa.case((condition, value), else_=0.0))

    def timed_out(error: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
        return sa.func.lower(error).like("%timeout%")

    scored = sa.and_(c.e0.is_(None), c.e1.is_(None), c.s0.is_not(None), c.s1.is_not(None))
    labeled = sa.and_(scored, c.y.is_not(None))
    p0, p1 = c.s0 >= threshold, c.s1 >= threshold
    positive = c.y >= 0.5
    ok0, ok1 = p0 == positive, p1 == positive
    d = c.s1 - c.s0
    brier = (c.s1 - c.y) * (c.s1 - c.y) - (c.s0 - c.y) * (c.s0 - c.y)
    on_pos, on_neg = sa.and_(labeled, positive), sa.and_(labeled, ~positive)
    columns: dict[str, Any] = {
        "pairs": sa.func.count(),
        "served_errors": count(c.e0.is_not(None)),
        "shadow_errors": count(c.e1.is_not(None)),
        "served_timeouts": count(timed_out(c.e0)),
        "shadow_timeouts": count(timed_out(c.e1)),
        "served_only_errors": count(sa.and_(c.e0.is_not(None), c.e1.is_(None))),
        "shadow_only_errors": count(sa.and_(c.e0.is_(None), c.e1.is_not(None))),
        "served_latency_sum": sa.func.sum(c.l0),
        "latency_diff_sum": sa.func.sum(c.l1 - c.l0),
        "latency_diff_squares": sa.func.sum((c.l1 - c.l0) * (c.l1 - c.l0)),
        "scored": count(scored),
        "served_score_sum": total(scored, c.s0),
        "diff_sum": total(scored, d),
        "diff_squares": total(scored, d * d),
        "both_positive": count(sa.and_(scored, p0, p1)),
        "served_only_positive": count(sa.and_(scored, p0, ~p1)),
        "shadow_only_positive": count(sa.and_(scored, ~p0, p1)),
        "labeled": count(labeled),
        "served_correct": count(sa.and_(labeled, ok0)),
        "shadow_correct": count(sa.and_(labeled, ok1)),
        "served_only_correct": count(sa.and_(labeled, ok0, ~ok1)),
        "shadow_only_correct": count(sa.and_(labeled, ~ok0, ok1)),
        "positives": count(on_pos),
        "served_tp": count(sa.and_(on_pos, p0)),
        "shadow_tp": count(sa.and_(on_pos, p1)),
        "served_only_tp": count(sa.and_(on_pos, p0, ~p1)),
        "shadow_only_tp": count(sa.and_(on_pos, ~p0, p1)),
        "negatives": count(on_neg),
        "served_fp": count(sa.and_(on_neg, p0)),
        "shadow_fp": count(sa.and_(on_neg, p1)),
        "served_only_fp": count(sa.and_(on_neg, p0, ~p1)),
        "shadow_only_fp": count(sa.and_(on_neg, ~p0, p1)),
        "served_predicted_positive": count(sa.and_(labeled, p0)),
        "shadow_predicted_positive": count(sa.and_(labeled, p1)),
        "served_bias": total(labeled, c.s0 - c.y),
        "shadow_bias": total(labeled, c.s1 - c.y),
        "served_brier_sum": total(labeled, (c.s0 - c.y) * (c.s0 - c.y)),
        "brier_diff_sum": total(labeled, brier),
        "brier_diff_squares": total(labeled, brier * brier),
    }
    keys = [c.variant, c.seg] if by_segment else [c.variant]
    return (
        sa.select(
            *keys,
            sa.func.max(c.model_version).label("model_version"),
            *(value.label(name) for name, value in columns.items()),
        )
        .group_by(*keys)
        .order_by(*keys)
    )


def _bins_query(
    pairs: sa.Subquery, value: sa.ColumnElement[Any], where: Any, width: float
) -> sa.Select[Any]:
    bucket = value // width
    return (
        sa.select(pairs.c.variant, bucket.label("bucket"), sa.func.count().label("n"))
        .where(where)
        .group_by(pairs.c.variant, bucket)
        .order_by(pairs.c.variant, bucket)
    )


def shadow_pair_totals(
    target: StoreTarget,
    experiment_key: str,
    phase: int,
    *,
    threshold: float = 0.5,
    label_event: str = "label",
    window: Window | None = None,
    diff_bin_width: float = 0.01,
    latency_bin_ms: float = 0.25,
) -> list[ShadowPairTotals]:
    """Paired sums per shadow variant (sorted by name); empty without shadow predictions."""
    if not (diff_bin_width > 0 and latency_bin_ms > 0):
        msg = f"bin widths must be positive, got {diff_bin_width} and {latency_bin_ms}"
        raise InvalidArgumentError(msg)
    engine = connect(target)
    correlated = has_correlated_lookups(engine.dialect.name)
    pairs = _pairs(experiment_key, phase, label_event, window or Window(), correlated=correlated)
    c = pairs.c
    scored = sa.and_(c.e0.is_(None), c.e1.is_(None), c.s0.is_not(None), c.s1.is_not(None))
    queries = {
        "diff_bins": (_bins_query(pairs, c.s1 - c.s0, scored, diff_bin_width), diff_bin_width),
        "served_latency_bins": (
            _bins_query(pairs, c.l0, sa.true(), latency_bin_ms),
            latency_bin_ms,
        ),
        "shadow_latency_bins": (
            _bins_query(pairs, c.l1, sa.true(), latency_bin_ms),
            latency_bin_ms,
        ),
    }
    try:
        with engine.connect() as connection:
            rows = connection.execute(_totals_query(pairs, threshold)).all()
            binned = {
                name: (connection.execute(query).all(), width)
                for name, (query, width) in queries.items()
            }
    except SQLAlchemyError as exc:
        raise_store_error(exc, "aggregate shadow predictions")
    out = []
    for row in rows:
        m = row._mapping
        variant = str(m["variant"])
        values = _values(m)
        for name, (bin_rows, width) in binned.items():
            values[name] = [
                (float(b.bucket) * width, int(b.n)) for b in bin_rows if str(b.variant) == variant
            ]
        out.append(
            ShadowPairTotals(variant=variant, model_version=str(m["model_version"]), **values)
        )
    return out


def _values(m: Any) -> dict[str, Any]:
    return {name: kind(m[name] or 0) for name, kind in _NUMBERS.items()}


def shadow_segment_totals(
    target: StoreTarget,
    experiment_key: str,
    phase: int,
    attribute: str,
    *,
    threshold: float = 0.5,
    label_event: str = "label",
    window: Window | None = None,
) -> dict[str, list[tuple[str | None, ShadowPairTotals]]]:
    """Per shadow variant, ``(segment value, sums)`` for each value of exposure attribute
    ``attribute`` (None: no exposure or no such attribute), sorted; no bins."""
    engine = connect(target)
    window = window or Window()
    e = exposures
    value = attribute_expression(engine, e.c.attributes_json, attribute)
    in_window = exposure_conditions(experiment_key, phase, window)

    def segment(served: Any) -> sa.ColumnElement[Any]:
        # The value of the unit's first exposure in the window, as breakdowns take it
        # (first_exposures), looked up per pair (a unit has few exposures).
        return (
            sa.select(value)
            .where(*in_window, e.c.unit_id == served.c.unit_id)
            .order_by(e.c.ts, e.c.event_id)
            .limit(1)
            .scalar_subquery()
        )

    if has_correlated_lookups(engine.dialect.name):
        pairs = _pairs(experiment_key, phase, label_event, window, segment)
    else:
        ranked = first_exposures(in_window)
        first = attribute_expression(engine, ranked.c.attributes_json, attribute)
        first_values = (
            sa.select(
                ranked.c.unit_id, sa.func.min(sa.case((ranked.c.rank == 1, first))).label("seg")
            )
            .group_by(ranked.c.unit_id)
            .subquery("segments")
        )
        pairs = _pairs(
            experiment_key, phase, label_event, window, correlated=False, segments=first_values
        )
    query = _totals_query(pairs, threshold, by_segment=True)
    try:
        with engine.connect() as connection:
            rows = connection.execute(query).all()
    except SQLAlchemyError as exc:
        raise_store_error(exc, "aggregate shadow predictions by segment")
    out: dict[str, list[tuple[str | None, ShadowPairTotals]]] = {}
    for row in rows:
        m = row._mapping
        variant = str(m["variant"])
        segment_value = None if m["seg"] is None else str(m["seg"])
        totals = ShadowPairTotals(
            variant=variant, model_version=str(m["model_version"]), **_values(m)
        )
        out.setdefault(variant, []).append((segment_value, totals))
    for segments in out.values():
        segments.sort(key=lambda item: (item[0] is None, item[0] or ""))
    return out


def served_request_count(
    target: StoreTarget, experiment_key: str, phase: int, window: Window | None = None
) -> int:
    """Requests the served model answered in the phase (and window)."""
    p = predictions
    conditions = [p.c.experiment_key == experiment_key, p.c.phase == phase, ~p.c.is_shadow]
    window = window or Window()
    if window.start is not None:
        conditions.append(p.c.ts >= window.start)
    if window.end is not None:
        conditions.append(p.c.ts < window.end)
    try:
        with connect(target).connect() as connection:
            count = connection.execute(sa.select(sa.func.count()).where(*conditions)).scalar()
    except SQLAlchemyError as exc:
        raise_store_error(exc, "count served predictions")
    return int(count or 0)
