"""Register model versions, move aliases (champion, challenger), list what the registry holds.

Registration goes through the MLflow client only (no fluent ``mlflow.start_run``), so it never
touches MLflow's process-global state: the model is saved to a temporary folder, uploaded as
the artifacts of a run in the MLflow experiment ``abflow/models``, and that folder becomes a
new version. Its artifact checksum is recorded on the version (tag ``abflow.artifact_sha256``)
so that later tampering can be proven against the registry itself.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from abflow.errors import InvalidArgumentError, ModelNotFoundError
from abflow.registry.checksum import CHECKSUM_TAG, artifact_checksum
from abflow.registry.connection import (
    RegistryLocation,
    client_for,
    from_millis,
    get_or_create_experiment,
    is_not_found,
    mlflow_errors,
)
from abflow.registry.records import AliasChange, ModelVersionInfo, RegisteredModelInfo
from abflow.registry.resolve import local_artifacts, version_info
from abflow.registry.tracking import log_registry_event
from abflow.settings import apply_mlflow_defaults

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["MODELS_EXPERIMENT", "list_models", "list_versions", "register_model", "set_alias"]

MODELS_EXPERIMENT = "abflow/models"
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:/")


def _save_model(
    model: Any,
    target: Path,
    *,
    input_example: Any,
    pip_requirements: list[str] | None,
    serialization_format: str,
) -> None:
    """Save a Python model object as an MLflow model folder (sklearn flavour when it is one).

    The flavour's default requirements are used unless given: MLflow's own inference runs
    a subprocess that imports the model and takes tens of seconds.
    """
    import mlflow.pyfunc
    from sklearn.base import BaseEstimator

    apply_mlflow_defaults()

    if isinstance(model, BaseEstimator):
        import mlflow.sklearn

        with _quiet_pickle_notice():
            mlflow.sklearn.save_model(
                model,
                str(target),
                input_example=input_example,
                serialization_format=serialization_format,
                pip_requirements=pip_requirements or mlflow.sklearn.get_default_pip_requirements(),
            )
    elif isinstance(model, mlflow.pyfunc.PythonModel):
        mlflow.pyfunc.save_model(
            str(target),
            python_model=model,
            input_example=input_example,
            pip_requirements=pip_requirements or mlflow.pyfunc.get_default_pip_requirements(),
        )
    else:
        msg = (
            f"cannot register a {type(model).__name__}: give a scikit-learn estimator, an "
            "mlflow.pyfunc.PythonModel, an MLflow model folder or a model URI"
        )
        raise InvalidArgumentError(msg)


class _DropPickleNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pickle or cloudpickle format" not in record.getMessage()


@contextmanager
def _quiet_pickle_notice() -> Iterator[None]:
    """Drop MLflow's per-save pickle caution: abflow chose cloudpickle on purpose, and the
    checksum recorded at registration is verified before any load."""
    target = logging.getLogger("mlflow.sklearn")
    notice = _DropPickleNotice()
    target.addFilter(notice)
    try:
        yield
    finally:
        target.removeFilter(notice)


def _ensure_registered_model(client: MlflowClient, name: str, description: str | None) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        if getattr(exc, "error_code", None) != "RESOURCE_DOES_NOT_EXIST":
            raise
        try:
            client.create_registered_model(name, description=description)
        except MlflowException as race:  # created by someone else in between
            if getattr(race, "error_code", None) != "RESOURCE_ALREADY_EXISTS":
                raise


def register_model(
    name: str,
    model: Any,
    *,
    description: str | None = None,
    tags: Mapping[str, str] | None = None,
    alias: str | None = None,
    input_example: Any = None,
    pip_requirements: list[str] | None = None,
    serialization_format: str = "cloudpickle",
    tracking_uri: str | None = None,
) -> ModelVersionInfo:
    """Register ``model`` as a new version of ``name`` and record its artifact checksum.

    ``model`` is a scikit-learn estimator, an ``mlflow.pyfunc.PythonModel``, a local MLflow
    model folder, or a URI MLflow can read (``runs:/ID/model``, ``file:…``, ``s3://…``).
    With ``alias`` the alias (e.g. ``"challenger"``) is moved to the new version.
    scikit-learn models are stored with cloudpickle by default: it loads any estimator and
    loads fast, and the recorded checksum (verified before loading) guards against a
    swapped pickle; pass ``serialization_format="skops"`` for MLflow's skops format.
    """
    if not name or any(ch in name for ch in "/@'\""):
        msg = f"model name {name!r} must be non-empty and contain no '/', '@' or quotes"
        raise InvalidArgumentError(msg)
    is_uri = isinstance(model, str) and _URI.match(model) is not None
    if isinstance(model, str | Path) and not is_uri and not Path(model).is_dir():
        msg = f"{model} is not an MLflow model folder or a model URI (such as runs:/ID/model)"
        raise InvalidArgumentError(msg)
    client, location = client_for(tracking_uri)
    version_tags = dict(tags or {})
    with mlflow_errors(f"cannot register model {name!r}"):
        _ensure_registered_model(client, name, description)
        if is_uri:
            source, run_id = _source_from_uri(client, str(model))
        else:
            saver = partial(
                _save_model,
                input_example=input_example,
                pip_requirements=pip_requirements,
                serialization_format=serialization_format,
            )
            source, run_id = _upload(client, location, name, model, saver)
        created = client.create_model_version(
            name, source=source, run_id=run_id, tags=version_tags, description=description
        )
        local = local_artifacts(
            client.get_model_version_download_uri(name, created.version), location
        )
        checksum = artifact_checksum(local)
        client.set_model_version_tag(name, str(created.version), CHECKSUM_TAG, checksum)
        info = version_info(client.get_model_version(name, str(created.version)))
    if alias is not None:
        set_alias(
            name, alias, info.version, reason="set at registration", tracking_uri=tracking_uri
        )
        info = version_info(client.get_model_version(name, info.version))
    return info


def _source_from_uri(client: MlflowClient, uri: str) -> tuple[str, str | None]:
    if uri.startswith("runs:/"):
        run_id, _, path = uri.removeprefix("runs:/").partition("/")
        run = client.get_run(run_id)
        return f"{run.info.artifact_uri}/{path.strip('/')}", run_id
    return uri, None


def _upload(
    client: MlflowClient,
    location: RegistryLocation,
    name: str,
    model: Any,
    saver: Callable[[Any, Path], None],
) -> tuple[str, str]:
    experiment_id = get_or_create_experiment(client, location, MODELS_EXPERIMENT)
    run = client.create_run(experiment_id, run_name=f"register {name}")
    run_id = str(run.info.run_id)
    status = "FAILED"
    try:
        if isinstance(model, str | Path) and Path(model).is_dir():
            folder = Path(model)
            if not (folder / "MLmodel").is_file():
                msg = f"{folder} is not an MLflow model folder: it has no MLmodel file"
                raise InvalidArgumentError(msg)
            client.log_artifacts(run_id, str(folder), artifact_path="model")
        else:
            with tempfile.TemporaryDirectory(prefix="abflow-register-") as tmp:
                folder = Path(tmp) / "model"
                saver(model, folder)
                client.log_artifacts(run_id, str(folder), artifact_path="model")
        client.log_param(run_id, "abflow.model_name", name)
        status = "FINISHED"
    finally:
        client.set_terminated(run_id, status=status)
    return f"{run.info.artifact_uri}/model", run_id


def set_alias(
    name: str, alias: str, version: str | int, *, reason: str = "", tracking_uri: str | None = None
) -> AliasChange:
    """Point ``name@alias`` at ``version`` and record the move (a run in ``abflow/registry``)."""
    client, _ = client_for(tracking_uri)
    version = str(version)
    with mlflow_errors(f"cannot move alias {name}@{alias} to version {version}"):
        client.get_model_version(name, version)  # a missing version fails here, clearly
        previous = _alias_version(client, name, alias)
        client.set_registered_model_alias(name, alias, version)
    change = AliasChange(
        name=name,
        alias=alias,
        version=version,
        previous_version=previous,
        changed_at=datetime.now(tz=UTC),
        reason=reason,
    )
    log_registry_event(
        "alias",
        {
            "name": name,
            "alias": alias,
            "version": version,
            "previous_version": previous or "",
            "reason": reason,
        },
        tracking_uri=tracking_uri,
    )
    return change


def _alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if is_not_found(exc):
            return None
        raise


def list_models(*, tracking_uri: str | None = None) -> list[RegisteredModelInfo]:
    """Every registered model, sorted by name, with its aliases and newest version."""
    client, _ = client_for(tracking_uri)
    found: list[RegisteredModelInfo] = []
    with mlflow_errors("cannot list registered models"):
        token: str | None = None
        while True:
            page = client.search_registered_models(max_results=200, page_token=token)
            for model in page:
                versions = [int(v.version) for v in (model.latest_versions or ())]
                found.append(
                    RegisteredModelInfo(
                        name=str(model.name),
                        aliases={str(k): str(v) for k, v in (model.aliases or {}).items()},
                        latest_version=str(max(versions)) if versions else None,
                        created_at=from_millis(model.creation_timestamp),
                        updated_at=from_millis(
                            model.last_updated_timestamp or model.creation_timestamp
                        ),
                        description=str(model.description or ""),
                        tags=dict(model.tags or {}),
                    )
                )
            token = page.token
            if not token:
                break
    return sorted(found, key=lambda m: m.name)


def list_versions(name: str, *, tracking_uri: str | None = None) -> list[ModelVersionInfo]:
    """Every version of ``name``, oldest first; ModelNotFoundError when there is no such model."""
    client, _ = client_for(tracking_uri)
    with mlflow_errors(f"cannot list versions of {name!r}"):
        model = client.get_registered_model(name)
        versions = client.search_model_versions(f"name = '{name}'")
    if not versions:
        msg = f"registered model {name!r} has no versions"
        raise ModelNotFoundError(msg)
    # Search results leave aliases out; the registered model has them all.
    aliases: dict[str, list[str]] = {}
    for alias, version in (model.aliases or {}).items():
        aliases.setdefault(str(version), []).append(str(alias))
    infos = [
        replace(info, aliases=tuple(sorted(aliases.get(info.version, ()))))
        for info in map(version_info, versions)
    ]
    return sorted(infos, key=lambda v: int(v.version))
