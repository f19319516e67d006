"""Single-unit assignment: decision order, reasons, unit ids, caching, errors."""

from __future__ import annotations

import gc
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import abflow
from abflow.errors import InvalidArgumentError
from abflow.routing import (
    REASONS,
    Assignment,
    assign,
    assign_batch,
    bucket_hash,
    canary_ranges,
    canary_weights,
    compile_canary,
    compile_experiment,
    eval_condition,
    fnv1a32,
    fnv1a32_array,
    unit_text,
)
from abflow.routing.experiment import _CACHE
from abflow.spec import ExperimentSpec, parse_experiment


def _spec(**fields: Any) -> ExperimentSpec:
    n = fields.pop("n", 2)
    variants = [{"name": f"v{i}", "model": f"models:/m/{i + 1}"} for i in range(n)]
    return parse_experiment({"key": "exp", "variants": variants, **fields})


def _naive_units(text: str) -> list[int]:
    """UTF-16 code units by the book: a code point above U+FFFF becomes a surrogate pair."""
    units: list[int] = []
    for char in text:
        point = ord(char)
        if point > 0xFFFF:
            units += [0xD800 + ((point - 0x10000) >> 10), 0xDC00 + ((point - 0x10000) & 0x3FF)]
        else:
            units.append(point)
    return units


def _naive_fnv1a32(text: str) -> int:
    """FNV-1a exactly as the contract states it, one UTF-16 code unit at a time."""
    value = 0x811C9DC5
    for unit in _naive_units(text):
        value ^= unit
        value = (value * 0x01000193) % 2**32
    return value


@settings(deadline=None)  # a busy shared machine must not fail a timing
@given(st.text(max_size=50))
def test_fnv1a32_matches_the_definition(text: str) -> None:
    assert fnv1a32(text) == _naive_fnv1a32(text)


@settings(deadline=None)  # a busy shared machine must not fail a timing
@given(st.lists(st.text(max_size=20), max_size=30), st.text(max_size=5), st.text(max_size=5))
def test_vectorised_fnv_matches_the_definition(values: list[str], prefix: str, suffix: str) -> None:
    values = [v for v in values if not v.endswith("\x00")]  # numpy drops trailing NULs
    array = np.array(values, dtype=str) if values else np.zeros(0, dtype="U1")
    expected = [_naive_fnv1a32(prefix + v + suffix) for v in values]
    assert fnv1a32_array(array, prefix=prefix, suffix=suffix).tolist() == expected


def test_bucket_hash_follows_the_contract_formulas() -> None:
    for seed, value in [("s", "u1"), ("exp-é", "日本"), ("", "x" * 100), ("s😀", "user-😀")]:
        v2 = (_naive_fnv1a32(str(_naive_fnv1a32(seed + value))) % 10000) / 10000
        v1 = (_naive_fnv1a32(value + seed) % 1000) / 1000
        assert bucket_hash(seed, value) == v2
        assert bucket_hash(seed, value, 1) == v1
        assert bucket_hash(seed, value, 3) is None


def _spot(unit: str) -> float:
    spot = bucket_hash("__ns", unit, 1)
    assert spot is not None
    return spot


def test_reasons_in_decision_order() -> None:
    outsider = next(u for u in (f"o{i}" for i in range(100)) if _spot(u) >= 0.5)
    spec = _spec(
        forced={"vip": "v1", outsider: "v0"},
        condition={"country": "fr"},
        namespace=["ns", 0.0, 0.5],
        coverage=0.5,
    )
    # forced beats the condition and the namespace
    assert assign(spec, {"user_id": outsider}) == Assignment("v0", 0, None, True, "forced")
    assert assign(spec, {"user_id": "vip"}).reason == "forced"
    assert assign(spec, {"country": "fr"}).reason == "no_unit"
    assert assign(spec, {"user_id": "", "country": "fr"}).reason == "no_unit"
    assert assign(spec, {"user_id": "u1", "country": "de"}).reason == "condition"

    seen = {REASONS[0]}
    for number in range(400):
        unit = f"u{number}"
        result = assign(spec, {"user_id": unit, "country": "fr"})
        seen.add(result.reason)
        if _spot(unit) >= 0.5:
            assert result == Assignment(None, -1, None, False, "namespace")
            continue
        h = bucket_hash("exp", unit)
        assert result.bucket == h
        assert h is not None
        expected = 0 if h < 0.25 else 1 if 0.5 <= h < 0.75 else -1  # coverage 0.5 of 50/50
        assert result.index == expected
        assert result.reason == ("assigned" if expected >= 0 else "coverage")
        assert result.in_experiment is (expected >= 0)
        assert result.variant == (f"v{expected}" if expected >= 0 else None)
    assert seen == {"forced", "namespace", "coverage", "assigned"}


