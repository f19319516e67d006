"""The settings every part shares, and the one reader of YAML and JSON files.

:class:`Settings` holds the ``ABFLOW_*`` variables that more than one part needs (the store
URL, the MLflow registry); each is read here and nowhere else. The gateway's own knobs
extend it (:class:`abflow.serving.settings.GatewaySettings`). Settings are read when a
command or a process starts using them, not cached at import, so a test or an embedding
application that sets a variable first is obeyed.

:func:`read_document` decodes spec and config files alike: by suffix, with errors that
name the line and column and show the line with a caret under the column.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
import yaml
from pydantic_settings import BaseSettings, SettingsConfigDict

from abflow.errors import DocumentError

__all__ = ["MLFLOW_DEFAULTS", "Settings", "apply_mlflow_defaults", "read_document", "settings"]


class Settings(BaseSettings):
    """Settings shared by the store, the registry, the CLI and the gateway (``ABFLOW_<FIELD>``)."""

    model_config = SettingsConfigDict(env_prefix="ABFLOW_", frozen=True, extra="ignore")

    store_url: str | None = None
    """The event store; the embedded SQLite file ``.abflow/abflow.db`` when unset."""
    mlflow_tracking_uri: str | None = None
    """The MLflow registry; else ``$MLFLOW_TRACKING_URI``, else ``.abflow/mlflow.db``."""
    mlflow_artifact_root: str | None = None
    """Where experiments abflow creates in MLflow keep their artifacts."""


def settings() -> Settings:
    """The shared settings, read from the environment now."""
    return Settings()


MLFLOW_DEFAULTS: dict[str, str] = {
    # MLflow 3 sends usage telemetry to its vendor unless told not to: a registry abflow
    # opens for you calls nowhere you did not configure (set it to "false" to opt in).
    "MLFLOW_DISABLE_TELEMETRY": "true",
    # MLflow retries an unreachable tracking server for minutes (7 retries, backoff 2, 120 s
    # timeout): a command or a gateway start would hang that long before saying so.
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}
"""MLflow variables abflow sets before it first calls MLflow, unless the user set them."""


def apply_mlflow_defaults() -> None:
    """Set :data:`MLFLOW_DEFAULTS` where the environment does not (MLflow reads only there)."""
    for name, value in MLFLOW_DEFAULTS.items():
        os.environ.setdefault(name, value)


def read_document(path: Path) -> Any:
    """The decoded YAML (or, for ``.json``, JSON) file; ``None`` for an empty YAML file.

    Raises DocumentError whose ``problem`` is ``"file: …"`` when the file cannot be read,
    else ``"line L, column C: …"`` with the line and a caret under the column.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        problem = f"file: cannot read it: {exc.strerror or exc}"
        raise DocumentError(problem, path) from None
    except UnicodeDecodeError as exc:
        problem = f"file: not UTF-8 text (byte {exc.start} is {exc.object[exc.start]:#04x})"
        raise DocumentError(problem, path) from None
    try:
        return orjson.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except orjson.JSONDecodeError as exc:
        problem = _pointing_at(text, exc.lineno, exc.colno, f"not valid JSON: {exc.msg}")
        raise DocumentError(problem, path) from None
    except yaml.YAMLError as exc:
        raise DocumentError(_yaml_problem(text, exc), path) from None


def _yaml_problem(text: str, exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    message = f"not valid YAML: {problem} ({context})" if context else f"not valid YAML: {problem}"
    if mark is None:
        return f"file: {message}"
    return _pointing_at(text, mark.line + 1, mark.column + 1, message)


def _pointing_at(text: str, line: int, column: int, message: str) -> str:
    """``line L, column C: message``, then that line of the file with a caret under column C."""
    lines = text.splitlines()
    head = f"line {line}, column {column}: {message}"
    if not 1 <= line <= len(lines):
        return head
    shown = lines[line - 1].expandtabs(1)
    return f"{head}\n      {shown}\n      {' ' * (column - 1)}^"
