"""Log experiment results, rollout decisions and registry changes back to MLflow as runs.

Every experiment result and every rollout decision becomes an MLflow run (params, metrics,
the HTML report as an artifact) in the MLflow experiment ``abflow/<experiment key>``, so a
model's history in the registry sits next to the evidence that promoted or retired it.
Alias moves and retirements are runs in ``abflow/registry``: an append-only record that
tags (which are overwritten) cannot give.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from abflow.errors import InvalidArgumentError
from abflow.registry.connection import (
    client_for,
    get_or_create_experiment,
    mlflow_errors,
    registry_location,
)

__all__ = [
    "REGISTRY_EXPERIMENT",
    "experiment_name",
    "flatten",
    "log_experiment_result",
    "log_registry_event",
    "log_rollout_decision",
    "log_run",
]

REGISTRY_EXPERIMENT = "abflow/registry"
_MAX_PARAM_CHARS = 6000  # MLflow rejects longer parameter values
_BATCH = 100  # MLflow's log_batch accepts at most 100 params and 100 tags per call


def experiment_name(experiment_key: str) -> str:
    """The MLflow experiment holding an abflow experiment's results and decisions."""
    return f"abflow/{experiment_key}"


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings become dotted keys: ``{"b": {"lift": 1}}`` -> ``{"b.lift": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        full = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, prefix=f"{full}."))
        else:
            flat[full] = value
    return flat


def _param_value(value: Any) -> str:
    text = str(value)
    return text if len(text) <= _MAX_PARAM_CHARS else text[: _MAX_PARAM_CHARS - 1] + "…"


def _metric_value(key: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return float(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        msg = f"metric {key!r} is {value!r}, not a number"
        raise InvalidArgumentError(msg) from None
    return number if math.isfinite(number) else None


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), _BATCH):
        yield items[start : start + _BATCH]


def log_run(
    mlflow_experiment: str,
    *,
    run_name: str,
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    artifacts: Iterable[str | Path] = (),
    tracking_uri: str | None = None,
    client: Any = None,
) -> str:
    """Create one finished MLflow run with params, metrics, tags and artifacts; return its id.

    Nested params and metrics are flattened to dotted keys; ``None`` and non-finite metrics
    are left out (MLflow cannot plot them), a non-numeric metric is an error. ``client``
    reuses an open MLflow client (for ``tracking_uri``) instead of opening one.
    """
    from mlflow.entities import Metric, Param

    flat_params = {k: _param_value(v) for k, v in flatten(params or {}).items()}
    flat_metrics = {k: _metric_value(k, v) for k, v in flatten(metrics or {}).items()}
    files = [Path(a) for a in artifacts]
    for file in files:
        if not file.exists():
            msg = f"artifact {file} does not exist"
            raise InvalidArgumentError(msg)
    if client is None:
        client, location = client_for(tracking_uri)
    else:
        location = registry_location(tracking_uri)
    experiment_id = get_or_create_experiment(client, location, mlflow_experiment)
    with mlflow_errors(f"cannot log run {run_name!r} to MLflow experiment {mlflow_experiment!r}"):
        run = client.create_run(experiment_id, run_name=run_name, tags=dict(tags or {}))
        run_id = str(run.info.run_id)
        status = "FAILED"
        try:
            now_ms = int(time.time() * 1000)
            metric_rows = [
                Metric(k, v, now_ms, 0) for k, v in flat_metrics.items() if v is not None
            ]
            for chunk in _chunks([Param(k, v) for k, v in flat_params.items()]):
                client.log_batch(run_id, params=list(chunk))
            for chunk in _chunks(metric_rows):
                client.log_batch(run_id, metrics=list(chunk))
            for file in files:
                if file.is_dir():
                    client.log_artifacts(run_id, str(file), artifact_path=file.name)
                else:
                    client.log_artifact(run_id, str(file))
            status = "FINISHED"
        finally:
            client.set_terminated(run_id, status=status)
    return run_id


def log_experiment_result(
    experiment_key: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, Any],
    artifacts: Sequence[str | Path] = (),
    *,
    tags: Mapping[str, str] | None = None,
    run_name: str | None = None,
    tracking_uri: str | None = None,
) -> str:
    """Log an experiment's analysis (params, metrics, e.g. the HTML report) as an MLflow run."""
    all_tags = {"abflow.kind": "experiment_result", "abflow.experiment": experiment_key}
    all_tags.update(tags or {})
    return log_run(
        experiment_name(experiment_key),
        run_name=run_name or f"result {experiment_key}",
        params=params,
        metrics=metrics,
        tags=all_tags,
        artifacts=artifacts,
        tracking_uri=tracking_uri,
    )


def log_rollout_decision(
    experiment_key: str,
    decision: str,
    *,
    reason: str = "",
    phase: int | None = None,
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    artifacts: Sequence[str | Path] = (),
    tracking_uri: str | None = None,
    client: Any = None,
) -> str:
    """Log a rollout decision (promote, rollback, ramp, hold) and why, as an MLflow run.

    The rollout controller calls it for every promotion and every rollback that undoes one.
    """
    if not decision.strip():
        msg = "a rollout decision needs a name such as 'promote' or 'rollback'"
        raise InvalidArgumentError(msg)
    all_params: dict[str, Any] = {"decision": decision, "reason": reason}
    if phase is not None:
        all_params["phase"] = phase
    all_params.update(params or {})
    tags = {
        "abflow.kind": "rollout_decision",
        "abflow.experiment": experiment_key,
        "abflow.decision": decision,
        "mlflow.note.content": reason,
    }
    return log_run(
        experiment_name(experiment_key),
        run_name=f"rollout {decision}",
        params=all_params,
        metrics=metrics,
        tags=tags,
        artifacts=artifacts,
        tracking_uri=tracking_uri,
        client=client,
    )


def log_registry_event(
    event: str, params: Mapping[str, Any], *, tracking_uri: str | None = None
) -> str:
    """Record a registry change (alias moved, version retired) as a run in ``abflow/registry``."""
    name = params.get("name", "")
    return log_run(
        REGISTRY_EXPERIMENT,
        run_name=f"{event} {name}".strip(),
        params=params,
        tags={"abflow.kind": "registry_event", "abflow.event": event},
        tracking_uri=tracking_uri,
    )
