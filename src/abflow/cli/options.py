"""Options several commands share, defined once so their names and help never drift apart."""

from __future__ import annotations

import datetime as dt
import getpass
import math
import os
from typing import Annotated

import typer

from abflow.cli.console import fail

__all__ = ["SpecVersionOption", "StoreOption", "ThresholdOption", "actor_name", "parse_time"]


def _kept_store(url: str | None) -> str | None:
    """Refuse an in-memory SQLite store: each command is a process of its own, so what it
    wrote there would be gone when it exits ("registered version 1", and nothing kept)."""
    if url is not None and url.split("?", 1)[0] in ("sqlite://", "sqlite:///:memory:"):
        msg = "an in-memory SQLite store keeps nothing after this command; give a file: sqlite:///path/abflow.db"
        raise typer.BadParameter(msg)
    return url


StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        help=(
            "Store URL, or a secret reference (vault:…, env:…, file:…); default "
            "$ABFLOW_STORE_URL, else sqlite:///.abflow/abflow.db."
        ),
        show_default=False,
        callback=_kept_store,
    ),
]

SpecVersionOption = Annotated[
    int | None,
    typer.Option(
        "--spec-version",
        min=1,
        max=2**31 - 1,  # the store's integer column
        help="Use this stored version of the spec (default: the version in force at the end "
        "of the events read: the latest, an earlier phase's, or at --until); the audit "
        "trail's experiment.registered entries give each version's spec hash.",
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


def parse_time(value: str, option: str) -> float:
    """Epoch seconds from a time option: epoch seconds as they are (what reports and audit
    entries print), or an ISO 8601 time, UTC unless it says otherwise. Anything else exits
    with a sentence naming ``option``."""
    from abflow.serving.inputs import MAX_TS  # the gateway's bound on event times

    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = dt.datetime.fromisoformat(text)
        except ValueError:
            fail(
                f"{option}: {value!r} is neither epoch seconds nor an ISO time such as "
                "2026-12-01T00:00 or 2026-12-01T00:00:00+01:00",
                code=2,
            )
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        seconds = when.timestamp()
    if not (math.isfinite(seconds) and 0.0 <= seconds < MAX_TS):
        fail(f"{option}: {value!r} is not a time in the years 1970 to 9999", code=2)
    return seconds
