"""The per-metric half of an analysis: fetch one phase's aggregates and compare variants.

:class:`MetricRun` holds the spec, the phase window and the moments fetched from SQL, and
turns each metric plan into a :class:`MetricResult` (values per variant, comparison with
control, cumulative timeline) or a segment row for a breakdown. Corrections, guardrails and
the verdict are applied afterwards by :mod:`abflow.analysis.engine`, across metrics.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from abflow.analysis.guardrails import absolute_evidence
from abflow.analysis.metrics import (
    DEFAULT_LABEL_EVENT,
    AnyStats,
    MetricPlan,
    display_value,
    has_finite_sums,
    plan_metric,
    stats_for,
)
from abflow.analysis.results import (
    BreakdownRow,
    ComparisonResult,
    GuardrailEvidence,
    LatencySummary,
    MetricResult,
    ShadowResult,
    TimelinePoint,
    VariantValue,
)
from abflow.analysis.shadow import shadow_results
from abflow.spec import ExperimentSpec
from abflow.stats import Comparison, compare, compare_many
from abflow.stats.quantile import QuantileStats, compare_quantile_stats, quantile_stats_from_bins
from abflow.store.aggregates import (
    GroupKey,
    Moments,
    OutcomeColumn,
    PhaseInfo,
    StoreTarget,
    Window,
    histogram,
    prediction_moments,
    unit_moments,
)
from abflow.store.rollups import rollup_moments

__all__ = ["AnalysisOptions", "MetricRun", "totals_by_variant"]

LATENCY_BIN_MS = 0.25
OUTCOME_BIN_WIDTH = 0.01
SECONDS_PER_DAY = 86400.0
LABELED_KINDS = frozenset(
    {"accuracy", "precision", "recall", "false_positive_rate", "calibration_error", "mae", "rmse"}
)
"""Metric kinds that read a label outcome: the first names the shadow section's labels."""


@dataclass(frozen=True, slots=True)
class AnalysisOptions:
    """Knobs of one analysis run that are not part of the experiment's spec."""

    phase: int | None = None
    spec_version: int | None = None
    """Analyse with this stored version of the spec (default: the latest), e.g. the one an
    audited decision was taken with."""
    until: float | None = None
    dimensions: tuple[str, ...] = ()
    threshold: float = 0.5
    timeline: bool = True
    now: float | None = None
    store_label: str = ""
    rollups: bool = False
    extra_warnings: list[str] = field(default_factory=list)
    shadow_segment: str | None = None
    """Exposure attribute the shadow section is broken down by (``--segment``)."""


def totals_by_variant(
    groups: dict[GroupKey, Moments], variants: Sequence[str]
) -> dict[str, Moments]:
    out = {name: Moments() for name in variants}
    for (variant, _), moments in groups.items():
        if variant in out:
            out[variant] = out[variant] + moments
    return out


def _cumulative(
    groups: dict[GroupKey, Moments], variants: Sequence[str]
) -> list[tuple[int, dict[str, Moments]]]:
    """Per cohort day, the moments of all units exposed up to that day, per variant."""
    days = sorted({int(day) for (_, day) in groups if isinstance(day, int)})
    running = {name: Moments() for name in variants}
    series = []
    for day in days:
        for name in variants:
            today = groups.get((name, day))
            if today is not None:
                running[name] = running[name] + today
        series.append((day, dict(running)))
    return series


def _day_label(day: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(day * SECONDS_PER_DAY))


