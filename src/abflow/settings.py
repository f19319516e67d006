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

import json
import os
from pathlib import Path
from typing import Any

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
        if path.suffix == ".json":
            return json.loads(text, object_pairs_hook=_unique_keys)
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader
    except _RepeatedKey as exc:
        problem = f"file: not valid JSON: the key {exc.key!r} is written twice"
        raise DocumentError(problem, path) from None
    except json.JSONDecodeError as exc:
        problem = _pointing_at(text, exc.lineno, exc.colno, f"not valid JSON: {exc.msg}")
        raise DocumentError(problem, path) from None
    except yaml.YAMLError as exc:
        raise DocumentError(_yaml_problem(text, exc), path) from None
    except RecursionError:
        msg = "file: nested too deeply to read"
        raise DocumentError(msg, path) from None
    except ValueError as exc:  # an integer of more digits than Python converts
        msg = f"file: a value cannot be read: {exc}"
        raise DocumentError(msg, path) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key written twice in one mapping: YAML forbids it, and
    PyYAML would keep the last value without a word (``coverage:`` twice, the second wins)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool):
                continue  # a list as a key: PyYAML's own check says it cannot be one
            if key in seen:
                context, problem = "while reading a mapping", f"the key {key!r} is written twice"
                raise yaml.constructor.ConstructorError(
                    context, node.start_mark, problem, key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class _RepeatedKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object; a key written twice is refused, as in YAML (json keeps the last)."""
    document = dict(pairs)
    if len(document) != len(pairs):
        keys = [key for key, _ in pairs]
        raise _RepeatedKey(next(key for key in keys if keys.count(key) > 1))
    return document


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
