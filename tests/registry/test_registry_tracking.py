"""Experiment results and rollout decisions logged back to MLflow as runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from abflow.errors import InvalidArgumentError
from abflow.registry import log_experiment_result, log_rollout_decision


def _run(uri: str, run_id: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri).get_run(run_id)


def test_result_run_has_params_metrics_and_the_report(tracking_uri: str, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    report.write_text("<html><body>lift +3.1%</body></html>", encoding="utf-8")
    run_id = log_experiment_result(
        "fraud-v2",
        params={"alpha": 0.05, "method": "frequentist", "variants": {"control": "models:/f/1"}},
        metrics={
            "treatment": {"lift": 0.031, "p_value": 0.004},
            "srm_p_value": 0.61,
            "n": 12000,
            "undefined": None,
            "infinite": float("inf"),
        },
        artifacts=[report],
        tracking_uri=tracking_uri,
    )
    run = _run(tracking_uri, run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {
        "alpha": "0.05",
        "method": "frequentist",
        "variants.control": "models:/f/1",
    }
    assert run.data.metrics == {
        "treatment.lift": 0.031,
        "treatment.p_value": 0.004,
        "srm_p_value": 0.61,
        "n": 12000.0,
    }
    assert run.data.tags["abflow.kind"] == "experiment_result"
    stored = Path(run.info.artifact_uri.removeprefix("file://")) / "report.html"
    assert stored.read_text(encoding="utf-8") == report.read_text(encoding="utf-8")
    # Runs of one abflow experiment share one MLflow experiment, and its artifacts stay local.
    from mlflow import MlflowClient

    experiment = MlflowClient(tracking_uri=tracking_uri).get_experiment(run.info.experiment_id)
    assert experiment.name == "abflow/fraud-v2"
    assert experiment.artifact_location.startswith(Path(tracking_uri[10:]).parent.as_uri())


def test_rollout_decision_run(tracking_uri: str) -> None:
    run_id = log_rollout_decision(
        "fraud-v2",
        "rollback",
        reason="guardrail latency_p95 breached",
        phase=3,
        metrics={"latency_p95_ms": 412.5},
        tracking_uri=tracking_uri,
    )
    run = _run(tracking_uri, run_id)
    assert run.data.params == {
        "decision": "rollback",
        "reason": "guardrail latency_p95 breached",
        "phase": "3",
    }
    assert run.data.metrics == {"latency_p95_ms": 412.5}
    assert run.data.tags["abflow.decision"] == "rollback"
    assert run.info.run_name == "rollout rollback"


def test_bad_inputs_fail_before_a_run_is_created(tracking_uri: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="metric 'lift' is 'big', not a number"):
        log_experiment_result("e", {}, {"lift": "big"}, tracking_uri=tracking_uri)
    with pytest.raises(InvalidArgumentError, match="does not exist"):
        log_experiment_result("e", {}, {}, [tmp_path / "missing.html"], tracking_uri=tracking_uri)
    with pytest.raises(InvalidArgumentError, match="needs a name"):
        log_rollout_decision("e", " ", tracking_uri=tracking_uri)
    from mlflow import MlflowClient

    assert MlflowClient(tracking_uri=tracking_uri).get_experiment_by_name("abflow/e") is None


def test_many_params_and_long_values_are_batched_and_truncated(tracking_uri: str) -> None:
    params = {f"p{i:03d}": i for i in range(250)}
    params["long"] = "x" * 7000
    run = _run(tracking_uri, log_experiment_result("big", params, {}, tracking_uri=tracking_uri))
    assert len(run.data.params) == 251
    assert run.data.params["p249"] == "249"
    assert len(run.data.params["long"]) == 6000
    assert run.data.params["long"].endswith("…")
