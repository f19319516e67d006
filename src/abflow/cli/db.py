"""``abflow db``: manage the event store's schema (``upgrade`` it, show its ``status``).

The store is imported inside each command, so ``abflow --help`` never loads SQLAlchemy.
"""

from __future__ import annotations

import typer

from abflow.cli.console import out_console
from abflow.cli.options import StoreOption

__all__ = ["register"]

db_app = typer.Typer(
    name="db",
    help="Manage the event store's schema.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)


@db_app.command("upgrade")
def upgrade(store: StoreOption = None) -> None:
    """Apply the schema migrations the store is missing; running it again changes nothing.

    Example: [bold]abflow db upgrade --store postgresql+psycopg://abflow@db/abflow[/]
    """
    from abflow.store import upgrade_store
    from abflow.store.engine import display_url, resolve_url

    where = display_url(resolve_url(store))
    result = upgrade_store(store)
    if result.applied:
        steps = ", ".join(str(step) for step in result.applied)
        out_console.print(
            f"upgraded {where} from schema version {result.from_version} to "
            f"{result.to_version} (applied {steps})"
        )
    else:
        out_console.print(f"{where} is up to date (schema version {result.to_version})")


@db_app.command("status")
def status(store: StoreOption = None) -> None:
    """Show the store's schema version and the one this abflow needs."""
    from abflow.errors import StoreError
    from abflow.store import SCHEMA_VERSION, read_store_version
    from abflow.store.engine import display_url, require_existing_store, resolve_url

    try:
        version, missing = read_store_version(require_existing_store(store)), ""
    except StoreError as exc:  # no SQLite file: say so, and create none (reading only)
        if "no store here" not in str(exc):
            raise
        version, missing = 0, " (no file yet)"
    advice = " (run `abflow db upgrade`)" if version < SCHEMA_VERSION else ""
    out_console.print(
        f"{display_url(resolve_url(store))}: schema version {version}{missing}, "
        f"this abflow needs {SCHEMA_VERSION}{advice}"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(db_app)
