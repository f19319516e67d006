"""``abflow demo``: the end-to-end scenario on the embedded store, with a verdict at the end."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.panel import Panel
from rich.text import Text

from abflow.cli.console import check_output_path, out_console
from abflow.cli.options import StoreOption


class Scenario(StrEnum):
    ab = "ab"
    drift = "drift"


def demo(
    store: StoreOption = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the HTML report.")
    ] = Path("abflow-report.html"),
    users: Annotated[int, typer.Option(min=50, help="Simulated users.")] = 2500,
    days: Annotated[int, typer.Option(min=2, max=60, help="Simulated days.")] = 7,
    seed: Annotated[
        int, typer.Option(help="Seed of the simulation (0 to 4294967295).", min=0, max=2**32 - 1)
    ] = 20261126,
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
    scenario: Annotated[
        Scenario,
        typer.Option(
            help="ab: the A/B test and its verdict; drift: the live monitor catches an input "
            "drift before any label and the rollout rolls the challenger back."
        ),
    ] = Scenario.ab,
) -> None:
    """Train two fraud models, serve a simulated week through the gateway, analyse, decide.

    Writes a self-contained HTML report and prints which model should win, and why.
    """
    from abflow.analysis.report_text import table_renderable
    from abflow.demo import DemoOptions, run_demo

    if scenario is Scenario.drift:
        _drift(store, users, seed)
        return
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
    out_console.print(table_renderable(outcome.result), soft_wrap=False)  # wrap panel text
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


def _drift(store: str | None, users: int, seed: int) -> None:
    from abflow.demo import DriftOptions, run_drift_scenario

    with out_console.status("serving the fraud case: drift on day 3, monitor every 6 h"):
        outcome = run_drift_scenario(
            DriftOptions(store_url=store, users=max(users, 8000), seed=seed)
        )
    delay = outcome.detection_delay_hours
    lines = [
        *outcome.timeline,
        "",
        "Detection delay: "
        + ("not detected" if delay is None else f"{delay:.1f} h after the drift started")
        + f" (windows of {outcome.window_hours:g} h), {outcome.labels_at_alarm} labels by then,"
        + f" {outcome.false_alarms} false alarms before it.",
        f"{outcome.requests:,} predictions through the gateway in {outcome.seconds:.0f} s; "
        f"events in {outcome.store_url}.",
        f"History: abflow monitor {outcome.experiment_key} --once --store {outcome.store_url}",
    ]
    caught = outcome.rolled_back_at is not None
    out_console.print(
        Panel(
            Text("\n".join(lines)),
            title="abflow demo --scenario drift",
            border_style="green" if caught else "red",
            expand=False,
        ),
        soft_wrap=False,
    )


def register(app: typer.Typer) -> None:
    app.command()(demo)
