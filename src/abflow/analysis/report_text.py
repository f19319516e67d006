"""Text reports: a Rich table for the terminal, Markdown for a PR comment, JSON for machines.

All three render the same :class:`ExperimentResult`; none recomputes anything.
"""

from __future__ import annotations

import io

import orjson
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.measure import Measurement
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from abflow.analysis.drift_timeline import monitoring_lines
from abflow.analysis.formatting import (
    MetricRow,
    cutoff_text,
    format_duration,
    format_effect,
    format_interval,
    format_p,
    format_p_value,
    format_rows,
    format_share,
    format_timestamp,
    format_value,
    metric_rows,
    verdict_label,
)
from abflow.analysis.identical_features import identical_features_lines
from abflow.analysis.markdown import markdown_text
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
        f", about {format_duration(progress.remaining_days)} more at the current rate"
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
        + (f" · {cutoff_text(p.until)}" if p.until is not None else "")
    )


def srm_text(srm: SrmSummary) -> str:
    """The SRM line of the terminal report; an undefined test is "not enough data"."""
    if srm.status == "not_enough_data":
        return f"SRM not enough data ({srm.error_code or 'undefined test'}): split not checked yet"
    if srm.is_mismatch:
        return f"SRM p-value {format_p_value(srm.p_value)} MISMATCH: do not trust these results"
    return f"SRM p-value {format_p_value(srm.p_value)} (split healthy)"


def srm_markdown(srm: SrmSummary) -> str:
    """The SRM line of the Markdown report."""
    if srm.status == "not_enough_data":
        return f"SRM **not enough data** ({srm.error_code or 'undefined test'})"
    if srm.is_mismatch:
        return f"SRM p-value **{format_p_value(srm.p_value)}** — **sample ratio mismatch**"
    return f"SRM p-value **{format_p_value(srm.p_value)}** (healthy)"


class MetricsTable:
    """The metrics table, laid out for the width it is printed at.

    Wide enough: one table (values per variant, then effect, interval, p and verdict). Too
    narrow (80 columns, or many variants): the values and the effects as two tables, the
    interval wrapping between its bounds; a number is never cut to ``0.…``.
    """

    def __init__(self, result: ExperimentResult) -> None:
        self.result = result
        self.rows = metric_rows(result)
        self.several = len(result.variants) > 2
        self.p_header = "p adj." if result.method != "bayesian" else "P(win)"

    def _name(self, row: MetricRow) -> str:
        role = {"primary": " P", "guardrail": " G"}.get(row.role, "")
        return row.name + role if row.is_first else ""

    def _add_values(self, table: Table) -> None:
        table.add_column("metric", overflow="fold")
        for v in self.result.variants:
            table.add_column(v.variant, justify="right", no_wrap=True)

    def _add_effects(self, table: Table, *, with_vs: bool) -> None:
        if with_vs:
            table.add_column("vs", no_wrap=True)
        table.add_column("effect", justify="right", no_wrap=True)
        table.add_column("95% interval", justify="right", min_width=10)
        table.add_column(self.p_header, justify="right", no_wrap=True)
        table.add_column("verdict", no_wrap=True)

    def _effect_cells(self, row: MetricRow, *, with_vs: bool) -> list[str | Text]:
        return [
            *([row.variant] if with_vs else []),
            row.effect,
            row.interval,
            row.p,
            Text(row.status, style=_STYLE.get(row.status, "")),
        ]

    def wide(self) -> Table:
        table = Table(title="Metrics (P primary, G guardrail)", title_justify="left")
        self._add_values(table)
        self._add_effects(table, with_vs=self.several)
        for row in self.rows:
            values = row.values if row.is_first else [""] * len(row.values)
            cells = self._effect_cells(row, with_vs=self.several)
            table.add_row(self._name(row), *values, *cells)
        return table

    def narrow(self) -> Group:
        values = Table(title="Metrics (P primary, G guardrail)", title_justify="left")
        self._add_values(values)
        for row in self.rows:
            if row.is_first:
                values.add_row(self._name(row), *row.values)
        effects = Table(title=f"Effects vs {self.result.control}", title_justify="left")
        effects.add_column("metric", overflow="fold")
        self._add_effects(effects, with_vs=self.several)
        for row in self.rows:
            effects.add_row(self._name(row), *self._effect_cells(row, with_vs=self.several))
        return Group(values, effects)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        wide = self.wide()
        natural = Measurement.get(console, options.update_width(10_000), wide).maximum
        yield wide if natural <= options.max_width else self.narrow()


def table_renderable(result: ExperimentResult) -> Group:
    """Everything in the terminal report, as one Rich renderable."""
    variants = Table(title="Assignment", title_justify="left", expand=False)
    for column in ("variant", "units", "observed", "expected"):
        variants.add_column(column, justify="right" if column != "variant" else "left")
    for v in result.variants:
        variants.add_row(
            v.variant,
            f"{v.units:,}",
            format_share(v.observed_share),
            format_share(v.expected_share),
        )
    srm_style = {"mismatch": "bold red", "healthy": "green"}.get(result.srm.status, "yellow")
    srm = Text(srm_text(result.srm), style=srm_style)
    metrics = MetricsTable(result)
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
    parts.extend(Text(f"Identical features: {line}") for line in identical_features_lines(result))
    parts.extend(Text(f"Monitor: {line}") for line in monitoring_lines(result))
    parts.extend(Text(f"warning: {w}", style="yellow") for w in result.warnings)
    parts.append(footer)
    return Group(*parts)  # type: ignore[arg-type]


def render_table(result: ExperimentResult, width: int = 120) -> str:
    """The terminal report as plain text (what ``abflow analyze`` prints, without colour)."""
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None, emoji=False)
    console.print(table_renderable(result))
    return console.export_text()


def render_markdown(result: ExperimentResult) -> str:
    """GitHub-flavoured Markdown for a pull-request comment or a CI job summary."""
    icon = {"ship": "✅", "keep_control": "⛔", "keep_running": "⏳", "invalid": "⚠️"}
    d = result.decision
    lines = [
        f"## {icon.get(d.verdict, '')} {markdown_text(result.name)} — {d.verdict.replace('_', ' ')}",
        "",
        f"**{markdown_text(d.summary)}**",
        "",
        *[f"- {markdown_text(r)}" for r in d.reasons],
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
            f"### Shadow {markdown_text(shadow.variant)} vs served (paired)",
            "",
            markdown_text(shadow_summary(shadow)),
            "",
            "| " + " | ".join(SHADOW_COLUMNS) + " |",
            "|---|" + "---:|" * (len(SHADOW_COLUMNS) - 1),
            *[
                "| " + " | ".join(markdown_text(c) for c in row) + " |"
                for row in shadow_rows(shadow)
            ],
        ]
    identical = identical_features_lines(result)
    if identical:
        lines += ["", "**Identical features**", "", *[f"- {markdown_text(x)}" for x in identical]]
    monitor = monitoring_lines(result)
    if monitor:
        lines += ["", "**Drift over time**", "", *[f"- {markdown_text(x)}" for x in monitor]]
    p = result.provenance
    lines += [
        "",
        *[f"> warning: {markdown_text(w)}" for w in result.warnings],
        f"<sub>spec v{p.spec_version} sha256:{p.spec_hash[:12]} · {format_rows(p.rows)} · "
        f"abflow {p.abflow_version} · generated {format_timestamp(p.generated_at)}</sub>",
        "",
    ]
    return "\n".join(lines)
