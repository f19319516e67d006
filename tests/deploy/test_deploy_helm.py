"""The Helm chart in deploy/helm/abflow: linted, rendered, valid, and the same as ``k8s render``.

``helm lint --strict`` and ``helm template`` run for real (Helm from AWS CDK's kubectl layer
on PyPI, see helm_tool.py); every rendered core object is validated with ``kubernetes-validate``
(strict) for Kubernetes 1.28 and 1.33, and the custom resources against the hand-written
schemas of crd_schemas.py. The alert rules go through ``promtool`` where it is installed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from crd_schemas import SCHEMAS
from helm_tool import helm_binary

from abflow.deploy import K8sOptions, render_manifests
from abflow.deploy.helm import helm_values, split_image
from abflow.deploy.k8s import MonitorMode
from abflow.errors import InvalidArgumentError
from abflow.serving.settings import MonitorConfig, build_config, load_config
from abflow.spec import parse_experiment, spec_hash

ROOT = Path(__file__).parents[2]
CHART = ROOT / "deploy" / "helm" / "abflow"
EXAMPLE = ROOT / "examples" / "fraud.yaml"
KUBERNETES_VERSIONS = ["1.28.0", "1.33.0"]
MONITORING = ["--api-versions", "monitoring.coreos.com/v1"]
PROMTOOL = shutil.which("promtool")


@pytest.fixture(scope="module")
def helm() -> Path:
    return helm_binary()


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm), *args], capture_output=True, text=True, timeout=300, check=False
    )


def template(helm: Path, *args: str, release: str = "abflow-gateway") -> list[dict[str, Any]]:
    done = run_helm(helm, "template", release, str(CHART), *args)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def validate(manifest: dict[str, Any]) -> None:
    schema = SCHEMAS.get(manifest["kind"])
    if schema is not None:
        jsonschema.validate(manifest, schema)
        return
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(manifest, version, strict=True)


def containers(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    spec = manifest.get("spec", {})
    if manifest["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    pod: dict[str, Any] = spec.get("template", {}).get("spec", {})
    found: list[dict[str, Any]] = pod.get("containers", [])
    return found


def kinds(manifests: list[dict[str, Any]]) -> list[str]:
    return sorted(m["kind"] for m in manifests)


def example_config() -> Any:
    """The fraud example (a rollout plan) plus keys the CronJob names must slug or hash."""
    spec = parse_experiment(yaml.safe_load(EXAMPLE.read_text()))
    keys = ["fraud-model-v2", "Ranker_V2", "a-very-long-experiment-key-for-the-ranker-" + "x" * 30]
    specs = [spec.model_copy(update={"key": k}) for k in keys]
    specs.append(spec.model_copy(update={"key": "no-plan", "rollout": None}))
    return build_config({"default_experiment": "fraud-model-v2", "experiments": specs})


def monitoring_config(interval_seconds: float) -> Any:
    """The example config with the gateways' own monitor interval (0: they run none)."""
    monitor = MonitorConfig(interval_seconds=interval_seconds)
    return example_config().model_copy(update={"monitor": monitor})


VALUE_SETS = {
    "defaults": ([], ["ConfigMap", "Deployment", "Deployment", "HorizontalPodAutoscaler", "Job",
                      "PodDisruptionBudget", "PodMonitor", "PrometheusRule", "PrometheusRule",
                      "Service", "ServiceMonitor"]),
    "keda": (["--set", "keda.enabled=true"],
             ["ConfigMap", "Deployment", "Deployment", "Job", "PodDisruptionBudget",
              "PodMonitor", "PrometheusRule", "PrometheusRule", "ScaledObject", "Service",
              "ServiceMonitor"]),
    "no-service-monitor": (["--set", "serviceMonitor.enabled=false",
                            "--set", "prometheusRule.enabled=false"],
                           ["ConfigMap", "Deployment", "Deployment", "HorizontalPodAutoscaler",
                            "Job", "PodDisruptionBudget", "Service"]),
    # the gateways run the monitor, or nothing does: no monitor Deployment, no PodMonitor
    "monitor-gateway": (["--set", "monitor.mode=gateway", "--set", "monitor.intervalSeconds=600"],
                        ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Job",
                         "PodDisruptionBudget", "PrometheusRule", "PrometheusRule", "Service",
                         "ServiceMonitor"]),
    "monitor-off": (["--set", "monitor.mode=off"],
                    ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Job",
                     "PodDisruptionBudget", "PrometheusRule", "PrometheusRule", "Service",
                     "ServiceMonitor"]),
}  # fmt: skip


