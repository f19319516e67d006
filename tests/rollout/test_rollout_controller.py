"""The rollout controller on a real SQLite store: start, hold, advance, roll back, promote.

Traffic is simulated the way the gateway logs it: each unit routed by ``abflow.assign`` with
the spec of the current phase, an exposure per unit and outcomes after it, so the split,
the phases and the guardrail numbers are the real ones.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from typer.testing import CliRunner

from abflow.cli.main import app
from abflow.errors import InvalidArgumentError
from abflow.rollout.controller import promote, rollback, rollout_status, tick
from abflow.routing import assign
from abflow.spec import parse_experiment
from abflow.store import EventStore

HOUR = 3600.0
T0 = 1_790_000_000.0
SPEC: dict[str, Any] = {
    "key": "ranker-v2",
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
            "margin": 0.1,
        },
    ],
    "rollout": {
        "steps": [
            {"traffic": 0.2, "min_duration_hours": 1, "min_samples": 300},
            {"traffic": 0.5, "min_duration_hours": 1, "min_samples": 300},
        ],
        "guardrails": ["complaints"],
    },
}


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> EventStore:
    opened = EventStore.open(f"sqlite:///{tmp_path / 'store.db'}", clock=clock)
    return opened


_ids = itertools.count()


def simulate(
    store: EventStore, units: int, *, complaint: dict[str, float], seed: int, clock: Clock
) -> None:
    """Route ``units`` new units with the live spec and log exposures and outcomes."""
    rng = np.random.default_rng(seed)
    stored = store.get_experiment(SPEC["key"])
    phase = store.current_phase(SPEC["key"]).phase
    exposures, outcomes = [], []
    for _ in range(units):
        unit = f"u{next(_ids)}"
        variant = assign(stored.spec, {"user_id": unit}).variant
        ts = clock.now + rng.uniform(0, 60)
        exposures.append(
            {"event_id": f"e-{unit}", "ts": ts, "experiment_key": SPEC["key"], "phase": phase,
             "unit_id": unit, "variant": variant, "attributes_json": None}
        )  # fmt: skip
        for name, rate in (("complaint", complaint[variant]), ("purchase", 0.3)):
            if rng.random() < rate:
                outcomes.append(
                    {"event_id": f"o-{name}-{unit}", "ts": ts + 1, "unit_id": unit, "name": name,
                     "value": 1.0, "request_id": None, "experiment_key": SPEC["key"]}
                )  # fmt: skip
    store.write_events("exposure", exposures)
    store.write_events("outcome", outcomes)


SAME = {"control": 0.05, "challenger": 0.05}
WORSE = {"control": 0.05, "challenger": 0.25}


def weights(store: EventStore) -> list[float]:
    return store.get_experiment(SPEC["key"]).spec.effective_weights


def test_ramp_holds_advances_and_rolls_back_on_a_failing_guardrail(
    store: EventStore, clock: Clock
) -> None:
    store.register_experiment(parse_experiment(SPEC))
    started = tick(store, "ranker-v2", now=clock.now)
    assert (started.action, started.step) == ("started", 0)
    assert weights(store) == [0.8, 0.2]
    assert store.current_phase("ranker-v2").phase == 2  # a new step is a new phase

    simulate(store, 3000, complaint=SAME, seed=1, clock=clock)
    early = tick(store, "ranker-v2", now=clock.now + 0.5 * HOUR)
    assert early.action == "held"
    assert early.reasons == ["step has run 0.5 of 1 hours"]
    assert early.evidence["units"]["challenger"] >= 300

    clock.now += 2 * HOUR
    advanced = tick(store, "ranker-v2", now=clock.now)
    assert (advanced.action, advanced.step) == ("advanced", 1)
    assert weights(store) == [0.5, 0.5]
    assert store.current_phase("ranker-v2").phase == 3

    simulate(store, 3000, complaint=WORSE, seed=2, clock=clock)
    rolled = tick(store, "ranker-v2", now=clock.now + 2 * HOUR)
    assert rolled.action == "rolled_back"
    assert rolled.reasons[0].startswith("guardrail complaints fails")
    assert weights(store) == [1.0, 0.0]
    assert tick(store, "ranker-v2").action == "finished"

    moves = [e for e in store.audit_entries("ranker-v2") if e.action.startswith("rollout.")]
    assert [e.action for e in moves] == ["rollout.step", "rollout.step", "rollout.rolled_back"]
    evidence = moves[-1].payload["evidence"]
    assert evidence["phase"] == 3
    assert evidence["guardrails"][0]["metric"] == "complaints"
    assert evidence["guardrails"][0]["status"] == "fail"
    assert evidence["guardrails"][0]["effect"] > 0
    assert store.verify_audit() == []
    status = rollout_status(store, "ranker-v2")
    assert (status.state.stage, status.challenger, status.steps) == (
        "rolled_back",
        "challenger",
        [0.2, 0.5],
    )


def test_a_decision_re_runs_on_the_data_it_saw(
    tmp_path: Path, store: EventStore, clock: Clock
) -> None:
    """The evidence's window ends at the tick's clock, and ``abflow analyze --phase N
    --spec-version V --until END`` gives the decision's numbers again after more events: an
    exposure logged for the analysed phase while the tick analysed (the phase ends when the
    move is written, 5 s later here), and the next phase's."""
    store.register_experiment(parse_experiment(SPEC))
    tick(store, "ranker-v2", now=clock.now)
    simulate(store, 3000, complaint=WORSE, seed=12, clock=clock)
    decided_at = clock.now + 2 * HOUR
    clock.now = decided_at + 5  # the store's clock when the move is written
    rolled = tick(store, "ranker-v2", now=decided_at)
    assert rolled.action == "rolled_back"
    entry = [e for e in store.audit_entries("ranker-v2") if e.action.startswith("rollout.")][-1]
    evidence = entry.payload["evidence"]
    assert evidence["until"] == evidence["window"][1] == decided_at  # not the last event's

    straggler = {"event_id": "late", "ts": decided_at + 1, "experiment_key": "ranker-v2",
                 "phase": evidence["phase"], "unit_id": "late-unit", "variant": "challenger",
                 "attributes_json": None}  # fmt: skip
    store.write_events("exposure", [straggler])
    simulate(store, 500, complaint=SAME, seed=13, clock=clock)
    version = next(
        e.payload["version"]
        for e in store.audit_entries("ranker-v2")
        if e.action == "experiment.registered" and e.payload["spec_hash"] == evidence["spec_hash"]
    )
    args = ["analyze", "ranker-v2", "--store", store.url, "--format", "json"]
    args += ["--phase", str(evidence["phase"]), "--spec-version", str(version)]
    rerun = CliRunner().invoke(app, [*args, "--until", str(evidence["until"])])
    assert rerun.exit_code == 0, rerun.output
    report = orjson.loads(rerun.stdout)
    assert {v["variant"]: v["units"] for v in report["variants"]} == evidence["units"]
    complaints = next(m for m in report["metrics"] if m["name"] == "complaints")
    assert complaints["comparisons"][0]["effect"] == pytest.approx(
        evidence["guardrails"][0]["effect"], rel=1e-12
    )
    unbounded = CliRunner().invoke(app, args)
    assert unbounded.exit_code == 0, unbounded.output
    units = {v["variant"]: v["units"] for v in orjson.loads(unbounded.stdout)["variants"]}
    assert units["challenger"] == evidence["units"]["challenger"] + 1  # the straggler