@pytest.mark.parametrize(
    ("value", "text"),
    [("abc", "abc"), (42, "42"), (7.0, "7"), (2.5, "2.5"), (-3, "-3"), ("", None), (0, None),
     (True, None), (None, None), (float("nan"), None), (["a"], None),
     (np.int64(42), "42"), (np.float32(2.5), "2.5"), (np.bool_(True), None),
     # JavaScript's String(number): exponents below 1e-6 and from 1e21, integers as doubles
     (1.5e-7, "1.5e-7"), (1e-6, "0.000001"), (1e21, "1e+21"), (10**21, "1e+21"),
     (123.456, "123.456"), (2**53 + 1, "9007199254740992"), (10**400, None)],
)  # fmt: skip
def test_unit_text(value: Any, text: str | None) -> None:
    assert unit_text(value) == text


TWO_ARMS = {"key": "k", "unit": "id", "variants": [
    {"name": "a", "model": "models:/m/1"}, {"name": "b", "model": "models:/m/2"}]}  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.floats(allow_nan=False, allow_infinity=False).filter(bool),
        st.integers(min_value=-(2**53), max_value=2**53).filter(bool),
    ),
    st.sampled_from([1, 2]),
)
def test_numeric_unit_ids_route_as_the_growthbook_sdk_routes_them(
    unit: float, hash_version: int
) -> None:
    from growthbook import Experiment, GrowthBook

    spec = parse_experiment({**TWO_ARMS, "hash_version": hash_version})
    ours = assign(spec, {"id": unit})
    theirs = GrowthBook(attributes={"id": unit}).run(
        Experiment(key="k", variations=[0, 1], hashVersion=hash_version)
    )
    assert (ours.in_experiment, ours.index) == (
        theirs.inExperiment,
        theirs.variationId if theirs.inExperiment else -1,
    )


def test_an_empty_seed_hashes_with_the_key_as_growthbook_does() -> None:
    from growthbook import Experiment, GrowthBook

    empty, unset = parse_experiment({**TWO_ARMS, "seed": ""}), parse_experiment(TWO_ARMS)
    assert empty.hash_seed == "k"
    moved = 0
    for n in range(200):
        unit = f"u{n}"
        theirs = GrowthBook(attributes={"id": unit}).run(
            Experiment(key="k", variations=[0, 1], seed="", hashVersion=2)
        )
        assert (
            assign(empty, {"id": unit}).index
            == theirs.variationId
            == assign(unset, {"id": unit}).index
        )
        moved += bucket_hash("", unit) != bucket_hash("k", unit)
    assert moved > 150  # hashing with "" would have put units elsewhere


def test_numeric_unit_ids_hash_like_their_text() -> None:
    spec = _spec(n=3)
    assert assign(spec, {"user_id": 12345}) == assign(spec, {"user_id": "12345"})
    assert assign(spec, {"user_id": False}).reason == "no_unit"


def test_the_unit_attribute_comes_from_the_spec() -> None:
    spec = _spec(unit="device_id")
    assert assign(spec, {"user_id": "u1"}).reason == "no_unit"
    assert assign(spec, {"device_id": "u1"}).bucket == bucket_hash("exp", "u1")


def test_seed_defaults_to_key_and_can_be_set() -> None:
    seeded = _spec(seed="other")
    assert assign(seeded, {"user_id": "u9"}).bucket == bucket_hash("other", "u9")
    assert assign(_spec(), {"user_id": "u9"}).bucket == bucket_hash("exp", "u9")


def test_compiled_experiment_is_cached_per_spec_object() -> None:
    spec = _spec()
    compiled = compile_experiment(spec)
    assert compile_experiment(spec) is compiled
    assert assign(compiled, {"user_id": "u"}) == assign(spec, {"user_id": "u"})
    assert compile_experiment(_spec()) is not compiled  # equal but distinct spec object
    key = id(spec)
    assert key in _CACHE
    del spec, compiled
    if key in _CACHE:  # still there: only a reference cycle may hold it; a full collection
        gc.collect()  # of the suite's heap took 27 s in a full run, so only when needed
    assert key not in _CACHE  # a dropped spec does not stay in memory