def test_helm_lint_passes_strict(helm: Path) -> None:
    for args in [[], *(a for a, _ in VALUE_SETS.values())]:
        linted = run_helm(helm, "lint", "--strict", str(CHART), *args)
        assert linted.returncode == 0, linted.stdout + linted.stderr
        assert "1 chart(s) linted, 0 chart(s) failed" in linted.stdout


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_every_rendered_object_is_valid(helm: Path, name: str) -> None:
    args, expected = VALUE_SETS[name]
    manifests = template(helm, *MONITORING, "--namespace", "ml", *args)
    assert kinds(manifests) == expected
    for manifest in manifests:
        validate(manifest)
    assert {m["metadata"]["namespace"] for m in manifests} == {"ml"}


def test_monitoring_objects_only_where_the_cluster_has_the_operator(helm: Path) -> None:
    """Without monitoring.coreos.com/v1 a plain cluster would refuse the whole release."""
    manifests = template(helm)
    assert "ServiceMonitor" not in kinds(manifests)
    assert "PrometheusRule" not in kinds(manifests)
    assert len(manifests) == 7  # the gateway's six and the live monitor's Deployment


def test_keda_scales_on_the_request_rate_instead_of_the_hpa(helm: Path) -> None:
    manifests = template(helm, "--set", "keda.enabled=true", "--set", "autoscaling.maxReplicas=7")
    scaled = next(m for m in manifests if m["kind"] == "ScaledObject")
    prometheus, cpu = scaled["spec"]["triggers"]
    assert prometheus["metadata"]["query"] == (
        'sum(rate(abflow_http_requests_total{namespace="default",service="abflow-gateway"}[1m]))'
    )
    assert prometheus["metadata"]["threshold"] == "100"
    assert cpu["metadata"] == {"value": "70"}
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (2, 7)
    assert "HorizontalPodAutoscaler" not in kinds(manifests)


@pytest.mark.parametrize(
    ("mode", "interval", "configured", "count"),
    [
        # ConfigMap, Job, 2 Deployments (monitor, gateway), Service, HPA, PDB, SM, PodMonitor,
        # PrometheusRule (the monitor's alerts), 3 CronJobs
        (MonitorMode.deployment, None, 0.0, 13),
        (MonitorMode.deployment, 900.0, 0.0, 13),
        # no monitor Deployment and no PodMonitor; ABFLOW_MONITOR_INTERVAL_SECONDS on the gateway
        (MonitorMode.gateway, None, 120.0, 11),
        (MonitorMode.gateway, 2.5, 0.0, 11),
        (MonitorMode.off, None, 120.0, 11),
    ],
)
def test_the_chart_renders_what_k8s_render_renders(
    helm: Path,
    tmp_path: Path,
    mode: MonitorMode,
    interval: float | None,
    configured: float,
    count: int,
) -> None:
    """Same config and options: the same objects, spec for spec (Helm only adds labels)."""
    config = monitoring_config(configured)
    options = K8sOptions(
        image="registry.example.com:5000/abflow:0.1.0",
        namespace="ml",
        replicas=3,
        max_replicas=9,
        workers=3,
        store_secret="db-url",
        metrics_token_secret="metrics",
        rollout_schedule="*/5 * * * *",
        monitor=mode,
        monitor_interval_seconds=interval,
    )
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(helm_values(config, options)))
    charted = {
        (m["kind"], m["metadata"]["name"]): m
        for m in template(helm, "-f", str(values), "--namespace", "ml", *MONITORING)
    }
    rendered = render_manifests(config, options)
    assert len(rendered) == count
    for expected in rendered:
        key = (expected["kind"], expected["metadata"]["name"])
        assert key in charted, f"the chart has no {key}"
        got = charted.pop(key)
        assert got["metadata"]["namespace"] == "ml"
        assert expected["metadata"]["labels"].items() <= got["metadata"]["labels"].items()
        if expected["kind"] == "ConfigMap":
            assert yaml.safe_load(got["data"]["gateway.yaml"]) == yaml.safe_load(
                expected["data"]["gateway.yaml"]
            )
            continue
        if expected["kind"] == "Deployment":
            annotations = got["spec"]["template"]["metadata"].pop("annotations")
            assert set(annotations) == {"checksum/config"}
        assert got["spec"] == expected["spec"], key
    assert sorted(k for k, _ in charted) == ["PrometheusRule"]


