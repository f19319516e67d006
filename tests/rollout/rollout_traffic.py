"""Traffic for rollout tests, logged as the gateway logs it: each unit routed by
``abflow.assign`` with the spec live in the store, an exposure in the current phase, and
outcomes after it."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping

import numpy as np

from abflow.routing import assign
from abflow.store import EventStore

_events = itertools.count()


class Clock:
    """A settable clock for the store and the controller."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def expose(store: EventStore, key: str, units: Iterable[str], *, at: float) -> dict[str, str]:
    """Route ``units`` with the live spec and log one exposure each; unit -> variant."""
    live = store.get_experiment(key).spec
    phase = store.current_phase(key).phase
    routed: dict[str, str] = {}
    rows = []
    for unit in units:
        variant = assign(live, {"user_id": unit}).variant
        assert variant is not None
        routed[unit] = variant
        rows.append(
            {"event_id": f"x{next(_events)}", "ts": at, "experiment_key": key, "phase": phase,
             "unit_id": unit, "variant": variant, "attributes_json": None}
        )  # fmt: skip
    store.write_events("exposure", rows)
    return routed


def log_outcomes(
    store: EventStore,
    key: str,
    routed: Mapping[str, str],
    *,
    name: str,
    rates: Mapping[str, float],
    at: float,
    seed: int,
) -> dict[str, int]:
    """Log outcome ``name`` for each unit with its variant's probability; count per variant."""
    rng = np.random.default_rng(seed)
    counts = dict.fromkeys(rates, 0)
    rows = []
    for unit, variant in routed.items():
        if rng.random() < rates[variant]:
            counts[variant] += 1
            rows.append(
                {"event_id": f"o{next(_events)}", "ts": at + 1, "unit_id": unit, "name": name,
                 "value": 1.0, "request_id": None, "experiment_key": key}
            )  # fmt: skip
    if rows:
        store.write_events("outcome", rows)
    return counts


def log_exact_outcomes(
    store: EventStore, key: str, units: Iterable[str], *, name: str, at: float
) -> int:
    """Log outcome ``name`` once for each of ``units``; how many."""
    rows = [
        {"event_id": f"o{next(_events)}", "ts": at + 1, "unit_id": unit, "name": name,
         "value": 1.0, "request_id": None, "experiment_key": key}
        for unit in units
    ]  # fmt: skip
    if rows:
        store.write_events("outcome", rows)
    return len(rows)
