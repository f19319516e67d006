"""``abflow drift``: has the data moved? Per-feature drift between two samples, or skew
between the variants of one sample.

Exit codes make it a CI or cron check: 0 nothing drifted, 1 at least one feature drifted,
2 the input could not be read, the options are invalid or anything else went wrong.
"""

from __future__ import annotations

import io
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from abflow.cli.console import ExitCode, check_output_path, fail, out_console, write_output
from abflow.drift import MEASURES, DriftMethod, DriftReport, JsBase, detect_drift
from abflow.errors import InvalidArgumentError
from abflow.monitoring.feature_files import read_columns, split_by

__all__ = ["drift", "register"]

_METHODS = "\n".join(f"  {measure.describe()}" for measure in MEASURES.values())

EXAMPLES = f"""
Examples:

  [bold]abflow drift train.csv serving.parquet[/]
    every shared column: training data against what the gateway serves now

  [bold]abflow drift train.csv today.jsonl --feature amount --feature country --categorical country[/]
    two features, one of them categorical

  [bold]abflow drift served.csv --by variant --control champion --format markdown[/]
    feature skew: each variant's features against the control's (they should match)

  [bold]abflow drift ref.csv cur.csv --method psi --threshold 0.25 --format json -o drift.json[/]

  [bold]abflow drift ref.csv cur.csv --js-base e[/]
    Jensen-Shannon in natural log, as Evidently measures it (keeps its thresholds)

Methods (threshold default):

{_METHODS}

auto: ks / chi2 up to 1,000 values in the smaller sample, wasserstein / js above (tests flag
negligible shifts on large samples; js only with 100 values per category). On categorical
features ks becomes chi2 and wasserstein becomes js; columns holding text are categorical
without --categorical (numbers in one file and text in the other is an error). Missing values (empty, null, NaN) are left out and their shares
reported.

Exit codes: 0 no drift, 1 drift in at least one feature, 2 invalid input or any other error.
"""


class DriftFormat(StrEnum):
    table = "table"
    json = "json"
    markdown = "markdown"


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if abs(value) < 1e-3 and value != 0 else f"{value:.4f}"


def _percent(share: float) -> str:
    return f"{share * 100:.1f}%"


def _rows(report: DriftReport) -> list[list[str]]:
    return [
        [
            f.feature,
            f.kind,
            f.method.value,
            _number(f.statistic),
            _number(f.p_value),
            _number(f.threshold),
            _number(f.psi),
            f"{f.n_reference:,}/{f.n_current:,}",
            f"{_percent(f.missing_reference)}/{_percent(f.missing_current)}",
            "DRIFT" if f.drifted else "ok",
        ]
        for f in report.features
    ]


HEADERS = [
    "feature",
    "kind",
    "method",
    "statistic",
    "p-value",
    "threshold",
    "PSI",
    "n ref/cur",
    "missing ref/cur",
    "verdict",
]


def _summary(report: DriftReport) -> str:
    if not report.drifted:
        return f"no drift in {len(report.features)} features"
    names = ", ".join(report.drifted)
    return f"drift in {len(report.drifted)} of {len(report.features)} features: {names}"


def _table(title: str, report: DriftReport) -> Table:
    table = Table(title=title, title_justify="left")
    for header in HEADERS:
        numeric = header in {"statistic", "p-value", "threshold", "PSI", "n ref/cur"}
        table.add_column(header, justify="right" if numeric else "left")
    for row in _rows(report):
        table.add_row(*row, style="bold red" if row[-1] == "DRIFT" else None)
    return table


def _markdown(title: str, report: DriftReport) -> str:
    from abflow.analysis.markdown import markdown_text

    lines = [f"### {markdown_text(title)}", "", "| " + " | ".join(HEADERS) + " |"]
    lines.append("|" + "|".join("---" for _ in HEADERS) + "|")
    for row in _rows(report):
        status = "**DRIFT**" if row[-1] == "DRIFT" else "ok"
        lines.append("| " + " | ".join([markdown_text(row[0]), *row[1:-1], status]) + " |")
    lines += ["", markdown_text(_summary(report)), ""]
    return "\n".join(lines)


