"""Shadow (mirror) traffic: challengers see a copy of each request and never answer it.

The copy is scheduled as a task after the served prediction is logged, so it never delays
the response; its prediction and latency are logged with ``is_shadow`` (errors too, with
the error text), which is how a challenger is judged on live traffic before it serves any.
At most ``max_in_flight`` copies run at once; beyond that copies are dropped and counted,
so a slow challenger can never exhaust the gateway's memory.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

import numpy as np

from abflow.events.sink import EventSink, prediction_row
from abflow.monitoring.metrics import GatewayMetrics
from abflow.serving.live import LiveExperiment

__all__ = ["MirrorHost", "ShadowMirror"]


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

    def mirror(
        self,
        live: LiveExperiment,
        index: int,
        rows: np.ndarray,
        request_id: str,
        unit_id: str,
    ) -> None:
        """Schedule a copy of the request for variant ``index``; returns at once."""
        variant = live.spec.variants[index].name
        if len(self._tasks) >= self.max_in_flight:
            self._gateway.metrics.shadow.labels(live.key, variant, "dropped").inc()
            return
        task = asyncio.get_running_loop().create_task(
            self._run(live, index, rows, request_id, unit_id)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(
        self,
        live: LiveExperiment,
        index: int,
        rows: np.ndarray,
        request_id: str,
        unit_id: str,
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
            gateway.events.append(
                "prediction",
                prediction_row(
                    request_id=request_id,
                    experiment_key=live.key,
                    phase=live.phase,
                    unit_id=unit_id,
                    variant=variant,
                    model_version=backend.version,
                    latency_ms=latency * 1000.0,
                    outputs=outputs,
                    features_hash=None,
                    is_shadow=True,
                    error=error,
                ),
            )
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
