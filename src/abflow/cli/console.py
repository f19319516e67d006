"""Shared terminal output for the CLI: one console for results, one for messages.

It also holds the exit-code policy (docs/cli.md), so every command answers a script the same
way: 0 ok, 1 a negative answer (drift found, gate failed, ...), 2 could not answer.
"""

from __future__ import annotations

import os
import shutil
import sys
import traceback
from enum import IntEnum
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

__all__ = [
    "DEBUG_ENV",
    "ExitCode",
    "check_output_path",
    "err_console",
    "fail",
    "fit_width",
    "out_console",
    "policy_code",
    "print_error",
    "report_failure",
    "write_output",
]

DEBUG_ENV = "ABFLOW_DEBUG"


class ExitCode(IntEnum):
    """What a command's exit status tells a script; CI reads 1 as the answer "no"."""

    OK = 0
    NEGATIVE = 1  # the command answered, and the answer needs attention
    UNANSWERED = 2  # bad arguments, unreadable input, unknown key, store down, a bug


_PIPED_WIDTH = 120
"""Columns for piped output (CI logs, files) instead of Rich's 80, so result tables are not
cut to ellipses."""


def _width() -> int:
    """COLUMNS when set, else a terminal's own width, else :data:`_PIPED_WIDTH`."""
    columns = os.environ.get("COLUMNS", "").strip()
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    return _PIPED_WIDTH


# Markup off by default: file names, ids and error messages are printed exactly as they are
# ("[/]x.yaml" is a legal file name); styled output opts in and escapes what it interpolates.
# No markup and no emoji codes: text that looks like either (a model reference such as
# python:m:b, ":fire:" in a reason) is printed, and exported, as it is stored.
out_console = Console(highlight=False, soft_wrap=True, markup=False, emoji=False, width=_width())
err_console = Console(
    stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False, width=_width()
)


def fit_width() -> None:
    """Size both consoles for this invocation, not once at import: a process that runs many
    commands (a test session, a notebook) and changes COLUMNS between them is followed."""
    width = _width()
    out_console.width = width
    err_console.width = width


def print_error(message: object) -> None:
    """Print ``error: message`` on stderr, the message taken literally."""
    err_console.print(f"[bold red]error:[/] {escape(str(message))}", markup=True)


def fail(message: str, code: int = ExitCode.UNANSWERED) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code`` (default: could not answer)."""
    print_error(message)
    raise typer.Exit(code)


def report_failure(exc: Exception) -> ExitCode:
    """Report an error no command handled, in one sentence, and give its exit code.

    An abflow error is a known reason the command could not answer; anything else is a bug
    (or the machine's fault), reported with a hint to rerun with ``ABFLOW_DEBUG=1`` for the
    traceback. Either way the code is 2, never 1: 1 is an answer ("drift found"), and a crash
    must not look like one.
    """
    from abflow.errors import AbflowError

    debug = os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")
    if debug:
        err_console.print("".join(traceback.format_exception(exc)).rstrip())
    if isinstance(exc, AbflowError):
        print_error(exc)
        return ExitCode.UNANSWERED
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename is not None else ""
        print_error(f"{exc.strerror}{where}")
    else:
        lines = str(exc).strip().splitlines()
        print_error(f"unexpected {type(exc).__name__}" + (f": {lines[0]}" if lines else ""))
    if not debug:
        err_console.print(f"(rerun with {DEBUG_ENV}=1 to see the traceback)")
    return ExitCode.UNANSWERED


def policy_code(code: object) -> int:
    """The exit code the policy allows for ``sys.exit(code)`` raised anywhere in a command.

    0, 1, 2 and 130 (interrupted) pass; a message (``sys.exit("...")``) is printed and exits
    2; any other number (uvicorn exits 3 when the app cannot start) becomes 2.
    """
    if code is None:
        return ExitCode.OK
    if isinstance(code, int):
        return code if code in (0, 1, 2, 130) else ExitCode.UNANSWERED
    print_error(code)
    return ExitCode.UNANSWERED


def check_output_path(path: Path, code: int = ExitCode.UNANSWERED) -> None:
    """Refuse an output path that can never be written, before any long work starts."""
    if path.is_dir():
        fail(f"cannot write {path}: it is a directory; give a file name", code)
    if not path.parent.is_dir():
        fail(f"cannot write {path}: folder {path.parent} does not exist", code)


def write_output(path: Path, text: str, code: int = ExitCode.UNANSWERED) -> None:
    """Write a report, turning an OS error into one sentence and exit ``code``."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror or exc}", code)
