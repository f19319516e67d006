"""Which remote model servers fail now: for ``/readyz``, answered from memory.

Two sources, one state: every call and every probe moves the backend's circuit breaker
(consecutive failures, open or closed), so a backend is failing when its last call or probe
failed or its circuit is not closed. Each ``/readyz`` also starts, in the background, a
probe of every remote backend not probed for ``interval_seconds`` (one row, the registration
probe's; at most one in flight per backend), so a challenger that gets no traffic is still
checked and one that recovered is seen to. ``/readyz`` itself never waits on a model server.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from abflow.errors import ConfigError
from abflow.serving.backends import BackendOptions, GuardedBackend
from abflow.serving.backends.failure import MAX_ERROR_BODY
from abflow.serving.backends.probe import ProbeResult, is_remote, probe, probe_row, refusal
from abflow.serving.gateway import BackendCheck, Gateway
from abflow.spec import ExperimentSpec

__all__ = ["RemoteHealth"]

logger = logging.getLogger(__name__)

DEFAULT_INTERVAL_SECONDS = 30.0


@dataclass
class _Remote:
    backend: GuardedBackend
    width: int | None
    variants: list[str] = field(default_factory=list)


class RemoteHealth:
    """The last probe of each remote backend, and the background probes that refresh it."""

    def __init__(
        self,
        *,
        interval_seconds: float = DEFAULT_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval_seconds = interval_seconds
        self._clock = clock
        self._last: dict[str, ProbeResult] = {}
        self._started: dict[str, float] = {}  # reference -> clock() of the last probe started
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def record(self, reference: str, result: ProbeResult) -> None:
        """Keep a probe's outcome (registration probes report here too)."""
        self._last[reference] = result
        self._started.setdefault(reference, self._clock())

    def failing(
        self, gateway: Gateway, options: Mapping[str, BackendOptions]
    ) -> list[dict[str, Any]]:
        """The remote backends of live experiments that fail now, one entry per server;
        due background probes are started (call on the event loop)."""
        remotes: dict[str, _Remote] = {}
        for key, live in sorted(gateway.experiments.items()):
            for variant, backend in zip(live.spec.variants, live.backends, strict=True):
                if not is_remote(variant.model):
                    continue
                remote = remotes.setdefault(variant.model, _Remote(backend, live.n_features))
                remote.variants.append(f"{key}/{variant.name}")
        found = []
        for reference, remote in remotes.items():
            self._refresh(reference, remote, options.get(reference))
            breaker = remote.backend.breaker
            if breaker.state == "closed" and breaker.consecutive_failures == 0:
                continue
            entry: dict[str, Any] = {
                "backend": remote.backend.reference,
                "variants": remote.variants,
                "circuit": breaker.state,
                "consecutive_failures": breaker.consecutive_failures,
            }
            last = self._last.get(reference)
            if last is not None and not last.is_ok:
                entry["reason"] = last.reason
                entry["error"] = (last.error or "")[: MAX_ERROR_BODY + 200]
                entry["probed_at"] = dt.datetime.fromtimestamp(last.checked_at, dt.UTC).isoformat()
            found.append(entry)
        return found

    def _refresh(self, reference: str, remote: _Remote, options: BackendOptions | None) -> None:
        now = self._clock()
        started = self._started.get(reference)
        if reference in self._tasks or (
            started is not None and now - started < self.interval_seconds
        ):
            return
        self._started[reference] = now
        task = asyncio.get_running_loop().create_task(self._probe(reference, remote, options))
        self._tasks[reference] = task
        task.add_done_callback(lambda _: self._tasks.pop(reference, None))

    async def _probe(self, reference: str, remote: _Remote, options: BackendOptions | None) -> None:
        backend = remote.backend
        try:
            chosen = probe_row(options.example if options else None, backend, remote.width)
        except ConfigError as exc:
            self._last[reference] = ProbeResult(
                backend.reference, "the configured example", "error", str(exc), time.time()
            )
            return
        if chosen is None:
            return  # no row width known: calls alone tell
        self._last[reference] = await probe(backend, *chosen)

    async def aclose(self) -> None:
        """Stop the probes in flight (at shutdown, before the backends close)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def registration_check(
        self,
        spec: ExperimentSpec,
        options: Mapping[str, BackendOptions],
        loop: asyncio.AbstractEventLoop,
    ) -> BackendCheck:
        """The check :meth:`Gateway.add_experiment` runs (in a worker thread) on the
        backends a spec brings in: each new remote one gets a probe row on ``loop``; a
        refusal raises the 422 (and the new backends are closed)."""

        def check(backends: tuple[GuardedBackend, ...], new: frozenset[int]) -> None:
            future = asyncio.run_coroutine_threadsafe(
                self._check(spec, options, backends, new), loop
            )
            future.result()

        return check

    async def _check(
        self,
        spec: ExperimentSpec,
        options: Mapping[str, BackendOptions],
        backends: tuple[GuardedBackend, ...],
        new: frozenset[int],
    ) -> None:
        try:
            width = next((b.n_features for b in backends if b.n_features), None)
            jobs: list[tuple[int, str, np.ndarray, str]] = []
            for index in sorted(new):
                reference = spec.variants[index].model
                if not is_remote(reference):
                    continue
                opts = options.get(reference)
                chosen = probe_row(opts.example if opts else None, backends[index], width)
                if chosen is None:
                    logger.info(
                        "experiment %s variant %s: not probed (no example and no row width)",
                        spec.key,
                        spec.variants[index].name,
                    )
                    continue
                jobs.append((index, reference, *chosen))
            results = await asyncio.gather(
                *(probe(backends[index], row, source) for index, _, row, source in jobs)
            )
            for (index, reference, _, _), result in zip(jobs, results, strict=True):
                self.record(reference, result)
                if not result.is_ok and not result.is_refusal:
                    logger.warning(
                        "experiment %s variant %s: registered, but its model server failed "
                        "the probe (%s): %s",
                        spec.key,
                        spec.variants[index].name,
                        result.reason,
                        result.error,
                    )
            error = refusal([(index, r) for (index, *_), r in zip(jobs, results, strict=True)])
            if error is not None:
                raise error
        except BaseException:
            for index in new:  # never served: the gateway forgets them
                await backends[index].aclose()
            raise
