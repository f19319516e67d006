"""``abflow audit verify``: check the audit trail's hash chain; exit 1 at the first break."""

from __future__ import annotations

import typer
from rich.markup import escape

from abflow.cli.console import ExitCode, err_console, out_console
from abflow.cli.options import StoreOption

__all__ = ["register"]

audit_app = typer.Typer(
    name="audit",
    help="Verify the hash-chained audit trail of experiment versions and token changes.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)


@audit_app.command("verify")
def verify(store: StoreOption = None) -> None:
    """Recompute the audit trail's hash chain; exit 0 when intact, 1 naming the first break.

    The last hash printed on success can be kept elsewhere: a later run that no longer ends
    with it reveals that the newest entries were cut off.

    Example: [bold]abflow audit verify --store postgresql+psycopg://abflow@db/abflow[/]
    """
    from abflow.security.audit import verify_chain
    from abflow.store import EventStore

    with EventStore.open(store, must_exist=True) as opened:
        entries = opened.audit_entries()
        where = opened.url
    problems = verify_chain(entries)
    if problems:
        more = len(problems) - 1
        tail = f" ({more} more problem{'s' if more != 1 else ''} after it)" if more else ""
        err_console.print(
            f"[bold red]audit trail broken:[/] {escape(problems[0] + tail)}", markup=True
        )
        raise typer.Exit(ExitCode.NEGATIVE)
    if not entries:
        out_console.print(f"audit trail of {where} is empty")
        return
    last = entries[-1]
    out_console.print(
        f"audit trail of {where} intact: {len(entries)} entries, last is {last.seq} "
        f"with hash {last.hash}"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app)
