"""Shared terminal output for the CLI: one console for results, one for messages."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

__all__ = ["check_output_path", "err_console", "fail", "out_console", "print_error", "write_output"]

# Markup off by default: file names, ids and error messages are printed exactly as they are
# ("[/]x.yaml" is a legal file name); styled output opts in and escapes what it interpolates.
# Piped output (CI logs, files) gets 120 columns instead of Rich's 80, so result tables are
# not cut to ellipses; a terminal keeps its own width, and COLUMNS still wins when set.
_PIPED_WIDTH = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 120
out_console = Console(highlight=False, soft_wrap=True, markup=False, width=_PIPED_WIDTH)
err_console = Console(
    stderr=True, highlight=False, soft_wrap=True, markup=False, width=_PIPED_WIDTH
)


def print_error(message: object) -> None:
    """Print ``error: message`` on stderr, the message taken literally."""
    err_console.print(f"[bold red]error:[/] {escape(str(message))}", markup=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    print_error(message)
    raise typer.Exit(code)


def check_output_path(path: Path, code: int = 1) -> None:
    """Refuse an output path that can never be written, before any long work starts.

    ``code`` is the exit code, for commands whose 1 means a result (drift found, gate shut).
    """
    if path.is_dir():
        fail(f"cannot write {path}: it is a directory; give a file name", code)
    if not path.parent.is_dir():
        fail(f"cannot write {path}: folder {path.parent} does not exist", code)


def write_output(path: Path, text: str, code: int = 1) -> None:
    """Write a report, turning an OS error into one sentence and exit ``code``."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror or exc}", code)
