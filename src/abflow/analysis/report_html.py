"""A self-contained HTML report: one file, inline CSS and SVG, no scripts, works offline.

It is what a data scientist attaches to a decision: the verdict first, then the split and
its SRM check, every metric's effect with its interval, the cumulative effect over time,
latency distributions, breakdowns, and what reproduces the numbers.
"""

from __future__ import annotations

from collections import defaultdict
from html import escape

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

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d1d1f;
background:#fafafa}
main{max-width:980px;margin:0 auto;padding:24px 28px 60px;background:#fff}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 8px;border-bottom:1px solid #eee;
padding-bottom:4px}h3{font-size:15px;margin:18px 0 6px}
.meta{color:#666}.verdict{border-radius:8px;padding:14px 18px;margin:18px 0}
.ship{background:#e8f5e9;border:1px solid #66bb6a}.keep_control,.invalid{background:#ffebee;
border:1px solid #e57373}.keep_running{background:#fff8e1;border:1px solid #ffca28}
.verdict strong{font-size:17px}table{border-collapse:collapse;width:100%;margin:8px 0}
th,td{padding:5px 8px;border-bottom:1px solid #eee;text-align:right;white-space:nowrap}
th:first-child,td:first-child,td.l,th.l{text-align:left}th{background:#f5f5f7;font-weight:600}
.better,.pass{color:#2e7d32;font-weight:600}.worse,.fail{color:#c62828;font-weight:600}
.inconclusive{color:#6d6d6d}.error{color:#8e24aa}.chart{max-width:100%;height:auto}
.warn{color:#b26a00}.small{font-size:12px;color:#666}code{background:#f3f3f3;padding:1px 4px}
"""


def _table(headers: list[str], rows: list[list[str]], left: int = 1) -> str:
    head = "".join(
        f'<th class="{"l" if i < left else ""}">{escape(h)}</th>' for i, h in enumerate(headers)
    )
    body = "".join(
        "<tr>"
        + "".join(f'<td class="{"l" if i < left else ""}">{c}</td>' for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _status(label: str) -> str:
    return f'<span class="{escape(label)}">{escape(label)}</span>'


def _metrics_section(result: ExperimentResult) -> str:
    headers = ["metric", "role", *[v.variant for v in result.variants]]
    headers += ["vs control", "effect", "95% interval", "p / P(win)", "verdict"]
    rows = []
    forest = []
    for metric in result.metrics:
        values = [escape(format_value(metric, v.value)) for v in metric.values]
        for c in metric.comparisons:
            label = verdict_label(c)
            rows.append(
                [
                    f"<b>{escape(metric.name)}</b><br><span class='small'>{escape(metric.kind)}"
                    + (" · CUPED" if metric.cuped else "")
                    + "</span>",
                    escape(metric.role),
                    *values,
                    escape(c.variant),
                    escape(format_effect(metric, c.effect)),
                    escape(format_interval(metric, c)),
                    escape(format_p(c)),
                    _status(label),
                ]
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
    charts = "".join(
        forest_plot(rows, f"Effects ({unit})", f"effect vs {result.control} ({unit})")
        for unit, rows in groups.items()
    )
    notes = "".join(
        f"<li><b>{escape(m.name)}</b>: {escape(m.note)}</li>" for m in result.metrics if m.note
    )
    return (
        "<h2>Metrics</h2>"
        + _table(headers, rows, left=2)
        + (f"<ul class='small'>{notes}</ul>" if notes else "")
        + "<h3>Effects with intervals</h3>"
        + charts
    )


def _flat(result: ExperimentResult) -> list[MetricResult]:
    return [metric for metric in result.metrics for _ in metric.comparisons]


def _timeline_section(result: ExperimentResult) -> str:
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
        charts.append(
            f"<h3>{escape(metric.name)}</h3>"
            + line_chart(bands, f"Cumulative effect on {metric.name}", f"effect ({unit})")
        )
    if not charts:
        return ""
    return (
        "<h2>Cumulative effect over time</h2><p class='small'>Each point uses every unit exposed "
        "up to that day. Early swings are normal; a stable interval away from zero is not.</p>"
        + "".join(charts)
    )


def _latency_section(result: ExperimentResult) -> str:
    if not result.latency:
        return ""
    rows = [
        [escape(s.variant), f"{s.predictions:,}"]
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
    return (
        "<h2>Latency</h2>"
        + _table(["variant", "predictions", "P50 ms", "P90 ms", "P95 ms", "P99 ms"], rows)
        + step_chart(series, "Latency distribution", "latency (ms), share of predictions per bin")
    )


def _breakdown_section(result: ExperimentResult) -> str:
    if not result.breakdowns:
        return ""
    metrics = {m.name: m for m in result.metrics}
    rows = []
    for r in result.breakdowns:
        metric = metrics[r.metric]
        rows.append(
            [
                escape(f"{r.dimension}={r.value}"),
                escape(r.metric),
                escape(r.variant),
                f"{r.control_units:,} / {r.treatment_units:,}",
                escape(format_value(metric, r.control_value)),
                escape(format_value(metric, r.treatment_value)),
                escape(format_effect(metric, r.effect)),
                "—" if r.p_value is None else f"{r.p_value:.4f}",
            ]
        )
    return (
        "<h2>Breakdowns</h2><p class='small'>Exploratory: uncorrected, fixed-horizon tests per "
        "segment. Use them to find where an effect lives, not to declare a winner.</p>"
        + _table(
            [
                "segment",
                "metric",
                "variant",
                "units (c / t)",
                "control",
                "treatment",
                "effect",
                "p",
            ],
            rows,
            left=3,
        )
    )


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
    srm_text = (
        f"<p class='{'fail' if result.srm.is_mismatch else 'pass'}'>SRM check: p = "
        f"{result.srm.p_value:.3g} "
        + (
            "— sample ratio mismatch: the split is broken, do not trust the metrics."
            if result.srm.is_mismatch
            else f"(threshold {result.srm.alpha:g}): the split matches the weights.</p>"
        )
    )
    progress = escape(progress_text(result))
    warnings = "".join(f"<p class='warn'>⚠ {escape(w)}</p>" for w in result.warnings)
    provenance = _table(
        ["field", "value"],
        [
            ["experiment", escape(p.experiment_key)],
            ["spec version", str(p.spec_version)],
            ["spec sha256", f"<code>{escape(p.spec_hash)}</code>"],
            ["phase", f"{p.phase} (phases: {escape(', '.join(map(str, result.phases)))})"],
            [
                "data window",
                f"{format_timestamp(p.window_start)} → {format_timestamp(p.window_end)}",
            ],
            ["rows", escape(", ".join(f"{k}={v:,}" for k, v in p.rows.items()))],
            ["store", escape(p.store or "—")],
            ["abflow", escape(p.abflow_version)],
            ["generated", format_timestamp(p.generated_at)],
        ],
    )
    reasons = "".join(f"<li>{escape(r)}</li>" for r in d.reasons)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(result.name)} — abflow report</title><style>{_CSS}</style></head>
<body><main>
<h1>{escape(result.name)}</h1>
<div class="meta">experiment <code>{escape(result.experiment_key)}</code> · phase {result.phase} ·
{escape(result.method)} analysis · alpha {result.alpha:g} · {escape(result.correction)} correction</div>
<div class="verdict {escape(d.verdict)}"><strong>{escape(d.summary)}</strong><ul>{reasons}</ul></div>
{warnings}
<h2>Assignment</h2>{assignment}{srm_text}
<p>Progress: {progress}</p>
{_metrics_section(result)}
{_timeline_section(result)}
{_latency_section(result)}
{_breakdown_section(result)}
<h2>Reproduce</h2>{provenance}
<p class="small">Generated by abflow {escape(p.abflow_version)}: <code>abflow analyze
{escape(p.experiment_key)} --format html</code> on the same store and window gives these numbers.</p>
</main></body></html>
"""
