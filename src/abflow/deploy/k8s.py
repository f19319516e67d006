"""Kubernetes manifests for a gateway config: what ``abflow k8s render`` prints.

The gateway is stateless apart from its local event journal, so it runs as a Deployment
behind a Service and scales horizontally (HorizontalPodAutoscaler on CPU); a
PodDisruptionBudget keeps one replica up through node drains. The config file travels in a
ConfigMap; the store URL, which holds credentials, comes from a Secret the operator creates
(never rendered). A Job applies store migrations before the gateways start, and each
experiment with a rollout plan gets a CronJob running ``abflow rollout tick`` with
``concurrencyPolicy: Forbid`` (one controller per experiment, as the controller expects).

The live monitor (drift, skew, quality) runs where :class:`MonitorMode` says: by default as a
``<name>-monitor`` Deployment of ``abflow monitor``; in the gateways themselves
(``ABFLOW_MONITOR_INTERVAL_SECONDS``, one pass at a time through a store lease); or nowhere.

The journal lives on an ``emptyDir``: it survives container restarts (a crash, an OOM kill)
but not the loss of the pod's node; the gateway drains and ships it on a graceful stop,
which ``terminationGracePeriodSeconds`` leaves time for. A ``preStop`` sleep keeps the pod
serving while the endpoint controllers take it out of the Service, so that connections
still sent to it during those seconds are answered instead of refused.

The Helm chart in ``deploy/helm/abflow`` renders the same objects from the values that
:func:`abflow.deploy.helm.helm_values` writes; a test holds the two together.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import yaml

from abflow.deploy.alerts import prometheus_rule
from abflow.errors import InvalidArgumentError
from abflow.serving.settings import GatewayConfig
from abflow.spec import shown_reference

__all__ = [
    "DEFAULT_MONITOR_INTERVAL_SECONDS",
    "K8sOptions",
    "MonitorMode",
    "check_options",
    "gateway_config_data",
    "monitor_interval",
    "render_manifests",
    "seconds_text",
    "to_yaml",
]

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
CONFIG_PATH = "/etc/abflow/gateway.yaml"
JOURNAL_DIR = "/var/lib/abflow/journal"
PORT = 8000
MAX_NAME = 63 - len("-db-upgrade")
"""The longest ``--name``: the migration Job's name (a label value, 63 at most) adds a suffix."""
GRACE_SECONDS = 30
"""terminationGracePeriodSeconds: the preStop sleep, then the drain, then the kill."""
CRON_NAME = 52
"""A CronJob's name is at most 52 characters (its Jobs add an 11-character suffix)."""
DEFAULT_MONITOR_INTERVAL_SECONDS = 300.0
"""Seconds between monitor passes when neither the options nor the config say."""
MONITOR_INTERVAL_ENV = "ABFLOW_MONITOR_INTERVAL_SECONDS"


class MonitorMode(StrEnum):
    """Where the live monitor runs."""

    deployment = "deployment"
    """A ``<name>-monitor`` Deployment of ``abflow monitor`` (and, with a metrics token, its
    PodMonitor); the gateways only serve."""
    gateway = "gateway"
    """The gateways run the passes (``ABFLOW_MONITOR_INTERVAL_SECONDS``), one process at a
    time through the store's ``monitor`` lease; the gauges are on their ``/metrics``."""
    off = "off"
    """No monitor: no workload, and ``ABFLOW_MONITOR_INTERVAL_SECONDS=0`` on the gateways."""


@dataclass(frozen=True, slots=True)
class K8sOptions:
    """Knobs of the rendered manifests; defaults suit a small production gateway."""

    image: str
    """The container image with abflow installed (``pip install 'abflow[postgres]'``)."""
    name: str = "abflow-gateway"
    namespace: str = "default"
    replicas: int = 2
    max_replicas: int = 10
    workers: int = 2
    cpu_target_percent: int = 70
    store_secret: str = "abflow-store"
    """Secret holding the store URL under the key ``url``."""
    metrics_token_secret: str | None = None
    """With a name, a Prometheus Operator ServiceMonitor scrapes /metrics with that token."""
    rollout_schedule: str = "*/15 * * * *"
    worker_start_timeout_seconds: int = 60
    """uvicorn's limit on a worker's first answer (``abflow serve --worker-start-timeout``)."""
    drain_timeout_seconds: int = 20
    pre_stop_seconds: int = 5
    """How long a stopping pod keeps serving before SIGTERM, while it leaves the Service."""
    monitor: MonitorMode = MonitorMode.deployment
    monitor_interval_seconds: float | None = None
    """Seconds between monitor passes; None: the config's ``monitor.interval_seconds`` when it
    sets one, else :data:`DEFAULT_MONITOR_INTERVAL_SECONDS`."""
    labels: dict[str, str] = field(default_factory=dict)


