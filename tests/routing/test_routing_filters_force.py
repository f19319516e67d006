"""``active``, ``filters`` and ``force``: against GrowthBook's Python SDK, batch against single.

The SDK's ``run`` is the reference: for every unit the single-unit path gives the SDK's
variation, inclusion and whether the hash decided (and then the same bucket), and the batch
path gives the single-unit answer row for row, reason and bucket included.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from abflow.errors import InvalidArgumentError
from abflow.routing import (
    Assignment,
    InMemoryStickyBuckets,
    assign,
    assign_batch,
    assign_sticky,
    bucket_hash,
    sticky_key,
)
from abflow.spec import ExperimentSpec, parse_experiment

FORCED_UNIT = "user-vip"

SPECS: dict[str, dict[str, Any]] = {
    "filters": {
        "weights": [0.5, 0.25, 0.25],
        "coverage": 0.8,
        "filters": [
            {"seed": "slice", "ranges": [[0.0, 0.3], [0.5, 0.8]]},
            {"attribute": "anon_id", "seed": "anon", "hash_version": 1, "ranges": [[0.2, 1.0]]},
        ],
    },
    "force": {
        "coverage": 0.6,
        "force": "v2",
        "namespace": ["ns", 0.1, 0.9],
        "condition": {"country": {"$ne": "de"}},
    },
    "inactive": {"active": False, "condition": {"country": "fr"}},
    "all-three-v1": {
        "hash_version": 1,
        "seed": "sé-日",
        "force": "v1",
        "filters": [{"attribute": "anon_id", "seed": "", "ranges": [[0.1, 0.6]]}],
    },
}
ANON_IDS: list[Any] = ["a-1", "a-2", "é-日", "😀", "", 0, 7, 2.5, True, None, "a-3", "a-4"]


def _spec(name: str) -> ExperimentSpec:
    variants = [{"name": f"v{i}", "model": f"models:/m/{i + 1}"} for i in range(3)]
    data = {"key": "exp", "variants": variants, "forced": {FORCED_UNIT: "v1"}, **SPECS[name]}
    return parse_experiment(data)


def _units(rng: np.random.Generator, count: int) -> list[dict[str, Any]]:
    """Attributes of ``count`` units: ids (a few missing or non-ASCII), anon ids, countries."""
    ids = [f"user-{value}" for value in rng.integers(0, 2**62, size=count)]
    ids[:4] = [FORCED_UNIT, "", "usér-日本", "user-😀"]
    anon = rng.integers(0, len(ANON_IDS), size=count)
    countries = rng.choice(["fr", "de", "us"], size=count)
    units = []
    for unit_id, pick, country in zip(ids, anon, countries, strict=True):
        attributes = {"user_id": unit_id, "country": str(country)}
        if ANON_IDS[pick] is not None:
            attributes["anon_id"] = ANON_IDS[pick]
        units.append(attributes)
    return units


def _sdk_answer(spec: ExperimentSpec, attributes: dict[str, Any]) -> tuple[int, bool, bool]:
    """GrowthBook's ``run`` of the spec: (variation or -1, in experiment, hash used)."""
    growthbook = pytest.importorskip("growthbook")
    names = spec.variant_names
    filters = [
        {
            "attribute": f.attribute or spec.unit,
            "seed": f.seed,
            "hashVersion": f.hash_version,
            "ranges": [list(r) for r in f.ranges],
        }
        for f in spec.filters
    ]
    experiment = growthbook.Experiment(
        key=spec.key,
        variations=list(range(len(names))),
        weights=spec.effective_weights,
        coverage=spec.coverage,
        condition=spec.condition,
        namespace=spec.namespace.as_tuple() if spec.namespace else None,
        hashAttribute=spec.unit,
        hashVersion=spec.hash_version,
        seed=spec.hash_seed,
        filters=filters or None,
        force=None if spec.force is None else names.index(spec.force),
        active=spec.active,
    )
    unit_id = attributes.get(spec.unit)
    forced = spec.forced.get(unit_id) if isinstance(unit_id, str) else None
    client = growthbook.GrowthBook(
        attributes=attributes,
        forced_variations={spec.key: names.index(forced)} if forced is not None else {},
    )
    result = client.run(experiment)
    variation = result.variationId if result.inExperiment else -1
    return variation, result.inExperiment, result.hashUsed


