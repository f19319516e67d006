"""The Grafana dashboard queries only metrics the gateway really exposes, by their exposed names."""

from __future__ import annotations

import json
import re

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from abflow.deploy.grafana import PANELS, grafana_dashboard
from abflow.monitoring.metrics import GatewayMetrics


def exposed_sample_names() -> set[str]:
    """Sample names in a real exposition after every metric has been touched once."""
    metrics = GatewayMetrics()
    metrics.requests.labels("/v1/predict", "200").inc()
    metrics.request_latency.labels("/v1/predict").observe(0.003)
    metrics.predictions.labels("exp", "control", "1").inc()
    metrics.prediction_latency.labels("exp", "control", "1").observe(0.002)
    metrics.errors.labels("exp", "control", "timeout").inc()
    metrics.fallbacks.labels("exp", "challenger", "timeout").inc()
    metrics.shadow.labels("exp", "challenger", "ok").inc()
    metrics.batch_size.labels("models:/m/1").observe(8)
    metrics.cache_hits.inc()
    metrics.cache_misses.inc()
    metrics.circuit_open.labels("models:/m/1").set(0)
    text = generate_latest(metrics.registry).decode()
    return {
        sample.name for family in text_string_to_metric_families(text) for sample in family.samples
    }


def test_every_query_names_an_exposed_metric() -> None:
    exposed = exposed_sample_names()
    used = {
        name
        for _, _, _, targets in PANELS
        for expr, _ in targets
        for name in re.findall(r"\babflow_[a-z_]+\b", expr)
    }
    assert used, "the dashboard queries abflow metrics"
    assert used - exposed == set()
    # every gateway metric family is on the dashboard somewhere
    families = {re.sub(r"_(total|bucket|sum|count|created)$", "", n) for n in exposed}
    shown = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in used}
    assert families - shown <= {"abflow_cache_hit_ratio"}  # shown as a ratio of the counters


def test_dashboard_model_is_well_formed() -> None:
    dashboard = grafana_dashboard()
    json.dumps(dashboard)  # serialisable
    panels = dashboard["panels"]
    assert [p["id"] for p in panels] == list(range(1, len(panels) + 1))
    positions = {(p["gridPos"]["x"], p["gridPos"]["y"]) for p in panels}
    assert len(positions) == len(panels)  # no two panels on top of each other
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "experiment"}
    for panel in panels:
        for target in panel["targets"]:
            expr = target["expr"]
            assert expr.count("(") == expr.count(")"), expr
            assert target["datasource"]["uid"] == "${datasource}"
