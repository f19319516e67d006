"""Options several commands share, defined once so their names and help never drift apart."""

from __future__ import annotations

import getpass
import os
from typing import Annotated

import typer

__all__ = ["StoreOption", "ThresholdOption", "actor_name"]

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

ThresholdOption = Annotated[
    float,
    typer.Option(
        "--threshold",
        min=0.0,
        max=1.0,
        help="Score at or above which a prediction counts as positive (quality metrics, shadow).",
    ),
]


def actor_name(given: str | None, default_prefix: str = "user") -> str:
    """Who the audit trail names: ``--actor`` when given, else ``PREFIX:$USER``."""
    if given:
        return given
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = os.environ.get("USER", "unknown")
    return f"{default_prefix}:{name}"