@pytest.mark.parametrize("name", sorted(SPECS))
def test_single_unit_path_matches_the_growthbook_sdk(name: str, rng: np.random.Generator) -> None:
    spec = _spec(name)
    reasons = set()
    for attributes in _units(rng, 400):
        result = assign(spec, attributes)
        reasons.add(result.reason)
        hash_used = result.reason == "assigned"
        expected = _sdk_answer(spec, attributes)
        assert (result.index, result.in_experiment, hash_used) == expected, attributes
        if hash_used or result.reason in ("coverage", "force"):  # the bucket that decided
            assert result.bucket == bucket_hash(
                spec.hash_seed, attributes["user_id"], spec.hash_version
            )
    expected_reasons = {
        "filters": {"forced", "no_unit", "filters", "coverage", "assigned"},
        "force": {"forced", "no_unit", "condition", "namespace", "coverage", "force"},
        "inactive": {"forced", "inactive"},
        "all-three-v1": {"forced", "no_unit", "filters", "force"},
    }
    assert reasons == expected_reasons[name]


@pytest.mark.parametrize("name", sorted(SPECS))
def test_batch_path_equals_single_unit_path(name: str, rng: np.random.Generator) -> None:
    spec = _spec(name)
    units = _units(rng, 600)
    ids = [attributes["user_id"] for attributes in units]
    units[5]["user_id"] = ids[5] = "nul-ending\x00"  # cannot live in a numpy 'U' array
    units[6]["anon_id"] = "anon\x00"
    for form in (ids, np.array(ids)):  # numpy drops the trailing NUL of its strings
        batch = assign_batch(spec, form, units)
        for row, attributes in enumerate(units):
            single = assign(spec, {**attributes, "user_id": str(form[row])})
            bucket = None if np.isnan(batch.bucket[row]) else float(batch.bucket[row])
            got = (int(batch.index[row]), bool(batch.in_experiment[row]), bucket)
            assert got == (single.index, single.in_experiment, single.bucket), attributes
            assert batch.reasons[batch.reason[row]] == single.reason


@settings(max_examples=30, deadline=None)
@given(
    ids=st.lists(st.text(max_size=12), max_size=30),
    anon=st.lists(st.one_of(st.text(max_size=6), st.integers(-3, 3)), min_size=30, max_size=30),
    version=st.sampled_from([1, 2]),
    on_unit=st.booleans(),
    force=st.sampled_from([None, "v0", "v2"]),
)
def test_batch_equals_single_for_any_ids_and_filter_values(
    ids: list[str], anon: list[Any], version: int, on_unit: bool, force: str | None
) -> None:
    attribute = None if on_unit else "anon_id"
    spec = parse_experiment(
        {
            "key": "exp",
            "variants": [{"name": f"v{i}", "model": f"models:/m/{i + 1}"} for i in range(3)],
            "coverage": 0.7,
            "force": force,
            "filters": [
                {"attribute": attribute, "seed": "f", "hash_version": version, "ranges": [[0.25, 0.75]]}
            ],
        }
    )  # fmt: skip
    units = [
        {"user_id": unit_id, "anon_id": value} for unit_id, value in zip(ids, anon, strict=False)
    ]
    batch = assign_batch(spec, ids, units)
    for row, attributes in enumerate(units):
        single = assign(spec, attributes)
        bucket = None if np.isnan(batch.bucket[row]) else float(batch.bucket[row])
        assert (int(batch.index[row]), bucket, batch.reasons[batch.reason[row]]) == (
            single.index,
            single.bucket,
            single.reason,
        ), repr(attributes)


