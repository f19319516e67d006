"""Shared terminal output for the CLI: one console for results, one for messages."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

__all__ = ["err_console", "fail", "out_console"]

out_console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {message}", markup=True)
    raise typer.Exit(code)