class MetricRun:
    """State of one analysis: the spec, its data and the options."""

    def __init__(
        self, target: StoreTarget, spec: ExperimentSpec, phase: PhaseInfo, options: AnalysisOptions
    ):
        self.target = target
        self.spec = spec
        self.phase = phase
        self.options = options
        self.variants = spec.variant_names
        self.control = self.variants[0]
        start = phase.started_at
        end = phase.ended_at
        if options.until is not None:
            end = options.until if end is None else min(end, options.until)
        self.window = Window(start, end, options.until)
        self.plans = [plan_metric(m, spec) for m in spec.metrics]
        self.method = spec.analysis.method
        self.alpha = spec.analysis.alpha

    # --- data ------------------------------------------------------------------------------

    def unit_columns(self) -> tuple[list[OutcomeColumn], list[tuple[str, str]]]:
        columns: dict[str, OutcomeColumn] = {}
        products: list[tuple[str, str]] = []
        for plan in self.plans:
            if plan.source == "unit":
                columns.update({c.name: c for c in plan.columns})
                products.extend(plan.products)
        return list(columns.values()), products

    def fetch(self) -> None:
        columns, products = self.unit_columns()
        self.unit_groups, self.mixed = self.unit_source(
            self.target, self.spec.key, self.phase.phase, columns, products, window=self.window
        )
        self.prediction_groups: dict[tuple[str, float, float], dict[GroupKey, Moments]] = {}
        for plan in self.plans:
            if plan.source == "prediction":
                key = self.prediction_key(plan)
                if key not in self.prediction_groups:
                    self.prediction_groups[key] = prediction_moments(
                        self.target,
                        self.spec.key,
                        self.phase.phase,
                        label_event=key[0],
                        threshold=self.options.threshold,
                        cost_per_prediction=key[1],
                        cost_per_second=key[2],
                        window=self.window,
                    )
        self.latency_bins = histogram(
            self.target,
            self.spec.key,
            self.phase.phase,
            source="latency",
            bin_width=LATENCY_BIN_MS,
            window=self.window,
        )

    def unit_source(self, *args: Any, **kwargs: Any) -> tuple[dict[GroupKey, Moments], int]:
        """Per-unit moments from raw events, or from the incrementally folded rollup."""
        source = rollup_moments if self.options.rollups else unit_moments
        return source(*args, **kwargs)

    def prediction_key(self, plan: MetricPlan) -> tuple[str, float, float]:
        metric = plan.metric
        if metric.kind != "cost":
            return (plan.label_event, 0.0, 0.0)
        per_call = (metric.cost_per_1000 or 0.0) / 1000.0
        return (plan.label_event, per_call, metric.cost_per_second or 0.0)

    def groups_for(self, plan: MetricPlan) -> dict[GroupKey, Moments]:
        if plan.source == "unit":
            return self.unit_groups
        return self.prediction_groups[self.prediction_key(plan)]

    # --- metrics ---------------------------------------------------------------------------

    def relative(self, plan: MetricPlan) -> bool:
        return self.spec.analysis.relative and plan.relative_allowed

    def compare_kwargs(self, plan: MetricPlan) -> dict[str, Any]:
        alternative = (
            "less"
            if self.method == "bayesian" and plan.metric.direction == "decrease"
            else "two-sided"
        )
        return {
            "relative": self.relative(plan),
            "method": self.method,
            "alpha": self.alpha,
            "alternative": alternative,
            "tuning_sample_size": float(self.spec.analysis.sequential_tuning),
        }

    def metric_result(self, plan: MetricPlan) -> MetricResult:
        if plan.source == "histogram":
            return self.quantile_result(plan)
        groups = self.groups_for(plan)
        totals = totals_by_variant(groups, self.variants)
        if not all(has_finite_sums(plan, totals[name]) for name in self.variants):
            units = {name: totals[name].n for name in self.variants}
            return self.failed_metric(plan, units, "non_finite_values")
        stats = {name: stats_for(plan, totals[name]) for name in self.variants}
        values = [self.variant_value(plan, name, stats[name]) for name in self.variants]
        comparisons = []
        scale = 1.0 if self.relative(plan) else plan.scale
        for name in self.variants[1:]:
            result = compare(stats[self.control], stats[name], **self.compare_kwargs(plan))
            comparisons.append(
                ComparisonResult(
                    variant=name,
                    effect=result.effect * scale,
                    ci_low=result.ci_low * scale,
                    ci_high=result.ci_high * scale,
                    p_value=result.p_value,
                    adjusted_p_value=result.p_value,
                    chance_to_win=result.chance_to_win,
                    expected_loss=result.expected_loss,
                    is_significant=False,
                    outcome="error" if result.error_code else "inconclusive",
                    error_code=result.error_code,
                    guardrail_evidence=self.absolute_guardrail(plan, stats, name, result),
                )
            )
        timeline = self.timeline(plan, groups) if self.options.timeline else []
        note = ""
        if plan.metric.kind == "rmse":
            note = "tested on the mean squared error; values are its root"
        return self.result(plan, values, comparisons, timeline, note)

    def result(
        self,
        plan: MetricPlan,
        values: list[VariantValue],
        comparisons: list[ComparisonResult],
        timeline: list[TimelinePoint] | None = None,
        note: str = "",
    ) -> MetricResult:
        """``plan``'s metric with these values and comparisons."""
        return MetricResult(
            name=plan.metric.name,
            kind=plan.metric.kind,
            role=plan.metric.role,
            direction=plan.metric.direction,
            relative=self.relative(plan),
            method=self.method,
            margin=plan.metric.margin,
            values=values,
            comparisons=comparisons,
            timeline=timeline or [],
            cuped=plan.is_cuped,
            note=note,
        )

    def failed_metric(self, plan: MetricPlan, units: dict[str, int], code: str) -> MetricResult:
        """A metric that cannot be computed at all: units counted, every comparison ``code``."""
        values = [VariantValue(name, int(units[name]), math.nan) for name in self.variants]
        return self.result(plan, values, [_failed(name, code) for name in self.variants[1:]])

    def absolute_guardrail(
        self, plan: MetricPlan, stats: dict[str, AnyStats], name: str, result: Comparison
    ) -> GuardrailEvidence | None:
        """A guardrail whose relative effect is undefined (the control's value is 0) is
        judged on the absolute difference, so harm seen in one arm only still counts."""
        if plan.metric.role != "guardrail" or result.error_code != "zero_control_mean":
            return None
        kwargs = {**self.compare_kwargs(plan), "relative": False}
        absolute = compare(stats[self.control], stats[name], **kwargs)
        scale = plan.scale
        return absolute_evidence(
            absolute.effect * scale,
            absolute.ci_low * scale,
            absolute.ci_high * scale,
            absolute.p_value,
            absolute.error_code,
        )

    def variant_value(self, plan: MetricPlan, name: str, stats: AnyStats) -> VariantValue:
        numerator = denominator = None
        if plan.denominator:
            numerator = getattr(stats, "numerator_sum", None)
            denominator = getattr(stats, "denominator_sum", None)
        return VariantValue(name, int(stats.n), display_value(plan, stats), numerator, denominator)

    def timeline(self, plan: MetricPlan, groups: dict[GroupKey, Moments]) -> list[TimelinePoint]:
        series = _cumulative(groups, self.variants)
        points: list[TimelinePoint] = []
        for name in self.variants[1:]:
            usable = [(d, m) for d, m in series if m[self.control].n >= 2 and m[name].n >= 2]
            if not usable:
                continue
            results = compare_many(
                [stats_for(plan, m[self.control]) for _, m in usable],
                [stats_for(plan, m[name]) for _, m in usable],
                **self.compare_kwargs(plan),
            )
            scale = 1.0 if self.relative(plan) else plan.scale
            for (day, m), result in zip(usable, results, strict=True):
                points.append(
                    TimelinePoint(
                        day=_day_label(day),
                        variant=name,
                        effect=result.effect * scale,
                        ci_low=result.ci_low * scale,
                        ci_high=result.ci_high * scale,
                        units=m[self.control].n + m[name].n,
                    )
                )
        return points

    def quantile_result(self, plan: MetricPlan) -> MetricResult:
        metric = plan.metric
        if metric.kind == "latency":
            bins, width = self.latency_bins, LATENCY_BIN_MS
        else:
            assert metric.event is not None
            bins = histogram(
                self.target,
                self.spec.key,
                self.phase.phase,
                source="outcome",
                event=metric.event,
                bin_width=OUTCOME_BIN_WIDTH,
                window=self.window,
            )
            width = OUTCOME_BIN_WIDTH
        if any(not math.isfinite(lower) for rows in bins.values() for lower, _ in rows):
            counts = {name: sum(n for _, n in bins.get(name, [])) for name in self.variants}
            return self.failed_metric(plan, counts, "non_finite_values")
        relative = self.spec.analysis.relative
        arms = {name: _quantile(bins.get(name, []), width, plan.quantile) for name in self.variants}
        values = [
            VariantValue(name, int(arm.n) if arm else 0, arm.quantile if arm else math.nan)
            for name, arm in arms.items()
        ]
        comparisons = []
        control = arms[self.control]
        for name in self.variants[1:]:
            treatment = arms[name]
            if control is None or treatment is None:
                comparisons.append(_failed(name, "too_few_units"))
                continue
            result = compare_quantile_stats(control, treatment, relative=relative, alpha=self.alpha)
            comparisons.append(
                ComparisonResult(
                    variant=name,
                    effect=result.effect,
                    ci_low=result.ci_low,
                    ci_high=result.ci_high,
                    p_value=result.p_value,
                    adjusted_p_value=result.p_value,
                    chance_to_win=None,
                    expected_loss=None,
                    is_significant=False,
                    outcome="error" if result.error_code else "inconclusive",
                    error_code=result.error_code,
                )
            )
        return MetricResult(
            name=metric.name,
            kind=metric.kind,
            role=metric.role,
            direction=metric.direction,
            relative=relative,
            method="quantile",
            margin=metric.margin,
            values=values,
            comparisons=comparisons,
            note=f"P{plan.quantile * 100:g} from {width:g}-wide bins; fixed-horizon test",
        )

    def latency(self) -> list[LatencySummary]:
        out = []
        for name in self.variants:
            bins = self.latency_bins.get(name, [])
            n = sum(count for _, count in bins)
            if not n:
                continue
            q = [
                quantile_stats_from_bins(bins, LATENCY_BIN_MS, p).quantile
                for p in (0.5, 0.9, 0.95, 0.99)
            ]
            out.append(LatencySummary(name, n, q[0], q[1], q[2], q[3], list(bins)))
        return out

    # --- shadow ----------------------------------------------------------------------------

    def shadow(self) -> list[ShadowResult]:
        """Each shadow variant against the served model; labels are read from the outcome
        the spec's first prediction-quality metric names (default ``label``)."""
        label_event = next(
            (p.label_event for p in self.plans if p.metric.kind in LABELED_KINDS),
            DEFAULT_LABEL_EVENT,
        )
        return shadow_results(
            self.target,
            self.spec.key,
            self.phase.phase,
            threshold=self.options.threshold,
            label_event=label_event,
            alpha=self.alpha,
            window=self.window,
            share=self.spec.shadow.share if self.spec.shadow is not None else 1.0,
            segment=self.options.shadow_segment,
            correction=self.spec.analysis.correction,
        )

    # --- breakdowns ------------------------------------------------------------------------

    def breakdowns(self, dimension: str) -> list[BreakdownRow]:
        plans = [p for p in self.plans if p.source == "unit"]
        if not plans:
            return []
        columns, products = self.unit_columns()
        groups, _ = self.unit_source(
            self.target,
            self.spec.key,
            self.phase.phase,
            columns,
            products,
            window=self.window,
            dimension=dimension,
        )
        # Keyed by the label a report shows (the value as text), whatever type the engine gave
        by_label = {(variant, str(value)): stats for (variant, value), stats in groups.items()}
        segments = sorted({label for (_, label) in by_label})
        rows: list[BreakdownRow] = []
        for segment in segments:
            for plan in plans:
                control = by_label.get((self.control, segment))
                for name in self.variants[1:]:
                    treatment = by_label.get((name, segment))
                    if control is None or treatment is None:
                        continue
                    if not (has_finite_sums(plan, control) and has_finite_sums(plan, treatment)):
                        continue
                    c_stats, t_stats = stats_for(plan, control), stats_for(plan, treatment)
                    result = compare(
                        c_stats,
                        t_stats,
                        relative=self.relative(plan),
                        method="frequentist",
                        alpha=self.alpha,
                    )
                    rows.append(
                        BreakdownRow(
                            dimension=dimension,
                            value=segment,
                            metric=plan.metric.name,
                            variant=name,
                            control_units=control.n,
                            treatment_units=treatment.n,
                            control_value=display_value(plan, c_stats),
                            treatment_value=display_value(plan, t_stats),
                            effect=result.effect,
                            ci_low=result.ci_low,
                            ci_high=result.ci_high,
                            p_value=result.p_value,
                        )
                    )
        return rows


def _quantile(bins: list[tuple[float, int]], width: float, q: float) -> QuantileStats | None:
    """One arm's quantile statistic from its bins; None without values."""
    if not any(count for _, count in bins):
        return None
    return quantile_stats_from_bins(bins, width, q)


def _failed(variant: str, code: str) -> ComparisonResult:
    nan = math.nan
    return ComparisonResult(
        variant, nan, nan, nan, None, None, None, None, False, "error", error_code=code
    )
