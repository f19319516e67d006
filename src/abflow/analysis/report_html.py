"""A self-contained HTML report: one file, inline CSS and SVG, no scripts, works offline.

It is what a data scientist attaches to a decision: the verdict first, then the split and
its SRM check, every metric's effect with its interval, the cumulative effect over time,
latency distributions, breakdowns, and what reproduces the numbers.

This module turns a result into plain values (text and charts); the page itself is the
Jinja2 template ``templates/report.html.j2``, rendered with autoescaping, so a name or key
holding ``<script>`` is shown as text, never run.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import cache

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from abflow.analysis.formatting import (
    effect_scale,
    format_effect,
    format_interval,
    format_p,
    format_timestamp,
    format_value,
    verdict_label,
)
from abflow.analysis.report_text import progress_text
from abflow.analysis.results import ExperimentResult, MetricResult
from abflow.analysis.shadow import SHADOW_COLUMNS, shadow_rows, shadow_summary
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

__all__ = ["render_html"]

TEMPLATE = "report.html.j2"


@cache
def _environment() -> Environment:
    """One environment per process: templates from the package, autoescape always on."""
    return Environment(
        loader=PackageLoader("abflow.analysis", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )


@dataclass(frozen=True, slots=True)
class _MetricRow:
    name: str
    kind: str
    cuped: bool
    role: str
    cells: list[str]  # each variant's value, then vs, effect, interval, p
    status: str


@dataclass(frozen=True, slots=True)
class _Report:
    """Everything the template shows, as text or finished charts (``Markup``)."""

    name: str
    experiment_key: str
    phase: int
    method: str
    alpha: str
    correction: str
    verdict: str
    summary: str
    reasons: list[str]
    warnings: list[str]
    assignment_chart: Markup
    srm_status: str
    srm_p: str
    srm_alpha: str
    progress: str
    metric_headers: list[str]
    metric_rows: list[_MetricRow]
    notes: list[tuple[str, str]]
    forest_charts: list[Markup]
    timeline: list[tuple[str, Markup]]
    latency_rows: list[list[str]]
    latency_chart: Markup
    breakdown_rows: list[list[str]]
    shadow_columns: list[str]
    shadow: list[tuple[str, str, list[list[str]]]]  # variant, summary, measure rows
    provenance: list[tuple[str, str, bool]]  # field, value, shown as code
    abflow_version: str


def _metrics(result: ExperimentResult) -> tuple[list[_MetricRow], list[Markup]]:
    rows = []
    forest = []
    for metric in result.metrics:
        values = [format_value(metric, v.value) for v in metric.values]
        for c in metric.comparisons:
            label = verdict_label(c)
            rows.append(
                _MetricRow(
                    name=metric.name,
                    kind=metric.kind,
                    cuped=metric.cuped,
                    role=metric.role,
                    cells=[
                        *values,
                        c.variant,
                        format_effect(metric, c.effect),
                        format_interval(metric, c),
                        format_p(c),
                    ],
                    status=label,
                )
            )
            scale, _ = effect_scale(metric)
            label_text = (
                f"{metric.name} ({c.variant})" if len(metric.comparisons) > 1 else metric.name
            )
            forest.append(
                ForestRow(
                    label=label_text + (" %" if metric.relative else ""),
                    effect=c.effect * scale,
                    low=c.ci_low * scale,
                    high=c.ci_high * scale,
                    status=label,
                    text=f"{format_effect(metric, c.effect)} {label}",
                )
            )
    groups: dict[str, list[ForestRow]] = defaultdict(list)
    for row, metric in zip(forest, _flat(result), strict=True):
        groups[effect_scale(metric)[1]].append(row)
    charts = [
        forest_plot(rows, f"Effects ({unit})", f"effect vs {result.control} ({unit})")
        for unit, rows in groups.items()
    ]
    return rows, charts


def _flat(result: ExperimentResult) -> list[MetricResult]:
    return [metric for metric in result.metrics for _ in metric.comparisons]


def _timeline(result: ExperimentResult) -> list[tuple[str, Markup]]:
    charts = []
    for metric in result.metrics:
        if not metric.timeline or (metric.role == "secondary" and len(result.metrics) > 6):
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


def _latency(result: ExperimentResult) -> tuple[list[list[str]], Markup]:
    if not result.latency:
        return [], Markup()
    rows = [
        [s.variant, f"{s.predictions:,}"]
        + [f"{v:.1f}" for v in (s.p50_ms, s.p90_ms, s.p95_ms, s.p99_ms)]
        for s in result.latency
    ]
    cap = max(s.p99_ms for s in result.latency) * 1.2
    series = []
    for s in result.latency:
        total = sum(n for _, n in s.histogram) or 1
        coarse: dict[float, float] = defaultdict(float)
        width = max(cap / 60, 0.25)
        for lower, n in s.histogram:
            if lower <= cap:
                coarse[int(lower / width) * width] += n / total
        series.append(Series(s.variant, sorted(coarse.items())))
    title = "latency (ms), share of predictions per bin"
    return rows, step_chart(series, "Latency distribution", title)


def _breakdowns(result: ExperimentResult) -> list[list[str]]:
    metrics = {m.name: m for m in result.metrics}
    rows = []
    for r in result.breakdowns:
        metric = metrics[r.metric]
        rows.append(
            [
                f"{r.dimension}={r.value}",
                r.metric,
                r.variant,
                f"{r.control_units:,} / {r.treatment_units:,}",
                format_value(metric, r.control_value),
                format_value(metric, r.treatment_value),
                format_effect(metric, r.effect),
                "—" if r.p_value is None else f"{r.p_value:.4f}",
            ]
        )
    return rows


def render_html(result: ExperimentResult) -> str:
    """The whole report as one HTML document."""
    d = result.decision
    p = result.provenance
    assignment = bar_chart(
        [
            Bar(v.variant, v.units, v.expected_share * sum(x.units for x in result.variants))
            for v in result.variants
        ],
        "Units per variant (tick: expected from the weights)",
    )
    metric_rows, forest_charts = _metrics(result)
    latency_rows, latency_chart = _latency(result)
    window = f"{format_timestamp(p.window_start)} → {format_timestamp(p.window_end)}"
    report = _Report(
        name=result.name,
        experiment_key=result.experiment_key,
        phase=result.phase,
        method=result.method,
        alpha=f"{result.alpha:g}",
        correction=result.correction,
        verdict=d.verdict,
        summary=d.summary,
        reasons=list(d.reasons),
        warnings=list(result.warnings),
        assignment_chart=assignment,
        srm_status=result.srm.status,
        srm_p=f"{result.srm.p_value:.3g}",
        srm_alpha=f"{result.srm.alpha:g}",
        progress=progress_text(result),
        metric_headers=[
            "metric",
            "role",
            *[v.variant for v in result.variants],
            "vs control",
            "effect",
            "95% interval",
            "p / P(win)",
            "verdict",
        ],
        metric_rows=metric_rows,
        notes=[(m.name, m.note) for m in result.metrics if m.note],
        forest_charts=forest_charts,
        timeline=_timeline(result),
        latency_rows=latency_rows,
        latency_chart=latency_chart,
        breakdown_rows=_breakdowns(result),
        shadow_columns=list(SHADOW_COLUMNS),
        shadow=[(s.variant, shadow_summary(s), shadow_rows(s)) for s in result.shadow],
        provenance=[
            ("experiment", p.experiment_key, False),
            ("spec version", str(p.spec_version), False),
            ("spec sha256", p.spec_hash, True),
            ("phase", f"{p.phase} (phases: {', '.join(map(str, result.phases))})", False),
            ("data window", window, False),
            ("rows", ", ".join(f"{k}={v:,}" for k, v in p.rows.items()), False),
            ("store", p.store or "—", False),
            ("abflow", p.abflow_version, False),
            ("generated", format_timestamp(p.generated_at), False),
        ],
        abflow_version=p.abflow_version,
    )
    return _environment().get_template(TEMPLATE).render(r=report)
