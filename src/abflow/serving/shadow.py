"""Shadow (mirror) traffic: challengers see a copy of each request and never answer it.

The copy is scheduled as a task after the served prediction is logged, so it never delays
the response; its prediction and latency are logged with ``is_shadow`` (errors too, with
the error text), which is how a challenger is judged on live traffic before it serves any.
At most ``max_in_flight`` copies run at once; beyond that copies are dropped and counted,
so a slow challenger can never exhaust the gateway's memory.

Which variants are mirrored is the union of the gateway config's ``shadow`` entry and the
spec's ``shadow.variants`` (a rollout's shadow step writes the challenger there); the spec's
``shadow.share`` samples the requests copied, by a hash of the request id (or of the unit id
with ``by: unit``) under the experiment's seed, so replicas agree on the sample and the
paired analysis, which reads only requests both models answered, sees an unbiased subset.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Protocol

import numpy as np

from abflow.events.sink import EventSink, PredictionEvent
from abflow.monitoring.metrics import GatewayMetrics
from abflow.routing.hashing import bucket_hash
from abflow.serving.live import LiveExperiment
from abflow.spec import ExperimentSpec

__all__ = ["MirrorHost", "ShadowMirror", "is_sampled", "mirrored_variants"]

SAMPLE_SEED_PREFIX = "__shadow__"
"""Prefixed to the experiment's seed: the sample is independent of the variant assignment."""


def mirrored_variants(spec: ExperimentSpec, configured: tuple[str, ...] = ()) -> frozenset[int]:
    """Indices of the variants that get shadow copies: the config's and the spec's."""
    names = spec.variant_names
    listed = [*configured, *(spec.shadow.variants if spec.shadow is not None else ())]
    return frozenset(names.index(name) for name in listed if name in names[1:])


def is_sampled(spec: ExperimentSpec, request_id: str, unit_id: str) -> bool:
    """Whether this request is among the ``shadow.share`` that are mirrored (deterministic)."""
    shadow = spec.shadow
    if shadow is None or shadow.share >= 1.0:
        return True
    value = unit_id if shadow.by == "unit" else request_id
    bucket = bucket_hash(SAMPLE_SEED_PREFIX + spec.hash_seed, value)
    return bucket is not None and bucket < shadow.share


class MirrorHost(Protocol):
    """What the mirror reads from its gateway, at each copy (the app swaps the event sink
    in once the durable log is open, so it is not captured at construction)."""

    @property
    def metrics(self) -> GatewayMetrics: ...

    @property
    def events(self) -> EventSink: ...


class ShadowMirror:
    """Runs shadow predictions in the background and logs them."""

    def __init__(self, gateway: MirrorHost, *, max_in_flight: int = 256) -> None:
        self._gateway = gateway
        self.max_in_flight = max_in_flight
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def mirror_request(
        self, live: LiveExperiment, rows: np.ndarray, served: PredictionEvent
    ) -> None:
        """Schedule copies for every mirrored variant, if the request is in the sample; each
        scores the served rows and is logged as the served prediction's shadow."""
        if not live.shadow or not is_sampled(live.spec, served.request_id, served.unit_id):
            return
        for index in sorted(live.shadow):
            self.mirror(live, index, rows, served)

    def mirror(
        self, live: LiveExperiment, index: int, rows: np.ndarray, served: PredictionEvent
    ) -> None:
        """Schedule a copy of the request for variant ``index``; returns at once."""
        variant = live.spec.variants[index].name
        if len(self._tasks) >= self.max_in_flight:
            self._gateway.metrics.shadow.labels(live.key, variant, "dropped").inc()
            return
        task = asyncio.get_running_loop().create_task(self._run(live, index, rows, served))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(
        self, live: LiveExperiment, index: int, rows: np.ndarray, served: PredictionEvent
    ) -> None:
        gateway = self._gateway
        backend = live.backends[index]
        variant = live.spec.variants[index].name
        started = time.perf_counter()
        outputs: list[object] | None = None
        error: str | None = None
        try:
            outputs = await backend.predict(rows)
        except Exception as exc:  # a shadow failure is data, never an outage
            error = f"{type(exc).__name__}: {exc}"
        latency = time.perf_counter() - started
        outcome = "ok" if error is None else "error"
        gateway.metrics.shadow.labels(live.key, variant, outcome).inc()
        try:
            copy = dataclasses.replace(
                served,
                variant=variant,
                model_version=backend.version,
                latency_ms=latency * 1000.0,
                outputs=outputs,
                is_fallback=False,
                is_shadow=True,
                error=error,
                ts=None,
            )
            gateway.events.append("prediction", copy.row())
        except Exception:  # the event log is closing: the shadow copy is best effort
            gateway.metrics.shadow.labels(live.key, variant, "dropped").inc()

    async def drain(self, timeout_seconds: float) -> None:
        """Wait up to ``timeout_seconds`` for running copies, then cancel the rest."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout_seconds)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
