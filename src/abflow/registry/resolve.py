"""Resolve a model reference to a loaded, checksummed predictor.

``resolve_model("models:/fraud@champion")`` asks the registry which version the alias points
to, finds its artifacts (a local path for the embedded registry, a download for a remote
one), hashes them, optionally verifies that hash against the one recorded when the version
entered an experiment, and only then loads the model: a tampered pickle is never unpickled.
The scikit-learn flavour is loaded when the model has one (it is faster than pyfunc and
keeps ``predict_proba``); anything else loads as an MLflow pyfunc.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from abflow.errors import ModelNotFoundError, RegistryError
from abflow.registry.checksum import artifact_checksum, verify_checksum
from abflow.registry.connection import RegistryLocation, client_for, from_millis, mlflow_errors
from abflow.registry.records import (
    ModelReference,
    ModelVersionInfo,
    Predictor,
    ResolvedModel,
    parse_reference,
)
from abflow.settings import apply_mlflow_defaults

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = [
    "describe_version",
    "input_columns",
    "load_predictor",
    "local_artifacts",
    "lookup_version",
    "model_flavors",
    "resolve_model",
    "version_info",
]


def version_info(model_version: Any) -> ModelVersionInfo:
    """Convert an MLflow ModelVersion into abflow's plain record."""
    return ModelVersionInfo(
        name=str(model_version.name),
        version=str(model_version.version),
        created_at=from_millis(model_version.creation_timestamp),
        updated_at=from_millis(
            model_version.last_updated_timestamp or model_version.creation_timestamp
        ),
        source=str(model_version.source or ""),
        run_id=model_version.run_id or None,
        aliases=tuple(sorted(model_version.aliases or ())),
        tags=dict(model_version.tags or {}),
        description=str(model_version.description or ""),
    )


def _latest_version(client: MlflowClient, name: str) -> Any:
    versions = client.search_model_versions(f"name = '{name}'")
    if not versions:
        msg = f"registered model {name!r} has no versions"
        raise ModelNotFoundError(msg)
    return max(versions, key=lambda mv: int(mv.version))


def lookup_version(client: MlflowClient, ref: ModelReference) -> Any:
    """The MLflow ModelVersion a ``models:/`` reference points at right now."""
    if ref.kind == "alias":
        return client.get_model_version_by_alias(ref.name, str(ref.alias))
    if ref.version == "latest":
        return _latest_version(client, ref.name)
    return client.get_model_version(ref.name, str(ref.version))


def describe_version(reference: str, *, tracking_uri: str | None = None) -> ModelVersionInfo:
    """Registry metadata of ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``, nothing loaded."""
    ref = parse_reference(reference)
    if ref.kind == "run":
        msg = f"{reference!r} is a run artifact, not a registered model version"
        raise RegistryError(msg)
    client, _ = client_for(tracking_uri)
    with mlflow_errors(f"cannot find {reference}"):
        return version_info(lookup_version(client, ref))


def local_artifacts(artifact_uri: str, location: RegistryLocation) -> Path:
    """The artifacts as a local folder: the stored files themselves when they are local."""
    from mlflow.artifacts import download_artifacts

    if artifact_uri.startswith("file:") or "://" not in artifact_uri:
        local = download_artifacts(artifact_uri=artifact_uri, tracking_uri=location.tracking_uri)
    else:
        target = tempfile.mkdtemp(prefix="abflow-model-")
        local = download_artifacts(
            artifact_uri=artifact_uri, dst_path=target, tracking_uri=location.tracking_uri
        )
    return Path(local)