def test_wrong_number_of_custom_ranges_is_rejected() -> None:
    with pytest.raises(InvalidArgumentError, match="3 bucket ranges for 2 variants"):
        compile_experiment(_spec(), ranges=[(0.0, 0.5), (0.5, 1.0), (1.0, 1.0)])


def test_canary_helpers() -> None:
    assert canary_ranges(0.25, 0.8) == [(0.0, pytest.approx(0.6)), (pytest.approx(0.6), 0.8)]
    assert canary_ranges(0.1, n_variants=3, challenger=2)[1] == (1.0, 1.0)
    assert canary_weights(0.3, n_variants=3, challenger=2) == [0.7, 0.0, 0.3]
    for bad in (
        lambda: canary_ranges(1.5),
        lambda: canary_ranges(0.5, coverage=2.0),
        lambda: canary_ranges(0.5, challenger=0),
        lambda: canary_weights(0.5, n_variants=1),
    ):
        with pytest.raises(InvalidArgumentError):
            bad()


def test_compile_canary_uses_the_rollout_challenger() -> None:
    spec = _spec(
        n=3,
        metrics=[{"name": "m", "kind": "mean", "event": "e"}],
        rollout={"challenger": "v2", "steps": [{"traffic": 0.1}, {"traffic": 0.5}]},
    )
    ramp = compile_canary(spec, 0.5)
    assert ramp.ranges == ((0.0, 0.5), (1.0, 1.0), (0.5, 1.0))
    for number in range(50):
        result = ramp.assign({"user_id": f"u{number}"})
        assert result.index in (0, 2)
        assert result.index == (0 if result.bucket is not None and result.bucket < 0.5 else 2)


def test_batch_errors_are_clear() -> None:
    targeted = _spec(condition={"country": "fr"})
    with pytest.raises(InvalidArgumentError, match="has a targeting condition"):
        assign_batch(targeted, ["a", "b"])
    with pytest.raises(InvalidArgumentError, match="1 attribute mappings for 2 unit ids"):
        assign_batch(targeted, ["a", "b"], [{"country": "fr"}])
    with pytest.raises(InvalidArgumentError, match="must be strings"):
        assign_batch(_spec(), np.arange(3))
    with pytest.raises(InvalidArgumentError, match="one-dimensional"):
        assign_batch(_spec(), np.array([["a", "b"]]))


def test_batch_result_helpers() -> None:
    spec = _spec(n=3, coverage=0.5)
    ids = [f"u{i}" for i in range(300)]
    batch = assign_batch(spec, ids)
    assert len(batch) == 300
    singles = [assign(spec, {"user_id": u}) for u in ids]
    names = [s.variant for s in singles]
    assert list(batch.variants) == names
    assert batch.counts() == {n: names.count(n) for n in ("v0", "v1", "v2")}
    assert assign_batch(spec, []).index.shape == (0,)


def test_public_names() -> None:
    assert abflow.assign is assign
    assert abflow.Assignment is Assignment
    assert abflow.assign_batch is assign_batch


def test_saved_groups_in_growthbook_object_form() -> None:
    groups = {"beta": {"type": "list", "values": ["u1", "u2"]}, "old": ["u3"]}
    assert eval_condition({"id": "u2"}, {"id": {"$inGroup": "beta"}}, groups)
    assert eval_condition({"id": "u3"}, {"id": {"$inGroup": "old"}}, groups)
    assert eval_condition({"id": "u9"}, {"id": {"$notInGroup": "beta"}}, groups)
    assert not eval_condition({"id": "u1"}, {"id": {"$inGroup": "missing"}}, groups)
    # A malformed group matches nobody, with either operator.
    broken = {"bad": {"values": ["u1"]}}
    assert not eval_condition({"id": "u1"}, {"id": {"$inGroup": "bad"}}, broken)
    assert not eval_condition({"id": "u9"}, {"id": {"$notInGroup": "bad"}}, broken)


def test_saved_group_references() -> None:
    groups = {
        "beta": {"type": "list", "values": ["u1"], "attributeKey": "id"},
        "fr": {"type": "condition", "condition": {"country": "FR"}},
        "loop": {"type": "condition", "condition": {"$savedGroup": {"id": "loop"}}},
    }
    assert eval_condition({"id": "u1"}, {"$savedGroup": {"id": "beta"}}, groups)
    assert not eval_condition({"id": "u2"}, {"$savedGroup": {"id": "beta"}}, groups)
    assert eval_condition(
        {"uid": "u1"}, {"$savedGroup": {"id": "beta", "attributeKey": "uid"}}, groups
    )
    assert eval_condition({"country": "FR"}, {"$savedGroup": {"id": "fr"}}, groups)
    assert not eval_condition({"country": "DE"}, {"$savedGroup": {"id": "fr"}}, groups)
    assert not eval_condition({}, {"$savedGroup": {"id": "loop"}}, groups)  # cycles match nobody
    assert not eval_condition({"id": "u1"}, {"$savedGroup": {"id": "nope"}}, groups)


