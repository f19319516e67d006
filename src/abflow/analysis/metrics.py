"""From a metric definition to the SQL it needs and the sufficient statistics it yields.

Each :class:`~abflow.spec.MetricSpec` kind reads one of three sources:

- ``unit``: per-unit outcome values after first exposure (conversion, sum, mean, ratio);
  optionally CUPED with the same values before exposure;
- ``prediction``: per-unit prediction counts joined with labels by request id (accuracy,
  precision, recall, false-positive rate, calibration error, MAE, RMSE, error and fallback
  rates, cost) — every one a ratio of per-unit sums, so the delta method clusters by unit;
- ``histogram``: binned values for quantiles (latency, outcome quantiles).

A unit metric may count outcomes only within a conversion window after the unit's first
exposure (``window``), and may be post-stratified on exposure attributes (``post_stratify``):
:func:`cell_stats` turns the per-cell moments into the two arms' cell statistics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from abflow.spec import ExperimentSpec, MetricSpec
from abflow.stats.records import SampleStats
from abflow.stats.sufficient import CupedStats, RatioStats
from abflow.store.aggregates import GroupKey, Moments, OutcomeColumn

__all__ = [
    "DEFAULT_LABEL_EVENT",
    "CellSplit",
    "MetricPlan",
    "cell_stats",
    "plan_metric",
    "stats_for",
]

SECONDS_PER_HOUR = 3600.0

DEFAULT_LABEL_EVENT = "label"
"""Outcome name that carries a prediction's true label (or target) when ``event`` is unset."""

Source = Literal["unit", "prediction", "histogram"]
AnyStats = SampleStats | RatioStats | CupedStats

# kind -> (numerator column, denominator column) of the per-unit prediction values
_PREDICTION_RATIOS: dict[str, tuple[str, str]] = {
    "accuracy": ("correct", "n_labeled"),
    "precision": ("tp", "predicted_positives"),
    "recall": ("tp", "positives"),
    "false_positive_rate": ("fp", "negatives"),
    "calibration_error": ("bias", "n_labeled"),
    "mae": ("abs_error", "n_labeled"),
    "rmse": ("sq_error", "n_labeled"),
    "error_rate": ("n_error", "n_pred"),
    "fallback_rate": ("n_fallback", "n_pred"),
    "cost": ("cost", "n_pred"),
}

_ABSOLUTE_KINDS = {"calibration_error"}
"""Kinds compared as absolute differences: a relative change of a signed bias means nothing."""


@dataclass(frozen=True, slots=True)
class MetricPlan:
    """What one metric reads and how its per-variant statistics are assembled."""

    metric: MetricSpec
    source: Source
    columns: tuple[OutcomeColumn, ...] = ()
    products: tuple[tuple[str, str], ...] = ()
    numerator: str = ""
    denominator: str = ""
    label_event: str = DEFAULT_LABEL_EVENT
    quantile: float = 0.95
    is_cuped: bool = False
    scale: float = 1.0
    cells: tuple[str, ...] = ()
    """Exposure attributes whose cells post-stratify the comparison (none: not stratified)."""

    @property
    def relative_allowed(self) -> bool:
        return self.metric.kind not in _ABSOLUTE_KINDS


def plan_metric(metric: MetricSpec, spec: ExperimentSpec) -> MetricPlan:
    """The data a metric needs; CUPED applies to unit metrics when the spec asks for it."""
    kind = metric.kind
    name = metric.name
    cells = tuple(metric.post_stratify)
    if kind in ("conversion", "sum"):
        assert metric.event is not None  # the spec validator guarantees it
        reduce: Literal["any", "sum"] = "any" if kind == "conversion" else "sum"
        post = _column(metric, f"{name}__v", metric.event, reduce)
        columns: tuple[OutcomeColumn, ...] = (post,)
        products: tuple[tuple[str, str], ...] = ()
        is_cuped = spec.analysis.cuped and not cells  # post-stratification replaces CUPED
        if is_cuped:
            covariate = spec.analysis.cuped_covariate or metric.event
            pre = OutcomeColumn(f"{name}__pre", covariate, "sum", "pre")
            columns = (post, pre)
            products = ((post.name, pre.name),)
        return MetricPlan(
            metric,
            "unit",
            columns,
            products,
            numerator=post.name,
            is_cuped=is_cuped,
            cells=cells,
        )
    if kind in ("mean", "ratio"):
        if kind == "mean":
            assert metric.event is not None
            top = _column(metric, f"{name}__num", metric.event, "sum")
            bottom = _column(metric, f"{name}__den", metric.event, "count")
        else:
            assert metric.numerator is not None
            assert metric.denominator is not None
            top = _column(metric, f"{name}__num", metric.numerator, "sum")
            bottom = _column(metric, f"{name}__den", metric.denominator, "sum")
        return MetricPlan(
            metric,
            "unit",
            (top, bottom),
            ((top.name, bottom.name),),
            numerator=top.name,
            denominator=bottom.name,
            cells=cells,
        )
    if kind in _PREDICTION_RATIOS:
        numerator, denominator = _PREDICTION_RATIOS[kind]
        return MetricPlan(
            metric,
            "prediction",
            numerator=numerator,
            denominator=denominator,
            label_event=metric.event or DEFAULT_LABEL_EVENT,
            scale=1000.0 if kind == "cost" else 1.0,
        )
    # latency and quantile
    return MetricPlan(metric, "histogram", quantile=metric.quantile or 0.95)


