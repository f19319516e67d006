"""Plain records the registry returns: no MLflow object ever leaves ``abflow.registry``."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from abflow.errors import InvalidArgumentError

__all__ = [
    "AliasChange",
    "ModelReference",
    "ModelVersionInfo",
    "Predictor",
    "RegisteredModelInfo",
    "ResolvedModel",
    "parse_reference",
]


class Predictor(Protocol):
    """What a backend calls: ``predict`` always; ``predict_proba`` where the flavour has it."""

    def predict(self, x: Any, /) -> Any: ...


@dataclass(frozen=True, slots=True)
class ModelVersionInfo:
    """One registered model version, as the registry describes it (nothing loaded)."""

    name: str
    version: str
    created_at: datetime
    updated_at: datetime
    source: str
    run_id: str | None
    aliases: tuple[str, ...]
    tags: dict[str, str] = field(default_factory=dict)
    description: str = ""

    @property
    def reference(self) -> str:
        return f"models:/{self.name}/{self.version}"


@dataclass(frozen=True, slots=True)
class RegisteredModelInfo:
    """A registered model: its aliases (alias -> version) and its newest version."""

    name: str
    aliases: dict[str, str]
    latest_version: str | None
    created_at: datetime
    updated_at: datetime
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AliasChange:
    """What ``set_alias`` did: the alias moved from ``previous_version`` to ``version``."""

    name: str
    alias: str
    version: str
    previous_version: str | None
    changed_at: datetime
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """A model reference resolved, verified and loaded: what a backend serves.

    ``checksum`` is the SHA-256 of the artifact files (see ``abflow.registry.checksum``);
    ``artifact_path`` is the local folder it was computed over and loaded from.
    """

    predictor: Predictor
    name: str
    version: str
    reference: str
    checksum: str
    created_at: datetime
    source: str
    artifact_path: Path
    flavor: str
    run_id: str | None = None
    aliases: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def has_predict_proba(self) -> bool:
        return callable(getattr(self.predictor, "predict_proba", None))


_ALIAS = r"[A-Za-z0-9_\-]+"
_MODELS_VERSION = re.compile(r"^models:/(?P<name>[^/@\s]+)/(?P<version>\d+|latest)$")
_MODELS_ALIAS = re.compile(rf"^models:/(?P<name>[^/@\s]+)@(?P<alias>{_ALIAS})$")
_RUNS = re.compile(r"^runs:/(?P<run_id>[A-Za-z0-9]+)/(?P<path>\S+?)/?$")


@dataclass(frozen=True, slots=True)
class ModelReference:
    """A parsed reference: exactly one of version, alias or run_id (+ path) is set."""

    raw: str
    kind: str  # "version", "alias" or "run"
    name: str = ""
    version: str | None = None
    alias: str | None = None
    run_id: str | None = None
    path: str | None = None


def parse_reference(reference: str) -> ModelReference:
    """Parse ``models:/NAME/VERSION``, ``models:/NAME/latest``, ``models:/NAME@ALIAS``, ``runs:/ID/PATH``."""
    text = reference.strip()
    if match := _MODELS_VERSION.match(text):
        return ModelReference(text, "version", name=match["name"], version=match["version"])
    if match := _MODELS_ALIAS.match(text):
        return ModelReference(text, "alias", name=match["name"], alias=match["alias"])
    if match := _RUNS.match(text):
        return ModelReference(text, "run", run_id=match["run_id"], path=match["path"])
    msg = (
        f"{reference!r} is not a registry reference; use models:/NAME/VERSION, "
        "models:/NAME@ALIAS or runs:/RUN_ID/PATH"
    )
    raise InvalidArgumentError(msg)