@pytest.mark.parametrize(
    ("condition", "attributes", "expected"),
    [
        ({"name": {"$regx": "a"}}, {"name": "a"}, False),  # an unknown operator is false
        ({"$not": {"name": {"$regx": "a"}}}, {"name": "a"}, True),  # so its negation holds
        ({"$or": [{"x": {"$bad": 1}}, {"y": 1}]}, {"y": 1}, True),
        ({"n": "1"}, {"n": 1}, True),  # a text literal compares the value as text
        ({"n": 0}, {}, True),  # a number literal: a missing attribute (null) counts as 0
        ({"n": 1}, {"n": "1"}, True),
        ({"flag": False}, {}, False),  # a boolean literal never matches null
        ({"flag": True}, {"flag": []}, True),  # ... and otherwise compares truthiness
        ({"o": {}}, {"o": {}}, True),  # an empty object is a literal, not an operator object
        ({"o": {}}, {}, False),
        ({"o": {"a": 1, "b": 2}}, {"o": {"b": 2, "a": 1}}, False),  # JSON text: key order counts
        ({"l": {"$gte": "2"}}, {"l": ["3"]}, True),  # an array compares as its text
        ({"n": {"$regex": "^nu"}}, {}, True),  # a missing value is matched as "null"
        ({"n": {"$exists": []}}, {"n": 1}, True),  # JavaScript truthiness of the argument
        ({"t": {"$elemMatch": {"$exists": False}}}, {"t": [None, 1]}, False),  # nulls skipped
        ({"tags.1": "b"}, {"tags": ["a", "b"]}, True),  # array index in a path
        ({"tags.length": 2}, {"tags": ["a", "b"]}, True),
        ({"n": {"$gt": "1e3"}}, {"n": 1001}, True),  # numeric text compares as a number
        ({"n": {"$lt": "abc"}}, {"n": 5}, False),  # NaN never compares
        ({"s": {"$gt": "\uffff"}}, {"s": "\U0001f600"}, False),  # UTF-16 order, as in JS
        ({"v": {"$vlt": "\U0001f600"}}, {"v": "\ufb01"}, False),  # versions compare alike
        ({"v": {"$vgt": "\U0001f600"}}, {"v": "\ufb01"}, True),
        ({"v": {"$vgt": 1.5}}, {"v": "1.10"}, True),  # 1.5 as version text; 10 > 5
        ({"a": {"$type": "number"}}, {"a": True}, False),
        ({"a": {"$in": [1]}}, {"a": True}, False),  # $in and $eq are strict
        ({"a": {"$eq": "1"}}, {"a": 1}, False),
        ({"$or": "nope"}, {}, False),
    ],
)
def test_condition_edge_cases(
    condition: dict[str, Any], attributes: dict[str, Any], expected: bool
) -> None:
    assert eval_condition(attributes, condition) is expected


def test_decimal_rehash_matches_string_formatting(rng: np.random.Generator) -> None:
    from abflow.routing.batch import _hash_decimal

    edges = [0, 1, 9, 10, 99, 100, 9_999_999, 10_000_000, 99_999_999, 10**8, 10**9, 2**32 - 1]
    values = np.concatenate(
        [
            np.array(edges, dtype=np.uint32),
            rng.integers(0, 2**32, size=20_000, dtype=np.uint64).astype(np.uint32),
            rng.integers(0, 10**7, size=2_000).astype(np.uint32),  # the short-number path
        ]
    )
    expected = [_naive_fnv1a32(str(int(v))) for v in values]
    assert _hash_decimal(values).tolist() == expected


def test_numpy_scalars_are_numbers_in_conditions() -> None:
    assert eval_condition({"age": np.int64(30)}, {"age": {"$gte": 18, "$type": "number"}})
    assert eval_condition({"score": np.float32(0.5)}, {"score": {"$lt": 1}})


def test_malformed_conditions_fail_instead_of_raising() -> None:
    assert not eval_condition({"a": 1}, {1: 1})  # type: ignore[dict-item]
    deep: dict[str, object] = {"a": 1}
    for _ in range(5000):
        deep = {"$not": deep}
    assert not eval_condition({"a": 1}, deep)
