"""``abflow analyze``: analyse an experiment's phase and print or write the report."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from abflow.cli.console import check_output_path, fail, out_console, write_output
from abflow.cli.options import SpecVersionOption, StoreOption, ThresholdOption, parse_time


class ReportFormat(StrEnum):
    table = "table"
    json = "json"
    markdown = "markdown"
    html = "html"


def analyze(
    experiment: Annotated[str, typer.Argument(help="Experiment key, as registered in the store.")],
    store: StoreOption = None,
    output_format: Annotated[
        ReportFormat, typer.Option("--format", "-f", help="Report format.")
    ] = ReportFormat.table,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the report to this file.")
    ] = None,
    spec_file: Annotated[
        Path | None,
        typer.Option("--spec", help="Analyse with this spec file instead of the stored one."),
    ] = None,
    spec_version: SpecVersionOption = None,
    phase: Annotated[
        int | None, typer.Option("--phase", help="Phase to analyse (default: the latest).")
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            "--until",
            metavar="TIME",
            help="Count only events before this time: epoch seconds (the end of an audited "
            "decision's window) or an ISO time, UTC unless it says otherwise.",
            show_default=False,
        ),
    ] = None,
    by: Annotated[
        list[str] | None,
        typer.Option("--by", help="Break down by this exposure attribute (repeatable)."),
    ] = None,
    threshold: ThresholdOption = 0.5,
    segment: Annotated[
        str | None,
        typer.Option(
            "--segment",
            help="Break the shadow section down by this exposure attribute (paired tests per "
            "segment, p-values corrected across segments).",
        ),
    ] = None,
    rollups: Annotated[
        bool,
        typer.Option(
            "--rollups",
            help="Fold new events into rollups (per unit, and per variant and day) and read those.",
        ),
    ] = False,
) -> None:
    """Analyse one phase of an experiment: metrics, SRM, guardrails, progress and a verdict.

    Example: [bold]abflow analyze fraud-model-v2 --format html -o report.html[/] ·
    re-run an audited decision with the spec and the data it saw (its evidence's phase and
    window, and the spec version of its registration): [bold]abflow analyze fraud-model-v2
    --phase 2 --spec-version 3 --until 1796688000.0[/]
    """
    from abflow.analysis import (
        AnalysisOptions,
        render_html,
        render_json,
        render_markdown,
        render_table,
    )
    from abflow.analysis import analyze as run_analysis
    from abflow.analysis.report_text import table_renderable
    from abflow.spec import ExperimentSpec, load_experiment
    from abflow.store.engine import display_url, resolve_url

    if spec_file is not None and spec_version is not None:
        fail("give --spec or --spec-version, not both: one says which spec to analyse with")
    if output is not None:
        check_output_path(output)
    cutoff = None if until is None else parse_time(until, "--until")
    url = resolve_url(store)
    target: ExperimentSpec | str = experiment
    if spec_file is not None:
        target = load_experiment(spec_file)
        if target.key != experiment:  # the key was ignored: its data would be analysed
            fail(
                f"{spec_file} is the spec of {target.key!r}, not of {experiment!r}: "
                "name the experiment the spec file describes"
            )
    options = AnalysisOptions(
        phase=phase,
        spec_version=spec_version,
        until=cutoff,
        dimensions=tuple(by or ()),
        store_label=display_url(url),
        rollups=rollups,
        threshold=threshold,
        shadow_segment=segment,
    )
    result = run_analysis(url, target, options)
    if output_format is ReportFormat.table and output is None:
        out_console.print(table_renderable(result), soft_wrap=False)  # wrap panel text
        return
    renderers = {
        ReportFormat.table: render_table,
        ReportFormat.json: render_json,
        ReportFormat.markdown: render_markdown,
        ReportFormat.html: render_html,
    }
    text = renderers[output_format](result)
    if output is None:
        out_console.print(text, markup=False, highlight=False, soft_wrap=True)
        return
    write_output(output, text)
    out_console.print(f"wrote {output} ({output_format.value}): {result.decision.summary}")


def register(app: typer.Typer) -> None:
    app.command()(analyze)