def _check(options: K8sOptions) -> None:
    for label, value in (("name", options.name), ("namespace", options.namespace)):
        if not _NAME.match(value) or len(value) > 63:
            msg = (
                f"{label} {value!r} is not a valid Kubernetes name (lowercase letters, digits, '-')"
            )
            raise InvalidArgumentError(msg)
    if not options.name[0].isalpha():
        msg = f"name {options.name!r} must start with a letter (it also names the Service)"
        raise InvalidArgumentError(msg)
    if len(options.name) > MAX_NAME:
        msg = (
            f"name {options.name!r} has {len(options.name)} characters; at most {MAX_NAME} "
            f"characters, so that '{options.name[:8]}…-db-upgrade' stays a valid Job name"
        )
        raise InvalidArgumentError(msg)
    if not 1 <= options.replicas <= options.max_replicas:
        msg = f"replicas must be between 1 and max_replicas ({options.max_replicas}), got {options.replicas}"
        raise InvalidArgumentError(msg)
    if options.workers < 1:
        msg = f"workers must be at least 1, got {options.workers}"
        raise InvalidArgumentError(msg)
    if not 1 <= options.cpu_target_percent <= 100:
        msg = f"cpu_target_percent must be between 1 and 100, got {options.cpu_target_percent}"
        raise InvalidArgumentError(msg)
    budget = options.pre_stop_seconds + options.drain_timeout_seconds
    if min(options.pre_stop_seconds, options.drain_timeout_seconds) < 0 or budget >= GRACE_SECONDS:
        msg = (
            f"pre_stop_seconds + drain_timeout_seconds must be under the {GRACE_SECONDS} s "
            f"grace period, got {budget}"
        )
        raise InvalidArgumentError(msg)
    if options.worker_start_timeout_seconds < 1:
        msg = f"worker_start_timeout_seconds must be at least 1, got {options.worker_start_timeout_seconds}"
        raise InvalidArgumentError(msg)
    if not options.image.strip() or any(c.isspace() for c in options.image):
        msg = f"image {options.image!r} must be an image reference without spaces"
        raise InvalidArgumentError(msg)
    secrets = (
        ("store_secret", options.store_secret),
        ("metrics_token_secret", options.metrics_token_secret),
    )
    for label, secret in secrets:
        if secret is not None and not (_SECRET_NAME.match(secret) and len(secret) <= 253):
            msg = (
                f"{label} {secret!r} is not a valid Secret name (lowercase letters, digits, "
                "'-' and '.', starting and ending with a letter or digit)"
            )
            raise InvalidArgumentError(msg)
    _check_schedule(options.rollout_schedule)
    _check_monitor(options)


_SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_CRON_FIELD = re.compile(
    r"^(\*|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/[0-9]+)?(,(\*|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/[0-9]+)?)*$"
)
_CRON_MACROS = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)


def _check_schedule(schedule: str) -> None:
    """A CronJob schedule Kubernetes takes: five fields, or a macro such as ``@hourly``."""
    fields = schedule.split()
    if schedule.strip() in _CRON_MACROS:
        return
    if len(fields) != 5 or not all(_CRON_FIELD.match(field) for field in fields):
        msg = (
            f"rollout_schedule {schedule!r} is not a cron schedule: five fields (minute hour "
            "day-of-month month day-of-week, e.g. '*/15 * * * *') or a macro such as '@hourly'"
        )
        raise InvalidArgumentError(msg)


def _check_monitor(options: K8sOptions) -> None:
    modes = ", ".join(m.value for m in MonitorMode)
    if options.monitor not in tuple(MonitorMode):
        msg = f"monitor must be one of {modes}, got {options.monitor!r}"
        raise InvalidArgumentError(msg)
    interval = options.monitor_interval_seconds
    if interval is None:
        return
    if options.monitor == MonitorMode.off:
        msg = (
            f"monitor_interval_seconds ({interval:g}) has no effect with monitor 'off': "
            "choose monitor 'gateway' or 'deployment', or leave the interval out"
        )
        raise InvalidArgumentError(msg)
    if not 1 <= interval < math.inf:  # also refuses NaN
        msg = f"monitor_interval_seconds must be a number of seconds, 1 or more, got {interval:g}"
        raise InvalidArgumentError(msg)


