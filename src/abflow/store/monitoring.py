"""What the live monitor reads and writes: window samples, labelled counts, its history.

Reads: a window's sample per variant (its ``max_samples`` rows of lowest priority, see
:mod:`abflow.events.sampling`) and, once labels arrive, each variant's confusion counts over
the window's predictions. Writes: the monitor's results for a window, replacing any earlier
computation of the same window in one transaction, so the history holds the latest figure of
every window. :func:`monitor_history` is what dashboards and reports read.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import orjson
import sqlalchemy as sa

from abflow.store.aggregates import StoreTarget, connect
from abflow.store.engine import translating
from abflow.store.schema import feature_samples, monitor_results, outcomes, predictions

__all__ = [
    "DEFAULT_VARIANT",
    "REFERENCES",
    "MonitorRecord",
    "QualityCounts",
    "WindowSample",
    "latest_alarms",
    "monitor_history",
    "quality_counts",
    "sample_windows",
    "save_monitor_results",
    "window_samples",
]

DEFAULT_VARIANT = "_default"
"""Predictions for units outside the experiment: not part of any variant's quality."""

REFERENCES = ("training", "given", "window", "control")
"""What a measure was compared with (``MonitorRecord.reference``): the training sample of
the variant's model, a reference passed in directly, a reference window of served rows, or
the control on the same window (skew, quality)."""


@dataclass(frozen=True, slots=True)
class WindowSample:
    """One variant's sampled rows in one window: features (row-major) and scores."""

    features: list[list[float]]
    scores: list[float | None]

    @property
    def n(self) -> int:
        return len(self.features)


@dataclass(frozen=True, slots=True)
class QualityCounts:
    """A variant's labelled predictions in a window, as a confusion matrix."""

    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def n_labelled(self) -> int:
        return self.tp + self.fp + self.tn + self.fn


@dataclass(frozen=True, slots=True)
class MonitorRecord:
    """One measure of one window: a row of ``monitor_results``.

    ``kind`` is ``feature_drift``, ``prediction_drift``, ``variant_skew`` or ``quality``;
    ``variant`` is empty for skew, ``feature`` empty but for feature drift and skew, and
    ``method`` names the drift method or the quality metric (``fpr``, ``precision``,
    ``recall``). ``value`` is None when it cannot be computed (too few rows, no labels).
    ``reference`` is one of :data:`REFERENCES` (empty: stored before it was recorded).
    """

    experiment_key: str
    window_start: float
    window_end: float
    kind: str
    variant: str
    feature: str
    method: str
    value: float | None
    p_value: float | None
    threshold: float | None
    is_alarm: bool
    n_reference: int
    n_current: int
    computed_at: float = 0.0
    reference: str = ""


def sample_windows(target: StoreTarget, experiment_key: str) -> list[float]:
    """Start of every window holding samples of the experiment, oldest first."""
    query = (
        sa.select(feature_samples.c.window_start)
        .where(feature_samples.c.experiment_key == experiment_key)
        .group_by(feature_samples.c.window_start)
        .order_by(feature_samples.c.window_start)
    )
    with translating("read sample windows"), connect(target).connect() as connection:
        return [float(start) for start in connection.execute(query).scalars()]


def window_samples(
    target: StoreTarget, experiment_key: str, window_start: float, max_samples: int
) -> dict[str, WindowSample]:
    """Each variant's sample of one window: its ``max_samples`` rows of lowest priority."""
    s = feature_samples
    where = (s.c.experiment_key == experiment_key, s.c.window_start == window_start)
    with translating("read window samples"), connect(target).connect() as connection:
        variants = connection.execute(
            sa.select(s.c.variant).where(*where).group_by(s.c.variant).order_by(s.c.variant)
        ).scalars()
        found: dict[str, WindowSample] = {}
        for variant in list(variants):
            rows = connection.execute(
                sa.select(s.c.features_json, s.c.score)
                .where(*where, s.c.variant == variant)
                .order_by(s.c.priority)
                .limit(max_samples)
            ).all()
            found[str(variant)] = WindowSample(
                features=[orjson.loads(row.features_json) for row in rows],
                scores=[None if row.score is None else float(row.score) for row in rows],
            )
    return found


