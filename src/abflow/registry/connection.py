"""Where the MLflow registry lives, and the one place MLflow errors become abflow errors.

The embedded default needs no server: an SQLite tracking/registry database at
``.abflow/mlflow.db`` and artifacts under ``.abflow/mlartifacts``. A remote tracking server
is chosen by URL (argument, ``ABFLOW_MLFLOW_TRACKING_URI`` or the standard
``MLFLOW_TRACKING_URI``). Nothing here touches MLflow's process-global tracking URI, so two
registries (or two tests) never see each other.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from abflow.errors import ModelNotFoundError, RegistryError
from abflow.settings import apply_mlflow_defaults, settings

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = [
    "DEFAULT_TRACKING_URI",
    "TRACKING_URI_ENV",
    "RegistryLocation",
    "client_for",
    "from_millis",
    "get_or_create_experiment",
    "is_not_found",
    "mlflow_errors",
    "registry_location",
]

DEFAULT_TRACKING_URI = "sqlite:///.abflow/mlflow.db"
"""Embedded default: a local SQLite database, relative to the working directory."""

TRACKING_URI_ENV = ("ABFLOW_MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI")
"""Environment variables read, first one set wins."""

ARTIFACT_ROOT_ENV = "ABFLOW_MLFLOW_ARTIFACT_ROOT"

# MLflow error codes that mean "there is no such thing" rather than "the registry broke".
_NOT_FOUND_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "ENDPOINT_NOT_FOUND"})


@dataclass(frozen=True, slots=True)
class RegistryLocation:
    """A resolved tracking URI and the artifact root abflow uses for experiments it creates."""

    tracking_uri: str
    artifact_root: str | None


def registry_location(tracking_uri: str | None = None) -> RegistryLocation:
    """Resolve the tracking URI (argument, env, embedded default) and its artifact root.

    For an SQLite database the path is made absolute and the artifacts go next to it
    (``<dir>/mlartifacts``), so a registry is one self-contained folder; a remote server
    keeps its own artifact store.
    """
    shared = settings()
    uri = tracking_uri or shared.mlflow_tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    uri = uri or DEFAULT_TRACKING_URI
    root = shared.mlflow_artifact_root or None
    if uri.startswith("sqlite:///"):
        # Absolute, so that MLflow's per-URI store cache never mixes up two working folders.
        db_path = Path(uri.removeprefix("sqlite:///")).resolve()
        db_path.parent.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{db_path}"
        if root is None:
            root = (db_path.parent / "mlartifacts").as_uri()
    elif "://" not in uri or uri.startswith("file:"):
        # An MLflow file store: a directory, which keeps artifacts inside itself.
        path = Path(urlparse(uri).path if uri.startswith("file:") else uri)
        path.mkdir(parents=True, exist_ok=True)
    return RegistryLocation(tracking_uri=uri, artifact_root=root)


def client_for(tracking_uri: str | None = None) -> tuple[MlflowClient, RegistryLocation]:
    """An MLflow client bound to one registry (tracking and model registry share the URI)."""
    location = registry_location(tracking_uri)
    apply_mlflow_defaults()
    with mlflow_errors(f"cannot open the MLflow registry at {location.tracking_uri}"):
        from mlflow import MlflowClient

        client = MlflowClient(
            tracking_uri=location.tracking_uri, registry_uri=location.tracking_uri
        )
    return client, location


@contextmanager
def mlflow_errors(context: str) -> Iterator[None]:
    """Translate MLflow (and transport) failures into RegistryError / ModelNotFoundError.

    ``context`` is the start of the sentence, e.g. ``"cannot load models:/fraud/3"``.
    """
    try:
        yield
    except (RegistryError, ModelNotFoundError):
        raise
    except Exception as exc:
        detail = _first_line(exc)
        if is_not_found(exc):
            msg = f"{context}: {detail}"
            raise ModelNotFoundError(msg) from exc
        if _is_mlflow_or_io_error(exc):
            msg = f"{context}: {detail}"
            raise RegistryError(msg) from exc
        raise


def is_not_found(exc: BaseException) -> bool:
    """Whether an MLflow error means "no such model, version, alias or run"."""
    code = getattr(exc, "error_code", None)
    if code in _NOT_FOUND_CODES:
        return True
    # A missing alias comes back as INVALID_PARAMETER_VALUE "... alias X not found".
    return code == "INVALID_PARAMETER_VALUE" and "not found" in str(exc).lower()


def _is_mlflow_or_io_error(exc: BaseException) -> bool:
    if isinstance(exc, OSError | ConnectionError | TimeoutError):
        return True
    module = type(exc).__module__
    return module.startswith(("mlflow", "requests", "urllib3", "sqlalchemy"))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def get_or_create_experiment(
    client: MlflowClient, location: RegistryLocation, name: str, tags: dict[str, str] | None = None
) -> str:
    """The id of the MLflow experiment ``name``, created with abflow's artifact root if new."""
    with mlflow_errors(f"cannot open MLflow experiment {name!r}"):
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return str(experiment.experiment_id)
        artifact_location = None
        if location.artifact_root is not None:
            artifact_location = f"{location.artifact_root.rstrip('/')}/{_safe_dir(name)}"
        try:
            return str(
                client.create_experiment(name, artifact_location=artifact_location, tags=tags)
            )
        except Exception as exc:
            # Another process created it between our lookup and create: use theirs.
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise exc from None
            return str(experiment.experiment_id)


def _safe_dir(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def from_millis(value: Any) -> datetime:
    """An MLflow timestamp (milliseconds since the epoch) as an aware UTC datetime."""
    return datetime.fromtimestamp(int(value or 0) / 1000.0, tz=UTC)
