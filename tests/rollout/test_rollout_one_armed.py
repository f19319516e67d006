"""Harm visible in one arm only rolls the challenger back, and undefined evidence never stops
a tick: it is written as JSON null (real ticks on SQLite and PostgreSQL)."""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

import pytest
from rollout_traffic import Clock, expose, log_exact_outcomes
from typer.testing import CliRunner

from abflow.rollout.controller import tick
from abflow.rollout.guardrails import permutation_p_value
from abflow.routing import assign
from abflow.spec import parse_experiment
from abflow.store import EventStore

HOUR = 3600.0
KEY = "harm"
SPEC: dict[str, Any] = {
    "key": KEY,
    "variants": [
        {"name": "control", "model": "models:/ranker/1"},
        {"name": "challenger", "model": "models:/ranker/2"},
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
            {"traffic": 0.5, "min_duration_hours": 1, "min_samples": 10},
            {"traffic": 0.75, "min_duration_hours": 1, "min_samples": 10},
        ],
        "guardrails": ["complaints"],
    },
}
_ids = itertools.count()


def start(store: EventStore, clock: Clock) -> None:
    store.register_experiment(parse_experiment(SPEC))
    assert tick(store, KEY, now=clock.now).action == "started"


def exact_arms(store: EventStore, clock: Clock, per_arm: int) -> dict[str, list[str]]:
    """Exactly ``per_arm`` exposed units in each arm (each routed by the live spec)."""
    chosen: dict[str, list[str]] = {"control": [], "challenger": []}
    candidates = (f"u{next(_ids)}" for _ in range(100 * per_arm))
    picked = []
    live = store.get_experiment(KEY).spec
    for unit in candidates:
        variant = assign(live, {"user_id": unit}).variant
        assert variant is not None
        if len(chosen[variant]) < per_arm:
            chosen[variant].append(unit)
            picked.append(unit)
        if min(len(units) for units in chosen.values()) == per_arm:
            break
    routed = expose(store, KEY, picked, at=clock.now)
    assert sorted(routed.values()).count("challenger") == per_arm
    return chosen


def assert_audit_is_plain_json(store: EventStore) -> dict[str, Any]:
    """The last rollout entry's payload is finite JSON and the chain verifies."""
    entry = [e for e in store.audit_entries(KEY) if e.action.startswith("rollout.")][-1]
    text = json.dumps(entry.payload, allow_nan=False)  # raises on NaN or infinity
    assert store.verify_audit() == []
    payload: dict[str, Any] = json.loads(text)
    return payload


def test_harm_in_the_challenger_arm_only_rolls_back(
    ramp_store: EventStore, ramp_clock: Clock
) -> None:
    store, clock = ramp_store, ramp_clock
    start(store, clock)
    chosen = exact_arms(store, clock, 300)
    complaints = log_exact_outcomes(
        store, KEY, chosen["challenger"][:90], name="complaint", at=clock.now
    )
    clock.now += 2 * HOUR
    result = tick(store, KEY, now=clock.now)

    assert complaints == 90  # 30 % of 300 challenger units, 0 of 300 control units
    assert result.action == "rolled_back"
    assert store.get_experiment(KEY).spec.effective_weights == [1.0, 0.0]
    [guardrail] = result.evidence["guardrails"]
    assert guardrail["status"] == "fail"
    assert guardrail["relative"] is False
    assert guardrail["basis"] == "absolute difference (the control's value is 0)"
    assert guardrail["units"] == {"control": 300, "challenger": 300}
    assert guardrail["values"] == {"control": 0.0, "challenger": pytest.approx(0.3)}
    assert guardrail["effect"] == pytest.approx(0.3)
    low, high = guardrail["ci"]
    assert 0.24 < low < 0.3 < high < 0.36
    payload = assert_audit_is_plain_json(store)
    assert payload["evidence"]["guardrails"][0]["status"] == "fail"
    assert payload["reasons"][0].startswith("guardrail complaints fails: absolute effect +0.3")


def test_harm_in_every_challenger_unit_rolls_back_by_an_exact_test(
    ramp_store: EventStore, ramp_clock: Clock
) -> None:
    store, clock = ramp_store, ramp_clock
    start(store, clock)
    chosen = exact_arms(store, clock, 20)
    log_exact_outcomes(store, KEY, chosen["challenger"], name="complaint", at=clock.now)
    clock.now += 2 * HOUR
    result = tick(store, KEY, now=clock.now)

    assert result.action == "rolled_back"
    [guardrail] = result.evidence["guardrails"]
    assert guardrail["basis"] == "exact permutation test (neither arm varies)"
    assert guardrail["p_value"] == pytest.approx(1 / math.comb(40, 20))
    assert guardrail["error_code"] == "zero_variance"  # no standard error for a t-test
    payload = assert_audit_is_plain_json(store)
    assert payload["reasons"][0].startswith(
        "guardrail complaints fails: 0 (control) against 1, judged by exact permutation test"
    )  # not "absolute effect +nan [+nan, +nan]"


def test_every_challenger_unit_harmed_on_too_few_units_holds_the_step(
    ramp_store: EventStore, ramp_clock: Clock
) -> None:
    """Every challenger unit complained, none of the control's: 20 units a side roll back
    (above); 2 a side (p = 1 / C(4, 2) = 0.17) cannot call it, and the step advanced."""
    store, clock = ramp_store, ramp_clock
    spec = {**SPEC, "rollout": {**SPEC["rollout"], "steps": [
        {"traffic": 0.5, "min_duration_hours": 1, "min_samples": 1},
        {"traffic": 0.75, "min_duration_hours": 1, "min_samples": 1},
    ]}}  # fmt: skip
    store.register_experiment(parse_experiment(spec))
    assert tick(store, KEY, now=clock.now).action == "started"
    chosen = exact_arms(store, clock, 2)
    log_exact_outcomes(store, KEY, chosen["challenger"], name="complaint", at=clock.now)
    clock.now += 2 * HOUR
    result = tick(store, KEY, now=clock.now)

    assert result.action == "held"
    assert result.reasons[0].startswith("cannot advance: guardrail complaints is underpowered")
    assert store.get_experiment(KEY).spec.effective_weights == [0.5, 0.5]


