"""Prometheus metrics of the gateway, in a registry of their own.

Each app gets its own :class:`CollectorRegistry` rather than the process-global one, so that
several apps in one process (tests, an embedded demo) never collide. Label children are
cached: ``labels(...)`` costs a dict lookup and a lock, and the hot path calls it per request.
With several uvicorn workers each exposes its own numbers; Prometheus sums over instances.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["CONTENT_TYPE_LATEST", "GatewayMetrics"]

LATENCY_BUCKETS_SECONDS = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class GatewayMetrics:
    """Request, prediction, batching, cache, fallback and event-pipeline metrics."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "abflow_http_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=r,
        )
        self.request_latency = Histogram(
            "abflow_http_request_duration_seconds",
            "HTTP request latency by route",
            ["route"],
            buckets=LATENCY_BUCKETS_SECONDS,
            registry=r,
        )
        self.predictions = Counter(
            "abflow_predictions",
            "Rows predicted, by experiment, variant and model version",
            ["experiment", "variant", "model_version"],
            registry=r,
        )
        self.prediction_latency = Histogram(
            "abflow_prediction_duration_seconds",
            "Model latency per request, by experiment, variant and model version",
            ["experiment", "variant", "model_version"],
            buckets=LATENCY_BUCKETS_SECONDS,
            registry=r,
        )
        self.errors = Counter(
            "abflow_prediction_errors",
            "Failed model calls, by experiment, variant and kind",
            ["experiment", "variant", "kind"],
            registry=r,
        )
        self.fallbacks = Counter(
            "abflow_fallbacks",
            "Requests answered by the control model after the chosen one failed",
            ["experiment", "variant"],
            registry=r,
        )
        self.shadow = Counter(
            "abflow_shadow_predictions",
            "Mirrored predictions, by experiment, variant and outcome (ok, error, dropped)",
            ["experiment", "variant", "outcome"],
            registry=r,
        )
        self.batch_size = Histogram(
            "abflow_batch_rows",
            "Rows per vectorised model call",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.cache_hits = Counter("abflow_cache_hits", "Prediction cache hits", registry=r)
        self.cache_misses = Counter("abflow_cache_misses", "Prediction cache misses", registry=r)
        self.cache_hit_ratio = Gauge(
            "abflow_cache_hit_ratio", "Cache hits over lookups since start", registry=r
        )
        self.cache_hit_ratio.set_function(self._hit_ratio)
        self.event_queue_depth = Gauge(
            "abflow_event_queue_depth", "Events waiting to be shipped to the store", registry=r
        )
        self.event_spool_bytes = Gauge(
            "abflow_event_spool_bytes", "Bytes in the local spool (store outage)", registry=r
        )
        self.circuit_open = Gauge(
            "abflow_circuit_open", "1 while a backend's circuit is open", ["model"], registry=r
        )

        self._request_children: dict[tuple[str, int], tuple[Any, Any]] = {}

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        """Count one HTTP request and its latency (label children cached per route, status)."""
        children = self._request_children.get((route, status))
        if children is None:
            children = (
                self.requests.labels(route, str(status)),
                self.request_latency.labels(route),
            )
            self._request_children[(route, status)] = children
        children[0].inc()
        children[1].observe(seconds)

    def _hit_ratio(self) -> float:
        hits = self.cache_hits._value.get()
        misses = self.cache_misses._value.get()
        total = hits + misses
        return hits / total if total else 0.0

    def watch_event_pipeline(
        self, queue_depth: Callable[[], float], spool_bytes: Callable[[], float]
    ) -> None:
        """Read the event pipeline's gauges at scrape time (no polling thread)."""
        self.event_queue_depth.set_function(queue_depth)
        self.event_spool_bytes.set_function(spool_bytes)

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)