def test_waits_for_samples_then_promotes_automatically(store: EventStore, clock: Clock) -> None:
    spec = {**SPEC, "rollout": {**SPEC["rollout"], "auto_promote": True}}
    store.register_experiment(parse_experiment(spec))
    tick(store, "ranker-v2", now=clock.now)
    simulate(store, 200, complaint=SAME, seed=3, clock=clock)
    thin = tick(store, "ranker-v2", now=clock.now + 5 * HOUR)
    assert thin.action == "held"
    assert thin.reasons[0].startswith("challenger has ")
    simulate(store, 3000, complaint=SAME, seed=4, clock=clock)
    clock.now += 2 * HOUR
    assert tick(store, "ranker-v2", now=clock.now).action == "advanced"
    simulate(store, 2000, complaint=SAME, seed=5, clock=clock)
    promoted = tick(store, "ranker-v2", now=clock.now + 2 * HOUR)
    assert promoted.action == "promoted"
    assert promoted.reasons[-1] == "auto_promote"
    assert weights(store) == [0.0, 1.0]


def test_without_auto_promote_the_last_step_waits_for_a_person(
    store: EventStore, clock: Clock
) -> None:
    spec = {
        **SPEC,
        "rollout": {"steps": [{"traffic": 0.5, "min_duration_hours": 0, "min_samples": 10}]},
    }
    store.register_experiment(parse_experiment(spec))
    tick(store, "ranker-v2", now=clock.now)
    simulate(store, 500, complaint=SAME, seed=6, clock=clock)
    waiting = tick(store, "ranker-v2", now=clock.now + HOUR)
    assert waiting.action == "held"
    assert "abflow rollout promote" in waiting.reasons[-1]
    promote(store, "ranker-v2", actor="user:alice", reason="looks good")
    assert weights(store) == [0.0, 1.0]
    entry = store.audit_entries("ranker-v2")[-1]
    assert (entry.actor, entry.action, entry.payload["reasons"]) == (
        "user:alice",
        "rollout.promoted",
        ["looks good"],
    )
    with pytest.raises(InvalidArgumentError, match="already promoted"):
        promote(store, "ranker-v2", actor="user:bob")
    assert rollback(store, "ranker-v2", actor="user:bob").action == "rolled_back"  # still open
    assert weights(store) == [1.0, 0.0]


