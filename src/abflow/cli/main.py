"""Entry point of the ``abflow`` command: builds the Typer app from one module per command."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import NoReturn

import typer

from abflow.cli import (
    analyze,
    assign,
    audit,
    db,
    demo,
    drift,
    gate,
    k8s,
    models,
    power,
    rollout,
    serve,
    token,
    validate,
)
from abflow.cli.console import ExitCode, err_console, report_failure

app = typer.Typer(
    name="abflow",
    help=(
        "A/B testing and progressive delivery for ML models.\n\n"
        "Route traffic between model versions, serve and log predictions, analyse experiments "
        "with trustworthy statistics, and promote or roll back with an audit trail.\n\n"
        "Exit codes: 0 ok, 1 a negative answer (drift found, gate failed, rolled back, audit "
        "broken, spec invalid), 2 could not answer (docs/cli.md)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


@app.callback()
def _root() -> None:
    """A/B testing and progressive delivery for ML models."""


for module in (
    validate,
    db,
    audit,
    power,
    assign,
    serve,
    token,
    analyze,
    demo,
    models,
    drift,
    gate,
    rollout,
    k8s,
):
    module.register(app)


def main(args: Sequence[str] | None = None) -> NoReturn:
    """Run the CLI and exit by the policy in docs/cli.md: 0 ok, 1 a negative answer, 2 not.

    Commands exit 1 themselves, only for a negative answer; usage errors are Click's 2; any
    error that escapes a command is one sentence (traceback with ABFLOW_DEBUG=1) and 2.
    """
    try:
        app(args=args, prog_name="abflow")
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except Exception as exc:
        sys.exit(report_failure(exc))
    sys.exit(ExitCode.OK)  # pragma: no cover - Click exits by itself in standalone mode


if __name__ == "__main__":  # pragma: no cover
    main()
