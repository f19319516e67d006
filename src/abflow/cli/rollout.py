"""``abflow rollout``: ramp a challenger step by step, and promote or roll it back.

``tick`` is the controller: run it on a schedule (cron, Airflow, an Argo CronWorkflow). Each
move is a new spec version (so a new analysis phase) and an audit entry with its evidence.
A promotion (by ``promote`` or ``tick``'s auto_promote) also moves the MLflow alias of a
registry challenger, in the registry of ``--tracking-uri`` (default as ``abflow models``).
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated

import orjson
import typer
from rich.table import Table

from abflow.cli.console import fail, out_console
from abflow.cli.options import StoreOption, actor_name
from abflow.errors import AbflowError

__all__ = ["register"]

rollout_app = typer.Typer(
    name="rollout",
    help="Progressive delivery: status, tick (the controller), promote, rollback, reset.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)

ExperimentArgument = Annotated[str, typer.Argument(help="Experiment key.")]
ReasonOption = Annotated[str, typer.Option(help="Why, for the audit trail.")]


TrackingOption = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help="MLflow registry whose alias a promotion moves; default $ABFLOW_MLFLOW_TRACKING_URI, "
        "$MLFLOW_TRACKING_URI, else sqlite:///.abflow/mlflow.db.",
        show_default=False,
    ),
]

ActorOption = Annotated[
    str | None,
    typer.Option("--actor", help="Who acts, for the audit trail (default: user:$USER)."),
]


class TickFormat(StrEnum):
    text = "text"
    json = "json"


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


@rollout_app.command("status")
def status(
    experiment: ExperimentArgument,
    store: StoreOption = None,
) -> None:
    """The plan, the current step and the live traffic split.

    Example: [bold]abflow rollout status fraud-model-v2[/]
    """
    from abflow.rollout.controller import rollout_status
    from abflow.store import EventStore

    with EventStore.open(store) as opened:
        got = rollout_status(opened, experiment)
    state = got.state
    step = "-" if state.step is None else f"{state.step + 1} of {len(got.steps)}"
    table = Table(title=f"rollout of {experiment}", title_justify="left", show_header=False)
    table.add_row("stage", state.stage.replace("_", " "))
    table.add_row("step", step)
    # a 0 % step can only be a shadow step (the spec refuses any other)
    plan = [f"{share:.0%}" if share else "shadow" for share in got.steps]
    table.add_row("plan", " → ".join(plan))
    table.add_row("challenger", got.challenger)
    table.add_row("weights now", ", ".join(f"{w:g}" for w in got.weights))
    table.add_row("phase", f"{got.phase} since {_when(got.phase_started_at)}")
    table.add_row("last move", _when(state.since))
    out_console.print(table)


@rollout_app.command("tick")
def tick(
    experiment: ExperimentArgument,
    store: StoreOption = None,
    actor: Annotated[
        str | None,
        typer.Option("--actor", help="Who acts, for the audit trail (default: controller:$USER)."),
    ] = None,
    output_format: Annotated[
        TickFormat, typer.Option("--format", "-f", help="text, or json (stable keys).")
    ] = TickFormat.text,
    tracking_uri: TrackingOption = None,
) -> None:
    """Look once and take at most one step: start, advance, hold, roll back or promote.

    Exit code 0 for every decision, 1 when the rollout was rolled back (so a scheduler can
    alert), 2 when it could not look (no plan, unknown experiment, store unreachable).
    Example: [bold]abflow rollout tick fraud-model-v2[/]
    """
    from abflow.registry.promotion import MlflowPromotionRegistry
    from abflow.rollout.controller import tick as run_tick
    from abflow.store import EventStore

    registry = MlflowPromotionRegistry(tracking_uri)
    try:
        with EventStore.open(store) as opened:
            result = run_tick(
                opened, experiment, actor=actor_name(actor, "controller"), registry=registry
            )
    except AbflowError as exc:  # exit 1 means "rolled back": a failure to look is 2
        fail(str(exc), code=2)
    if output_format is TickFormat.json:
        payload = {
            "experiment_key": result.experiment_key,
            "action": result.action,
            "step": result.step,
            "reasons": result.reasons,
            "evidence": result.evidence,
        }
        out_console.print(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode())
    else:
        step = "" if result.step is None else f" (step {result.step + 1})"
        out_console.print(f"{experiment}: {result.action.replace('_', ' ')}{step}")
        for reason in result.reasons:
            out_console.print(f"  - {reason}")
    if result.action == "rolled_back":
        raise typer.Exit(1)


def _by_hand(
    action: str,
    experiment: str,
    store: str | None,
    actor: str | None,
    reason: str,
    tracking_uri: str | None = None,
) -> list[str]:
    """Run one of the controller's manual moves (promote, rollback, reset) by name.

    Returns the notes (which alias moved, or why none did); fails if the rollout moved
    meanwhile and nothing was done (exit 2).
    """
    from abflow.registry.promotion import MlflowPromotionRegistry
    from abflow.rollout import controller
    from abflow.store import EventStore

    move = getattr(controller, action)
    extra = {} if action == "reset" else {"registry": MlflowPromotionRegistry(tracking_uri)}
    try:
        with EventStore.open(store) as opened:
            result: controller.TickResult = move(
                opened, experiment, actor=actor_name(actor), reason=reason, **extra
            )
    except AbflowError as exc:  # nothing changed: the registry, the store or the input failed
        fail(str(exc), code=2)
    if result.action == "held":
        fail(f"{experiment}: nothing done: {'; '.join(result.reasons)}", code=2)
    return result.reasons[1:]


def _print_notes(notes: list[str]) -> None:
    for note in notes:
        out_console.print(f"  - {note}")


@rollout_app.command("promote")
def promote(
    experiment: ExperimentArgument,
    reason: ReasonOption = "",
    store: StoreOption = None,
    actor: ActorOption = None,
    tracking_uri: TrackingOption = None,
) -> None:
    """Send all traffic to the challenger, move its registry alias, end the rollout (audited).

    A challenger serving models:/NAME… gets the control's alias of NAME (champion unless the
    control names another); if the registry or the store fails, nothing changes (exit 2).
    Example: [bold]abflow rollout promote fraud-model-v2 --reason "guardrails held for 7 days"[/]
    """
    notes = _by_hand("promote", experiment, store, actor, reason, tracking_uri)
    out_console.print(f"{experiment}: promoted; all traffic goes to the challenger")
    _print_notes(notes)


@rollout_app.command("rollback")
def rollback(
    experiment: ExperimentArgument,
    reason: ReasonOption = "",
    store: StoreOption = None,
    actor: ActorOption = None,
    tracking_uri: TrackingOption = None,
) -> None:
    """Send all traffic back to the control and end the rollout (audited).

    After a promotion, the alias it moved goes back to the version it left.
    Example: [bold]abflow rollout rollback fraud-model-v2 --reason "p95 latency alert"[/]
    """
    notes = _by_hand("rollback", experiment, store, actor, reason, tracking_uri)
    out_console.print(f"{experiment}: rolled back; all traffic goes to the control")
    _print_notes(notes)


@rollout_app.command("reset")
def reset(
    experiment: ExperimentArgument,
    reason: ReasonOption = "",
    store: StoreOption = None,
    actor: ActorOption = None,
) -> None:
    """Let a rolled-back rollout start over: the next tick opens step 1 (audited).

    Example: [bold]abflow rollout reset fraud-model-v2 --reason "challenger v3 registered"[/]
    """
    _by_hand("reset", experiment, store, actor, reason)
    out_console.print(f"{experiment}: reset; the next tick starts the rollout again")


def register(app: typer.Typer) -> None:
    app.add_typer(rollout_app)