def test_guardrail_failure_without_auto_rollback_holds_and_says_why(
    store: EventStore, clock: Clock
) -> None:
    spec = {**SPEC, "rollout": {**SPEC["rollout"], "auto_rollback": False}}
    store.register_experiment(parse_experiment(spec))
    tick(store, "ranker-v2", now=clock.now)
    simulate(store, 4000, complaint=WORSE, seed=7, clock=clock)
    held = tick(store, "ranker-v2", now=clock.now + 3 * HOUR)
    assert held.action == "held"
    assert held.reasons[0] == "guardrails fail, auto_rollback is off"
    assert weights(store) == [0.8, 0.2]


def test_a_move_made_meanwhile_is_not_repeated(store: EventStore, clock: Clock) -> None:
    store.register_experiment(parse_experiment(SPEC))
    tick(store, "ranker-v2", now=clock.now)
    simulate(store, 3000, complaint=SAME, seed=8, clock=clock)

    def analyse_while_someone_rolls_back(
        opened: EventStore, spec: Any, phase: int, until: float
    ) -> Any:
        from abflow.analysis import AnalysisOptions, analyze

        options = AnalysisOptions(phase=phase, until=until, timeline=False)
        result = analyze(opened, spec.key, options)
        rollback(opened, spec.key, actor="user:oncall", reason="pager")
        return result

    late = tick(
        store, "ranker-v2", now=clock.now + 2 * HOUR, analyse=analyse_while_someone_rolls_back
    )
    assert late.action == "held"
    assert "moved meanwhile" in late.reasons[0]
    assert weights(store) == [1.0, 0.0]  # the person's rollback stands


def test_an_experiment_without_a_plan_is_a_clear_error(store: EventStore) -> None:
    store.register_experiment(parse_experiment({k: v for k, v in SPEC.items() if k != "rollout"}))
    with pytest.raises(InvalidArgumentError, match="has no rollout plan"):
        tick(store, "ranker-v2")


def test_cli_tick_status_and_rollback(tmp_path: Path) -> None:
    from abflow.cli.main import app

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    with EventStore.open(url) as opened:
        opened.register_experiment(parse_experiment(SPEC))
    runner = CliRunner()
    env = {"COLUMNS": "200"}
    started = runner.invoke(
        app, ["rollout", "tick", "ranker-v2", "--store", url, "--actor", "ci"], env=env
    )
    assert started.exit_code == 0, started.output
    assert "ranker-v2: started (step 1)" in started.output
    status = runner.invoke(app, ["rollout", "status", "ranker-v2", "--store", url], env=env)
    assert "20% → 50%" in status.output
    assert "0.8, 0.2" in status.output
    back = runner.invoke(
        app, ["rollout", "rollback", "ranker-v2", "--store", url, "--reason", "alert"], env=env
    )
    assert back.exit_code == 0
    again = runner.invoke(
        app, ["rollout", "tick", "ranker-v2", "--store", url, "-f", "json"], env=env
    )
    assert '"action": "finished"' in again.output
    unknown = runner.invoke(app, ["rollout", "tick", "nope", "--store", url], env=env)
    assert unknown.exit_code == 2  # could not look: not 1, which means "rolled back"
    assert "nope" in unknown.output