def _column(
    metric: MetricSpec, name: str, event: str, reduce: Literal["sum", "count", "any"]
) -> OutcomeColumn:
    """A post-exposure column of ``metric``, limited to its conversion window if it has one."""
    window = metric.window
    if window is None:
        return OutcomeColumn(name, event, reduce)
    length = window.length_hours
    return OutcomeColumn(
        name,
        event,
        reduce,
        delay_seconds=window.delay_hours * SECONDS_PER_HOUR,
        length_seconds=None if length is None else length * SECONDS_PER_HOUR,
    )


def has_finite_sums(plan: MetricPlan, moments: Moments) -> bool:
    """Whether the sums ``plan`` reads are finite. A value near 1e154 (outcomes that reached
    the store by another way than the gateway, which bounds them) squares to infinity; such a
    metric is reported as ``non_finite_values`` rather than failing the whole analysis."""
    names = {plan.numerator, plan.denominator, *(column.name for column in plan.columns)} - {""}
    return all(
        math.isfinite(moments.total(a)) and math.isfinite(moments.product(a, b))
        for a in names
        for b in names
    )


def stats_for(plan: MetricPlan, moments: Moments) -> AnyStats:
    """Sufficient statistics of one variant (or one day, one segment) for a unit/prediction plan."""
    if plan.source == "unit" and not plan.denominator:
        value = plan.numerator
        if plan.is_cuped:
            pre = plan.columns[1].name
            return CupedStats(
                n=moments.n,
                sum=moments.total(value),
                sum_squares=moments.product(value, value),
                pre_sum=moments.total(pre),
                pre_sum_squares=moments.product(pre, pre),
                sum_products=moments.product(value, pre),
            )
        if plan.metric.kind == "conversion":
            return SampleStats.proportion(moments.n, moments.total(value))
        return SampleStats(moments.n, moments.total(value), moments.product(value, value))
    top, bottom = plan.numerator, plan.denominator
    return RatioStats(
        n=moments.n,
        numerator_sum=moments.total(top),
        numerator_sum_squares=moments.product(top, top),
        denominator_sum=moments.total(bottom),
        denominator_sum_squares=moments.product(bottom, bottom),
        sum_products=moments.product(top, bottom),
    )


def display_value(plan: MetricPlan, stats: AnyStats) -> float:
    """The number a reader expects: a rate, a mean, RMSE as a root, cost per 1,000 calls."""
    value = stats.mean
    if plan.metric.kind == "rmse":
        return math.sqrt(value) if value >= 0 else math.nan
    return value * plan.scale


@dataclass(frozen=True, slots=True)
class CellSplit:
    """Two arms' statistics per post-stratification cell, ready for the stratified test."""

    controls: list[SampleStats | RatioStats]
    treatments: list[SampleStats | RatioStats]
    cells: int
    pooled: int
    """Cells merged into one remainder cell because an arm had fewer than two units there."""


def cell_stats(
    plan: MetricPlan, groups: dict[GroupKey, Moments], control: str, treatment: str
) -> CellSplit:
    """Per-cell statistics of ``control`` and ``treatment`` from moments keyed by cell.

    A cell where either arm has fewer than two units carries no within-cell contrast: such
    cells are pooled into one remainder cell, used like any other when both arms have two
    units there and otherwise merged into the largest cell, so that one rare country does
    not switch stratification off. Any partition of the units into cells gives a valid
    post-stratified estimate, and this one depends on the arms' unit counts only, never on
    outcomes. With a single cell left the test falls back to the pooled comparison.
    """
    keys = sorted({cell for (variant, cell) in groups if variant in (control, treatment)}, key=str)
    kept: list[tuple[Moments, Moments]] = []
    rest = (Moments(), Moments())
    pooled = 0
    for key in keys:
        c = groups.get((control, key), Moments())
        t = groups.get((treatment, key), Moments())
        if c.n >= 2 and t.n >= 2:
            kept.append((c, t))
        else:
            rest = (rest[0] + c, rest[1] + t)
            pooled += 1
    if not kept or (pooled and min(rest[0].n, rest[1].n) >= 2):
        kept.append(rest)  # with no unit at all, one empty cell: too few units to compare
    elif pooled:
        largest = max(range(len(kept)), key=lambda i: kept[i][0].n + kept[i][1].n)
        kept[largest] = (kept[largest][0] + rest[0], kept[largest][1] + rest[1])
    controls = [_plain(stats_for(plan, c)) for c, _ in kept]
    treatments = [_plain(stats_for(plan, t)) for _, t in kept]
    return CellSplit(controls, treatments, len(keys), pooled)


def _plain(stats: AnyStats) -> SampleStats | RatioStats:
    assert not isinstance(stats, CupedStats)  # post-stratified plans never use CUPED
    return stats
