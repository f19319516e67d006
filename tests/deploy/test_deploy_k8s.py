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

from abflow.cli.k8s import MonitorChoice
from abflow.deploy import K8sOptions, render_manifests, to_yaml
from abflow.deploy.k8s import MonitorMode
from abflow.errors import InvalidArgumentError
from abflow.serving.settings import GatewaySettings, build_config, load_config, monitor_interval
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
        (K8sOptions(image=" "), "must be an image reference without spaces"),
        (K8sOptions(image="registry/abflow:1 --privileged"), "without spaces"),
        (K8sOptions(image="img", store_secret=""), "store_secret '' is not a valid Secret name"),
        (K8sOptions(image="img", metrics_token_secret="Bad_Secret"), "metrics_token_secret"),
        (K8sOptions(image="img", rollout_schedule="every day"), "is not a cron schedule"),
        (K8sOptions(image="img", rollout_schedule=""), "is not a cron schedule"),
        (K8sOptions(image="img", rollout_schedule="*/5 * * * * *"), "is not a cron schedule"),
        (K8sOptions(image="img", cpu_target_percent=0), "cpu_target_percent"),
        (K8sOptions(image="img", drain_timeout_seconds=26), "under the 30 s grace period"),
        (K8sOptions(image="img", monitor="sidecar"), "monitor must be one of deployment, gateway, off"),  # type: ignore[arg-type]
        (K8sOptions(image="img", monitor=MonitorMode.gateway, monitor_interval_seconds=0.5),
         "monitor_interval_seconds must be a number of seconds, 1 or more, got 0.5"),
        (K8sOptions(image="img", monitor=MonitorMode.gateway, monitor_interval_seconds=float("inf")),
         "1 or more, got inf"),
        (K8sOptions(image="img", monitor=MonitorMode.off, monitor_interval_seconds=60),
         "has no effect with monitor 'off'"),
    ],
)  # fmt: skip
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


def test_credentials_bound_for_the_config_map_are_warned_about(tmp_path: Path) -> None:
    from abflow.cli.main import app
    from abflow.deploy.k8s import config_credentials

    url = "http://alice:PW@scorer:8080/invocations?api_key=KEY"
    spec = parse_experiment(yaml.safe_load(EXAMPLE.read_text()))
    variants = [spec.variants[0], spec.variants[1].model_copy(update={"model": url})]
    config = build_config(
        {"experiments": [spec.model_copy(update={"variants": variants})],
         "backends": {url: {"headers": {"authorization": "Bearer SECRET"}}}}
    )  # fmt: skip
    assert config_credentials(config) == [
        "the model URL http://scorer:8080/invocations (user info or query)",
        "the headers of backend http://scorer:8080/invocations",
    ]
    clean = build_config({"experiments": [spec]})
    assert config_credentials(clean) == []
    source = tmp_path / "gateway.yaml"
    source.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True)))
    shown = CliRunner().invoke(app, ["k8s", "render", "--image", "img", "--config", str(source)])
    assert shown.exit_code == 0
    assert "warning: the ConfigMap will hold the model URL http://scorer:8080" in shown.output
    assert "bearer_token_env from a Secret" in shown.output


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


def gateway_container(manifests: list[dict[str, Any]], name: str = "abflow-gateway") -> Any:
    deployment = next(
        m for m in manifests if m["kind"] == "Deployment" and m["metadata"]["name"] == name
    )
    return deployment["spec"]["template"]["spec"]["containers"][0]


def gateway_env(manifests: list[dict[str, Any]]) -> dict[str, str | None]:
    return {e["name"]: e.get("value") for e in gateway_container(manifests)["env"]}


def workloads(manifests: list[dict[str, Any]]) -> list[str]:
    return [f"{m['kind']}/{m['metadata']['name']}" for m in manifests]


MONITOR_MODES = {
    MonitorMode.deployment: ["Deployment/abflow-gateway-monitor", "PodMonitor/abflow-gateway-monitor"],
    MonitorMode.gateway: [],
    MonitorMode.off: [],
}  # fmt: skip


@pytest.mark.parametrize("mode", list(MonitorMode))
def test_monitor_mode_decides_the_workload_and_the_gateway_env(
    tmp_path: Path, mode: MonitorMode
) -> None:
    options = K8sOptions(image="img", metrics_token_secret="metrics", monitor=mode)
    manifests = render_manifests(load_config(config_file(tmp_path)), options)
    monitors = [w for w in workloads(manifests) if w.endswith("-monitor")]
    assert monitors == MONITOR_MODES[mode]
    env = gateway_env(manifests)
    expected = {MonitorMode.deployment: None, MonitorMode.gateway: "300", MonitorMode.off: "0"}
    assert env.get("ABFLOW_MONITOR_INTERVAL_SECONDS") == expected[mode]
    # the monitor's alert rules stay: they read whichever exporter the gauges come from
    assert "PrometheusRule/abflow-gateway-alerts" in workloads(manifests)
    for manifest in manifests:
        if manifest["kind"] in ("ServiceMonitor", "PodMonitor", "PrometheusRule"):
            continue  # Prometheus Operator CRDs, checked above and in test_deploy_helm.py
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(manifest, version, strict=True)


