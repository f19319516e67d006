"""``abflow demo``: the end-to-end scenario on the embedded store, with a verdict at the end."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.panel import Panel
from rich.text import Text

from abflow.cli.console import check_output_path, out_console
from abflow.cli.options import StoreOption


def demo(
    store: StoreOption = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the HTML report.")
    ] = Path("abflow-report.html"),
    users: Annotated[int, typer.Option(min=50, help="Simulated users.")] = 2500,
    days: Annotated[int, typer.Option(min=2, max=60, help="Simulated days.")] = 7,
    seed: Annotated[int, typer.Option(help="Seed of the simulation.")] = 20261126,
    run_id: Annotated[
        str | None,
        typer.Option(
            "--run-id",
            help="Prefix of the simulated users' ids (fresh by default, so that runs sharing a "
            "store never count each other's outcomes); reuse it with --seed in a new store to "
            "repeat a run exactly.",
        ),
    ] = None,
    no_registry: Annotated[
        bool, typer.Option("--no-registry", help="Serve pickled files instead of MLflow aliases.")
    ] = False,
) -> None:
    """Train two fraud models, serve a simulated week through the gateway, analyse, decide.

    Writes a self-contained HTML report and prints which model should win, and why.
    """
    from abflow.analysis.report_text import table_renderable
    from abflow.demo import DemoOptions, run_demo

    check_output_path(output)
    options = DemoOptions(
        store_url=store,
        users=users,
        days=days,
        seed=seed,
        output=output,
        run_id=run_id,
        use_registry=not no_registry,
    )
    outcome = run_demo(options, out_console)
    out_console.print(table_renderable(outcome.result))
    winner = outcome.winner or "no variant yet"
    lines = [
        f"Winner: {winner}. {outcome.summary}",
        "",
        f"Models served from {outcome.model_source}.",
        *outcome.notes,
        f"{outcome.requests:,} predictions through the gateway in {outcome.seconds:.0f} s; "
        f"events in {outcome.store_url}.",
        f"Report: {outcome.report_path.resolve()}",
        f"Again: abflow analyze {outcome.experiment_key} --format html -o report.html",
    ]
    style = {"ship": "green", "keep_control": "red", "keep_running": "yellow"}
    out_console.print(
        Panel(
            Text("\n".join(lines)),
            title="abflow demo",
            border_style=style.get(outcome.verdict, "red"),
            expand=False,
        ),
        soft_wrap=False,
    )


def register(app: typer.Typer) -> None:
    app.command()(demo)
