"""``abflow k8s render``: Kubernetes manifests for a gateway config, on stdout or in a file."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from abflow.cli.console import check_output_path, err_console, fail, out_console, write_output

__all__ = ["register"]

k8s_app = typer.Typer(
    name="k8s",
    help="Kubernetes manifests for the gateway and the rollout controller.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)


class MonitorChoice(StrEnum):
    """``--monitor``: the values of :class:`abflow.deploy.k8s.MonitorMode` (a test keeps them
    equal), declared here so that ``--help`` imports no deploy code."""

    deployment = "deployment"
    gateway = "gateway"
    off = "off"


EXAMPLES = """
Examples:

  [bold]abflow k8s render --config gateway.yaml --image registry.example.com/abflow:0.1.0 | kubectl apply -f -[/]

  [bold]abflow k8s render --config gateway.yaml --image IMG --namespace ml --replicas 3 --metrics-token-secret abflow-metrics -o abflow.yaml[/]

  [bold]abflow k8s render --config gateway.yaml --image IMG --helm-values -o values.yaml && helm upgrade --install abflow-gateway deploy/helm/abflow -f values.yaml[/]

  [bold]abflow k8s render --config gateway.yaml --image IMG --monitor gateway --monitor-interval 600 -o abflow.yaml[/]

The live monitor (drift, skew, quality) runs where --monitor says. [bold]deployment[/] (the default): a <name>-monitor Deployment of 'abflow monitor --interval N'. [bold]gateway[/]: no monitor workload; the gateways get ABFLOW_MONITOR_INTERVAL_SECONDS=N and take turns through a store lease, one pass per interval across every pod, with the gauges on their own /metrics. [bold]off[/]: no monitor workload, and ABFLOW_MONITOR_INTERVAL_SECONDS=0 on the gateways whatever the config says.

Before applying, create the store secret (the URL holds credentials, so it is never rendered):

  kubectl create secret generic abflow-store --from-literal=url=postgresql+psycopg://USER:PASS@HOST/abflow
"""


@k8s_app.command("render", epilog=EXAMPLES)
def render(
    image: Annotated[str, typer.Option(help="Container image with abflow installed.")],
    config: Annotated[
        Path | None,
        typer.Option(help="Gateway config (as for abflow serve); default: the demo experiment."),
    ] = None,
    name: Annotated[str, typer.Option(help="Name of the Deployment, Service and the rest.")] = (
        "abflow-gateway"
    ),
    namespace: Annotated[str, typer.Option(help="Namespace of every resource.")] = "default",
    replicas: Annotated[int, typer.Option(help="Replicas, and the autoscaler's minimum.")] = 2,
    max_replicas: Annotated[int, typer.Option(help="The autoscaler's maximum.")] = 10,
    workers: Annotated[int, typer.Option(help="Gateway worker processes per pod.")] = 2,
    store_secret: Annotated[
        str, typer.Option(help="Secret whose key 'url' holds the store URL.")
    ] = "abflow-store",
    metrics_token_secret: Annotated[
        str | None,
        typer.Option(help="Secret (key 'token') for a Prometheus Operator ServiceMonitor."),
    ] = None,
    rollout_schedule: Annotated[
        str, typer.Option(help="Cron schedule of 'abflow rollout tick' per rollout plan.")
    ] = "*/15 * * * *",
    monitor: Annotated[
        MonitorChoice,
        typer.Option(
            help="Where the live monitor runs: deployment, gateway or off (see below).",
            case_sensitive=False,
        ),
    ] = MonitorChoice.deployment,
    monitor_interval: Annotated[
        float | None,
        typer.Option(
            help="Seconds between monitor passes (N below, 1 or more); default: the "
            "config's monitor.interval_seconds, else 300.",
            show_default=False,
        ),
    ] = None,
    helm_values: Annotated[
        bool,
        typer.Option(
            "--helm-values",
            help="Print values for the Helm chart (deploy/helm/abflow) that render the same objects.",
        ),
    ] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the manifests to this file.")
    ] = None,
) -> None:
    """Render the gateway's Deployment, Service, autoscaler, config, rollout CronJobs and monitor."""
    from abflow.deploy import K8sOptions, render_manifests, to_yaml
    from abflow.deploy.k8s import MonitorMode, config_credentials
    from abflow.errors import InvalidArgumentError
    from abflow.serving.settings import demo_config, load_config

    if output is not None:
        check_output_path(output)
    gateway_config = load_config(config) if config is not None else demo_config()
    options = K8sOptions(
        image=image,
        name=name,
        namespace=namespace,
        replicas=replicas,
        max_replicas=max_replicas,
        workers=workers,
        store_secret=store_secret,
        metrics_token_secret=metrics_token_secret,
        rollout_schedule=rollout_schedule,
        monitor=MonitorMode(monitor.value),
        monitor_interval_seconds=monitor_interval,
    )
    for place in config_credentials(gateway_config):
        err_console.print(
            f"warning: the ConfigMap will hold {place}, readable by anyone who may read "
            f"ConfigMaps in {namespace}: give credentials with bearer_token_env from a Secret",
            markup=False,
        )
    try:
        if helm_values:
            from abflow.deploy.helm import helm_values as make_values

            text = to_yaml([make_values(gateway_config, options)])
        else:
            text = to_yaml(render_manifests(gateway_config, options))
    except InvalidArgumentError as exc:
        fail(str(exc))
    if output is None:
        out_console.print(text, end="")
        return
    write_output(output, text)
    out_console.print(f"wrote {output}")


def register(app: typer.Typer) -> None:
    app.add_typer(k8s_app)