def seconds_text(seconds: float) -> str:
    """``300.0`` → ``"300"``, ``2.5`` → ``"2.5"``: seconds as an argument or env value."""
    value = float(seconds)
    return str(int(value)) if value.is_integer() else repr(value)


def monitor_interval(config: GatewayConfig, options: K8sOptions) -> float:
    """Seconds between monitor passes as rendered (0 for ``off``), after checking that the
    config and the options do not start two monitors.

    A config whose ``monitor.interval_seconds`` is set makes every gateway run the monitor, so
    beside a monitor Deployment the passes would run twice; that is refused, naming the two
    ways out.
    """
    _check_monitor(options)
    configured = config.monitor.interval_seconds
    if options.monitor == MonitorMode.off:
        return 0.0
    if options.monitor == MonitorMode.deployment and configured > 0:
        msg = (
            f"the config sets monitor.interval_seconds ({configured:g}), so the gateways run "
            "the monitor themselves, and monitor 'deployment' would run abflow monitor beside "
            "them: choose monitor 'gateway', or set monitor.interval_seconds to 0"
        )
        raise InvalidArgumentError(msg)
    if options.monitor_interval_seconds is not None:
        return options.monitor_interval_seconds
    return configured if configured > 0 else DEFAULT_MONITOR_INTERVAL_SECONDS


def check_options(options: K8sOptions) -> None:
    """Refuse options no cluster would accept, naming the option (also for Helm values)."""
    _check(options)


def render_manifests(config: GatewayConfig, options: K8sOptions) -> list[dict[str, Any]]:
    """Every manifest, in the order ``kubectl apply`` should create them."""
    _check(options)
    interval = monitor_interval(config, options)
    labels = {
        "app.kubernetes.io/name": "abflow",
        "app.kubernetes.io/instance": options.name,
        "app.kubernetes.io/component": "gateway",
        **options.labels,
    }
    selector = {
        "app.kubernetes.io/instance": options.name,
        "app.kubernetes.io/component": "gateway",
    }
    manifests = [
        _config_map(config, options, labels),
        _migration_job(options, labels),
    ]
    if options.monitor == MonitorMode.deployment:
        manifests.append(_monitor_deployment(options, labels, interval))
    manifests += [
        _deployment(options, labels, selector, interval),
        _service(options, labels, selector),
        _autoscaler(options, labels),
        _disruption_budget(options, labels, selector),
    ]
    if options.metrics_token_secret is not None:
        manifests.append(_service_monitor(options, labels, selector))
        if options.monitor == MonitorMode.deployment:
            manifests.append(_monitor_pod_monitor(options, labels))
        manifests.append(prometheus_rule(options.name, options.namespace, labels))
    manifests += [
        _rollout_cron_job(spec.key, options, labels)
        for spec in config.experiments
        if spec.rollout is not None
    ]
    return manifests


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the embedded config) as readable ``|`` blocks."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def to_yaml(manifests: list[dict[str, Any]]) -> str:
    """One multi-document YAML stream, as ``kubectl apply -f -`` reads it."""
    return "---\n".join(yaml.dump(m, Dumper=_Dumper, sort_keys=False, width=100) for m in manifests)


def _meta(name: str, options: K8sOptions, labels: dict[str, str]) -> dict[str, Any]:
    return {"name": name, "namespace": options.namespace, "labels": dict(labels)}


def gateway_config_data(config: GatewayConfig) -> dict[str, Any]:
    """The config with specs inlined (no file references) and without the store URL."""
    data = config.model_dump(mode="json", exclude_none=True, exclude={"store_url"})
    data["experiments"] = [
        spec.model_dump(mode="json", exclude_defaults=True) for spec in config.experiments
    ]
    return data


def config_credentials(config: GatewayConfig) -> list[str]:
    """Where the config holds credentials that a ConfigMap would show to anyone who may
    read ConfigMaps: backend URLs with user info or a query, static backend headers."""
    found: list[str] = []
    references = {v.model for spec in config.experiments for v in spec.variants}
    for url in sorted(references | set(config.backends)):
        if url.startswith(("http://", "https://")) and shown_reference(url) != url.split("#")[0]:
            found.append(f"the model URL {shown_reference(url)} (user info or query)")
    for url, backend in sorted(config.backends.items()):
        if backend.headers:
            found.append(f"the headers of backend {shown_reference(url)}")
    return found


