"""A self-contained HTML report: one file, inline CSS and SVG, no scripts, works offline.

It is what a data scientist attaches to a decision: the verdict first, then the split and
its SRM check, every metric's effect with its interval, the cumulative effect over time,
latency distributions, breakdowns, and what reproduces the numbers.

This module turns a result into plain values (text and charts); the page itself is the
Jinja2 template ``templates/report.html.j2``, rendered with autoescaping, so a name or key
holding ``<script>`` is shown as text, never run.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from abflow.analysis.charts import (
    assignment_chart,
    effect_charts,
    latency_chart,
    timeline_charts,
)
from abflow.analysis.drift_timeline import drift_alarms, drift_charts, drift_message
from abflow.analysis.formatting import (
    MetricRow,
    cutoff_text,
    format_effect,
    format_p_value,
    format_rows,
    format_srm,
    format_timestamp,
    format_value,
    metric_rows,
)
from abflow.analysis.identical_features import identical_features_lines
from abflow.analysis.report_text import progress_text
from abflow.analysis.results import ExperimentResult
from abflow.analysis.shadow import SHADOW_COLUMNS, shadow_rows, shadow_summary

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
    srm_text: str
    progress: str
    variant_names: list[str]
    has_vs: bool
    metric_rows: list[MetricRow]
    notes: list[tuple[str, str]]
    forest_charts: list[Markup]
    timeline: list[tuple[str, Markup]]
    latency_rows: list[list[str]]
    latency_chart: Markup
    breakdown_rows: list[list[str]]
    identical_features: list[str]
    drift_message: str
    drift_charts: list[tuple[str, Markup]]
    drift_alarms: list[list[str]]
    train_serve_skew: list[str]
    shadow_columns: list[str]
    shadow: list[tuple[str, str, list[list[str]]]]  # variant, summary, measure rows
    provenance: list[tuple[str, str, bool]]  # field, value, shown as code
    abflow_version: str


def _latency_rows(result: ExperimentResult) -> list[list[str]]:
    return [
        [s.variant, f"{s.predictions:,}"]
        + [f"{v:.1f} ms" for v in (s.p50_ms, s.p90_ms, s.p95_ms, s.p99_ms)]
        for s in result.latency
    ]


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
                format_p_value(r.p_value),
            ]
        )
    return rows


def render_html(result: ExperimentResult) -> str:
    """The whole report as one HTML document."""
    history = result.monitoring.history if result.monitoring is not None else []
    d = result.decision
    p = result.provenance
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
        assignment_chart=assignment_chart(result),
        srm_status=result.srm.status,
        srm_text=format_srm(result.srm),
        progress=progress_text(result),
        variant_names=[v.variant for v in result.variants],
        has_vs=len(result.variants) > 2,
        metric_rows=metric_rows(result),
        notes=[(m.name, m.note) for m in result.metrics if m.note],
        forest_charts=effect_charts(result),
        timeline=timeline_charts(result),
        latency_rows=_latency_rows(result),
        latency_chart=latency_chart(result),
        breakdown_rows=_breakdowns(result),
        identical_features=identical_features_lines(result),
        drift_message=drift_message(history),
        drift_charts=drift_charts(history),
        drift_alarms=[list(alarm.values()) for alarm in drift_alarms(history)],
        train_serve_skew=result.monitoring.train_serve_skew if result.monitoring else [],
        shadow_columns=list(SHADOW_COLUMNS),
        shadow=[(s.variant, shadow_summary(s), shadow_rows(s)) for s in result.shadow],
        provenance=[
            ("experiment", p.experiment_key, False),
            ("spec version", str(p.spec_version), False),
            ("spec sha256", p.spec_hash, True),
            ("phase", f"{p.phase} (phases: {', '.join(map(str, result.phases))})", False),
            ("data window", window, False),
            ("data cutoff", cutoff_text(p.until) or "none: every event of the window", False),
            ("rows", format_rows(p.rows), False),
            ("store", p.store or "—", False),
            ("abflow", p.abflow_version, False),
            ("generated", format_timestamp(p.generated_at), False),
        ],
        abflow_version=p.abflow_version,
    )
    return _environment().get_template(TEMPLATE).render(r=report)
