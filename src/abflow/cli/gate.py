"""``abflow gate``: pass or fail a deploy on an experiment's evidence, for CI pipelines.

Exit 0 when every check passes, 1 when any fails, 2 when the analysis cannot run (unknown
experiment, store unreachable) or the arguments are invalid: a gate that cannot see stays
closed, and CI can tell "the challenger failed" from "the gate could not look". The check table goes to the terminal and, as Markdown, to the
job summary when ``$GITHUB_STEP_SUMMARY`` is set or ``--summary FILE`` is given.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.table import Table
from rich.text import Text

from abflow.cli.console import ExitCode, check_output_path, fail, out_console
from abflow.cli.options import SpecVersionOption, StoreOption, ThresholdOption, parse_time
from abflow.errors import InvalidArgumentError
from abflow.rollout import GatePolicy, GateResult, Requirement, evaluate_gate

__all__ = ["gate", "register"]

EXAMPLES = """
Examples:

  [bold]abflow gate fraud-model-v2[/]
    fail the job if a guardrail fails, the split is off (SRM) or the primary metric is worse

  [bold]abflow gate fraud-model-v2 --require non-inferior --min-units 5000[/]
    every guardrail must prove non-inferiority, with at least 5,000 units per arm

  [bold]abflow gate fraud-model-v2 --require win --format json[/]
    only pass a challenger that significantly beats the control

  [bold]abflow gate fraud-model-v2 --phase 3 --until 1796688000[/]
    judge again the events an earlier run with --until judged (its JSON gives phase and until)

  [bold]abflow gate fraud-model-v2 --require shadow-no-harm --min-units 2000[/]
    start a ramp only if each shadow model, on 2,000+ requests it shared with the served
    model, is within every guardrail's margin (paired non-inferiority)

In GitHub Actions the check table is appended to the job summary ($GITHUB_STEP_SUMMARY).

Exit codes: 0 pass, 1 fail, 2 the analysis cannot run or the arguments are invalid.
"""


class GateFormat(StrEnum):
    table = "table"
    json = "json"
    markdown = "markdown"


def render_markdown(result: GateResult) -> str:
    """The checks as a Markdown table, headed by the verdict."""
    from abflow.analysis.markdown import markdown_text

    verdict = "passed" if result.passed else "FAILED"
    lines = [
        f"### abflow gate {verdict}: `{result.experiment_key}` phase {result.phase}",
        "",
        f"Requirement: **{result.require.value}**. {markdown_text(_judged(result))}",
        "",
        "| check | variant | result | detail |",
        "|---|---|---|---|",
    ]
    for check in result.checks:
        mark = "pass" if check.passed else "**FAIL**"
        check_text, variant, detail = map(
            markdown_text, (check.check, check.variant or "-", check.detail)
        )
        lines.append(f"| {check_text} | {variant} | {mark} | {detail} |")
    return "\n".join(lines) + "\n"


def _judged(result: GateResult) -> str:
    """Which spec and data the verdict rests on, in one sentence."""
    from abflow.analysis.formatting import cutoff_text

    version = "?" if result.spec_version is None else str(result.spec_version)
    if result.until is None:
        return f"Spec version {version}; every event of the phase (no --until)."
    return f"Spec version {version}; {cutoff_text(result.until)}."


def _table(result: GateResult) -> Table:
    title = Text("abflow gate ")
    title.append("passed" if result.passed else "FAILED", "green" if result.passed else "bold red")
    title.append(f": {result.experiment_key} phase {result.phase} (require {result.require.value})")
    table = Table(
        title=title, title_justify="left", caption=_judged(result), caption_justify="left"
    )
    for header in ("check", "variant", "result", "detail"):
        table.add_column(header)
    for check in result.checks:
        verdict = Text("pass") if check.passed else Text("FAIL", "bold red")
        table.add_row(check.check, check.variant or "-", verdict, check.detail)
    return table


def _append(path: Path, text: str) -> None:
    try:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(text + "\n")
    except OSError as exc:
        fail(f"cannot write the summary to {path}: {exc.strerror or exc}")


def gate(
    experiment: Annotated[str, typer.Argument(help="Experiment key, as registered in the store.")],
    store: StoreOption = None,
    require: Annotated[
        Requirement,
        typer.Option(
            help="no-harm, non-inferior (guardrails must pass), win, or shadow-no-harm "
            "(each shadow model paired non-inferior on the guardrails)."
        ),
    ] = Requirement.no_harm,
    min_units: Annotated[
        int,
        typer.Option(
            "--min-units",
            help="Units each arm (shadow-no-harm: paired requests) needs before the gate can pass.",
        ),
    ] = 0,
    variant: Annotated[
        list[str] | None,
        typer.Option("--variant", help="Candidate to judge (repeatable; default: all treatments)."),
    ] = None,
    phase: Annotated[
        int | None, typer.Option("--phase", help="Phase to judge (default: the latest).")
    ] = None,
    spec_version: SpecVersionOption = None,
    until: Annotated[
        str | None,
        typer.Option(
            "--until",
            metavar="TIME",
            help="Judge only the events before this time: epoch seconds or an ISO time, UTC "
            "unless it says otherwise (default: every event of the phase).",
            show_default=False,
        ),
    ] = None,
    threshold: ThresholdOption = 0.5,
    output_format: Annotated[
        GateFormat, typer.Option("--format", "-f", help="table, json (stable keys) or markdown.")
    ] = GateFormat.table,
    summary: Annotated[
        Path | None,
        typer.Option(help="Also append the Markdown checks here (default: $GITHUB_STEP_SUMMARY)."),
    ] = None,
) -> None:
    """Pass (exit 0) or fail (exit 1) a deploy on an experiment's latest analysis (2: cannot)."""
    from abflow.analysis import AnalysisOptions, analyze
    from abflow.store.engine import display_url, resolve_url

    if min_units < 0:
        fail(f"--min-units must be 0 or more, got {min_units}")
    summary_path = summary or _github_summary()
    if summary_path is not None:
        check_output_path(summary_path)
    cutoff = None if until is None else parse_time(until, "--until")
    url = resolve_url(store)
    options = AnalysisOptions(
        phase=phase,
        spec_version=spec_version,
        until=cutoff,
        store_label=display_url(url),
        timeline=False,
        threshold=threshold,
    )
    analysed = analyze(url, experiment, options)
    policy = GatePolicy(require=require, min_units=min_units, variants=tuple(variant or ()))
    try:
        result = evaluate_gate(analysed, policy)
    except InvalidArgumentError as exc:
        fail(str(exc))
    markdown = render_markdown(result)
    if output_format is GateFormat.json:
        out_console.print(orjson.dumps(result.as_dict(), option=orjson.OPT_INDENT_2).decode())
    elif output_format is GateFormat.markdown:
        out_console.print(markdown, end="")
    else:
        out_console.print(_table(result))
        for failure in result.failures:
            out_console.print(f"failed: {failure.check} ({failure.variant or 'all'})")
    if summary_path is not None:
        _append(summary_path, markdown)
    if not result.passed:
        raise typer.Exit(ExitCode.NEGATIVE)


def _github_summary() -> Path | None:
    value = os.environ.get("GITHUB_STEP_SUMMARY")
    return Path(value) if value else None


def register(app: typer.Typer) -> None:
    app.command(epilog=EXAMPLES)(gate)
