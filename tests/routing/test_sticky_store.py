"""Sticky buckets backed by the store (issue #14, item 3), on SQLite and PostgreSQL.

GrowthBook's ``stickyBucket`` vectors run against the ``sticky_buckets`` table; the gateway,
given that table, keeps every exposed unit on its variant while weights and coverage change
(a twin experiment without ``sticky`` moves most of them, so the check can fail); and a
rollout with sticky bucketing may tick below full coverage.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from growthbook_cases import load_or_skip
from test_routing_sticky import _rule_spec

from abflow.monitoring.metrics import GatewayMetrics
from abflow.rollout.controller import tick
from abflow.routing import StickySettings, assign, assign_sticky
from abflow.serving.catalog import InMemoryCatalog
from abflow.serving.gateway import Gateway
from abflow.serving.inputs import PredictIn
from abflow.serving.settings import GatewaySettings
from abflow.spec import ExperimentSpec, parse_experiment
from abflow.store import EventStore
from abflow.store.schema import sticky_buckets
from abflow.store.sticky_buckets import StoreStickyBuckets

STICKY: list[list[Any]] = load_or_skip()["stickyBucket"]
ROW = [[0.1] * 8]  # the demo models take 8 features


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    if request.param == "postgres":
        url = request.getfixturevalue("pg_url")
    opened = EventStore.open(url, upgrade=True, clock=lambda: 1_790_000_000.0)
    try:
        yield opened
    finally:
        opened.close()


def test_growthbook_vectors_on_the_store(store: EventStore) -> None:
    buckets = StoreStickyBuckets(store)
    checked = 0
    for name, context, stored, feature_id, expected, expected_docs in STICKY:
        with store.engine.begin() as connection:
            connection.execute(sa.delete(sticky_buckets))
        (rule,) = context["features"][feature_id]["rules"]
        if rule.get("disableStickyBucketing"):
            continue
        spec = parse_experiment(_rule_spec(feature_id, rule))
        for doc in stored:
            buckets.save_assignments(
                doc["attributeName"], doc["attributeValue"], doc["assignments"]
            )
        settings = StickySettings(
            bucket_version=rule.get("bucketVersion", 0),
            min_bucket_version=rule.get("minBucketVersion", 0),
            fallback_attribute=rule.get("fallbackAttribute"),
        )
        attributes = context["attributes"]
        result = assign_sticky(spec, attributes, buckets, settings)
        if expected is None:
            assert not result.assignment.in_experiment, name
        else:
            got = (result.assignment.index, result.assignment.variant, result.sticky_bucket_used)
            assert got == (expected["variationId"], expected["key"], expected["stickyBucketUsed"])
        for doc in expected_docs.values():
            stored_now = buckets.get_assignments(doc["attributeName"], doc["attributeValue"])
            assert stored_now == doc["assignments"], name
        checked += 1
    assert checked >= 10


def test_entries_of_other_experiments_are_kept(store: EventStore) -> None:
    buckets = StoreStickyBuckets(store)
    buckets.save_assignments("user_id", "u1", {"a__0": "control"})
    buckets.save_assignments("user_id", "u1", {"b__0": "new"})  # another replica, another key
    buckets.save_assignments("user_id", "u1", {"a__0": "new"})
    assert buckets.get_assignments("user_id", "u1") == {"a__0": "new", "b__0": "new"}
    assert buckets.get_assignments("user_id", "u2") == {}


class _Events:
    """An event sink that keeps nothing (the test reads the responses)."""

    queue_depth = 0
    spool_bytes = 0

    def start(self) -> None:
        pass

    def append(self, kind: str, row: dict[str, Any]) -> None:
        pass

    def close(self, timeout_seconds: float = 10.0) -> None:
        pass


def _spec(key: str, weights: list[float], coverage: float, *, sticky: bool) -> ExperimentSpec:
    data: dict[str, Any] = {
        "key": key,
        "variants": [
            {"name": "control", "model": "python:abflow.serving.demo_models:champion"},
            {"name": "new", "model": "python:abflow.serving.demo_models:challenger"},
        ],
        "weights": weights,
        "coverage": coverage,
    }
    if sticky:
        data["sticky"] = {}
    return parse_experiment(data)


def _gateway(buckets: StoreStickyBuckets, tmp_path: Path) -> Gateway:
    """The prediction service without HTTP, keeping its sticky buckets in ``buckets``."""
    settings = GatewaySettings(auth_enabled=False, journal_dir=tmp_path / "journal")
    return Gateway(
        settings,
        events=_Events(),  # type: ignore[arg-type]
        catalog=InMemoryCatalog(),
        metrics=GatewayMetrics(),
        sticky_buckets=buckets,
    )


def test_the_gateway_moves_no_exposed_unit(store: EventStore, tmp_path: Path) -> None:
    gateway = _gateway(StoreStickyBuckets(store), tmp_path)
    steps = [([0.5, 0.5], 1.0), ([0.9, 0.1], 0.3), ([0.2, 0.8], 0.6)]
    first: dict[str, dict[str, str | None]] = {"sticky": {}, "plain": {}}
    moved = {"sticky": 0, "plain": 0}

    async def serve(key: str, unit: str) -> str | None:
        answer = await gateway.predict(PredictIn(experiment=key, unit_id=unit, features=ROW))
        in_experiment = answer["reason"] in ("assigned", "sticky")
        return str(answer["variant"]) if in_experiment else None

    async def run() -> None:
        for step, (weights, coverage) in enumerate(steps):
            specs = {k: _spec(k, weights, coverage, sticky=k == "sticky") for k in first}
            for spec in specs.values():
                await asyncio.to_thread(gateway.add_experiment, spec)
            for unit in [f"u{step}-{i}" for i in range(60)] + [f"u0-{i}" for i in range(60)]:
                for key, seen in first.items():
                    variant = await serve(key, unit)
                    if unit in seen and seen[unit] is not None:
                        moved[key] += variant != seen[unit]
                        continue
                    # a unit not exposed before is routed by the current weights and coverage
                    assert variant == assign(specs[key], {"user_id": unit}).variant
                    seen[unit] = variant

    asyncio.run(run())
    assert moved["sticky"] == 0
    assert moved["plain"] >= 40  # without sticky buckets most exposed units move


def test_an_unreachable_bucket_store_costs_no_prediction(tmp_path: Path) -> None:
    """Nothing listens on port 1: every bucket read fails at once, and the unit is routed
    by hash instead."""
    gateway = _gateway(
        StoreStickyBuckets("postgresql+psycopg://postgres@127.0.0.1:1/none"), tmp_path
    )
    spec = _spec("sticky", [0.5, 0.5], 1.0, sticky=True)
    gateway.add_experiment(spec)
    for unit in ("a", "b", "c"):
        request = PredictIn(experiment="sticky", unit_id=unit, features=ROW)
        answer = asyncio.run(gateway.predict(request))
        assert (answer["variant"], answer["reason"]) == (
            assign(spec, {"user_id": unit}).variant,
            "assigned",
        )


def test_a_sticky_rollout_ticks_below_full_coverage(store: EventStore) -> None:
    spec = {
        "key": "ranker",
        "variants": [
            {"name": "control", "model": "models:/ranker/1"},
            {"name": "challenger", "model": "models:/ranker/2"},
        ],
        "coverage": 0.5,
        "sticky": {},
        "rollout": {"steps": [{"traffic": 0.2}, {"traffic": 0.5}]},
    }
    store.register_experiment(parse_experiment(spec))
    result = tick(store, "ranker", now=1_790_000_000.0)
    assert result.action == "started"
    live = store.get_experiment("ranker").spec
    assert live.coverage == 0.5
    assert live.effective_weights == [0.8, 0.2]
