"""Sticky bucketing: GrowthBook's ``stickyBucket`` vectors, and what it is for (ramps).

Each vector is ``[name, context, stored_docs, feature_id, expected_result, expected_docs]``
over a feature with one experiment rule. The rule maps onto a spec (variants named by the
rule's ``meta`` keys, which are what the documents store) and :class:`StickySettings`
(``bucketVersion``, ``minBucketVersion``, ``fallbackAttribute``); ``disableStickyBucketing``
means plain :func:`assign`. A null expected result means the unit is not in the experiment.
"""

from __future__ import annotations

from typing import Any

import pytest
from growthbook_cases import load_or_skip

from abflow.routing import (
    InMemoryStickyBuckets,
    StickySettings,
    assign,
    assign_sticky,
    bucket_hash,
    compile_experiment,
    sticky_key,
)
from abflow.routing.ramp import canary_ranges
from abflow.spec import parse_experiment

CASES: dict[str, Any] = load_or_skip()
STICKY: list[list[Any]] = CASES["stickyBucket"]


def _rule_spec(feature_id: str, rule: dict[str, Any]) -> dict[str, Any]:
    keys = [m["key"] for m in rule.get("meta", [])] or [
        str(i) for i in range(len(rule["variations"]))
    ]
    key = rule.get("key", feature_id)
    spec: dict[str, Any] = {
        "key": key,
        "seed": rule.get("seed", key),
        "unit": rule.get("hashAttribute", "id"),
        "hash_version": rule.get("hashVersion", 1),  # the SDK's default
        "variants": [{"name": k, "model": f"models:/m/{i + 1}"} for i, k in enumerate(keys)],
    }
    for theirs, ours in (("weights", "weights"), ("coverage", "coverage")):
        if theirs in rule:
            spec[ours] = rule[theirs]
    if "condition" in rule:
        spec["condition"] = rule["condition"]
    return spec


@pytest.mark.parametrize("case", STICKY, ids=[case[0] for case in STICKY])
def test_sticky_bucket_vector(case: list[Any]) -> None:
    _, context, stored, feature_id, expected, expected_docs = case
    (rule,) = context["features"][feature_id]["rules"]
    spec = parse_experiment(_rule_spec(feature_id, rule))
    attributes = context["attributes"]
    store = InMemoryStickyBuckets()
    for doc in stored:
        store.save_assignments(doc["attributeName"], doc["attributeValue"], doc["assignments"])
    if rule.get("disableStickyBucketing"):
        result = assign(spec, attributes)
        used, attribute, value = False, spec.unit, attributes.get(spec.unit)
    else:
        settings = StickySettings(
            bucket_version=rule.get("bucketVersion", 0),
            min_bucket_version=rule.get("minBucketVersion", 0),
            fallback_attribute=rule.get("fallbackAttribute"),
        )
        sticky = assign_sticky(spec, attributes, store, settings)
        result, used = sticky.assignment, sticky.sticky_bucket_used
        attribute, value = sticky.hash_attribute, sticky.hash_value
    if expected is None:
        assert not result.in_experiment
    else:
        assert result.in_experiment is expected["inExperiment"]
        assert (result.index, result.variant) == (expected["variationId"], expected["key"])
        assert result.bucket == expected["bucket"]
        assert (attribute, value) == (expected["hashAttribute"], expected["hashValue"])
        assert used is expected["stickyBucketUsed"]
    mine = {(name, attributes.get(name)) for name in (spec.unit, rule.get("fallbackAttribute"))}
    docs = {  # the unit's own documents, as the SDK's context holds them afterwards
        f"{name}||{value}": {
            "assignments": assignments,
            "attributeName": name,
            "attributeValue": value,
        }
        for (name, value), assignments in store.docs.items()
        if (name, value) in mine
    }
    assert docs == expected_docs


def test_blocked_and_sticky_reasons() -> None:
    case = next(c for c in STICKY if c[0].startswith("stops test enrollment"))
    _, context, stored, feature_id, _, _ = case
    (rule,) = context["features"][feature_id]["rules"]
    spec = parse_experiment(_rule_spec(feature_id, rule))
    store = InMemoryStickyBuckets()
    for doc in stored:
        store.save_assignments(doc["attributeName"], doc["attributeValue"], doc["assignments"])
    settings = StickySettings(bucket_version=3, min_bucket_version=3)
    assert assign_sticky(spec, context["attributes"], store, settings).assignment.reason == (
        "blocked"
    )
    settings = StickySettings(bucket_version=0)
    assert assign_sticky(spec, context["attributes"], store, settings).assignment.reason == (
        "sticky"
    )


def test_a_ramp_below_full_coverage_moves_no_exposed_unit() -> None:
    """What sticky bucketing is for: change weights and shrink coverage, nobody moves."""
    spec = parse_experiment(
        {
            "key": "ramp",
            "variants": [
                {"name": "control", "model": "models:/m/1"},
                {"name": "new", "model": "models:/m/2"},
            ],
        }
    )
    store = InMemoryStickyBuckets()
    units = [{"user_id": f"u{i}"} for i in range(2000)]
    first = {u["user_id"]: assign_sticky(spec, u, store).assignment.variant for u in units}
    hashed_new = sum((bucket_hash("ramp", k) or 0.0) >= 0.5 for k in first)
    assert sum(v == "new" for v in first.values()) == hashed_new == 1041  # 50/50 by hash
    # Without stickiness, 20 % coverage and a 10/90 split would move almost all of them
    # (1,625 would leave the experiment) ...
    moved = compile_experiment(spec, ranges=canary_ranges(0.9, coverage=0.2))
    plain = {u["user_id"]: moved.assign(u).variant for u in units}
    assert sum(plain[k] != first[k] for k in first) == 1956
    assert sum(plain[k] is None for k in first) == 1625
    # ... with it, every unit exposed before keeps its variant, and nobody is stored twice.
    again = {u["user_id"]: assign_sticky(moved, u, store) for u in units}
    assert all(r.assignment.variant == first[k] for k, r in again.items())
    assert all(r.sticky_bucket_used for r in again.values())
    assert len(store.docs) == 2000
    assert store.get_assignments("user_id", "u7") == {sticky_key("ramp", 0): first["u7"]}
    # A new unit is routed by the new ranges and then kept.
    newcomer = {"user_id": "late"}
    assert assign_sticky(moved, newcomer, store).assignment == moved.assign(newcomer)
