"""Prometheus metrics of the gateway: one registry per app, or one view of every worker.

One process (the default, and every test): each app gets its own :class:`CollectorRegistry`
rather than the process-global one, so that several apps in one process never collide.
Several uvicorn workers behind one port (``abflow serve --workers N``): the values live in
prometheus_client's multiprocess files and ``/metrics`` answers with the sum over all
workers, whichever worker takes the scrape (see :mod:`abflow.monitoring.multiprocess`).
Label children are cached: ``labels(...)`` costs a dict lookup and a lock, and the hot path
calls it per request.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from abflow.monitoring.multiprocess import GaugeRefresher, MergedCollector, multiprocess_directory

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
HIT_RATIO = "abflow_cache_hit_ratio"
HIT_RATIO_HELP = "Cache hits over lookups since start"
REFRESH_SECONDS = 1.0
"""How stale another worker's event-pipeline gauges may be in a multi-worker scrape."""


class _Families:
    """The metric objects; ``registry=None`` in multiprocess mode (the files are the registry).

    Gauges name a multiprocess mode: ``livesum`` adds up the live workers' queues and spools,
    ``livemax`` keeps ``abflow_circuit_open`` at 1 while any worker's circuit is open; a dead
    worker's live gauges are dropped. Outside multiprocess mode the mode is ignored.
    """

    def __init__(self, registry: CollectorRegistry | None) -> None:
        r = registry
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
            "Requests answered by the control model after the chosen one failed, by reason "
            "(timeout, connect, status_4xx, status_5xx, bad_output, circuit_open, error)",
            ["experiment", "variant", "reason"],
            registry=r,
        )
        self.unscored = Counter(
            "abflow_unscored_predictions",
            "Single-row answers that gave no numeric score (quality metrics stay empty)",
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
        # Multiprocess: replaced at scrape time by the ratio of the summed counters.
        self.cache_hit_ratio = Gauge(
            HIT_RATIO, HIT_RATIO_HELP, registry=r, multiprocess_mode="livemax"
        )
        self.event_queue_depth = Gauge(
            "abflow_event_queue_depth",
            "Events waiting to be shipped to the store",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.event_spool_bytes = Gauge(
            "abflow_event_spool_bytes",
            "Bytes in the local spool (store outage)",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.circuit_open = Gauge(
            "abflow_circuit_open",
            "1 while a backend's circuit is open",
            ["model"],
            registry=r,
            multiprocess_mode="livemax",
        )


@functools.cache
def _process_families() -> _Families:
    """One set per process in multiprocess mode: two sets would overwrite each other's
    values in the same file."""
    return _Families(None)


def _derived_hit_ratio(merged: Mapping[str, Metric]) -> Iterator[Metric]:
    """The hit ratio of all workers together: summed hits over summed lookups."""

    def total(name: str) -> float:
        family = merged.get(name)
        if family is None:
            return 0.0
        return sum(s.value for s in family.samples if s.name == f"{name}_total")

    hits = total("abflow_cache_hits")
    lookups = hits + total("abflow_cache_misses")
    yield GaugeMetricFamily(HIT_RATIO, HIT_RATIO_HELP, value=hits / lookups if lookups else 0.0)


class GatewayMetrics:
    """Request, prediction, batching, cache, fallback and event-pipeline metrics.

    ``registry`` is what :meth:`exposition` serves: this app's metrics, or, in multiprocess
    mode, a collector that merges every worker's files.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        directory = multiprocess_directory()
        self._refresher: GaugeRefresher | None = None
        if directory is None:
            families = _Families(self.registry)
            families.cache_hit_ratio.set_function(self._hit_ratio)
        else:
            families = _process_families()
            self.registry.register(MergedCollector(directory, _derived_hit_ratio))
            self._refresher = GaugeRefresher(REFRESH_SECONDS)
        self.is_multiprocess = directory is not None
        self.requests = families.requests
        self.request_latency = families.request_latency
        self.predictions = families.predictions
        self.prediction_latency = families.prediction_latency
        self.errors = families.errors
        self.fallbacks = families.fallbacks
        self.unscored = families.unscored
        self.shadow = families.shadow
        self.batch_size = families.batch_size
        self.cache_hits = families.cache_hits
        self.cache_misses = families.cache_misses
        self.cache_hit_ratio = families.cache_hit_ratio
        self.event_queue_depth = families.event_queue_depth
        self.event_spool_bytes = families.event_spool_bytes
        self.circuit_open = families.circuit_open

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
        """Read the event pipeline's gauges at scrape time (no polling thread); with several
        workers each writes its own values every ``REFRESH_SECONDS`` instead, since the worker
        answering a scrape cannot call the others' functions."""
        if self._refresher is None:
            self.event_queue_depth.set_function(queue_depth)
            self.event_spool_bytes.set_function(spool_bytes)
            return
        self._refresher.watch(
            [(self.event_queue_depth, queue_depth), (self.event_spool_bytes, spool_bytes)]
        )

    def exposition(self) -> bytes:
        """What ``/metrics`` serves, in Prometheus text format."""
        if self._refresher is not None:
            self._refresher.refresh()  # this worker's own gauges exactly current
        return generate_latest(self.registry)
