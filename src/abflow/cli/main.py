"""Entry point of the ``abflow`` command: builds the Typer app from one module per command."""

from __future__ import annotations

import sys

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
from abflow.cli.console import err_console, print_error
from abflow.errors import AbflowError

app = typer.Typer(
    name="abflow",
    help=(
        "A/B testing and progressive delivery for ML models.\n\n"
        "Route traffic between model versions, serve and log predictions, analyse experiments "
        "with trustworthy statistics, and promote or roll back with an audit trail."
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


def main() -> None:
    """Run the CLI; an abflow error becomes one sentence and exit code 1, never a traceback."""
    try:
        app()
    except AbflowError as exc:
        print_error(exc)
        sys.exit(1)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
