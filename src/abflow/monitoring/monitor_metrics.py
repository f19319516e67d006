"""Prometheus gauges of the live monitor.

``abflow monitor`` keeps them in a registry of its own and serves it (``--metrics-port``). A
gateway that runs the monitor itself (``ABFLOW_MONITOR_INTERVAL_SECONDS``) shows them on its
own ``/metrics`` (:func:`gateway_monitor_metrics`): in its registry, or with several workers
in the workers' metric files, where each gauge reads the value set last by any worker (only
one runs a pass at a time; the others copy the stored results). Every gauge holds the latest
window with a verdict (a window too young for one keeps the last value).

- ``abflow_feature_drift{experiment,variant,feature,method}``: drift statistic (PSI by default)
- ``abflow_prediction_drift{experiment,variant}``: drift statistic of the scores
- ``abflow_variant_skew{experiment,feature}``: largest skew statistic of a challenger vs control
- ``abflow_quality{experiment,variant,metric}``: fpr, precision, recall
- ``abflow_monitor_alarm{experiment,kind,variant}``: 1 while that measure is past its threshold
  (the method's own rule, so alert rules need not know the method)
- ``abflow_monitor_last_run_timestamp_seconds{experiment}``: when the last pass finished
- ``abflow_monitor_errors_total{experiment}``: experiments a pass could not monitor (an empty
  ``experiment``: the pass itself failed, e.g. the store was unreachable)
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from abflow.monitoring.metrics import GatewayMetrics
from abflow.store.monitoring import MonitorRecord

__all__ = ["MonitorMetrics", "gateway_monitor_metrics"]

_MODE: Final = "livemostrecent"
"""Several workers: each gauge shows the value a live worker set last."""


class MonitorMetrics:
    """The monitor's gauges; ``publish`` sets them from a pass's results.

    ``files=True``: the metrics live in prometheus_client's multiprocess files (one set per
    process), and ``registry`` stays empty.
    """

    def __init__(self, registry: CollectorRegistry | None = None, *, files: bool = False) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = None if files else self.registry
        self.feature_drift = Gauge(
            "abflow_feature_drift",
            "Drift statistic of one feature's sampled values vs the reference window",
            ["experiment", "variant", "feature", "method"],
            registry=r,
            multiprocess_mode=_MODE,
        )
        self.prediction_drift = Gauge(
            "abflow_prediction_drift",
            "Drift statistic of a variant's scores vs the reference window",
            ["experiment", "variant"],
            registry=r,
            multiprocess_mode=_MODE,
        )
        self.variant_skew = Gauge(
            "abflow_variant_skew",
            "Largest drift statistic of a challenger's inputs vs the control's, same window",
            ["experiment", "feature"],
            registry=r,
            multiprocess_mode=_MODE,
        )
        self.quality = Gauge(
            "abflow_quality",
            "A variant's fpr, precision or recall on the window's labelled predictions",
            ["experiment", "variant", "metric"],
            registry=r,
            multiprocess_mode=_MODE,
        )
        self.alarm = Gauge(
            "abflow_monitor_alarm",
            "1 while a monitored measure is past its threshold in the latest window with a verdict",
            ["experiment", "kind", "variant"],
            registry=r,
            multiprocess_mode=_MODE,
        )
        self.last_run = Gauge(
            "abflow_monitor_last_run_timestamp_seconds",
            "When the monitor last finished a pass over the experiment",
            ["experiment"],
            registry=r,
            multiprocess_mode=_MODE,
        )

        self.errors = Counter(
            "abflow_monitor_errors",
            "Experiments a monitor pass could not monitor (experiment empty: the whole pass)",
            ["experiment"],
            registry=r,
        )

    def publish(self, experiment_key: str, records: Iterable[MonitorRecord], now: float) -> None:
        """Set the gauges from ``records`` (oldest window first): the last verdict wins."""
        latest: dict[tuple[str, str, str, str], MonitorRecord] = {}
        for record in records:
            if record.value is not None:
                latest[(record.kind, record.variant, record.feature, record.method)] = record
        alarms: dict[tuple[str, str], float] = {}
        skew: dict[str, float] = {}
        for (kind, variant, feature, method), record in latest.items():
            value = float(record.value or 0.0)
            if kind == "feature_drift":
                self.feature_drift.labels(experiment_key, variant, feature, method).set(value)
            elif kind == "prediction_drift":
                self.prediction_drift.labels(experiment_key, variant).set(value)
            elif kind == "variant_skew":
                skew[feature] = max(skew.get(feature, value), value)
            elif kind == "quality":
                self.quality.labels(experiment_key, variant, method).set(value)
            key = (kind, variant)
            alarms[key] = max(alarms.get(key, 0.0), 1.0 if record.is_alarm else 0.0)
        for feature, value in skew.items():
            self.variant_skew.labels(experiment_key, feature).set(value)
        for (kind, variant), value in alarms.items():
            self.alarm.labels(experiment_key, kind, variant).set(value)
        self.last_run.labels(experiment_key).set(now)

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format (what ``/metrics`` serves)."""
        return bytes(generate_latest(self.registry))


@functools.cache
def _process_monitor_metrics() -> MonitorMetrics:
    """One set per process in multiprocess mode, like the gateway's own metrics."""
    return MonitorMetrics(files=True)


def gateway_monitor_metrics(metrics: GatewayMetrics) -> MonitorMetrics:
    """The monitor's metrics on the gateway's ``/metrics``, whichever worker answers."""
    if metrics.is_multiprocess:
        return _process_monitor_metrics()
    return MonitorMetrics(metrics.registry)
