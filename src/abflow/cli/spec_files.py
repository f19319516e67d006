"""Rewrite a spec file in place, keeping what a person wrote: comments, key order, quoting.

Commands that change a spec (``abflow models retire --write``) edit only the top-level fields
whose value changed; every other line of the file stays byte-for-byte as it was. The file is
replaced atomically, so an interrupted write never leaves half a spec behind.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.util import load_yaml_guess_indent

from abflow.spec import ExperimentSpec, load_experiment

__all__ = ["changed_fields", "rewrite_spec_file"]


def changed_fields(before: ExperimentSpec, after: ExperimentSpec) -> dict[str, Any | None]:
    """Top-level fields whose value differs: the new value, or ``None`` for a removed field."""
    old = before.model_dump(mode="json", exclude_none=True)
    new = after.model_dump(mode="json", exclude_none=True)
    return {key: new.get(key) for key in [*old, *new] if old.get(key) != new.get(key)}


def rewrite_spec_file(path: Path, updated: ExperimentSpec) -> list[str]:
    """Write ``updated`` over the spec at ``path``, editing only the fields that changed.

    Returns the names of the fields written (empty when nothing changed, and then the file
    is not touched).
    """
    changes = changed_fields(load_experiment(path), updated)
    if not changes:
        return []
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        document = json.loads(text)
        _apply(document, changes)
        output = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    else:
        _, sequence_indent, dash_offset = load_yaml_guess_indent(text)
        yaml = YAML()  # round-trip mode: comments and order survive
        yaml.preserve_quotes = True
        yaml.width = 4096
        yaml.indent(mapping=_mapping_indent(text), sequence=sequence_indent, offset=dash_offset)
        document = yaml.load(text)
        _apply(document, changes)
        buffer = io.StringIO()
        yaml.dump(document, buffer)
        output = buffer.getvalue()
    _replace_atomically(path, output)
    return sorted(changes)


def _mapping_indent(text: str) -> int:
    """How far the file indents a mapping under its key (2 when it never does)."""
    previous: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if previous is not None and previous.split("#")[0].rstrip().endswith(":"):
            outer = len(previous) - len(previous.lstrip())
            inner = len(line) - len(line.lstrip())
            if inner > outer and not stripped.startswith("-"):
                return inner - outer
        previous = line
    return 2


def _apply(document: Any, changes: dict[str, Any | None]) -> None:
    for key, value in changes.items():
        if value is None:
            document.pop(key, None)
        elif key in document:
            document[key] = _merge(document[key], value)
        else:
            document[key] = value


def _merge(old: Any, new: Any) -> Any:
    """``new``, written into ``old``'s container where both are lists or both mappings.

    Editing in place keeps the container's style (``[0.5, 0.5]`` stays on one line) and the
    comments attached to the entries that remain.
    """
    if isinstance(old, list) and isinstance(new, list):
        old[:] = new
        return old
    if isinstance(old, dict) and isinstance(new, dict):
        for gone in [k for k in old if k not in new]:
            del old[gone]
        for k, v in new.items():
            old[k] = _merge(old[k], v) if k in old else v
        return old
    return new


def _replace_atomically(path: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        if path.exists():
            os.chmod(temporary, path.stat().st_mode & 0o777)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