def test_the_chart_config_map_loads_to_the_same_specs(helm: Path, tmp_path: Path) -> None:
    config = example_config()
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(helm_values(config, K8sOptions(image="img"))))
    config_map = next(m for m in template(helm, "-f", str(values)) if m["kind"] == "ConfigMap")
    rendered = tmp_path / "gateway.yaml"
    rendered.write_text(config_map["data"]["gateway.yaml"])
    reloaded = load_config(rendered)
    assert reloaded == config
    assert [spec_hash(s) for s in reloaded.experiments] == [
        spec_hash(s) for s in config.experiments
    ]


def test_no_secret_value_in_the_values_or_the_objects(helm: Path, tmp_path: Path) -> None:
    secret_config = example_config().model_copy(
        update={"store_url": "postgresql://u:s3cret-pass@db/x"}
    )
    values = helm_values(secret_config, K8sOptions(image="img"))
    text = yaml.safe_dump(values)
    assert "s3cret-pass" not in text
    path = tmp_path / "values.yaml"
    path.write_text(text)
    manifests = template(helm, "-f", str(path), *MONITORING)
    assert "s3cret-pass" not in yaml.safe_dump_all(manifests)
    refs = [
        env["valueFrom"]["secretKeyRef"]
        for m in manifests
        for container in containers(m)
        for env in container["env"]
        if "valueFrom" in env
    ]
    # the two Deployments (gateway, monitor), the migration Job and the three CronJobs
    assert refs == [{"name": "abflow-store", "key": "url"}] * 6


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "preStopSeconds=15"], "preStopSeconds + drainTimeoutSeconds must be under"),
        (["--set", "workers=0"], "workers must be at least 1"),
        (["--set", "replicas=12"], "replicas must be between 1 and autoscaling.maxReplicas"),
        (["--set", "store.existingSecret="], "store.existingSecret"),
        (["--set", "monitor.mode=sidecar"], 'monitor.mode must be one of deployment, gateway, off, got "sidecar"'),
        (["--set", "monitor.mode=gateway", "--set", "monitor.intervalSeconds=0"],
         "monitor.intervalSeconds must be a number of seconds, 1 or more, got 0"),
        (["--set", "config.monitor.interval_seconds=120"],
         "config.monitor.interval_seconds is 120, so the gateways run the monitor themselves"),
    ],
)  # fmt: skip
def test_values_no_cluster_could_run_are_refused(helm: Path, args: list[str], message: str) -> None:
    done = run_helm(helm, "template", "abflow-gateway", str(CHART), *args)
    assert done.returncode == 1
    assert message in done.stderr


