"""``abflow monitor``: drift, skew and quality of live experiments, window by window.

``--once`` makes one pass and exits (a Kubernetes CronJob); without it the command loops
every ``--interval`` seconds and serves its Prometheus gauges on ``--metrics-port``.
"""

from __future__ import annotations

import datetime as dt
import time
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import orjson
import typer
from rich.table import Table

from abflow.cli.console import out_console, print_error
from abflow.cli.options import StoreOption, parse_time
from abflow.monitoring.runner import ReferenceSource

if TYPE_CHECKING:
    from abflow.monitoring.monitor import WindowReport

__all__ = ["register"]


class MonitorFormat(StrEnum):
    table = "table"
    json = "json"


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).strftime("%Y-%m-%d %H:%M")


def _print(key: str, reports: list[WindowReport], output: MonitorFormat) -> None:
    if output is MonitorFormat.json:
        document = {
            "experiment": key,
            "windows": [
                {
                    "window_start": report.window_start,
                    "window_end": report.window_end,
                    "alarms": len(report.alarms),
                    "records": [
                        {
                            "kind": r.kind,
                            "variant": r.variant,
                            "feature": r.feature,
                            "method": r.method,
                            "value": r.value,
                            "p_value": r.p_value,
                            "threshold": r.threshold,
                            "is_alarm": r.is_alarm,
                            "n_reference": r.n_reference,
                            "n_current": r.n_current,
                            "reference": r.reference,
                        }
                        for r in report.records
                    ],
                }
                for report in reports
            ],
        }
        out_console.print_json(orjson.dumps(document).decode())
        return
    table = Table(title=f"monitor of {key}", title_justify="left")
    for column in ("window (UTC)", "prediction drift", "max feature drift", "skew", "alarms"):
        table.add_column(column)
    for report in reports:
        by_kind: dict[str, list[str]] = {}
        for r in report.records:
            if r.value is None or r.kind == "quality":
                continue
            label = r.variant or r.feature
            if r.kind == "prediction_drift":
                by_kind.setdefault(r.kind, []).append(f"{label} {r.value:.3f}")
        drift = [r for r in report.records if r.kind == "feature_drift" and r.value is not None]
        skew = [r for r in report.records if r.kind == "variant_skew" and r.value is not None]
        top = max(drift, key=lambda r: r.value or 0.0, default=None)
        top_skew = max(skew, key=lambda r: r.value or 0.0, default=None)
        alarms = sorted({f"{r.kind}:{r.variant or r.feature}" for r in report.alarms})
        table.add_row(
            _when(report.window_start),
            ", ".join(by_kind.get("prediction_drift", [])) or "-",
            f"{top.variant}/{top.feature} {top.value:.3f}"
            if top and top.value is not None
            else "-",
            f"{top_skew.feature} {top_skew.value:.3f}"
            if top_skew and top_skew.value is not None
            else "-",
            ", ".join(alarms) or "none",
        )
    out_console.print(table)


def monitor(
    experiments: Annotated[
        list[str] | None,
        typer.Argument(help="Experiment keys (default: every experiment in the store)."),
    ] = None,
    store: StoreOption = None,
    once: Annotated[
        bool, typer.Option("--once", help="One pass, then exit (for a CronJob).")
    ] = False,
    interval: Annotated[
        float, typer.Option(help="Seconds between passes in the loop mode.", min=1.0)
    ] = 300.0,
    reference_window: Annotated[
        str | None,
        typer.Option(
            help="Start of the reference window (epoch seconds or ISO time); default the "
            "first sampled window.",
            show_default=False,
        ),
    ] = None,
    reference: Annotated[
        ReferenceSource,
        typer.Option(
            help="auto: each variant's training sample when the run behind its registry model "
            "logged one (artifact abflow-reference/), else the reference window; window: "
            "always the window."
        ),
    ] = ReferenceSource.auto,
    lookback: Annotated[
        int, typer.Option(help="Windows recomputed per pass (labels arrive late).", min=1)
    ] = 48,
    label_event: Annotated[
        str, typer.Option(help="Outcome name of the labels (quality).")
    ] = "label",
    threshold: Annotated[
        float, typer.Option(help="Score at or above which a prediction is positive.")
    ] = 0.5,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve the gauges on this port (loop mode).", show_default=False),
    ] = None,
    output: Annotated[
        MonitorFormat, typer.Option("--format", help="Output format.")
    ] = MonitorFormat.table,
) -> None:
    """Feature drift, prediction drift, skew between variants and quality, per window.

    Results go to the store (history for the dashboard and reports) and to Prometheus gauges.
    With --once: exit 1 when an experiment's latest window raised an alarm.
    Exit 2 when an experiment could not be monitored (the others still are).
    Example: [bold]abflow monitor fraud-model-v2 --once[/]
    """
    from abflow.monitoring.monitor import MonitorOptions
    from abflow.monitoring.monitor_metrics import MonitorMetrics
    from abflow.monitoring.runner import MonitorRunner
    from abflow.registry.training_data import training_sample
    from abflow.store import EventStore

    options = MonitorOptions(
        reference_window=(
            None if reference_window is None else parse_time(reference_window, "--reference-window")
        ),
        lookback_windows=lookback,
        label_event=label_event,
        threshold=threshold,
    )
    metrics = MonitorMetrics()
    if metrics_port is not None and not once:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, registry=metrics.registry)
    # must_exist: a monitor pointed at the wrong place says so instead of creating a store.
    with EventStore.open(store, must_exist=True) as opened:
        runner = MonitorRunner(
            opened,
            options,
            metrics,
            training_sample=training_sample if reference is ReferenceSource.auto else None,
            warn=print_error,
        )
        try:
            while True:
                # One experiment the monitor cannot compute (unknown key, feature names that
                # do not match its rows) is reported and skipped: the others stay watched.
                alarmed = failed = False
                for done in runner.run_pass(experiments):
                    if done.error is not None:
                        print_error(f"{done.key}: {done.error}")
                        failed = True
                        continue
                    _print(done.key, done.reports[-1:] if not once else done.reports, output)
                    alarmed = alarmed or bool(done.reports and done.reports[-1].alarms)
                if once:
                    if failed:
                        raise typer.Exit(2)
                    if alarmed:
                        raise typer.Exit(1)
                    return
                time.sleep(interval)
        finally:
            runner.close()


def register(app: typer.Typer) -> None:
    app.command("monitor")(monitor)
