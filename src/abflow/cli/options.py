"""Options several commands share, defined once so their names and help never drift apart."""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["StoreOption"]

StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        help=(
            "Store URL, or a secret reference (vault:…, env:…, file:…); default "
            "$ABFLOW_STORE_URL, else sqlite:///.abflow/abflow.db."
        ),
        show_default=False,
    ),
]