def drift(
    reference: Annotated[
        Path, typer.Argument(help="Reference sample: .csv, .jsonl/.ndjson or .parquet.")
    ],
    current: Annotated[
        Path | None,
        typer.Argument(help="Current sample, same formats (omit with --by).", show_default=False),
    ] = None,
    by: Annotated[
        str | None,
        typer.Option("--by", help="Compare groups of one file by this column (e.g. variant)."),
    ] = None,
    control: Annotated[
        str | None,
        typer.Option(help="With --by: the group the others are compared with (default: first)."),
    ] = None,
    feature: Annotated[
        list[str] | None,
        typer.Option("--feature", help="Feature to compare (repeatable; default: all shared)."),
    ] = None,
    categorical: Annotated[
        list[str] | None,
        typer.Option("--categorical", help="Treat this feature as categorical (repeatable)."),
    ] = None,
    method: Annotated[
        DriftMethod, typer.Option(help="What decides drift (see below).")
    ] = DriftMethod.auto,
    threshold: Annotated[
        float | None, typer.Option(help="Drift threshold (default depends on the method).")
    ] = None,
    bins: Annotated[int, typer.Option(help="Reference-quantile bins for numeric PSI / JS.")] = 10,
    js_base: Annotated[
        JsBase,
        typer.Option(
            "--js-base", help="Jensen-Shannon log base: 2 (0 to 1) or e (Evidently's, 1.201x less)."
        ),
    ] = JsBase.two,
    workers: Annotated[
        int, typer.Option(min=0, help="Features compared at once on threads (0: one per CPU).")
    ] = 1,
    output_format: Annotated[
        DriftFormat, typer.Option("--format", "-f", help="table, json (stable keys) or markdown.")
    ] = DriftFormat.table,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the result to this file.")
    ] = None,
) -> None:
    """Per-feature drift between two samples, or feature skew between variants (--by)."""
    if output is not None:
        check_output_path(output)
    try:
        comparisons = _comparisons(reference, current, by, control)
        reports = [
            (
                title,
                detect_drift(
                    ref,
                    cur,
                    features=feature or None,
                    categorical=categorical or (),
                    method=method,
                    threshold=threshold,
                    bins=bins,
                    js_base=js_base,
                    workers=workers or os.cpu_count() or 1,
                ),
            )
            for title, ref, cur in comparisons
        ]
    except InvalidArgumentError as exc:
        fail(str(exc))
    if output is not None:
        write_output(output, _render(reports, output_format))
        out_console.print(f"wrote {output}")
    elif output_format is not DriftFormat.table:
        out_console.print(_render(reports, output_format), end="")
    else:
        for title, report in reports:
            out_console.print(_table(title, report))
            out_console.print(_summary(report))
    if any(report.drifted for _, report in reports):
        raise typer.Exit(ExitCode.NEGATIVE)


def _comparisons(
    reference: Path, current: Path | None, by: str | None, control: str | None
) -> list[tuple[str, dict[str, list[object]], dict[str, list[object]]]]:
    if by is None:
        if current is None:
            msg = "give a CURRENT file to compare with, or --by COLUMN to compare groups"
            raise InvalidArgumentError(msg)
        if control is not None:
            msg = "--control only applies with --by"
            raise InvalidArgumentError(msg)
        return [(f"{reference} -> {current}", read_columns(reference), read_columns(current))]
    if current is not None:
        msg = "--by compares groups within one file; give one file, not two"
        raise InvalidArgumentError(msg)
    groups = split_by(read_columns(reference), by)
    if len(groups) < 2:
        msg = f"column {by!r} holds {len(groups)} group(s); skew needs at least two"
        raise InvalidArgumentError(msg)
    base = control if control is not None else next(iter(groups))
    if base not in groups:
        msg = f"no group {base!r} in column {by!r}; groups are {', '.join(groups)}"
        raise InvalidArgumentError(msg)
    return [
        (f"{by}={base} -> {by}={name}", groups[base], values)
        for name, values in groups.items()
        if name != base
    ]


def _render(reports: list[tuple[str, DriftReport]], output_format: DriftFormat) -> str:
    if output_format is DriftFormat.json:
        payload = [{"comparison": title, **report.as_dict()} for title, report in reports]
        return orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode() + "\n"
    if output_format is DriftFormat.markdown:
        return "\n".join(_markdown(title, report) for title, report in reports)
    # No markup: feature names, group values and file names are the user's data.
    console = Console(width=160, file=io.StringIO(), record=True, markup=False, emoji=False)
    for title, report in reports:
        console.print(_table(title, report))
        console.print(_summary(report))
    return console.export_text()


def register(app: typer.Typer) -> None:
    app.command(epilog=EXAMPLES)(drift)
