"""``abflow validate``: check experiment spec files and list every problem at once."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.markup import escape

from abflow.cli.console import err_console, out_console
from abflow.errors import AbflowError, InvalidArgumentError, InvalidSpecError
from abflow.settings import read_document
from abflow.spec import (
    ExperimentSpec,
    experiment_json_schema,
    load_experiment,
    parse_experiment,
    rollout_registration,
)


def validate(
    files: Annotated[
        list[Path] | None,
        typer.Argument(help="Experiment spec files (.yaml, .yml or .json).", show_default=False),
    ] = None,
    schema: Annotated[
        bool,
        typer.Option("--schema", help="Print the JSON Schema of a spec (for editors) and exit."),
    ] = False,
) -> None:
    """Check experiment specs; print every problem with its path and exit 1 if any
    (2 if a file cannot be read).

    Example: [bold]abflow validate examples/fraud.yaml[/]
    """
    if schema:
        out_console.print_json(orjson.dumps(experiment_json_schema()).decode())
        return
    if not files:
        err_console.print("error: give at least one spec file, or --schema")
        raise typer.Exit(2)
    failed = unreadable = 0
    for file in files:
        if not (file.is_file() and os.access(file, os.R_OK)):
            unreadable += 1  # no answer about this file: exit 2, not "invalid" (1)
            reason = (
                "no such file"
                if not file.exists()
                else "is a directory"
                if file.is_dir()
                else "not a readable file"
            )
            err_console.print(f"error: {file}: {reason}")
            continue
        try:
            # A file is what gets registered: under a rollout plan its weights must be the
            # plan's starting point (all traffic on the control), as registration requires.
            spec = rollout_registration(load_experiment(file), None)
        except InvalidSpecError as exc:
            failed += 1
            problems = [*exc.problems, *_registration_problems(file, exc.problems)]
            named = InvalidSpecError(problems, str(file))
            err_console.print(f"[red]✗[/] {escape(str(named))}", markup=True)
            continue
        refusal = _rollout_refusal(spec)
        if refusal is not None:
            failed += 1
            err_console.print(f"[red]✗[/] {escape(f'{file}: {refusal}')}", markup=True)
            continue
        out_console.print(
            f"[green]✓[/] {escape(str(file))}: experiment {spec.key!r}, {len(spec.variants)} variants, "
            f"{len(spec.metrics)} metrics",
            markup=True,
        )
    if unreadable:
        raise typer.Exit(2)
    if failed:
        raise typer.Exit(1)


def _rollout_refusal(spec: ExperimentSpec) -> str | None:
    """Why ``abflow rollout`` would refuse this plan at its first tick, if it would: the file
    registers, but a check in CI should fail now rather than the rollout later."""
    from abflow.rollout.plan import check_startable

    if spec.rollout is None:
        return None
    try:
        check_startable(spec)
    except InvalidArgumentError as exc:
        return str(exc)
    return None


def _registration_problems(file: Path, problems: list[str]) -> list[str]:
    """What registering the file would refuse besides ``problems`` (its weights under a
    rollout plan), judged on the fields that rule reads, so one run lists every problem."""
    try:
        data = read_document(file)
        plan = data["rollout"]
        read = {k: data[k] for k in ("key", "variants", "weights") if k in data}
        read["rollout"] = {k: v for k, v in plan.items() if k != "guardrails"}
        sound = parse_experiment(read)
    except (AbflowError, LookupError, TypeError, AttributeError):  # rollout: 0 has no items()
        return []  # the file's own problems are all there is to say
    try:
        rollout_registration(sound, None)
    except InvalidSpecError as refused:
        return [p for p in refused.problems if p not in problems]
    return []


def register(app: typer.Typer) -> None:
    app.command()(validate)
