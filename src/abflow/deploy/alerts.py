"""Prometheus alerting rules for the live monitor's gauges (``abflow monitor``).

The rules read ``abflow_monitor_alarm``, which the monitor sets by each measure's own rule
(PSI at or above its threshold, a test's p-value below alpha, a challenger significantly
worse than the control), so they do not depend on the drift method an experiment chose;
the annotations quote the statistic itself. The same groups are rendered as a plain rules
file (``prometheus.yml``'s ``rule_files``) and inside a Prometheus Operator
``PrometheusRule`` by ``abflow k8s render``; ``tests/deploy/test_deploy_alerts.py`` runs
them through ``promtool test rules``.
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["ALERTS", "alert_rules", "alert_rules_yaml", "helm_template", "prometheus_rule"]

STALE_SECONDS = 3 * 3600
"""A monitor that has not finished a pass for this long is reported (3 hourly windows)."""

ALERTS: tuple[tuple[str, str, str, str, str, str], ...] = (
    (
        "AbflowPredictionDrift",
        'max by (experiment, variant) (abflow_monitor_alarm{kind="prediction_drift"}) == 1',
        "0m",
        "page",
        "Scores of {{ $labels.experiment }}/{{ $labels.variant }} drifted",
        "The variant's score distribution moved away from the reference window "
        "(abflow_prediction_drift has the statistic), before any label can show it. Run "
        "`abflow monitor {{ $labels.experiment }} --once`; the rollout holds or rolls back.",
    ),
    (
        "AbflowFeatureDrift",
        'max by (experiment, variant) (abflow_monitor_alarm{kind="feature_drift"}) == 1',
        "0m",
        "ticket",
        "Inputs of {{ $labels.experiment }}/{{ $labels.variant }} drifted",
        "At least one feature of the sampled inputs moved away from the reference window; "
        "abflow_feature_drift names which.",
    ),
    (
        "AbflowVariantSkew",
        'max by (experiment) (abflow_monitor_alarm{kind="variant_skew"}) == 1',
        "0m",
        "page",
        "Variants of {{ $labels.experiment }} see different inputs",
        "A challenger's inputs differ from the control's in the same window. Assignment is "
        "random, so this is a routing or feature-pipeline fault: the comparison is not fair "
        "until it is fixed.",
    ),
    (
        "AbflowQualityRegression",
        'max by (experiment, variant) (abflow_monitor_alarm{kind="quality"}) == 1',
        "0m",
        "page",
        "{{ $labels.experiment }}/{{ $labels.variant }} is worse than the control",
        "On labelled predictions of the same window, the challenger's FPR, precision or "
        "recall is worse than the control's (p < 0.01); abflow_quality has the figures.",
    ),
    (
        "AbflowMonitorStale",
        f"time() - abflow_monitor_last_run_timestamp_seconds > {STALE_SECONDS}",
        "10m",
        "ticket",
        "The live monitor of {{ $labels.experiment }} has stopped",
        "No monitor pass finished for three hours: drift and quality are not being watched.",
    ),
)
"""(alert, expression, for, severity, summary, description): declared once, rendered twice."""


def alert_rules() -> dict[str, Any]:
    """The rules file as a document: one group, ``abflow-monitoring``."""
    rules = [
        {
            "alert": name,
            "expr": expr,
            "for": hold,
            "labels": {"severity": severity, "component": "abflow-monitor"},
            "annotations": {"summary": summary, "description": description},
        }
        for name, expr, hold, severity, summary, description in ALERTS
    ]
    return {"groups": [{"name": "abflow-monitoring", "interval": "1m", "rules": rules}]}


def alert_rules_yaml() -> str:
    """The rules file's text (``abflow k8s render --alerts``)."""
    return yaml.safe_dump(alert_rules(), sort_keys=False, width=100)


def prometheus_rule(name: str, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    """The same rules as a Prometheus Operator ``PrometheusRule``."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": f"{name}-alerts",
            "namespace": namespace,
            "labels": {**labels, "app.kubernetes.io/component": "monitor"},
        },
        "spec": alert_rules(),
    }


HELM_TEMPLATE = "deploy/helm/abflow/templates/monitor-prometheusrule.yaml"
"""The chart's copy of the rules, written by :func:`helm_template` (a test keeps them equal)."""


def helm_template() -> str:
    """The Helm chart's template of :func:`prometheus_rule` (rules escaped from Helm)."""
    rules = yaml.safe_dump({"spec": alert_rules()}, sort_keys=False, width=100)
    escaped = rules.replace("{{", '{{ "{{" }}')
    return (
        "{{- /* Written by abflow.deploy.alerts.helm_template(): edit alerts.py, not this. */ -}}\n"
        "{{- if and .Values.serviceMonitor.enabled .Values.prometheusRule.enabled "
        '(.Capabilities.APIVersions.Has "monitoring.coreos.com/v1") }}\n'
        "apiVersion: monitoring.coreos.com/v1\n"
        "kind: PrometheusRule\n"
        "metadata:\n"
        '  name: {{ include "abflow.fullname" . }}-alerts\n'
        "  namespace: {{ .Release.Namespace }}\n"
        "  labels:\n"
        '    {{- include "abflow.baseLabels" . | nindent 4 }}\n'
        "    app.kubernetes.io/component: monitor\n"
        f"{escaped}"
        "{{- end }}\n"
    )
