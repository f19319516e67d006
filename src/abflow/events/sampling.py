"""Monitoring samples: each variant's served features and scores, a reservoir per window.

The gateway offers every served row; a row is kept with probability ``sample_rate`` and, per
(experiment, variant, window), only while it is among the ``max_samples_per_window`` rows of
lowest priority seen so far (bottom-k sampling: the priority is the row's uniform draw). A
kept row is written at once as a ``sample`` event, through the same journal as the
exposure and prediction of its request (durable before the answer leaves), so nothing
waits in memory for the window to end and a crash loses no sample.

A window's sample is then its rows of lowest priority: a uniform sample of the window's
rows, of at most ``max_samples_per_window`` rows, however many replicas wrote them (the
k lowest of a union are the k lowest of each part's k lowest). A replica writes about
``k * (1 + ln(n * rate / k))`` rows for ``n`` served rows, so the store holds a few times
the reservoir, never a share of the traffic.

Cost on the request path: one ``random()`` call and a comparison per row; a kept row costs
a heap update and one small event (measured in docs/monitoring.md).
"""

from __future__ import annotations

import heapq
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from abflow.events.sink import new_id
from abflow.spec import MonitoringSpec

__all__ = ["DEFAULT_MONITORING", "FeatureSampler", "sample_row", "window_start"]

DEFAULT_MONITORING = MonitoringSpec()
"""What an experiment without a ``monitoring`` section gets: 1 % of rows, hourly windows."""


def window_start(ts: float, window_hours: float) -> float:
    """Start of the window holding ``ts``: windows are aligned on the epoch (hours on UTC)."""
    width = window_hours * 3600.0
    return math.floor(ts / width) * width


@dataclass(slots=True)
class _Reservoir:
    start: float
    priorities: list[float] = field(default_factory=list)
    """Negated priorities of the kept rows: a max-heap of the lowest ones."""


def sample_row(
    *,
    experiment_key: str,
    phase: int,
    variant: str,
    model_version: str,
    request_id: str,
    features: np.ndarray,
    output: Any,
    window: float,
    priority: float,
    ts: float,
) -> dict[str, Any]:
    """One ``sample`` event: the row's features (a JSON list) and its score when it is one."""
    score = (
        float(output) if isinstance(output, int | float) and not isinstance(output, bool) else None
    )
    return {
        "event_id": new_id(),
        "ts": ts,
        "request_id": request_id,
        "experiment_key": experiment_key,
        "phase": phase,
        "variant": variant,
        "model_version": model_version,
        "window_start": window,
        "priority": priority,
        "features_json": orjson.dumps(features, option=orjson.OPT_SERIALIZE_NUMPY).decode(),
        "score": score,
    }


class FeatureSampler:
    """Decides which served rows become ``sample`` events; one per gateway process.

    Not thread-safe: the gateway calls it from its event loop only.
    """

    def __init__(self, *, seed: int | None = None, clock: Callable[[], float] = time.time) -> None:
        self._random = random.Random(seed)
        self.clock = clock
        """Where a row's time and window come from (a simulation sets its own)."""
        self._reservoirs: dict[tuple[str, str], _Reservoir] = {}

    def offer(
        self,
        *,
        config: MonitoringSpec | None,
        experiment_key: str,
        phase: int,
        variant: str,
        model_version: str,
        request_id: str,
        rows: np.ndarray,
        outputs: list[Any],
        ts: float | None = None,
    ) -> list[dict[str, Any]]:
        """The sample events for one request's rows (usually none)."""
        config = config or DEFAULT_MONITORING
        rate = config.sample_rate
        draw = self._random.random
        picked = [(i, u) for i in range(rows.shape[0]) if (u := draw()) < rate]
        if not picked:
            return []
        now = self.clock() if ts is None else ts
        start = window_start(now, config.window_hours)
        reservoir = self._reservoir(experiment_key, variant, start)
        heap = reservoir.priorities
        k = config.max_samples_per_window
        events = []
        for i, u in picked:
            if len(heap) < k:
                heapq.heappush(heap, -u)
            elif u < -heap[0]:
                heapq.heapreplace(heap, -u)
            else:
                continue
            events.append(
                sample_row(
                    experiment_key=experiment_key,
                    phase=phase,
                    variant=variant,
                    model_version=model_version,
                    request_id=request_id,
                    features=rows[i],
                    output=outputs[i] if i < len(outputs) else None,
                    window=start,
                    priority=u,
                    ts=now,
                )
            )
        return events

    def _reservoir(self, experiment_key: str, variant: str, start: float) -> _Reservoir:
        key = (experiment_key, variant)
        reservoir = self._reservoirs.get(key)
        if reservoir is None or reservoir.start != start:
            reservoir = _Reservoir(start)  # a new window: the last one's heap is dropped
            self._reservoirs[key] = reservoir
        return reservoir
