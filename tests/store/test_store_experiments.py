"""Experiment versions and phases: a new phase exactly when assignment could change."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path
from typing import Any

import pytest

from abflow.errors import ExperimentNotFoundError
from abflow.spec import ExperimentSpec, parse_experiment, spec_hash
from abflow.store import EventStore


def make_spec(**changes: Any) -> ExperimentSpec:
    data: dict[str, Any] = {
        "key": "checkout",
        "unit": "user_id",
        "variants": [
            {"name": "control", "model": "models:/fraud@champion"},
            {"name": "treatment", "model": "models:/fraud@challenger"},
        ],
        "weights": [0.5, 0.5],
        "metrics": [
            {"name": "conversion", "kind": "conversion", "event": "buy", "role": "primary"}
        ],
    }
    data.update(changes)
    return parse_experiment(data)


class Clock:
    """A clock that ticks one second per reading, so every timestamp is distinct."""

    def __init__(self) -> None:
        self._ticks = itertools.count(1_700_000_000)

    def __call__(self) -> float:
        return float(next(self._ticks))


@pytest.fixture
def clocked(store_url: str) -> Any:
    opened = EventStore.open(store_url, upgrade=True, clock=Clock())
    yield opened
    opened.close()


@pytest.fixture
def sqlite_clocked(tmp_path: Path) -> Any:
    """SQLite only: for the many cases of dialect-independent phase logic."""
    opened = EventStore.open(f"sqlite:///{tmp_path / 'phases.db'}", clock=Clock())
    yield opened
    opened.close()


def test_first_registration_opens_phase_one(clocked: EventStore) -> None:
    spec = make_spec()
    registered = clocked.register_experiment(spec)
    assert (registered.version, registered.phase) == (1, 1)
    assert registered.is_new_version
    assert registered.is_new_phase
    assert registered.spec_hash == spec_hash(spec)
    assert registered.spec == spec
    phase = clocked.current_phase("checkout")
    assert phase.weights == (0.5, 0.5)
    assert phase.coverage == 1.0
    assert phase.is_open
    assert phase.spec_version == 1


def test_unchanged_spec_stores_nothing(clocked: EventStore) -> None:
    first = clocked.register_experiment(make_spec())
    again = clocked.register_experiment(make_spec())
    assert (again.version, again.phase) == (1, 1)
    assert not again.is_new_version
    assert not again.is_new_phase
    assert again.created_at == first.created_at
    assert len(clocked.phases("checkout")) == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"weights": [0.9, 0.1]}, "weights"),
        ({"coverage": 0.5}, "coverage"),
        ({"seed": "other"}, "seed"),
        ({"hash_version": 1}, "hash_version"),
        ({"unit": "device_id"}, "unit"),
        ({"namespace": ["checkout-ns", 0.0, 0.5]}, "namespace"),
        (
            {
                "variants": [
                    {"name": "control", "model": "models:/fraud@champion"},
                    {"name": "treatment", "model": "models:/fraud/7"},
                ]
            },
            "variants",
        ),
    ],
)
def test_traffic_changes_open_a_new_phase(
    sqlite_clocked: EventStore, change: dict[str, Any], field: str
) -> None:
    sqlite_clocked.register_experiment(make_spec())
    registered = sqlite_clocked.register_experiment(make_spec(**change))
    assert (registered.version, registered.phase) == (2, 2)
    assert registered.is_new_phase
    first, second = sqlite_clocked.phases("checkout")
    assert first.ended_at == second.started_at == registered.created_at
    assert second.ended_at is None
    assert second.spec_version == 2
    assert field in second.reason


@pytest.mark.parametrize(
    "change",
    [
        {"name": "Checkout button"},
        {"metrics": []},
        {"analysis": {"alpha": 0.01}},
        {"condition": {"country": "FR"}},
        {"forced": {"u-1": "treatment"}},
        {"weights": None},  # equal weights spelled differently: same split
    ],
)
def test_other_changes_keep_the_phase(sqlite_clocked: EventStore, change: dict[str, Any]) -> None:
    sqlite_clocked.register_experiment(make_spec())
    registered = sqlite_clocked.register_experiment(make_spec(**change))
    assert registered.version == 2
    assert registered.is_new_version
    assert not registered.is_new_phase
    assert registered.phase == 1
    (phase,) = sqlite_clocked.phases("checkout")
    assert phase.is_open
    assert phase.spec_version == 1


def test_phase_history_follows_a_ramp(clocked: EventStore) -> None:
    """A ramp back and forth: each distinct consecutive split is its own phase."""
    splits = [(0.9, 0.1), (0.9, 0.1), (0.75, 0.25), (0.5, 0.5), (0.9, 0.1)]
    for split in splits:
        clocked.register_experiment(make_spec(weights=list(split)))
    expected = [split for i, split in enumerate(splits) if i == 0 or split != splits[i - 1]]
    history = clocked.phases("checkout")
    assert [p.weights for p in history] == expected
    assert [p.phase for p in history] == list(range(1, len(expected) + 1))
    assert all(p.ended_at is not None for p in history[:-1])
    assert [p.ended_at for p in history[:-1]] == [p.started_at for p in history[1:]]
    assert clocked.current_phase("checkout") == history[-1]
    assert clocked.get_experiment("checkout").version == len(expected)


def test_list_and_get(clocked: EventStore) -> None:
    clocked.register_experiment(make_spec(key="b-test"))
    clocked.register_experiment(make_spec(key="a-test"))
    clocked.register_experiment(make_spec(key="a-test", coverage=0.3))
    listed = clocked.list_experiments()
    assert [(e.key, e.version, e.phase) for e in listed] == [("a-test", 2, 2), ("b-test", 1, 1)]
    assert clocked.get_experiment("a-test").spec.coverage == 0.3


def test_unknown_experiment(clocked: EventStore) -> None:
    assert clocked.list_experiments() == []
    for read in (clocked.get_experiment, clocked.phases, clocked.current_phase):
        with pytest.raises(ExperimentNotFoundError, match="no experiment 'nope'"):
            read("nope")


def test_concurrent_registrations_number_versions_once(store: EventStore) -> None:
    """Threads registering different splits at once never reuse a version or phase number."""
    specs = [make_spec(weights=[w, 1 - w]) for w in (0.1, 0.2, 0.3, 0.4, 0.6, 0.7)]
    errors: list[BaseException] = []

    def register(spec: ExperimentSpec) -> None:
        try:
            store.register_experiment(spec)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=register, args=(s,)) for s in specs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    history = store.phases("checkout")
    assert [p.phase for p in history] == list(range(1, len(specs) + 1))
    assert sorted(p.weights[0] for p in history) == [0.1, 0.2, 0.3, 0.4, 0.6, 0.7]
    assert sum(p.ended_at is None for p in history) == 1


def test_reason_and_restart(clocked: EventStore) -> None:
    clocked.register_experiment(make_spec(weights=[0.9, 0.1]), reason="ramp step 1: 10%")
    clocked.register_experiment(make_spec(weights=[0.75, 0.25]), reason="ramp step 2: 25%")
    restarted = clocked.restart_phase("checkout", "exposure logging fixed")
    history = clocked.phases("checkout")
    assert [p.reason for p in history] == [
        "ramp step 1: 10%",
        "ramp step 2: 25%",
        "exposure logging fixed",
    ]
    assert restarted == history[-1]
    assert restarted.phase == 3
    assert restarted.weights == history[1].weights == (0.75, 0.25)
    assert restarted.spec_version == 2
    assert history[1].ended_at == restarted.started_at
    assert clocked.get_experiment("checkout").phase == 3
    with pytest.raises(ExperimentNotFoundError):
        clocked.restart_phase("nope", "why not")