def model_flavors(path: Path) -> dict[str, Any]:
    """The ``flavors`` section of an MLflow model folder's MLmodel file."""
    mlmodel = path / "MLmodel"
    try:
        data = yaml.safe_load(mlmodel.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        msg = f"{path} is not an MLflow model folder (cannot read its MLmodel file: {exc})"
        raise RegistryError(msg) from exc
    flavors = data.get("flavors") or {}
    return dict(flavors) if isinstance(flavors, dict) else {}


def load_predictor(path: Path) -> tuple[Predictor, str]:
    """Load an MLflow model folder: sklearn flavour when present, else pyfunc."""
    flavors = model_flavors(path)
    apply_mlflow_defaults()
    with mlflow_errors(f"cannot load the model in {path}"):
        if "sklearn" in flavors:
            import mlflow.sklearn

            return mlflow.sklearn.load_model(str(path)), "sklearn"
        import mlflow.pyfunc

        model = mlflow.pyfunc.load_model(str(path))
        names = _signature_columns(model)
        return (NamedColumns(model, names) if names else model), "pyfunc"


def _signature_columns(model: Any) -> tuple[str, ...] | None:
    """The input signature's column names, when every input is a named column."""
    try:
        schema = model.metadata.get_input_schema()
    except AttributeError:
        return None
    if schema is None or not schema.has_input_names():
        return None
    names = tuple(str(name) for name in schema.input_names())
    return names if len(names) == len(schema.inputs) else None


class NamedColumns:
    """A pyfunc model whose signature names its input columns (MLflow's usual
    ``infer_signature(frame, …)``), called with a DataFrame of those columns: given the
    gateway's bare feature matrix it answers "Model is missing inputs ['f0', …]" on every
    request, and each one fell back to the control."""

    def __init__(self, model: Any, columns: tuple[str, ...]) -> None:
        self.model = model
        self.columns = columns
        self.n_features_in_ = len(columns)  # the width the gateway checks at registration

    def predict(self, x: Any, /) -> Any:
        import pandas as pd  # type: ignore[import-untyped]  # with MLflow, which needs it

        return self.model.predict(pd.DataFrame(x, columns=list(self.columns)))

    def __getattr__(self, name: str) -> Any:  # metadata, unwrap_python_model, …
        return getattr(self.model, name)


def resolve_model(
    reference: str,
    *,
    tracking_uri: str | None = None,
    expected_checksum: str | None = None,
) -> ResolvedModel:
    """Resolve ``models:/NAME/VERSION``, ``models:/NAME@ALIAS`` or ``runs:/ID/PATH`` and load it.

    With ``expected_checksum`` the artifacts are verified before anything is unpickled, and
    ArtifactChecksumError is raised when they changed. For a ``runs:/`` reference ``name``
    is the run's name and ``version`` its run id.
    """
    ref = parse_reference(reference)
    client, location = client_for(tracking_uri)
    with mlflow_errors(f"cannot resolve {reference}"):
        if ref.kind == "run":
            run = client.get_run(str(ref.run_id))
            info = ModelVersionInfo(
                name=str(run.info.run_name or run.info.run_id),
                version=str(run.info.run_id),
                created_at=from_millis(run.info.start_time),
                updated_at=from_millis(run.info.end_time or run.info.start_time),
                source=f"{run.info.artifact_uri}/{ref.path}",
                run_id=str(run.info.run_id),
                aliases=(),
                tags=dict(run.data.tags),
            )
            artifact_uri = info.source
        else:
            info = version_info(lookup_version(client, ref))
            artifact_uri = client.get_model_version_download_uri(info.name, info.version)
        path = local_artifacts(str(artifact_uri), location)
    if expected_checksum is not None:
        checksum = verify_checksum(path, expected_checksum, label=reference)
    else:
        checksum = artifact_checksum(path)
    predictor, flavor = load_predictor(path)
    return ResolvedModel(
        predictor=predictor,
        name=info.name,
        version=info.version,
        reference=ref.raw,
        checksum=checksum,
        created_at=info.created_at,
        source=info.source,
        artifact_path=path,
        flavor=flavor,
        run_id=info.run_id,
        aliases=info.aliases,
        tags=info.tags,
    )


def input_columns(reference: str, *, tracking_uri: str | None = None) -> tuple[str, ...] | None:
    """The column names of the model's input signature (None when it has no named columns):
    what a scoring server enforcing that signature must receive, e.g. as ``dataframe_split``.
    Reads the MLmodel file only; nothing is unpickled."""
    parse_reference(reference)  # a clear error for what is not a registry reference
    _, location = client_for(tracking_uri)
    with (
        tempfile.TemporaryDirectory(prefix="abflow-signature-") as folder,
        mlflow_errors(f"cannot read the signature of {reference}"),
    ):
        import mlflow.artifacts

        # MLflow resolves runs:/ (logged models included) and models:/ itself.
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=reference, dst_path=folder, tracking_uri=location.tracking_uri
        )
        try:
            mlmodel = yaml.safe_load((Path(local) / "MLmodel").read_text(encoding="utf-8")) or {}
            inputs = json.loads((mlmodel.get("signature") or {}).get("inputs") or "[]")
        except (OSError, yaml.YAMLError, ValueError) as exc:
            msg = f"cannot read the signature of {reference}: {exc}"
            raise RegistryError(msg) from exc
    names = tuple(
        str(item["name"]) for item in inputs if isinstance(item, dict) and item.get("name")
    )
    return names if names and len(names) == len(inputs) else None
