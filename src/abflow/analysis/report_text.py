"""Text reports: a Rich table for the terminal, Markdown for a PR comment, JSON for machines.

All three render the same :class:`ExperimentResult`; none recomputes anything.
"""

from __future__ import annotations

import io

import orjson
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from abflow.analysis.formatting import (
    format_effect,
    format_interval,
    format_p,
    format_timestamp,
    format_value,
    verdict_label,
)
from abflow.analysis.results import ExperimentResult, SrmSummary
from abflow.analysis.shadow import SHADOW_COLUMNS, shadow_rows, shadow_summary

__all__ = [
    "progress_text",
    "render_json",
    "render_markdown",
    "render_table",
    "table_renderable",
]

_STYLE = {
    "better": "bold green",
    "pass": "green",
    "worse": "bold red",
    "fail": "bold red",
    "inconclusive": "yellow",
    "error": "magenta",
}
_VERDICT_STYLE = {
    "ship": "green",
    "keep_control": "red",
    "keep_running": "yellow",
    "invalid": "red",
}


def progress_text(result: ExperimentResult) -> str:
    """Units so far against the planned sample, in one sentence."""
    progress = result.progress
    if not progress.required_units:
        return f"{progress.units:,} units; {progress.note}."
    if progress.units >= progress.required_units:
        return (
            f"planned sample reached: {progress.units:,} units of {progress.required_units:,} "
            f"needed ({progress.note})."
        )
    remaining = (
        f", about {progress.remaining_days:.1f} more days at the current rate"
        if progress.remaining_days is not None
        else ""
    )
    return (
        f"{progress.units:,} of {progress.required_units:,} planned units "
        f"({(progress.fraction or 0):.0%}){remaining} ({progress.note})."
    )


def render_json(result: ExperimentResult) -> str:
    """The documented JSON (``schema_version`` 1), keys sorted, two-space indented."""
    return orjson.dumps(
        result.to_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
    ).decode()


def _header(result: ExperimentResult) -> str:
    p = result.provenance
    return (
        f"phase {result.phase} (of {', '.join(map(str, result.phases))}) · method {result.method} · alpha {result.alpha:g}"
        f" · correction {result.correction}\n"
        f"data {format_timestamp(p.window_start)} → {format_timestamp(p.window_end)} · "
        f"{p.rows.get('units', 0):,} units"
    )


def srm_text(srm: SrmSummary) -> str:
    """The SRM line of the terminal report; an undefined test is "not enough data"."""
    if srm.status == "not_enough_data":
        return f"SRM not enough data ({srm.error_code or 'undefined test'}): split not checked yet"
    if srm.is_mismatch:
        return f"SRM p-value {srm.p_value:.3g} MISMATCH: do not trust these results"
    return f"SRM p-value {srm.p_value:.3g} (split healthy)"


def srm_markdown(srm: SrmSummary) -> str:
    """The SRM line of the Markdown report."""
    if srm.status == "not_enough_data":
        return f"SRM **not enough data** ({srm.error_code or 'undefined test'})"
    if srm.is_mismatch:
        return f"SRM p-value **{srm.p_value:.3g}** — **sample ratio mismatch**"
    return f"SRM p-value **{srm.p_value:.3g}** (healthy)"


