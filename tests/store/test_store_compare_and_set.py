"""register_if_unchanged: a controller's move lands whole, or not at all, on both backends."""

from __future__ import annotations

import threading

from abflow.spec import parse_experiment
from abflow.store import EventStore

SPEC = {
    "key": "ramp",
    "variants": [{"name": "a", "model": "models:/m/1"}, {"name": "b", "model": "models:/m/2"}],
}
ACTIONS = {"rollout.step", "rollout.rolled_back"}


def spec(weights: list[float]) -> object:
    return parse_experiment({**SPEC, "weights": weights})


def last_seq(store: EventStore) -> int | None:
    seqs = [e.seq for e in store.audit_entries("ramp") if e.action in ACTIONS]
    return seqs[-1] if seqs else None


def move(store: EventStore, weights: list[float], seen: int | None, action: str) -> bool:
    return store.register_if_unchanged(
        spec(weights),  # type: ignore[arg-type]
        actions=ACTIONS,
        last_seq=seen,
        action=action,
        payload={"weights": weights},
        reason=f"to {weights}",
        actor="test",
    )


def test_a_move_on_a_stale_state_is_dropped_whole(store: EventStore) -> None:
    store.register_experiment(spec([0.5, 0.5]))  # type: ignore[arg-type]
    assert move(store, [0.9, 0.1], None, "rollout.step")
    first = last_seq(store)
    assert first is not None
    # a second controller that also read "not started" must not act
    assert not move(store, [0.8, 0.2], None, "rollout.step")
    assert store.get_experiment("ramp").spec.effective_weights == [0.9, 0.1]
    assert [e.action for e in store.audit_entries("ramp")] == [
        "experiment.registered",
        "experiment.registered",
        "rollout.step",
    ]
    assert move(store, [1.0, 0.0], first, "rollout.rolled_back")
    assert store.current_phase("ramp").phase == 3
    assert store.verify_audit() == []


def test_racing_controllers_apply_exactly_one_move(store: EventStore) -> None:
    store.register_experiment(spec([0.5, 0.5]))  # type: ignore[arg-type]
    results: list[bool] = []
    barrier = threading.Barrier(4)

    def race(weights: list[float]) -> None:
        barrier.wait()
        results.append(move(store, weights, None, "rollout.step"))

    threads = [threading.Thread(target=race, args=([1 - s, s],)) for s in (0.1, 0.2, 0.3, 0.4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False, False, False, True]
    steps = [e for e in store.audit_entries("ramp") if e.action == "rollout.step"]
    assert len(steps) == 1
    assert store.get_experiment("ramp").spec.effective_weights == steps[0].payload["weights"]