def quality_counts(
    target: StoreTarget,
    experiment_key: str,
    start: float,
    end: float,
    *,
    label_event: str = "label",
    threshold: float = 0.5,
) -> dict[str, QualityCounts]:
    """Confusion counts per variant of the window's labelled, scored predictions.

    As in analysis: a prediction is positive when ``score >= threshold``, a label when its
    value is at least 0.5; shadow and fallback predictions, and units outside the
    experiment, are left out (they are not the variant's own model serving it).
    """
    p = predictions
    label = outcomes.alias("label")
    predicted = p.c.score >= threshold
    positive = label.c.value >= 0.5

    def count(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[Any]:
        return sa.func.sum(sa.case((condition, 1), else_=0))

    query = (
        sa.select(
            p.c.variant,
            count(sa.and_(predicted, positive)).label("tp"),
            count(sa.and_(predicted, ~positive)).label("fp"),
            count(sa.and_(~predicted, ~positive)).label("tn"),
            count(sa.and_(~predicted, positive)).label("fn"),
        )
        .select_from(
            p.join(
                label, sa.and_(label.c.request_id == p.c.request_id, label.c.name == label_event)
            )
        )
        .where(
            p.c.experiment_key == experiment_key,
            p.c.ts >= start,
            p.c.ts < end,
            ~p.c.is_shadow,
            ~p.c.is_fallback,
            p.c.variant != DEFAULT_VARIANT,
            p.c.score.is_not(None),
        )
        .group_by(p.c.variant)
    )
    with translating("read labelled predictions"), connect(target).connect() as connection:
        return {
            str(row.variant): QualityCounts(
                tp=int(row.tp or 0), fp=int(row.fp or 0), tn=int(row.tn or 0), fn=int(row.fn or 0)
            )
            for row in connection.execute(query)
        }


def save_monitor_results(
    target: StoreTarget,
    experiment_key: str,
    window_start: float,
    records: Sequence[MonitorRecord],
    *,
    now: float | None = None,
) -> None:
    """Replace the window's results with ``records`` (one transaction)."""
    computed_at = time.time() if now is None else now
    r = monitor_results
    rows = [{**asdict(record), "computed_at": computed_at} for record in records]
    with translating("save monitor results"), connect(target).begin() as connection:
        connection.execute(
            sa.delete(r).where(
                r.c.experiment_key == experiment_key, r.c.window_start == window_start
            )
        )
        if rows:
            connection.execute(sa.insert(r), rows)


_FIELDS = tuple(MonitorRecord.__dataclass_fields__)


def _stored_fields(connection: sa.Connection) -> list[sa.ColumnElement[Any]]:
    """The record's columns as this store holds them: none without the table (a warehouse
    loaded by ``abflow ingest``), an empty ``reference`` in a store not yet at revision 0005."""
    inspector = sa.inspect(connection)
    if not inspector.has_table(monitor_results.name):
        return []
    present = {column["name"] for column in inspector.get_columns(monitor_results.name)}
    return [
        monitor_results.c[name] if name in present else sa.literal("").label(name)
        for name in _FIELDS
    ]


def monitor_history(
    target: StoreTarget, experiment_key: str, *, since: float | None = None
) -> list[MonitorRecord]:
    """Every stored result of the experiment, oldest window first (for charts and reports);
    none when the store has no monitor results table."""
    r = monitor_results
    with translating("read monitor history"), connect(target).connect() as connection:
        fields = _stored_fields(connection)
        if not fields:
            return []
        query = sa.select(*fields).where(r.c.experiment_key == experiment_key)
        if since is not None:
            query = query.where(r.c.window_start >= since)
        query = query.order_by(r.c.window_start, r.c.kind, r.c.variant, r.c.feature, r.c.method)
        return [_record(row._mapping) for row in connection.execute(query)]


def latest_alarms(
    target: StoreTarget, experiment_key: str, *, since: float | None = None
) -> list[MonitorRecord]:
    """The alarms of windows starting at ``since`` or later (None: the latest window only)."""
    r = monitor_results
    start: Any = since
    if start is None:
        start = (
            sa.select(sa.func.max(r.c.window_start))
            .where(r.c.experiment_key == experiment_key)
            .scalar_subquery()
        )
    query = (
        sa.select(*(r.c[name] for name in _FIELDS))
        .where(r.c.experiment_key == experiment_key, r.c.window_start >= start, r.c.is_alarm)
        .order_by(r.c.window_start, r.c.kind, r.c.variant, r.c.feature, r.c.method)
    )
    with translating("read monitor alarms"), connect(target).connect() as connection:
        return [_record(row._mapping) for row in connection.execute(query)]


def _record(row: Any) -> MonitorRecord:
    values = dict(row)
    values["is_alarm"] = bool(values["is_alarm"])
    return MonitorRecord(**values)
