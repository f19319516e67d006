"""A rollout plan is in force from its registration: the challenger gets nothing until the
first tick opens step 1, and no ramp ever sends a unit that saw the challenger back to the
control (SQLite and PostgreSQL)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from rollout_traffic import Clock, expose, log_outcomes

from abflow.errors import InvalidSpecError
from abflow.rollout.controller import promote, rollout_status, tick
from abflow.spec import parse_experiment
from abflow.store import EventStore

HOUR = 3600.0
KEY = "ranker-v2"
# The spec of docs/rollout.md as written (no weights); min_samples scaled to 10,000 users.
SPEC: dict[str, Any] = {
    "key": KEY,
    "variants": [
        {"name": "control", "model": "models:/ranker@champion"},
        {"name": "challenger", "model": "models:/ranker@challenger"},
    ],
    "metrics": [
        {"name": "purchase", "kind": "conversion", "event": "purchase", "role": "primary"},
        {
            "name": "complaints",
            "kind": "conversion",
            "event": "complaint",
            "role": "guardrail",
            "direction": "decrease",
            "margin": 0.10,
        },
    ],
    "rollout": {
        "steps": [
            {"traffic": 0.05, "min_duration_hours": 24, "min_samples": 200},
            {"traffic": 0.25, "min_duration_hours": 24, "min_samples": 500},
            {"traffic": 0.50, "min_duration_hours": 48, "min_samples": 1000},
        ],
        "guardrails": ["complaints"],
    },
}
UNITS = [f"user-{i}" for i in range(10_000)]
SAME = {"control": 0.05, "challenger": 0.05}


def spec_with(**changes: Any) -> Any:
    data = copy.deepcopy(SPEC) | changes
    return parse_experiment(data)


def stage(store: EventStore, clock: Clock, seed: int) -> dict[str, str]:
    """Every user comes back once in the current phase; healthy outcomes are logged."""
    routed = expose(store, KEY, UNITS, at=clock.now)
    log_outcomes(store, KEY, routed, name="complaint", rates=SAME, at=clock.now, seed=seed)
    return routed


def test_whole_plan_never_moves_a_challenger_unit_back(
    ramp_store: EventStore, ramp_clock: Clock
) -> None:
    store, clock = ramp_store, ramp_clock
    store.register_experiment(spec_with())
    status = rollout_status(store, KEY)
    assert (status.state.stage, status.weights) == ("not_started", [1.0, 0.0])

    history: dict[str, list[str]] = {unit: [] for unit in UNITS}
    challenger_units: list[int] = []
    actions: list[str] = []

    def record(routed: dict[str, str]) -> None:
        for unit, variant in routed.items():
            history[unit].append(variant)
        challenger_units.append(sum(v == "challenger" for v in routed.values()))

    record(stage(store, clock, seed=0))  # registered, no tick yet
    actions.append(tick(store, KEY, now=clock.now).action)
    for seed in (1, 2, 3):
        record(stage(store, clock, seed=seed))
        clock.now += 49 * HOUR
        actions.append(tick(store, KEY, now=clock.now).action)
    promote(store, KEY, actor="user:test", reason="plan done")
    record(expose(store, KEY, UNITS, at=clock.now))

    assert actions == ["started", "advanced", "advanced", "held"]
    moved_back = sum(
        "challenger" in seen and "control" in seen[seen.index("challenger") :]
        for seen in history.values()
    )
    assert moved_back == 0
    assert challenger_units[0] == 0  # the plan is in force before the first tick
    assert challenger_units[-1] == 10_000
    for count, share in zip(challenger_units[1:4], (0.05, 0.25, 0.50), strict=True):
        assert abs(count - share * 10_000) < 200, challenger_units
    assert challenger_units == sorted(challenger_units)


def test_registering_the_spec_again_keeps_the_rollout_split(
    ramp_store: EventStore, ramp_clock: Clock
) -> None:
    store, clock = ramp_store, ramp_clock
    store.register_experiment(spec_with())
    assert tick(store, KEY, now=clock.now).action == "started"
    stage(store, clock, seed=4)
    clock.now += 25 * HOUR
    assert tick(store, KEY, now=clock.now).action == "advanced"
    phase = store.current_phase(KEY).phase
    again = store.register_experiment(spec_with(name="ranker v2 (file edited)"))
    assert again.spec.effective_weights == [0.75, 0.25]
    assert store.current_phase(KEY).phase == phase  # same split, same phase


def test_registration_refuses_weights_that_contradict_the_plan(
    ramp_store: EventStore, ramp_clock: Clock
) -> None:
    store, clock = ramp_store, ramp_clock
    with pytest.raises(InvalidSpecError, match=r"weights: weights \[0\.5, 0\.5\]"):
        store.register_experiment(spec_with(weights=[0.5, 0.5]))
    store.register_experiment(spec_with())
    assert tick(store, KEY, now=clock.now).action == "started"
    stage(store, clock, seed=5)
    clock.now += 25 * HOUR
    assert tick(store, KEY, now=clock.now).action == "advanced"  # 25 % now
    with pytest.raises(InvalidSpecError, match="not a position of the rollout plan"):
        store.register_experiment(spec_with(weights=[0.7, 0.3]))
    with pytest.raises(InvalidSpecError, match=r"from 0\.25 to 0\.05"):
        store.register_experiment(spec_with(weights=[0.95, 0.05]))
    assert store.get_experiment(KEY).spec.effective_weights == [0.75, 0.25]
    rolled = store.register_experiment(spec_with(weights=[1.0, 0.0]))  # a rollback is allowed
    assert rolled.spec.effective_weights == [1.0, 0.0]


def test_a_tick_never_lowers_a_share_set_by_hand(ramp_store: EventStore, ramp_clock: Clock) -> None:
    store, clock = ramp_store, ramp_clock
    store.register_experiment(spec_with())
    with pytest.raises(InvalidSpecError, match="before the rollout has started"):
        store.register_experiment(spec_with(weights=[0.5, 0.5]))  # step 3's split, too early
    assert tick(store, KEY, now=clock.now).action == "started"
    store.register_experiment(spec_with(weights=[0.5, 0.5]))  # step 3's split, by hand
    stage(store, clock, seed=6)
    clock.now += 25 * HOUR
    held = tick(store, KEY, now=clock.now)
    assert held.action == "held"
    assert "would move units that saw it back to the control" in held.reasons[-1]
    assert store.get_experiment(KEY).spec.effective_weights == [0.5, 0.5]
    moves = [e.action for e in store.audit_entries(KEY) if e.action.startswith("rollout.")]
    assert moves == ["rollout.step"]
