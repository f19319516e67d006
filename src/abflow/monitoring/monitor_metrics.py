"""Prometheus gauges of the live monitor, in a registry of its own.

The monitor runs as its own process (``abflow monitor``, a Deployment in the loop mode), so
it serves its own ``/metrics`` (``--metrics-port``) rather than the gateway's: the gateway
stays a stateless replica, and a figure is exported once, not once per replica. Every gauge
holds the latest window with a verdict (a window too young for one keeps the last value).

- ``abflow_feature_drift{experiment,variant,feature,method}``: drift statistic (PSI by default)
- ``abflow_prediction_drift{experiment,variant}``: drift statistic of the scores
- ``abflow_variant_skew{experiment,feature}``: largest skew statistic of a challenger vs control
- ``abflow_quality{experiment,variant,metric}``: fpr, precision, recall
- ``abflow_monitor_alarm{experiment,kind,variant}``: 1 while that measure is past its threshold
  (the method's own rule, so alert rules need not know the method)
- ``abflow_monitor_last_run_timestamp_seconds{experiment}``: when the last pass finished
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from abflow.store.monitoring import MonitorRecord

__all__ = ["MonitorMetrics"]


class MonitorMetrics:
    """The monitor's gauges; ``publish`` sets them from a pass's results."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.feature_drift = Gauge(
            "abflow_feature_drift",
            "Drift statistic of one feature's sampled values vs the reference window",
            ["experiment", "variant", "feature", "method"],
            registry=r,
        )
        self.prediction_drift = Gauge(
            "abflow_prediction_drift",
            "Drift statistic of a variant's scores vs the reference window",
            ["experiment", "variant"],
            registry=r,
        )
        self.variant_skew = Gauge(
            "abflow_variant_skew",
            "Largest drift statistic of a challenger's inputs vs the control's, same window",
            ["experiment", "feature"],
            registry=r,
        )
        self.quality = Gauge(
            "abflow_quality",
            "A variant's fpr, precision or recall on the window's labelled predictions",
            ["experiment", "variant", "metric"],
            registry=r,
        )
        self.alarm = Gauge(
            "abflow_monitor_alarm",
            "1 while a monitored measure is past its threshold in the latest window with a verdict",
            ["experiment", "kind", "variant"],
            registry=r,
        )
        self.last_run = Gauge(
            "abflow_monitor_last_run_timestamp_seconds",
            "When the monitor last finished a pass over the experiment",
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
