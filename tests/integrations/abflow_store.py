"""A real abflow store for the orchestration tests, written with the main environment's abflow.

Three experiments, each 300 units per arm routed by the registered spec:
- ``gate-pass``: the challenger converts 40 % against 20 %, complaints 30 % in both arms (a
  guardrail with a 30 % margin that 300 units per arm can judge, so it is not underpowered):
  the gate passes and the verdict is ``ship``.
- ``gate-fail``: the same conversions, complaints 60 % against 30 %: the guardrail fails, the
  gate fails and the verdict is ``keep_control``.
- ``ramp``: a rollout plan and no events yet; the first tick starts the ramp.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from abflow.routing import assign
from abflow.spec import parse_experiment
from abflow.store import EventStore

PER_ARM = 300
PURCHASES = {"control": 60, "challenger": 120}
COMPLAINTS = {"gate-pass": {"control": 90, "challenger": 90}, "gate-fail": {"control": 90, "challenger": 180}}  # fmt: skip
NOW = 1_790_000_000.0


def _spec(key: str, *, rollout: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "key": key,
        "variants": [
            {"name": "control", "model": "models:/ranker/1"},
            {"name": "challenger", "model": "models:/ranker/2"},
        ],
        "analysis": {"method": "frequentist"},
        "metrics": [
            {"name": "purchase", "kind": "conversion", "event": "purchase", "role": "primary"},
            {"name": "complaints", "kind": "conversion", "event": "complaint",
             "role": "guardrail", "direction": "decrease", "margin": 0.30},
        ],
    }  # fmt: skip
    if rollout:
        spec["rollout"] = {"steps": [{"traffic": 0.1, "min_duration_hours": 1, "min_samples": 10}]}
    else:
        spec["weights"] = [0.5, 0.5]
    return spec


def _arms(store: EventStore, key: str) -> dict[str, list[str]]:
    spec = store.get_experiment(key).spec
    chosen: dict[str, list[str]] = {"control": [], "challenger": []}
    for i in range(100 * PER_ARM):
        unit = f"{key}-u{i}"
        variant = assign(spec, {"user_id": unit}).variant
        assert variant is not None
        if len(chosen[variant]) < PER_ARM:
            chosen[variant].append(unit)
        if min(len(units) for units in chosen.values()) == PER_ARM:
            return chosen
    msg = f"could not route {PER_ARM} units to each arm of {key}"
    raise AssertionError(msg)


def build_store(folder: Path) -> str:
    """Write the three experiments into a new SQLite store under ``folder``; its URL."""
    url = f"sqlite:///{folder / 'store.db'}"
    ids = itertools.count()
    store = EventStore.open(url, upgrade=True, clock=lambda: NOW)
    try:
        for key, complaints in COMPLAINTS.items():
            store.register_experiment(parse_experiment(_spec(key, rollout=False)))
            phase = store.current_phase(key).phase
            chosen = _arms(store, key)
            exposures = [
                {"event_id": f"x{next(ids)}", "ts": NOW, "experiment_key": key, "phase": phase,
                 "unit_id": unit, "variant": variant, "attributes_json": None}
                for variant, units in chosen.items() for unit in units
            ]  # fmt: skip
            store.write_events("exposure", exposures)
            outcomes = [
                {"event_id": f"o{next(ids)}", "ts": NOW + 1, "unit_id": unit, "name": name,
                 "value": 1.0, "request_id": None, "experiment_key": key}
                for name, counts in (("purchase", PURCHASES), ("complaint", complaints))
                for variant, units in chosen.items() for unit in units[: counts[variant]]
            ]  # fmt: skip
            store.write_events("outcome", outcomes)
        store.register_experiment(parse_experiment(_spec("ramp", rollout=True)))
    finally:
        store.close()
    return url