def _gateway_config_text(config: GatewayConfig) -> str:
    return yaml.safe_dump(gateway_config_data(config), sort_keys=False, width=100)


def _config_map(
    config: GatewayConfig, options: K8sOptions, labels: dict[str, str]
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(f"{options.name}-config", options, labels),
        "data": {"gateway.yaml": _gateway_config_text(config)},
    }


def _store_env(options: K8sOptions) -> list[dict[str, Any]]:
    return [
        {
            "name": "ABFLOW_STORE_URL",
            "valueFrom": {"secretKeyRef": {"name": options.store_secret, "key": "url"}},
        }
    ]


def _security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _pod_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _cli_container(name: str, options: K8sOptions, args: list[str]) -> dict[str, Any]:
    return {
        "name": name,
        "image": options.image,
        "args": args,
        "env": _store_env(options),
        "securityContext": _security_context(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }


TMP_VOLUME = {"name": "tmp", "emptyDir": {}}
"""The root filesystem is read-only; libraries that write temporary files get /tmp."""


def _migration_job(options: K8sOptions, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(
            f"{options.name}-db-upgrade",
            options,
            {**labels, "app.kubernetes.io/component": "migration"},
        ),
        "spec": {
            "backoffLimit": 3,
            "ttlSecondsAfterFinished": 3600,
            "template": {
                "spec": {
                    "restartPolicy": "OnFailure",
                    "securityContext": _pod_security(),
                    "containers": [_cli_container("db-upgrade", options, ["db", "upgrade"])],
                    "volumes": [TMP_VOLUME],
                }
            },
        },
    }


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def _deployment(
    options: K8sOptions,
    labels: dict[str, str],
    selector: dict[str, str],
    monitor_interval_seconds: float,
) -> dict[str, Any]:
    container = _cli_container(
        "gateway",
        options,
        ["serve", "--host", "0.0.0.0", "--port", str(PORT), "--config", CONFIG_PATH,
         "--workers", str(options.workers)],
    )  # fmt: skip
    container["env"] = [
        *container["env"],
        {"name": "ABFLOW_JOURNAL_DIR", "value": JOURNAL_DIR},
        {"name": "ABFLOW_DRAIN_TIMEOUT_SECONDS", "value": str(options.drain_timeout_seconds)},
        {
            "name": "ABFLOW_WORKER_START_TIMEOUT_SECONDS",
            "value": str(options.worker_start_timeout_seconds),
        },
    ]
    if options.monitor != MonitorMode.deployment:  # gateway: the interval; off: 0
        container["env"].append(
            {"name": MONITOR_INTERVAL_ENV, "value": seconds_text(monitor_interval_seconds)}
        )
    container["lifecycle"] = {
        "preStop": {"exec": {"command": ["sleep", str(options.pre_stop_seconds)]}}
    }
    container["ports"] = [{"name": "http", "containerPort": PORT, "protocol": "TCP"}]
    container["volumeMounts"] += [
        {"name": "config", "mountPath": "/etc/abflow", "readOnly": True},
        {"name": "journal", "mountPath": JOURNAL_DIR},
    ]
    container["resources"] = {
        "requests": {"cpu": f"{500 * options.workers}m", "memory": f"{384 * options.workers}Mi"},
        "limits": {"memory": f"{768 * options.workers}Mi"},
    }
    container["readinessProbe"] = _probe("/readyz", 5, 3)
    container["livenessProbe"] = _probe("/healthz", 10, 6)
    container["startupProbe"] = _probe("/healthz", 2, 60)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(options.name, options, labels),
        "spec": {
            "replicas": options.replicas,
            "selector": {"matchLabels": dict(selector)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "terminationGracePeriodSeconds": GRACE_SECONDS,
                    "securityContext": _pod_security(),
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": "kubernetes.io/hostname",
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": {"matchLabels": dict(selector)},
                        }
                    ],
                    "containers": [container],
                    "volumes": [
                        {"name": "config", "configMap": {"name": f"{options.name}-config"}},
                        {"name": "journal", "emptyDir": {}},
                        TMP_VOLUME,
                    ],
                },
            },
        },
    }


