"""Rendered Kubernetes manifests: valid against the API schemas, faithful to the config.

Validation uses ``kubernetes-validate`` (the Kubernetes OpenAPI schemas, strict: unknown
fields are errors). No cluster runs here, so applying them is not tested.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from abflow.deploy import K8sOptions, render_manifests, to_yaml
from abflow.errors import InvalidArgumentError
from abflow.serving.settings import build_config, load_config
from abflow.spec import parse_experiment, spec_hash

EXAMPLE = Path(__file__).parents[2] / "examples" / "fraud.yaml"
KUBERNETES_VERSIONS = ["1.28.0", "1.33.0"]


def config_file(tmp_path: Path, **extra: Any) -> Path:
    path = tmp_path / "gateway.yaml"
    data = {"default_experiment": "fraud-model-v2", "experiments": [str(EXAMPLE)], **extra}
    path.write_text(yaml.safe_dump(data))
    return path


def by_kind(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {m["kind"]: m for m in manifests}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_is_valid_kubernetes(tmp_path: Path, version: str) -> None:
    options = K8sOptions(image="registry.example.com/abflow:0.1.0", metrics_token_secret="metrics")
    manifests = render_manifests(load_config(config_file(tmp_path)), options)
    kinds = [m["kind"] for m in manifests]
    assert kinds == [
        "ConfigMap", "Job", "Deployment", "Deployment", "Service", "HorizontalPodAutoscaler",
        "PodDisruptionBudget", "ServiceMonitor", "PodMonitor", "PrometheusRule", "CronJob",
    ]  # fmt: skip
    for manifest in manifests:
        if manifest["kind"] in ("PodMonitor", "PrometheusRule"):  # Operator CRDs (alerts.py)
            assert manifest["metadata"]["name"].startswith("abflow-gateway-")
            continue
        if manifest["kind"] == "ServiceMonitor":  # a Prometheus Operator CRD, not in the API
            assert (
                manifest["spec"]["endpoints"][0]["authorization"]["credentials"]["name"]
                == "metrics"
            )
            continue
        kubernetes_validate.validate(manifest, version, strict=True)


def test_the_config_map_carries_the_same_specs(tmp_path: Path) -> None:
    source = config_file(tmp_path)
    original = load_config(source)
    config_map = render_manifests(original, K8sOptions(image="img"))[0]
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(config_map["data"]["gateway.yaml"])
    reloaded = load_config(rendered)
    assert reloaded == original
    # the same hash means the same stored version and phase whichever file a gateway reads
    assert [spec_hash(s) for s in reloaded.experiments] == [
        spec_hash(s) for s in original.experiments
    ]


def test_the_store_url_is_never_rendered(tmp_path: Path) -> None:
    secret_url = "postgresql+psycopg://abflow:s3cret-pass@db:5432/abflow"
    config = load_config(config_file(tmp_path, store_url=secret_url))
    text = to_yaml(render_manifests(config, K8sOptions(image="img", store_secret="db-url")))
    assert "s3cret-pass" not in text
    deployment = by_kind(render_manifests(config, K8sOptions(image="img", store_secret="db-url")))[
        "Deployment"
    ]
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env[0] == {
        "name": "ABFLOW_STORE_URL",
        "valueFrom": {"secretKeyRef": {"name": "db-url", "key": "url"}},
    }


def test_gateway_deployment_serves_the_mounted_config(tmp_path: Path) -> None:
    options = K8sOptions(image="img", replicas=3, workers=4, namespace="ml")
    manifests = render_manifests(load_config(config_file(tmp_path)), options)
    deployment = by_kind(manifests)["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["args"] == [
        "serve", "--host", "0.0.0.0", "--port", "8000", "--config", "/etc/abflow/gateway.yaml",
        "--workers", "4",
    ]  # fmt: skip
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["config"] == "/etc/abflow"
    assert {v["name"]: v.get("configMap") for v in pod["volumes"]}["config"] == {
        "name": "abflow-gateway-config"
    }
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["ABFLOW_WORKER_START_TIMEOUT_SECONDS"] == "60"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert deployment["spec"]["replicas"] == 3
    assert by_kind(manifests)["HorizontalPodAutoscaler"]["spec"]["minReplicas"] == 3
    assert {m["metadata"]["namespace"] for m in manifests} == {"ml"}
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert by_kind(manifests)["Service"]["spec"]["selector"] == selector
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_one_rollout_cron_job_per_plan(tmp_path: Path) -> None:
    spec = parse_experiment(yaml.safe_load(EXAMPLE.read_text()))
    plain = spec.model_copy(update={"key": "no-plan", "rollout": None})
    long_key = spec.model_copy(update={"key": "a-very-long-experiment-key-" + "x" * 60})
    config = build_config({"experiments": [spec, plain, long_key]})
    crons = [m for m in render_manifests(config, K8sOptions(image="img")) if m["kind"] == "CronJob"]
    assert len(crons) == 2
    first = crons[0]
    assert first["spec"]["concurrencyPolicy"] == "Forbid"
    args = first["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == ["rollout", "tick", "fraud-model-v2", "--actor", "controller:abflow-gateway"]
    assert all(len(c["metadata"]["name"]) <= 52 for c in crons)
    for cron in crons:
        kubernetes_validate.validate(cron, KUBERNETES_VERSIONS[-1], strict=True)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (K8sOptions(image="img", name="Bad_Name"), "not a valid Kubernetes name"),
        (K8sOptions(image="img", replicas=5, max_replicas=3), "replicas must be between"),
        (K8sOptions(image=" "), "image must not be empty"),
        (K8sOptions(image="img", cpu_target_percent=0), "cpu_target_percent"),
        (K8sOptions(image="img", drain_timeout_seconds=26), "under the 30 s grace period"),
    ],
)
def test_bad_options_are_clear_errors(tmp_path: Path, options: K8sOptions, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        render_manifests(load_config(config_file(tmp_path)), options)


def test_cli_renders_to_stdout_or_a_file(tmp_path: Path) -> None:
    from abflow.cli.main import app

    runner = CliRunner()
    source = config_file(tmp_path)
    shown = runner.invoke(app, ["k8s", "render", "--image", "img", "--config", str(source)])
    assert shown.exit_code == 0, shown.output
    documents = list(yaml.safe_load_all(shown.output))
    assert [d["kind"] for d in documents][:3] == ["ConfigMap", "Job", "Deployment"]
    out = tmp_path / "k8s.yaml"
    written = runner.invoke(
        app, ["k8s", "render", "--image", "img", "--config", str(source), "-o", str(out)]
    )
    assert written.exit_code == 0
    assert list(yaml.safe_load_all(out.read_text())) == documents
    bad = runner.invoke(app, ["k8s", "render", "--image", "img", "--name", "NO"])
    assert bad.exit_code == 2
    assert "not a valid Kubernetes name" in bad.output


def test_rollout_cron_jobs_of_different_experiments_never_share_a_name() -> None:
    """Names are cut to 52 characters and keys slugged; two plans must stay two CronJobs."""
    spec = parse_experiment(yaml.safe_load(EXAMPLE.read_text()))
    keys = [
        "a-very-long-experiment-key-for-the-ranker-" + "x" * 20 + "-one",
        "a-very-long-experiment-key-for-the-ranker-" + "x" * 20 + "-two",
        "Ranker_V2",
        "ranker.v2",
        "ranker-v2",
    ]
    config = build_config({"experiments": [spec.model_copy(update={"key": k}) for k in keys]})
    crons = [m for m in render_manifests(config, K8sOptions(image="img")) if m["kind"] == "CronJob"]
    names = [c["metadata"]["name"] for c in crons]
    assert len(set(names)) == len(keys), names
    assert all(len(n) <= 52 for n in names)
    assert "abflow-gateway-rollout-ranker-v2" in names  # a key that is already a name stays
    for cron in crons:
        kubernetes_validate.validate(cron, KUBERNETES_VERSIONS[-1], strict=True)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("g" * 53, "at most 52 characters"),  # '<name>-db-upgrade' must stay within 63
        ("1gateway", "start with a letter"),  # a Service name is a DNS-1035 label
    ],
)
def test_names_the_derived_resources_cannot_take_are_refused(
    tmp_path: Path, name: str, message: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        render_manifests(load_config(config_file(tmp_path)), K8sOptions(image="img", name=name))
