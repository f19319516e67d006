"""Invariants of the store under any sequence of writes and registrations (Hypothesis).

Each example runs on a fresh in-memory SQLite store; the PostgreSQL paths are covered by the
example-based tests, which run on both backends.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from abflow.spec import parse_experiment
from abflow.store import EventStore

id_batches = st.lists(st.lists(st.integers(0, 60), max_size=40), min_size=1, max_size=6)


def exposure(i: int) -> dict[str, Any]:
    return {
        "event_id": f"e{i}",
        "ts": float(i),
        "experiment_key": "k",
        "phase": 1,
        "unit_id": f"u{i}",
        "variant": "a",
    }


@settings(max_examples=25, deadline=None)
@given(id_batches)
def test_each_id_is_new_exactly_once(batches: list[list[int]]) -> None:
    with EventStore.open("sqlite://") as store:
        seen: set[int] = set()
        for ids in batches:
            expected = len(set(ids) - seen)
            seen |= set(ids)
            assert store.write_events("exposure", [exposure(i) for i in ids]) == expected
        assert store.count_events("exposure") == len(seen)


traffic = st.tuples(
    st.sampled_from([(0.5, 0.5), (0.9, 0.1), (0.2, 0.8)]),
    st.sampled_from([1.0, 0.5]),
    st.sampled_from(["checkout", "other-seed"]),
    st.sampled_from(["", "renamed"]),  # not a traffic field
)


@settings(max_examples=15, deadline=None)
@given(st.lists(traffic, min_size=1, max_size=8))
def test_phases_change_exactly_when_traffic_does(
    history: list[tuple[tuple[float, float], float, str, str]],
) -> None:
    with EventStore.open("sqlite://") as store:
        for weights, coverage, seed, name in history:
            spec = parse_experiment(
                {
                    "key": "checkout",
                    "name": name,
                    "seed": seed,
                    "weights": list(weights),
                    "coverage": coverage,
                    "variants": [
                        {"name": "a", "model": "file:a.pkl"},
                        {"name": "b", "model": "file:b.pkl"},
                    ],
                }
            )
            store.register_experiment(spec)
        splits = [(w, c, s) for w, c, s, _ in history]
        expected_phases = [s for i, s in enumerate(splits) if i == 0 or s != splits[i - 1]]
        expected_versions = sum(1 for i, h in enumerate(history) if i == 0 or h != history[i - 1])
        phases = store.phases("checkout")
        assert [(p.weights, p.coverage) for p in phases] == [(w, c) for w, c, _ in expected_phases]
        assert store.get_experiment("checkout").version == expected_versions
        assert [p.ended_at is None for p in phases] == [False] * (len(phases) - 1) + [True]