def test_the_default_is_the_monitor_deployment_as_before(tmp_path: Path) -> None:
    config = load_config(config_file(tmp_path))
    default = render_manifests(config, K8sOptions(image="img"))
    explicit = render_manifests(config, K8sOptions(image="img", monitor=MonitorMode.deployment))
    assert to_yaml(default) == to_yaml(explicit)
    monitor = gateway_container(default, "abflow-gateway-monitor")
    assert monitor["args"] == ["monitor", "--interval", "300", "--metrics-port", "9108"]
    assert "ABFLOW_MONITOR_INTERVAL_SECONDS" not in gateway_env(default)
    longer = render_manifests(config, K8sOptions(image="img", monitor_interval_seconds=900))
    assert gateway_container(longer, "abflow-gateway-monitor")["args"][2] == "900"


@pytest.mark.parametrize(
    ("configured", "option", "expected"),
    [
        (0.0, None, "300"),  # the documented default
        (0.0, 600.0, "600"),
        (120.0, None, "120"),  # the config's own interval
        (120.0, 2.5, "2.5"),  # the option wins
    ],
)
def test_gateway_mode_interval_reaches_the_gateway_settings(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    configured: float,
    option: float | None,
    expected: str,
) -> None:
    """The rendered env and ConfigMap, read back as a pod would, give the rendered interval."""
    config = load_config(config_file(tmp_path, monitor={"interval_seconds": configured}))
    options = K8sOptions(image="img", monitor=MonitorMode.gateway, monitor_interval_seconds=option)
    manifests = render_manifests(config, options)
    assert not [w for w in workloads(manifests) if w.endswith("-monitor")]
    env = gateway_env(manifests)
    assert env["ABFLOW_MONITOR_INTERVAL_SECONDS"] == expected
    (tmp_path / "mounted.yaml").write_text(manifests[0]["data"]["gateway.yaml"])
    mounted = load_config(tmp_path / "mounted.yaml")
    for name, value in env.items():
        if value is not None and name.startswith("ABFLOW_MONITOR"):
            monkeypatch.setenv(name, value)
    assert monitor_interval(GatewaySettings(), mounted) == float(expected)


def test_off_turns_off_a_monitor_the_config_asks_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(config_file(tmp_path, monitor={"interval_seconds": 120}))
    manifests = render_manifests(config, K8sOptions(image="img", monitor=MonitorMode.off))
    assert gateway_env(manifests)["ABFLOW_MONITOR_INTERVAL_SECONDS"] == "0"
    assert not [w for w in workloads(manifests) if w.endswith("-monitor")]
    monkeypatch.setenv("ABFLOW_MONITOR_INTERVAL_SECONDS", "0")
    assert monitor_interval(GatewaySettings(), config) == 0.0


def test_a_monitor_deployment_beside_gateways_that_monitor_is_refused(tmp_path: Path) -> None:
    """The config's own interval makes every gateway run passes: two monitors would run."""
    config = load_config(config_file(tmp_path, monitor={"interval_seconds": 120}))
    with pytest.raises(InvalidArgumentError, match=r"monitor.interval_seconds \(120\)"):
        render_manifests(config, K8sOptions(image="img"))


def test_cli_monitor_options(tmp_path: Path) -> None:
    from abflow.cli.main import app

    runner = CliRunner()
    base = ["k8s", "render", "--image", "img", "--config", str(config_file(tmp_path))]
    shown = runner.invoke(app, [*base, "--monitor", "gateway", "--monitor-interval", "600"])
    assert shown.exit_code == 0, shown.output
    documents = list(yaml.safe_load_all(shown.output))
    assert not [w for w in workloads(documents) if w.endswith("-monitor")]
    assert gateway_env(documents)["ABFLOW_MONITOR_INTERVAL_SECONDS"] == "600"
    bad = runner.invoke(app, [*base, "--monitor", "sidecar"])
    assert bad.exit_code == 2
    words = " ".join(bad.output.replace("│", " ").split())  # Typer's boxed, wrapped error
    assert "Invalid value for '--monitor'" in words
    assert "'sidecar' is not one of 'deployment', 'gateway', 'off'" in words
    short = runner.invoke(app, [*base, "--monitor", "gateway", "--monitor-interval", "0"])
    assert short.exit_code == 2
    assert "monitor_interval_seconds must be a number of seconds, 1 or more, got 0" in short.output
    assert "Traceback" not in bad.output + short.output
    conflicting = config_file(tmp_path, monitor={"interval_seconds": 60})
    refused = runner.invoke(app, ["k8s", "render", "--image", "img", "--config", str(conflicting)])
    assert refused.exit_code == 2
    assert "choose monitor 'gateway', or set monitor.interval_seconds to 0" in refused.output


def test_cli_choices_are_the_monitor_modes() -> None:
    assert [c.value for c in MonitorChoice] == [m.value for m in MonitorMode]


@pytest.mark.parametrize("schedule", ["0 3 * * 1-5", "0,30 */2 1 JAN MON", "@hourly"])
def test_cron_schedules_kubernetes_takes_render(tmp_path: Path, schedule: str) -> None:
    options = K8sOptions(image="img", rollout_schedule=schedule)
    manifests = render_manifests(load_config(config_file(tmp_path)), options)
    crons = [m for m in manifests if m["kind"] == "CronJob"]
    assert crons
    assert {c["spec"]["schedule"] for c in crons} == {schedule}