def test_a_ramp_below_full_coverage_is_refused_because_units_would_leave_the_challenger(
    store: EventStore, clock: Clock
) -> None:
    """Spec weights route with GrowthBook's layout: below full coverage each step moves the
    challenger's window (20 % -> 50 % at coverage 0.5: [0.8, 0.9) -> [0.5, 0.75))."""
    spec = parse_experiment({**SPEC, "coverage": 0.5})
    step1 = spec.model_copy(update={"weights": [0.8, 0.2]})
    step2 = spec.model_copy(update={"weights": [0.5, 0.5]})
    units = [f"u{i}" for i in range(2000)]
    was = {u for u in units if assign(step1, {"user_id": u}).variant == "challenger"}
    kept = {u for u in was if assign(step2, {"user_id": u}).variant == "challenger"}
    assert was  # the reason for the refusal, shown on the real router:
    assert not kept

    store.register_experiment(spec)
    with pytest.raises(InvalidArgumentError, match=r"coverage 0\.5"):
        tick(store, "ranker-v2", now=clock.now)
    with pytest.raises(InvalidArgumentError, match=r"coverage 0\.5"):
        promote(store, "ranker-v2", actor="user:alice")
    assert weights(store) == [1.0, 0.0]  # nothing moved: a plan starts on the control
    rollback(store, "ranker-v2", actor="user:oncall")  # the way back stays open
    assert weights(store) == [1.0, 0.0]


def test_a_plan_guardrail_that_is_not_a_guardrail_metric_is_a_clear_error(
    store: EventStore, clock: Clock
) -> None:
    """A primary metric has no guardrail status, so it could never stop the ramp."""
    spec = {**SPEC, "rollout": {**SPEC["rollout"], "guardrails": ["purchase"]}}
    store.register_experiment(parse_experiment(spec))
    with pytest.raises(InvalidArgumentError, match="'purchase', which is a primary metric"):
        tick(store, "ranker-v2", now=clock.now)


def test_a_step_beyond_an_edited_plan_is_a_clear_error(store: EventStore, clock: Clock) -> None:
    store.register_experiment(parse_experiment(SPEC))
    tick(store, "ranker-v2", now=clock.now)
    simulate(store, 3000, complaint=SAME, seed=9, clock=clock)
    clock.now += 2 * HOUR
    assert tick(store, "ranker-v2", now=clock.now).action == "advanced"  # now at step 2 of 2
    shorter = {**SPEC, "rollout": {**SPEC["rollout"], "steps": SPEC["rollout"]["steps"][:1]}}
    store.register_experiment(parse_experiment(shorter), reason="one step is enough")
    with pytest.raises(InvalidArgumentError, match="step 2 but the plan now has 1 step"):
        tick(store, "ranker-v2", now=clock.now + 2 * HOUR)


def test_a_challenger_that_is_not_the_second_variant_ramps(store: EventStore, clock: Clock) -> None:
    variants = [*SPEC["variants"], {"name": "other", "model": "models:/ranker/3"}]
    spec = {**SPEC, "variants": variants}
    spec["variants"] = [variants[0], variants[2], variants[1]]  # challenger third
    spec["rollout"] = {**SPEC["rollout"], "challenger": "challenger"}
    store.register_experiment(parse_experiment(spec))
    assert tick(store, "ranker-v2", now=clock.now).action == "started"
    assert weights(store) == [0.8, 0.0, 0.2]
    simulate(store, 3000, complaint={**SAME, "other": 0.05}, seed=10, clock=clock)
    clock.now += 2 * HOUR
    advanced = tick(store, "ranker-v2", now=clock.now)
    assert advanced.action == "advanced", advanced.reasons
    assert advanced.evidence["units"]["other"] == 0
    assert weights(store) == [0.5, 0.0, 0.5]
    rollout_ = rollout_status(store, "ranker-v2")
    assert rollout_.challenger == "challenger"
    promote(store, "ranker-v2", actor="user:alice")
    assert weights(store) == [0.0, 0.0, 1.0]


def test_a_rolled_back_rollout_can_be_reset_and_start_over(store: EventStore, clock: Clock) -> None:
    from abflow.rollout.controller import reset

    store.register_experiment(parse_experiment(SPEC))
    with pytest.raises(InvalidArgumentError, match="only a rolled-back rollout can be reset"):
        reset(store, "ranker-v2", actor="user:alice")
    tick(store, "ranker-v2", now=clock.now)
    rollback(store, "ranker-v2", actor="user:oncall", reason="alert")
    assert tick(store, "ranker-v2").action == "finished"
    done = reset(store, "ranker-v2", actor="user:alice", reason="challenger fixed")
    assert done.action == "reset"
    assert weights(store) == [1.0, 0.0]  # nothing moves until the next tick
    assert rollout_status(store, "ranker-v2").state.stage == "not_started"
    again = tick(store, "ranker-v2", now=clock.now)
    assert (again.action, again.step) == ("started", 0)
    assert weights(store) == [0.8, 0.2]
    actions = [
        e.action for e in store.audit_entries("ranker-v2") if e.action.startswith("rollout.")
    ]
    assert actions == ["rollout.step", "rollout.rolled_back", "rollout.reset", "rollout.step"]
    assert store.verify_audit() == []
