"""How numbers read in every report: rates as percentages, latency in ms, effects signed.

Shared by the terminal table, Markdown and HTML so a number looks the same everywhere.
"""

from __future__ import annotations

import math
import time

from abflow.analysis.results import ComparisonResult, MetricResult

__all__ = [
    "RATE_KINDS",
    "effect_scale",
    "format_effect",
    "format_interval",
    "format_p",
    "format_timestamp",
    "format_value",
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


def format_timestamp(ts: float | None) -> str:
    if ts is None or not math.isfinite(ts):
        return "—"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


def verdict_label(comparison: ComparisonResult) -> str:
    """One word for a cell: the guardrail status when there is one, else the outcome."""
    if comparison.guardrail is not None:
        return comparison.guardrail
    return comparison.outcome
