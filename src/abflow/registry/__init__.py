"""Model registry: resolve, verify, register, promote and log back to MLflow.

MLflow is imported only when a function needs it, so importing this package stays cheap.
The embedded default is an SQLite registry under ``.abflow/``; set
``ABFLOW_MLFLOW_TRACKING_URI`` (or ``MLFLOW_TRACKING_URI``) for a tracking server.
"""

from __future__ import annotations

from abflow.registry.checksum import CHECKSUM_TAG, artifact_checksum, verify_checksum
from abflow.registry.connection import DEFAULT_TRACKING_URI, registry_location
from abflow.registry.models import list_models, list_versions, register_model, set_alias
from abflow.registry.records import (
    AliasChange,
    ModelReference,
    ModelVersionInfo,
    Predictor,
    RegisteredModelInfo,
    ResolvedModel,
    parse_reference,
)
from abflow.registry.resolve import describe_version, resolve_model
from abflow.registry.tracking import log_experiment_result, log_rollout_decision

__all__ = [
    "CHECKSUM_TAG",
    "DEFAULT_TRACKING_URI",
    "AliasChange",
    "ModelReference",
    "ModelVersionInfo",
    "Predictor",
    "RegisteredModelInfo",
    "ResolvedModel",
    "artifact_checksum",
    "describe_version",
    "list_models",
    "list_versions",
    "log_experiment_result",
    "log_rollout_decision",
    "parse_reference",
    "register_model",
    "registry_location",
    "resolve_model",
    "set_alias",
    "verify_checksum",
]