def test_cli_writes_the_values(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from abflow.cli.main import app

    out = tmp_path / "values.yaml"
    args = ["k8s", "render", "--image", "reg.example.com/abflow:0.2.0", "--replicas", "3"]
    runner = CliRunner()
    written = runner.invoke(app, [*args, "--helm-values", "-o", str(out)])
    assert written.exit_code == 0, written.output
    values = yaml.safe_load(out.read_text())
    assert values["image"] == {"repository": "reg.example.com/abflow", "tag": "0.2.0"}
    assert values["replicas"] == 3
    assert [e["key"] for e in values["config"]["experiments"]] == ["demo"]
    assert values["monitor"] == {"mode": "deployment", "intervalSeconds": 300}
    gateway = runner.invoke(
        app, [*args, "--helm-values", "--monitor", "gateway", "--monitor-interval", "600"]
    )
    assert gateway.exit_code == 0, gateway.output
    assert yaml.safe_load(gateway.output)["monitor"] == {"mode": "gateway", "intervalSeconds": 600}


@pytest.mark.parametrize(
    ("mode", "interval", "configured", "expected"),
    [
        (MonitorMode.deployment, None, 0.0, {"mode": "deployment", "intervalSeconds": 300}),
        (MonitorMode.deployment, 900.0, 0.0, {"mode": "deployment", "intervalSeconds": 900}),
        (MonitorMode.gateway, None, 0.0, {"mode": "gateway", "intervalSeconds": 300}),
        (MonitorMode.gateway, None, 120.0, {"mode": "gateway", "intervalSeconds": 120}),
        (MonitorMode.gateway, 2.5, 120.0, {"mode": "gateway", "intervalSeconds": 2.5}),
        (MonitorMode.off, None, 120.0, {"mode": "off"}),
    ],
)
def test_values_say_where_the_monitor_runs(
    mode: MonitorMode, interval: float | None, configured: float, expected: dict[str, Any]
) -> None:
    """The interval is resolved as for render_manifests: option, else config, else 300."""
    config = monitoring_config(configured)
    options = K8sOptions(image="img", monitor=mode, monitor_interval_seconds=interval)
    assert helm_values(config, options)["monitor"] == expected


def test_values_refuse_a_second_monitor_beside_gateways_that_monitor() -> None:
    config = monitoring_config(60.0)
    with pytest.raises(InvalidArgumentError, match="choose monitor 'gateway'"):
        helm_values(config, K8sOptions(image="img"))


def test_values_files_without_a_mode_keep_their_monitor(helm: Path) -> None:
    """monitor.enabled=false, from values files older than monitor.mode, is mode off."""
    manifests = template(helm, "--set", "monitor.enabled=false")
    deployments = [m for m in manifests if m["kind"] == "Deployment"]
    assert [m["metadata"]["name"] for m in deployments] == ["abflow-gateway"]
    env = {e["name"]: e.get("value") for e in containers(deployments[0])[0]["env"]}
    assert env["ABFLOW_MONITOR_INTERVAL_SECONDS"] == "0"


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("registry.example.com:5000/abflow:0.1.0", ("registry.example.com:5000/abflow", "0.1.0")),
        ("registry.example.com:5000/abflow", ("registry.example.com:5000/abflow", "")),
        ("abflow@sha256:" + "a" * 64, ("abflow@sha256:" + "a" * 64, "")),
    ],
)
def test_split_image(image: str, expected: tuple[str, str]) -> None:
    assert split_image(image) == expected


def test_a_digest_image_renders_unchanged(helm: Path) -> None:
    digest = "registry.example.com/abflow@sha256:" + "b" * 64
    deployment = next(
        m
        for m in template(helm, "--set", f"image.repository={digest}")
        if m["kind"] == "Deployment"
    )
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == digest


def prometheus_rule_groups(helm: Path) -> list[dict[str, Any]]:
    rule = next(  # the gateway's rules; "<name>-alerts" holds the monitor's (alerts.py)
        m
        for m in template(helm, *MONITORING)
        if m["kind"] == "PrometheusRule" and not m["metadata"]["name"].endswith("-alerts")
    )
    groups: list[dict[str, Any]] = rule["spec"]["groups"]
    return groups


