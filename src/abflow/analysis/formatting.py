"""How numbers read in every report: rates as percentages, latency in ms, effects signed.

Shared by the terminal table, Markdown, HTML and the dashboard so a number looks the same
everywhere: no bare fractions, no exponent notation, no duration in fractions of a day.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from abflow.analysis.results import ComparisonResult, ExperimentResult, MetricResult, SrmSummary

__all__ = [
    "RATE_KINDS",
    "MetricRow",
    "effect_scale",
    "format_duration",
    "format_effect",
    "format_interval",
    "format_p",
    "format_p_value",
    "format_rows",
    "format_share",
    "format_srm",
    "format_timestamp",
    "format_value",
    "metric_rows",
    "verdict_label",
]

RATE_KINDS = frozenset(
    {
        "conversion",
        "accuracy",
        "precision",
        "recall",
        "false_positive_rate",
        "error_rate",
        "fallback_rate",
    }
)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def format_value(metric: MetricResult, value: float) -> str:
    """A metric's value in its natural unit."""
    if not _finite(value):
        return "—"
    if metric.kind in RATE_KINDS:
        return f"{value * 100:.2f}%"
    if metric.kind == "latency":
        return f"{value:.1f} ms"
    if metric.kind == "cost":
        return f"{value:.3f} /1k"
    return f"{value:.4g}"


def _unit(metric: MetricResult) -> tuple[float, str, str]:
    """Scale, number format and unit suffix of a metric's effects."""
    if metric.relative:
        return 100.0, "+.2f", "%"
    if metric.kind in RATE_KINDS:
        return 100.0, "+.2f", " pp"
    if metric.kind == "latency":
        return 1.0, "+.2f", " ms"
    return 1.0, "+.4g", ""


def effect_scale(metric: MetricResult) -> tuple[float, str]:
    """Multiplier and unit label for plotting a metric's effects (%, pp, ms or none)."""
    scale, _, unit = _unit(metric)
    return scale, unit.strip() or "abs."


def format_effect(metric: MetricResult, effect: float) -> str:
    """The effect, signed: relative in %, absolute in the metric's unit (rates in points)."""
    if not _finite(effect):
        return "—"
    scale, spec, unit = _unit(metric)
    return f"{effect * scale:{spec}}{unit}"


def format_interval(metric: MetricResult, comparison: ComparisonResult) -> str:
    """``[low, high] unit``: the interval of the effect, unit written once."""
    if not (_finite(comparison.ci_low) and _finite(comparison.ci_high)):
        return "—"
    scale, spec, unit = _unit(metric)
    return f"[{comparison.ci_low * scale:{spec}}, {comparison.ci_high * scale:{spec}}]{unit}"


def format_p(comparison: ComparisonResult) -> str:
    """Adjusted p-value (raw in parentheses when different), or Bayesian chance to win."""
    if comparison.chance_to_win is not None:
        if not _finite(comparison.chance_to_win):
            return "—"
        return f"P(win) {comparison.chance_to_win * 100:.1f}%"
    p, adjusted = comparison.p_value, comparison.adjusted_p_value
    if not _finite(p):
        return "—"
    assert p is not None
    if adjusted is not None and math.isfinite(adjusted) and abs(adjusted - p) > 1e-12:
        return f"{_p(adjusted)} ({_p(p)} raw)"
    return _p(p)


def _p(value: float) -> str:
    return "<0.0001" if value < 1e-4 else f"{value:.4f}"


def format_p_value(value: float | None) -> str:
    """A p-value with four decimals; below 0.0001 it reads ``<0.0001`` (never ``8.65e-38``)."""
    if value is None or not math.isfinite(value):
        return "—"
    return _p(value)


def format_rows(rows: dict[str, int]) -> str:
    """The provenance's row counts in words (``1,200 units · 3,400 unit event rows``)."""
    return " · ".join(f"{count:,} {name.replace('_', ' ')}" for name, count in rows.items())


def format_share(value: float) -> str:
    """A share of units (0.4955 → ``49.55%``)."""
    return f"{value:.2%}" if math.isfinite(value) else "—"


def format_srm(srm: SrmSummary) -> str:
    """The sample-ratio check in one sentence, the same in the HTML report and dashboard."""
    if srm.status == "not_enough_data":
        return "SRM check: not enough data yet to test the split."
    p = format_p_value(srm.p_value)
    if srm.is_mismatch:
        return (
            f"SRM check: p = {p} (threshold {srm.alpha:g}): sample ratio mismatch, the split "
            "is broken: do not trust the metrics."
        )
    return f"SRM check: p = {p} (threshold {srm.alpha:g}): the split matches the weights."


def format_duration(days: float) -> str:
    """A duration in the unit a person would say: minutes, hours or days."""
    if not math.isfinite(days) or days < 0:
        return "—"
    minutes = days * 24 * 60
    if minutes < 1.5:
        return "under a minute"
    if minutes < 90:
        return f"{minutes:.0f} minutes"
    hours = minutes / 60
    if hours < 36:
        return f"{hours:.0f} hours"
    return f"{days:.1f} days" if days < 10 else f"{days:,.0f} days"


def format_timestamp(ts: float | None) -> str:
    if ts is None or not math.isfinite(ts):
        return "—"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


def cutoff_text(until: float | None) -> str:
    """The data cutoff as a report shows it, with the value that repeats it; "" for none."""
    if until is None:
        return ""
    return f"events before {format_timestamp(until)} (--until {until!r})"


def verdict_label(comparison: ComparisonResult) -> str:
    """One word for a cell: the guardrail status when there is one, else the outcome."""
    if comparison.guardrail is not None:
        return comparison.guardrail
    return comparison.outcome


@dataclass(frozen=True, slots=True)
class MetricRow:
    """One comparison of one metric as text cells: what every metrics table shows."""

    name: str
    kind: str
    role: str
    cuped: bool
    variant: str
    values: list[str]  # each variant's value, control first
    effect: str
    interval: str
    p: str  # adjusted p-value, or P(win)
    raw_p: str  # the uncorrected p-value when a correction changed it, else ""
    status: str  # pass / fail / inconclusive for guardrails, else the outcome
    is_first: bool  # the first comparison of its metric (tables show values once)
    comparisons: int  # how many comparisons its metric has (rows a value cell spans)


def metric_rows(result: ExperimentResult) -> list[MetricRow]:
    """Every comparison of every metric, formatted once for all reports and the dashboard."""
    rows = []
    for metric in result.metrics:
        values = [format_value(metric, v.value) for v in metric.values]
        for index, c in enumerate(metric.comparisons):
            p, _, raw = format_p(c).partition(" (")
            rows.append(
                MetricRow(
                    name=metric.name,
                    kind=metric.kind,
                    role=metric.role,
                    cuped=metric.cuped,
                    variant=c.variant,
                    values=values,
                    effect=format_effect(metric, c.effect),
                    interval=format_interval(metric, c),
                    p=p,
                    raw_p="" if raw.removesuffix(" raw)") == p else raw.removesuffix(" raw)"),
                    status=verdict_label(c),
                    is_first=index == 0,
                    comparisons=len(metric.comparisons),
                )
            )
    return rows
