"""Model registry: resolve, verify, register, promote and log back to MLflow.

MLflow is imported only when a function needs it, so importing this package stays cheap.
The embedded default is an SQLite registry under ``.abflow/``; set
``ABFLOW_MLFLOW_TRACKING_URI`` (or ``MLFLOW_TRACKING_URI``) for a tracking server.
"""

from __future__ import annotations

from abflow.registry.checksum import CHECKSUM_TAG, artifact_checksum, verify_checksum
from abflow.registry.connection import DEFAULT_TRACKING_URI, registry_location
from abflow.registry.models import list_models, list_versions, register_model, set_alias
from abflow.registry.pins import PinnedModel, pin_experiment_models
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
from abflow.registry.retire import RetirementRecord, TrafficChange, retire_model, without_variant
from abflow.registry.staleness import (
    DATA_AS_OF_TAG,
    ModelAge,
    RetrainHook,
    RetrainResult,
    ShellRetrainHook,
    StaleModel,
    WebhookRetrainHook,
    model_age,
    retrain_hook,
    stale_models,
    trigger_retrain,
    variant_ages,
)
from abflow.registry.tracking import log_experiment_result, log_rollout_decision

__all__ = [
    "CHECKSUM_TAG",
    "DATA_AS_OF_TAG",
    "DEFAULT_TRACKING_URI",
    "AliasChange",
    "ModelAge",
    "ModelReference",
    "ModelVersionInfo",
    "PinnedModel",
    "Predictor",
    "RegisteredModelInfo",
    "ResolvedModel",
    "RetirementRecord",
    "RetrainHook",
    "RetrainResult",
    "ShellRetrainHook",
    "StaleModel",
    "TrafficChange",
    "WebhookRetrainHook",
    "artifact_checksum",
    "describe_version",
    "list_models",
    "list_versions",
    "log_experiment_result",
    "log_rollout_decision",
    "model_age",
    "parse_reference",
    "pin_experiment_models",
    "register_model",
    "registry_location",
    "resolve_model",
    "retire_model",
    "retrain_hook",
    "set_alias",
    "stale_models",
    "trigger_retrain",
    "variant_ages",
    "verify_checksum",
    "without_variant",
]