def table_renderable(result: ExperimentResult) -> Group:
    """Everything in the terminal report, as one Rich renderable."""
    variants = Table(title="Assignment", title_justify="left", expand=False)
    for column in ("variant", "units", "observed", "expected"):
        variants.add_column(column, justify="right" if column != "variant" else "left")
    for v in result.variants:
        variants.add_row(
            v.variant, f"{v.units:,}", f"{v.observed_share:.2%}", f"{v.expected_share:.2%}"
        )
    srm_style = {"mismatch": "bold red", "healthy": "green"}.get(result.srm.status, "yellow")
    srm = Text(srm_text(result.srm), style=srm_style)
    metrics = Table(title="Metrics (P primary, G guardrail)", title_justify="left", expand=False)
    metrics.add_column("metric", no_wrap=True)
    for v in result.variants:
        metrics.add_column(v.variant, justify="right", no_wrap=True)
    several = len(result.variants) > 2
    if several:
        metrics.add_column("vs", no_wrap=True)
    for column in ("effect", "95% interval", "p adj." if result.method != "bayesian" else "P(win)"):
        metrics.add_column(column, justify="right", no_wrap=True)
    metrics.add_column("verdict", no_wrap=True)
    for metric in result.metrics:
        values = [format_value(metric, v.value) for v in metric.values]
        role = {"primary": " P", "guardrail": " G"}.get(metric.role, "")
        for index, c in enumerate(metric.comparisons):
            label = verdict_label(c)
            metrics.add_row(
                metric.name + role if index == 0 else "",
                *(values if index == 0 else [""] * len(values)),
                *([c.variant] if several else []),
                format_effect(metric, c.effect),
                format_interval(metric, c),
                format_p(c).split(" (")[0],
                Text(label, style=_STYLE.get(label, "")),
            )
    progress_line = "Progress: " + progress_text(result)
    decision = result.decision
    verdict = Panel(
        Text(decision.summary + "\n" + "\n".join(f"• {r}" for r in decision.reasons)),
        title=f"Verdict: {decision.verdict.replace('_', ' ')}",
        border_style=_VERDICT_STYLE.get(decision.verdict, "white"),
        expand=False,
    )
    p = result.provenance
    footer = Text(
        f"spec v{p.spec_version} sha256:{p.spec_hash[:12]} · abflow {p.abflow_version} · "
        f"generated {format_timestamp(p.generated_at)}",
        style="dim",
    )
    parts: list[object] = [
        Text(f"{result.name} ({result.experiment_key})", style="bold"),
        Text(_header(result)),
        variants,
        srm,
        metrics,
        Text(progress_line),
        verdict,
    ]
    for shadow in result.shadow:
        table = Table(
            title=f"Shadow {shadow.variant} vs served, paired", title_justify="left", expand=False
        )
        for column in SHADOW_COLUMNS:
            table.add_column(column, justify="left" if column == "measure" else "right")
        for row in shadow_rows(shadow):
            table.add_row(*row)
        parts.extend([Text(shadow_summary(shadow)), table])
    parts.extend(Text(f"warning: {w}", style="yellow") for w in result.warnings)
    parts.append(footer)
    return Group(*parts)  # type: ignore[arg-type]


def render_table(result: ExperimentResult, width: int = 120) -> str:
    """The terminal report as plain text (what ``abflow analyze`` prints, without colour)."""
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(table_renderable(result))
    return console.export_text()


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _rows_text(rows: dict[str, int]) -> str:
    """The provenance's row counts in words (``1,200 units · 3,400 unit event rows``)."""
    return " · ".join(f"{count:,} {name.replace('_', ' ')}" for name, count in rows.items())


def render_markdown(result: ExperimentResult) -> str:
    """GitHub-flavoured Markdown for a pull-request comment or a CI job summary."""
    icon = {"ship": "✅", "keep_control": "⛔", "keep_running": "⏳", "invalid": "⚠️"}
    d = result.decision
    lines = [
        f"## {icon.get(d.verdict, '')} {_md_escape(result.name)} — {d.verdict.replace('_', ' ')}",
        "",
        f"**{_md_escape(d.summary)}**",
        "",
        *[f"- {_md_escape(r)}" for r in d.reasons],
        "",
        _header(result).replace("\n", "  \n") + "  ",
        "Progress: " + progress_text(result),
        "",
        "| variant | units | observed | expected |",
        "|---|---:|---:|---:|",
        *[
            f"| {v.variant} | {v.units:,} | {v.observed_share:.2%} | {v.expected_share:.2%} |"
            for v in result.variants
        ],
        "",
        srm_markdown(result.srm),
        "",
        "| metric | role | "
        + " | ".join(v.variant for v in result.variants)
        + " | variant | effect | 95% interval | p / P(win) | verdict |",
        "|---|---|" + "---:|" * len(result.variants) + "---|---:|---|---:|---|",
    ]
    for metric in result.metrics:
        values = " | ".join(format_value(metric, v.value) for v in metric.values)
        for c in metric.comparisons:
            lines.append(
                f"| {metric.name} | {metric.role} | {values} | {c.variant} | "
                f"{format_effect(metric, c.effect)} | {format_interval(metric, c)} | "
                f"{format_p(c)} | {verdict_label(c)} |"
            )
    for shadow in result.shadow:
        lines += [
            "",
            f"### Shadow {_md_escape(shadow.variant)} vs served (paired)",
            "",
            _md_escape(shadow_summary(shadow)),
            "",
            "| " + " | ".join(SHADOW_COLUMNS) + " |",
            "|---|" + "---:|" * (len(SHADOW_COLUMNS) - 1),
            *["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in shadow_rows(shadow)],
        ]
    p = result.provenance
    lines += [
        "",
        *[f"> warning: {_md_escape(w)}" for w in result.warnings],
        f"<sub>spec v{p.spec_version} sha256:{p.spec_hash[:12]} · {_rows_text(p.rows)} · "
        f"abflow {p.abflow_version} · generated {format_timestamp(p.generated_at)}</sub>",
        "",
    ]
    return "\n".join(lines)
