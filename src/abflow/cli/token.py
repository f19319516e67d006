"""``abflow token``: create and revoke the gateway's bearer tokens.

A token is printed exactly once, when it is created; the store keeps only its SHA-256.
"""

from __future__ import annotations

from typing import Annotated

import typer

from abflow.cli.console import err_console, fail, out_console
from abflow.cli.options import StoreOption

__all__ = ["register"]

token_app = typer.Typer(
    name="token",
    help="Create and revoke API tokens for the gateway.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)


@token_app.command("create")
def create(
    role: Annotated[
        str,
        typer.Option(
            "--role", "-r", help="service (predict, outcomes), viewer, experimenter or admin."
        ),
    ],
    name: Annotated[str, typer.Option("--name", "-n", help="Who holds it, e.g. checkout-api.")],
    store: StoreOption = None,
) -> None:
    """Create a token and print it once: copy it now, it cannot be shown again.

    Example: [bold]abflow token create --role service --name checkout-api[/]
    """
    from abflow.security.roles import parse_role
    from abflow.security.tokens import create_token
    from abflow.serving.wiring import StoreTokenStore
    from abflow.store import EventStore

    parsed = parse_role(role)
    if not name.strip():
        fail("--name must not be empty: say who holds the token, e.g. checkout-api")
    with EventStore.open(store) as opened:
        token, record = create_token(StoreTokenStore(opened), name, parsed)
    err_console.print(
        f"created {record.role.value} token {record.name!r} (id {record.token_id}); "
        "it is shown once, only its hash is stored:"
    )
    out_console.print(token)


@token_app.command("revoke")
def revoke(
    token_id: Annotated[str, typer.Argument(help="The id printed when the token was created.")],
    store: StoreOption = None,
) -> None:
    """Revoke a token by id; gateways stop accepting it within their token cache time (5 s).

    An unknown or already revoked id exits 2, like any key that names nothing.

    Example: [bold]abflow token revoke 3f2a…[/]
    """
    from abflow.store import EventStore

    with EventStore.open(store) as opened:
        revoked = opened.revoke_token(token_id)
    if not revoked:
        fail(f"no active token with id {token_id!r} (unknown, or revoked already)")
    out_console.print(f"revoked token {token_id}")


@token_app.command("list")
def list_tokens(store: StoreOption = None) -> None:
    """List tokens: id, name, role, created and revoked times (never the tokens themselves).

    Example: [bold]abflow token list[/]
    """
    import datetime as dt

    from rich.table import Table

    from abflow.store import EventStore

    def when(ts: float | None) -> str:
        if ts is None:
            return ""
        return dt.datetime.fromtimestamp(ts, tz=dt.UTC).strftime("%Y-%m-%d %H:%M")

    with EventStore.open(store, must_exist=True) as opened:
        records = opened.list_tokens()
    table = Table()
    table.add_column("id", no_wrap=True, min_width=32)
    for header in ("name", "role", "created (UTC)", "revoked (UTC)"):
        table.add_column(header)
    for record in records:
        table.add_row(
            record.token_id,
            record.name,
            record.role,
            when(record.created_at),
            when(record.revoked_at),
        )
    out_console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(token_app)
