"""``abflow audit``: read the audit trail (``log``) and check its hash chain (``verify``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any

import orjson
import typer
from rich.markup import escape

from abflow.cli.console import ExitCode, err_console, out_console
from abflow.cli.options import StoreOption

__all__ = ["register"]

audit_app = typer.Typer(
    name="audit",
    help="Read and verify the hash-chained audit trail: experiment versions, rollouts, tokens.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)


SHOWN_PROBLEMS = 50
"""``audit verify`` names this many problems, the first in the trail's order, then counts."""


@audit_app.command("verify")
def verify(store: StoreOption = None) -> None:
    """Recompute the audit trail's hash chain and check every stored spec version against the
    hash its entry recorded; exit 0 when intact, 1 naming every problem found.

    The last hash printed on success can be kept elsewhere: a later run that no longer ends
    with it reveals that the newest entries were cut off.

    Example: [bold]abflow audit verify --store postgresql+psycopg://abflow@db/abflow[/]
    """
    from abflow.store import EventStore

    with EventStore.open(store, must_exist=True) as opened:
        check = opened.check_audit()
        where = opened.url
    entries = check.entries
    labelled = [("audit trail broken", p) for p in check.chain_problems] + [
        ("spec history altered", p) for p in check.spec_problems
    ]
    if labelled:
        for label, problem in labelled[:SHOWN_PROBLEMS]:
            err_console.print(f"[bold red]{label}:[/] {escape(problem)}", markup=True)
        if len(labelled) > SHOWN_PROBLEMS:
            err_console.print(f"… and {len(labelled) - SHOWN_PROBLEMS} more problems")
        raise typer.Exit(ExitCode.NEGATIVE)
    if not entries:
        out_console.print(f"audit trail of {where} is empty")
        return
    last = entries[-1]
    out_console.print(
        f"audit trail of {where} intact: {len(entries)} entries, last is {last.seq} "
        f"with hash {last.hash}"
    )


class LogFormat(StrEnum):
    table = "table"
    json = "json"


PAYLOAD_CHARS = 80
"""A table cell's payload is cut here; --format json has it whole."""
VALUE_CHARS = 24


def short_payload(payload: Mapping[str, Any], limit: int = PAYLOAD_CHARS) -> str:
    """``key=value, …`` in one line, cut to ``limit`` characters with an ellipsis."""
    parts = []
    for key, value in payload.items():
        if value in ("", None, [], {}):
            continue
        shown = value if isinstance(value, str) else orjson.dumps(value).decode()
        if len(shown) > VALUE_CHARS:  # hashes and long reasons: the start is enough here
            shown = shown[: VALUE_CHARS - 1] + "…"
        parts.append(f"{key}={shown}")
    text = ", ".join(parts)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@audit_app.command("log")
def log(
    experiment: Annotated[
        str | None, typer.Argument(help="Only this experiment's entries (default: all).")
    ] = None,
    store: StoreOption = None,
    output_format: Annotated[
        LogFormat, typer.Option("--format", "-f", help="table, or json (whole payloads).")
    ] = LogFormat.table,
    last: Annotated[
        int | None, typer.Option("--last", min=1, help="Only the newest N entries.")
    ] = None,
) -> None:
    """Read the audit trail, newest last: time, actor, action, experiment and what changed.

    Example: [bold]abflow audit log fraud-model-v2 --last 20[/]
    """
    from rich.table import Table

    from abflow.store import EventStore

    with EventStore.open(store, must_exist=True) as opened:
        entries = opened.audit_entries(experiment)
    if last is not None:
        entries = entries[-last:]
    if output_format is LogFormat.json:
        rows = [
            {
                "seq": e.seq,
                "ts": e.ts,
                "actor": e.actor,
                "action": e.action,
                "experiment_key": e.experiment_key,
                "payload": dict(e.payload),
            }
            for e in entries
        ]
        out_console.print(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    if not entries:
        which = f" for {experiment!r}" if experiment else ""
        out_console.print(f"no audit entries{which}")
        return
    table = Table()
    for header in ("seq", "time (UTC)", "actor", "action", "experiment", "payload"):
        table.add_column(header, no_wrap=header != "payload", overflow="fold")
    for e in entries:
        when = dt.datetime.fromtimestamp(e.ts, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(
            str(e.seq), when, e.actor, e.action, e.experiment_key or "", short_payload(e.payload)
        )
    out_console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app)