@pytest.mark.skipif(PROMTOOL is None, reason="needs promtool (Debian: apt-get install prometheus)")
def test_alerts_fire_on_their_conditions_and_only_then(helm: Path, tmp_path: Path) -> None:
    """promtool checks the rules, then evaluates each alert on made-up series (unit tests)."""
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump({"groups": prometheus_rule_groups(helm)}))
    checked = subprocess.run(
        [str(PROMTOOL), "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 7 rules found" in checked.stdout
    sel = 'namespace="default",service="abflow-gateway"'
    series = [
        # one gateway answers for 10 minutes then disappears
        {"series": f'up{{{sel},pod="a"}}', "values": "1x10 _x20"},
        # 10 % of the requests are 5xx
        {"series": f'abflow_http_requests_total{{{sel},route="/v1/predict",status="200"}}',
         "values": "0+540x60"},
        {"series": f'abflow_http_requests_total{{{sel},route="/v1/predict",status="503"}}',
         "values": "0+60x60"},
        # 2 % of the challenger's requests fall back (each of 10 rows: 3,000 predicted rows a
        # minute, which a fallback ratio over rows would read as 0.2 %); the control never
        {"series": f'abflow_prediction_duration_seconds_count{{{sel},experiment="e",variant="challenger",model_version="2"}}',
         "values": "0+300x30"},
        {"series": f'abflow_prediction_duration_seconds_count{{{sel},experiment="e",variant="control",model_version="1"}}',
         "values": "0+3000x30"},
        {"series": f'abflow_predictions_total{{{sel},experiment="e",variant="challenger",model_version="2"}}',
         "values": "0+3000x30"},
        {"series": f'abflow_fallbacks_total{{{sel},experiment="e",variant="challenger"}}',
         "values": "0+6x30"},
        # the store goes away at minute 2: the spool grows 4 KiB a minute
        {"series": f'abflow_event_spool_bytes{{{sel},pod="a"}}', "values": "0 0 0+4096x58"},
        # 20 events wait (normal), then 20,000 from minute 21
        {"series": f'abflow_event_queue_depth{{{sel},pod="a"}}', "values": "20x20 20000x40"},
        {"series": 'kube_job_status_failed{namespace="default",job_name="abflow-gateway-rollout-e-29000000"}',
         "values": "0x3 1x5"},
    ]  # fmt: skip
    cases = [
        (4, "AbflowGatewayDown", []),
        (22, "AbflowGatewayDown", [{}]),  # gone at 10 m, stale at 15 m, then 5 m
        (8, "AbflowHigh5xxRate", []),  # 5xx since minute 1: under its 10 minutes
        (16, "AbflowHigh5xxRate", [{}]),
        (8, "AbflowFallbackRate", []),
        (16, "AbflowFallbackRate", [{"experiment": "e", "variant": "challenger"}]),
        (6, "AbflowStoreUnreachable", []),  # spooling for 4 minutes: not yet
        (8, "AbflowStoreUnreachable", [{}]),
        (20, "AbflowEventSpoolGrowing", []),  # growing for under 30 minutes
        (50, "AbflowEventSpoolGrowing", [{}]),
        (20, "AbflowEventQueueBacklog", []),  # 20 waiting events are normal
        (28, "AbflowEventQueueBacklog", []),  # 20,000 for 7 minutes: not yet
        (40, "AbflowEventQueueBacklog", [{}]),
        (5, "AbflowRolloutRolledBack", [{"job_name": "abflow-gateway-rollout-e-29000000"}]),
        (2, "AbflowRolloutRolledBack", []),
    ]
    alerts = {
        rule["alert"]: rule for group in prometheus_rule_groups(helm) for rule in group["rules"]
    }

    def expected(name: str, labels: dict[str, str]) -> dict[str, Any]:
        summary = alerts[name]["annotations"]["summary"]
        for label, value in labels.items():
            summary = summary.replace(f"{{{{ $labels.{label} }}}}", value)
        return {
            "exp_labels": {**labels, "severity": alerts[name]["labels"]["severity"]},
            "exp_annotations": {"summary": summary},
        }

    alert_tests = [
        {
            "eval_time": f"{minute}m",
            "alertname": name,
            "exp_alerts": [expected(name, labels) for labels in fired],
        }
        for minute, name, fired in cases
    ]
    tests = tmp_path / "tests.yml"
    tests.write_text(
        yaml.safe_dump(
            {
                "rule_files": [str(rules)],
                "evaluation_interval": "1m",
                "tests": [
                    {"interval": "1m", "input_series": series, "alert_rule_test": alert_tests}
                ],
            }
        )
    )
    tested = subprocess.run(
        [str(PROMTOOL), "test", "rules", str(tests)], capture_output=True, text=True, check=False
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout
