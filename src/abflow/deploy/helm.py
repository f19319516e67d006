"""Values for the Helm chart in ``deploy/helm/abflow``: what ``abflow k8s render --helm-values``
prints.

The chart cannot read spec files, so the gateway config travels inlined in the values, exactly
as the ConfigMap of ``abflow k8s render`` carries it. With these values, ``helm template``
renders the same Deployment, Service, autoscaler, disruption budget, migration Job and rollout
CronJobs as :func:`abflow.deploy.render_manifests` for the same options (a test compares them),
so a team can move between the two without a diff in what runs.

Where the live monitor runs is ``monitor.mode`` (``deployment``, ``gateway`` or ``off``, as
``abflow k8s render --monitor``) with ``monitor.intervalSeconds``: the ``abflow monitor
--interval`` of the monitor Deployment, or the gateways' ``ABFLOW_MONITOR_INTERVAL_SECONDS``.
"""

from __future__ import annotations

from typing import Any

from abflow.deploy.k8s import (
    K8sOptions,
    MonitorMode,
    check_options,
    gateway_config_data,
    monitor_interval,
)
from abflow.serving.settings import GatewayConfig

__all__ = ["helm_values", "split_image"]


def split_image(image: str) -> tuple[str, str]:
    """``registry:5000/abflow:0.1.0`` → (``registry:5000/abflow``, ``0.1.0``); no tag → ``""``.

    A digest (``@sha256:…``) stays in the repository part: the chart joins them back with ':'
    only when the tag is not empty.
    """
    if "@" in image:
        return image, ""
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon + 1 :]
    return image, ""


def helm_values(config: GatewayConfig, options: K8sOptions) -> dict[str, Any]:
    """A values file that makes the chart render what ``render_manifests`` renders."""
    check_options(options)
    interval = monitor_interval(config, options)
    monitor: dict[str, Any] = {"mode": MonitorMode(options.monitor).value}
    if options.monitor != MonitorMode.off:
        seconds = float(interval)
        monitor["intervalSeconds"] = int(seconds) if seconds.is_integer() else seconds
    repository, tag = split_image(options.image)
    return {
        "fullnameOverride": options.name,
        "image": {"repository": repository, "tag": tag},
        "replicas": options.replicas,
        "workers": options.workers,
        "workerStartTimeoutSeconds": options.worker_start_timeout_seconds,
        "drainTimeoutSeconds": options.drain_timeout_seconds,
        "preStopSeconds": options.pre_stop_seconds,
        "store": {"existingSecret": options.store_secret, "key": "url"},
        "autoscaling": {
            "maxReplicas": options.max_replicas,
            "cpuTargetPercent": options.cpu_target_percent,
        },
        "serviceMonitor": {
            "enabled": options.metrics_token_secret is not None,
            "tokenSecret": {"name": options.metrics_token_secret or "", "key": "token"},
        },
        "monitor": monitor,
        "rollout": {"schedule": options.rollout_schedule},
        "config": gateway_config_data(config),
    }
