"""Two ways a registration could undo the ramp's promise, refused or held (SQLite and
PostgreSQL): a plan added over a live A/B test whose challenger already has traffic, and a
challenger set to 0 % by hand in the middle of a ramp."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from rollout_traffic import Clock, expose, log_outcomes
from test_rollout_plan_in_force import KEY, SPEC

from abflow.errors import InvalidSpecError
from abflow.rollout.controller import tick
from abflow.spec import parse_experiment
from abflow.store import EventStore

HOUR = 3600.0
UNITS = [f"user-{i}" for i in range(2_000)]


def spec_with(**changes: Any) -> Any:
    return parse_experiment(copy.deepcopy(SPEC) | changes)


def test_a_plan_over_a_live_ab_test_is_refused(ramp_store: EventStore) -> None:
    store = ramp_store
    unplanned = {k: v for k, v in SPEC.items() if k != "rollout"} | {"weights": [0.5, 0.5]}
    store.register_experiment(parse_experiment(copy.deepcopy(unplanned)))
    routed = expose(store, KEY, UNITS, at=1.0)
    exposed = [unit for unit, variant in routed.items() if variant == "challenger"]
    assert 900 < len(exposed) < 1_100

    with pytest.raises(InvalidSpecError, match=r"rollout: the challenger already serves 0\.5"):
        store.register_experiment(spec_with())

    # Refused before anything was stored: every unit that saw the challenger still does.
    assert store.get_experiment(KEY).spec.effective_weights == [0.5, 0.5]
    again = expose(store, KEY, exposed, at=2.0)
    assert sum(variant == "challenger" for variant in again.values()) == len(exposed)


def test_a_ramp_stopped_by_hand_is_never_restarted_by_the_controller(
    ramp_store: EventStore, ramp_clock: Clock
) -> None:
    store, clock = ramp_store, ramp_clock
    store.register_experiment(spec_with())
    assert tick(store, KEY, now=clock.now).action == "started"
    routed = expose(store, KEY, UNITS, at=clock.now)
    rates = {"control": 0.05, "challenger": 0.05}
    log_outcomes(store, KEY, routed, name="complaint", rates=rates, at=clock.now, seed=1)
    store.register_experiment(spec_with(weights=[1.0, 0.0]))  # an operator stops it

    for hours in (25, 50, 100):  # long past every step's duration
        clock.now += hours * HOUR
        held = tick(store, KEY, now=clock.now)
        assert held.action == "held"
        assert "set to 0 % outside the rollout" in held.reasons[0]
    assert store.get_experiment(KEY).spec.effective_weights == [1.0, 0.0]
