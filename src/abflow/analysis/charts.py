"""The charts of a result, built once for the HTML report and the dashboard.

Each function turns an :class:`ExperimentResult` into finished SVG (``Markup`` from
:mod:`abflow.analysis.svg`, text escaped there), so both places draw the same picture with
the same colours: a guardrail that passes is green wherever it is shown.
"""

from __future__ import annotations

from collections import defaultdict

from markupsafe import Markup

from abflow.analysis.formatting import effect_scale, format_effect, verdict_label
from abflow.analysis.results import ExperimentResult, MetricResult
from abflow.analysis.svg import (
    Band,
    Bar,
    ForestRow,
    Series,
    bar_chart,
    forest_plot,
    line_chart,
    step_chart,
)

__all__ = ["assignment_chart", "effect_charts", "latency_chart", "timeline_charts"]

MAX_SECONDARY_TIMELINES = 6
"""Past this many metrics, secondary metrics get no timeline (the page would be all charts)."""


def assignment_chart(result: ExperimentResult) -> Markup:
    """Units per variant as bars, with a tick where the weights expected them."""
    total = sum(v.units for v in result.variants)
    return bar_chart(
        [Bar(v.variant, v.units, v.expected_share * total) for v in result.variants],
        "Units per variant (tick: expected from the weights)",
    )


def effect_charts(result: ExperimentResult) -> list[Markup]:
    """Forest plots of every comparison, one per effect unit (%, pp, ms, absolute)."""
    groups: dict[str, list[ForestRow]] = defaultdict(list)
    for metric in result.metrics:
        scale, unit = effect_scale(metric)
        for c in metric.comparisons:
            label = f"{metric.name} ({c.variant})" if len(metric.comparisons) > 1 else metric.name
            status = verdict_label(c)
            groups[unit].append(
                ForestRow(
                    label=label + (" %" if metric.relative else ""),
                    effect=c.effect * scale,
                    low=c.ci_low * scale,
                    high=c.ci_high * scale,
                    status=status,
                    text=f"{format_effect(metric, c.effect)} {status}",
                )
            )
    return [
        forest_plot(rows, f"Effects ({unit})", f"effect vs {result.control} ({unit})")
        for unit, rows in groups.items()
    ]


def _has_timeline(result: ExperimentResult, metric: MetricResult) -> bool:
    if not metric.timeline:
        return False
    return metric.role != "secondary" or len(result.metrics) <= MAX_SECONDARY_TIMELINES


def timeline_charts(result: ExperimentResult) -> list[tuple[str, Markup]]:
    """Cumulative effect over time with its interval, per metric: ``(metric name, chart)``."""
    charts = []
    for metric in result.metrics:
        if not _has_timeline(result, metric):
            continue
        by_variant: dict[str, list[tuple[str, float, float, float]]] = defaultdict(list)
        scale, unit = effect_scale(metric)
        for p in metric.timeline:
            by_variant[p.variant].append(
                (p.day, p.effect * scale, p.ci_low * scale, p.ci_high * scale)
            )
        bands = [Band(f"{v} vs {result.control}", pts) for v, pts in by_variant.items()]
        chart = line_chart(bands, f"Cumulative effect on {metric.name}", f"effect ({unit})")
        charts.append((metric.name, chart))
    return charts


def latency_chart(result: ExperimentResult) -> Markup:
    """Latency histograms of the variants overlaid (share of predictions per bin)."""
    if not result.latency:
        return Markup()
    cap = max(s.p99_ms for s in result.latency) * 1.2
    width = max(cap / 60, 0.25)
    series = []
    for s in result.latency:
        total = sum(n for _, n in s.histogram) or 1
        coarse: dict[float, float] = defaultdict(float)
        for lower, n in s.histogram:
            if lower <= cap:
                coarse[int(lower / width) * width] += n / total
        series.append(Series(s.variant, sorted(coarse.items())))
    title = "latency (ms), share of predictions per bin"
    return step_chart(series, "Latency distribution", title)