def test_filter_attribute_values_hash_like_unit_ids() -> None:
    spec = parse_experiment(
        {
            "key": "exp",
            "variants": [{"name": "a", "model": "models:/m/1"}, {"name": "b", "model": "models:/m/2"}],
            "filters": [{"attribute": "device", "seed": "d", "ranges": [[0.0, 1.0]]}],
        }
    )  # fmt: skip
    for device in ("", 0, True, None, [1], float("nan")):
        result = assign(spec, {"user_id": "u1", "device": device})
        assert result == Assignment(None, -1, None, False, "filters"), device
    assert assign(spec, {"user_id": "u1"}).reason == "filters"
    for device in ("d-1", 7, 2.5, -3):
        assert assign(spec, {"user_id": "u1", "device": device}).in_experiment, device


def test_batch_needs_attributes_for_a_filter_on_another_attribute() -> None:
    spec = _spec("all-three-v1")
    with pytest.raises(InvalidArgumentError, match="has a filter on an attribute"):
        assign_batch(spec, ["u1", "u2"])
    with pytest.raises(InvalidArgumentError, match="1 attribute mappings for 2 unit ids"):
        assign_batch(spec, ["u1", "u2"], [{}])


def test_an_inactive_batch_hashes_nobody_but_keeps_forced_units() -> None:
    batch = assign_batch(_spec("inactive"), ["u1", FORCED_UNIT, ""])
    assert list(batch.reason_names()) == ["inactive", "forced", "inactive"]
    assert batch.index.tolist() == [-1, 1, -1]
    assert np.isnan(batch.bucket).all()


# --- sticky buckets: GrowthBook's order (force after the stored bucket, active before it) ---


def _sticky_spec(**fields: Any) -> ExperimentSpec:
    variants = [{"name": f"v{i}", "model": f"models:/m/{i + 1}"} for i in range(3)]
    return parse_experiment({"key": "exp", "variants": variants, **fields})


def test_force_wins_over_a_stored_bucket_and_is_not_saved() -> None:
    store = InMemoryStickyBuckets()
    store.save_assignments("user_id", "u1", {sticky_key("exp", 0): "v0"})
    spec = _sticky_spec(force="v2", coverage=0.0)  # a stored bucket skips the coverage check
    result = assign_sticky(spec, {"user_id": "u1"}, store)
    assert result.assignment == Assignment("v2", 2, bucket_hash("exp", "u1"), True, "force")
    assert not result.sticky_bucket_used
    fresh = assign_sticky(_sticky_spec(force="v2"), {"user_id": "u2"}, store).assignment
    assert (fresh.variant, fresh.reason) == ("v2", "force")
    assert store.docs == {("user_id", "u1"): {"exp__0": "v0"}}


def test_an_inactive_experiment_reads_no_stored_bucket() -> None:
    store = InMemoryStickyBuckets()
    store.save_assignments("user_id", "u1", {sticky_key("exp", 0): "v1"})
    spec = _sticky_spec(active=False, forced={"u2": "v2"})
    assert assign_sticky(spec, {"user_id": "u1"}, store).assignment.reason == "inactive"
    assert assign_sticky(spec, {}, store).assignment.reason == "inactive"
    assert assign_sticky(spec, {"user_id": "u2"}, store).assignment.variant == "v2"


def test_sticky_filters_hash_the_unit_attribute_not_the_fallback() -> None:
    from abflow.routing import StickySettings

    spec = _sticky_spec(filters=[{"seed": "s", "ranges": [[0.0, 1.0]]}])
    settings = StickySettings(fallback_attribute="device_id")
    store = InMemoryStickyBuckets()
    by_device = assign_sticky(spec, {"device_id": "d1"}, store, settings).assignment
    assert by_device.reason == "filters"  # GrowthBook's filters take no fallback attribute
    by_user = assign_sticky(spec, {"user_id": "u1", "device_id": "d1"}, store, settings)
    assert by_user.assignment.reason == "assigned"
