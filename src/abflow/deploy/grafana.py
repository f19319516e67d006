"""A Grafana dashboard for the gateway's Prometheus metrics (JSON model, schema 39).

One row per question an on-call engineer asks: is it up and fast (requests, errors, latency
per route), is each variant healthy (predictions, model latency quantiles, errors,
fallbacks, shadow outcomes, open circuits), is batching and caching doing its job, and are
events reaching the store (queue depth, spool). Every panel can be filtered by experiment.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PANELS", "grafana_dashboard"]

_RATE = "[$__rate_interval]"
_EXP = 'experiment=~"$experiment"'

PANELS: list[tuple[str, str, str, list[tuple[str, str]]]] = [
    # (title, unit, panel type, [(PromQL, legend)])
    ("Requests per second by route and status", "reqps", "timeseries", [
        (f"sum by (route, status) (rate(abflow_http_requests_total{_RATE}))", "{{route}} {{status}}"),
    ]),
    ("HTTP error ratio (5xx)", "percentunit", "timeseries", [
        (f'sum(rate(abflow_http_requests_total{{status=~"5.."}}{_RATE})) / clamp_min(sum(rate(abflow_http_requests_total{_RATE})), 1e-9)', "5xx share"),
    ]),
    ("Request latency p50 / p95 / p99 (all routes)", "s", "timeseries", [
        (f"histogram_quantile({q}, sum by (le) (rate(abflow_http_request_duration_seconds_bucket{_RATE})))", f"p{int(q * 100)}")
        for q in (0.5, 0.95, 0.99)
    ]),
    ("Predictions per second by variant and model version", "ops", "timeseries", [
        (f"sum by (experiment, variant, model_version) (rate(abflow_predictions_total{{{_EXP}}}{_RATE}))", "{{experiment}} {{variant}} v{{model_version}}"),
    ]),
    ("Model latency p95 by variant", "s", "timeseries", [
        (f"histogram_quantile(0.95, sum by (le, experiment, variant) (rate(abflow_prediction_duration_seconds_bucket{{{_EXP}}}{_RATE})))", "{{experiment}} {{variant}} p95"),
    ]),
    ("Model latency p50 by variant", "s", "timeseries", [
        (f"histogram_quantile(0.5, sum by (le, experiment, variant) (rate(abflow_prediction_duration_seconds_bucket{{{_EXP}}}{_RATE})))", "{{experiment}} {{variant}} p50"),
    ]),
    ("Model errors per second by kind", "ops", "timeseries", [
        (f"sum by (experiment, variant, kind) (rate(abflow_prediction_errors_total{{{_EXP}}}{_RATE}))", "{{experiment}} {{variant}} {{kind}}"),
    ]),
    ("Fallbacks to the control per second", "ops", "timeseries", [
        (f"sum by (experiment, variant, reason) (rate(abflow_fallbacks_total{{{_EXP}}}{_RATE}))", "{{experiment}} {{variant}} {{reason}}"),
    ]),
    ("Shadow predictions by outcome", "ops", "timeseries", [
        (f"sum by (experiment, variant, outcome) (rate(abflow_shadow_predictions_total{{{_EXP}}}{_RATE}))", "{{experiment}} {{variant}} {{outcome}}"),
    ]),
    ("Open circuits", "short", "stat", [
        ("sum by (model) (abflow_circuit_open)", "{{model}}"),
    ]),
    ("Rows per model call (mean)", "short", "timeseries", [
        (f"sum by (model) (rate(abflow_batch_rows_sum{_RATE})) / clamp_min(sum by (model) (rate(abflow_batch_rows_count{_RATE})), 1e-9)", "{{model}}"),
    ]),
    ("Prediction cache hit ratio", "percentunit", "timeseries", [
        (f"sum(rate(abflow_cache_hits_total{_RATE})) / clamp_min(sum(rate(abflow_cache_hits_total{_RATE})) + sum(rate(abflow_cache_misses_total{_RATE})), 1e-9)", "hit ratio"),
    ]),
    ("Events waiting for the store", "short", "timeseries", [
        ("sum by (instance) (abflow_event_queue_depth)", "{{instance}}"),
    ]),
    ("Spool size (store outage)", "bytes", "timeseries", [
        ("sum by (instance) (abflow_event_spool_bytes)", "{{instance}}"),
    ]),
]  # fmt: skip


def grafana_dashboard(title: str = "abflow gateway", uid: str = "abflow-gateway") -> dict[str, Any]:
    """The dashboard's JSON model, with a data-source and an experiment variable."""
    panels = []
    for index, (name, unit, kind, targets) in enumerate(PANELS):
        panels.append(
            {
                "id": index + 1,
                "type": kind,
                "title": name,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "options": {},
                "targets": [
                    {
                        "refId": chr(ord("A") + position),
                        "datasource": {"type": "prometheus", "uid": "${datasource}"},
                        "expr": expr,
                        "legendFormat": legend,
                    }
                    for position, (expr, legend) in enumerate(targets)
                ],
            }
        )
    return {
        "uid": uid,
        "title": title,
        "tags": ["abflow", "ml", "experiments"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                },
                {
                    "name": "experiment",
                    "label": "Experiment",
                    "type": "query",
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "query": "label_values(abflow_predictions_total, experiment)",
                    "includeAll": True,
                    "multi": True,
                    "current": {"text": "All", "value": "$__all"},
                    "refresh": 2,
                },
            ]
        },
        "panels": panels,
    }