def test_no_outcomes_at_all_never_stops_a_healthy_ramp(
    ramp_store: EventStore, ramp_clock: Clock
) -> None:
    store, clock = ramp_store, ramp_clock
    start(store, clock)
    exact_arms(store, clock, 50)
    clock.now += 2 * HOUR
    result = tick(store, KEY, now=clock.now)

    assert (result.action, result.step) == ("advanced", 1)
    assert store.get_experiment(KEY).spec.effective_weights == [0.25, 0.75]
    [guardrail] = result.evidence["guardrails"]
    assert guardrail["effect"] is None
    assert guardrail["ci"] == [None, None]
    assert guardrail["error_code"] == "zero_variance"
    assert guardrail["status"] == "inconclusive"  # 0 complaints in 50 units of each arm
    payload = assert_audit_is_plain_json(store)
    assert payload["evidence"]["units"] == {"control": 50, "challenger": 50}


def test_no_units_at_all_holds_with_null_evidence(
    ramp_store: EventStore, ramp_clock: Clock
) -> None:
    store, clock = ramp_store, ramp_clock
    start(store, clock)
    clock.now += 2 * HOUR
    result = tick(store, KEY, now=clock.now)

    assert result.action == "held"
    assert result.reasons == ["challenger has 0 of 10 units"]
    assert result.evidence["units"] == {"control": 0, "challenger": 0}
    assert result.evidence["guardrails"][0]["effect"] is None
    assert result.evidence["guardrails"][0]["error_code"] == "too_few_units"
    json.dumps(result.evidence, allow_nan=False)


def test_cli_tick_exits_1_after_a_one_armed_rollback(
    ramp_store_url: str, ramp_store: EventStore, ramp_clock: Clock
) -> None:
    from abflow.cli.main import app

    store, clock = ramp_store, ramp_clock
    start(store, clock)
    chosen = exact_arms(store, clock, 300)
    log_exact_outcomes(store, KEY, chosen["challenger"][:90], name="complaint", at=clock.now)
    clock.now += 2 * HOUR  # the CLI's own clock is later still (real time)

    runner = CliRunner()
    result = runner.invoke(
        app,
        ["rollout", "tick", KEY, "--store", ramp_store_url, "-f", "json", "--actor", "ci"],
        env={"COLUMNS": "1000"},
    )
    assert result.exit_code == 1, result.output
    printed = json.loads(result.output)
    assert printed["action"] == "rolled_back"
    assert printed["evidence"]["guardrails"][0]["status"] == "fail"
    payload = assert_audit_is_plain_json(store)
    assert payload["evidence"]["guardrails"][0]["values"]["control"] == 0.0


def test_permutation_p_value_matches_fishers_exact_test() -> None:
    from scipy.stats import fisher_exact

    for n_control, n_treatment in ((5, 5), (20, 20), (3, 40), (300, 300)):
        table = [[n_treatment, 0], [0, n_control]]  # events in treatment only, all units
        expected = fisher_exact(table, alternative="greater").pvalue
        assert permutation_p_value(n_control, n_treatment) == pytest.approx(expected, rel=1e-9)
    assert math.isnan(permutation_p_value(0, 5))


def test_a_rollback_by_hand_looks_again_when_a_tick_moved_first(
    ramp_store: EventStore, ramp_clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tick that wrote between the rollback's read and its write made the rollback exit 2
    ("the rollout moved meanwhile") and left the challenger its traffic."""
    from abflow.rollout.controller import rollback

    store = ramp_store
    start(store, ramp_clock)
    written = store.register_if_unchanged
    attempts: list[int] = []

    def a_tick_moves_first(*args: Any, **kwargs: Any) -> bool:
        attempts.append(1)
        return False if len(attempts) == 1 else written(*args, **kwargs)

    monkeypatch.setattr(store, "register_if_unchanged", a_tick_moves_first)
    result = rollback(store, KEY, actor="ops:ana", reason="pager")
    assert result.action == "rolled_back"
    assert len(attempts) == 2
    assert store.get_experiment(KEY).spec.effective_weights == [1.0, 0.0]


def test_the_spec_file_registered_again_cannot_undo_a_rollback(
    ramp_store: EventStore, ramp_clock: Clock
) -> None:
    """Explicit weights that are a step of the plan were taken after a rollback: the
    challenger served again, unwatched, and `rollout rollback` said it was already done."""
    from abflow.errors import InvalidSpecError
    from abflow.rollout.controller import rollback

    store = ramp_store
    start(store, ramp_clock)
    assert rollback(store, KEY, actor="ops:ana", reason="pager").action == "rolled_back"
    with pytest.raises(InvalidSpecError, match="its rollout was rolled back") as refused:
        store.register_experiment(parse_experiment({**SPEC, "weights": [0.5, 0.5]}))
    assert "abflow rollout reset" in str(refused.value)
    assert store.get_experiment(KEY).spec.effective_weights == [1.0, 0.0]
    store.register_experiment(parse_experiment({**SPEC, "weights": [1.0, 0.0]}))  # no traffic
    store.register_experiment(parse_experiment(SPEC))  # no weights: the stored split stays
    assert store.get_experiment(KEY).spec.effective_weights == [1.0, 0.0]