def _service(
    options: K8sOptions, labels: dict[str, str], selector: dict[str, str]
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(options.name, options, labels),
        "spec": {
            "type": "ClusterIP",
            "selector": dict(selector),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def _autoscaler(options: K8sOptions, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(options.name, options, labels),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": options.name},
            "minReplicas": options.replicas,
            "maxReplicas": options.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": options.cpu_target_percent,
                        },
                    },
                }
            ],
        },
    }


def _disruption_budget(
    options: K8sOptions, labels: dict[str, str], selector: dict[str, str]
) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(options.name, options, labels),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": dict(selector)}},
    }


def _service_monitor(
    options: K8sOptions, labels: dict[str, str], selector: dict[str, str]
) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": _meta(options.name, options, labels),
        "spec": {
            "selector": {"matchLabels": dict(selector)},
            "endpoints": [
                {
                    "port": "http",
                    "path": "/metrics",
                    "interval": "15s",
                    "authorization": {
                        "type": "Bearer",
                        "credentials": {"name": options.metrics_token_secret, "key": "token"},
                    },
                }
            ],
        },
    }


MONITOR_PORT = 9108
"""Where ``abflow monitor`` serves its gauges (the drift, skew and quality alerts read them)."""


def _monitor_selector(options: K8sOptions) -> dict[str, str]:
    return {"app.kubernetes.io/instance": options.name, "app.kubernetes.io/component": "monitor"}


def _monitor_deployment(
    options: K8sOptions, labels: dict[str, str], interval_seconds: float
) -> dict[str, Any]:
    """One ``abflow monitor`` loop for every experiment: drift, skew and quality per window."""
    container = _cli_container(
        "monitor",
        options,
        ["monitor", "--interval", seconds_text(interval_seconds),
         "--metrics-port", str(MONITOR_PORT)],
    )  # fmt: skip
    container["ports"] = [{"name": "metrics", "containerPort": MONITOR_PORT, "protocol": "TCP"}]
    container["resources"] = {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"memory": "1Gi"},
    }
    monitor_labels = {**labels, "app.kubernetes.io/component": "monitor"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(f"{options.name}-monitor", options, monitor_labels),
        "spec": {
            "replicas": 1,  # one figure per experiment and window, not one per replica
            "selector": {"matchLabels": _monitor_selector(options)},
            "strategy": {"type": "Recreate"},
            "template": {
                "metadata": {"labels": monitor_labels},
                "spec": {
                    "securityContext": _pod_security(),
                    "containers": [container],
                    "volumes": [TMP_VOLUME],
                },
            },
        },
    }


def _monitor_pod_monitor(options: K8sOptions, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": _meta(
            f"{options.name}-monitor", options, {**labels, "app.kubernetes.io/component": "monitor"}
        ),
        "spec": {
            "selector": {"matchLabels": _monitor_selector(options)},
            "podMetricsEndpoints": [{"port": "metrics", "path": "/metrics", "interval": "60s"}],
        },
    }


def _cron_name(options: K8sOptions, key: str) -> str:
    """``<name>-rollout-<key>``, within the 52 characters a CronJob name may have.

    When the key is not already a name (capitals, '_', '.') or the result is too long, a
    hash of the key ends the name, so two experiments never share one CronJob.
    """
    slug = re.sub(r"[^a-z0-9-]+", "-", key.lower()).strip("-")
    name = f"{options.name}-rollout-{slug}"
    if slug == key and len(name) <= CRON_NAME:
        return name
    digest = hashlib.sha256(key.encode()).hexdigest()[:8]
    return f"{name[: CRON_NAME - len(digest) - 1].rstrip('-')}-{digest}"


def _rollout_cron_job(key: str, options: K8sOptions, labels: dict[str, str]) -> dict[str, Any]:
    container = _cli_container(
        "rollout-tick", options, ["rollout", "tick", key, "--actor", f"controller:{options.name}"]
    )
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": _meta(
            _cron_name(options, key), options, {**labels, "app.kubernetes.io/component": "rollout"}
        ),
        "spec": {
            "schedule": options.rollout_schedule,
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 5,
            "jobTemplate": {
                "spec": {
                    "backoffLimit": 0,
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "securityContext": _pod_security(),
                            "containers": [container],
                            "volumes": [TMP_VOLUME],
                        }
                    },
                }
            },
        },
    }
