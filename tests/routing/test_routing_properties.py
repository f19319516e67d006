"""Invariants of routing, checked with Hypothesis and with simulations on seeded ids."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from abflow.routing import (
    assign,
    assign_batch,
    bucket_hash,
    bucket_ranges,
    canary_ranges,
    canary_weights,
    compile_canary,
    in_namespace,
)
from abflow.spec import ExperimentSpec, parse_experiment

ALPHA = 1e-6  # a correct router fails a check this strict once in a million runs


def _spec(**fields: Any) -> ExperimentSpec:
    n = fields.pop("n", 2)
    variants = [{"name": f"v{i}", "model": f"models:/m/{i + 1}"} for i in range(n)]
    return parse_experiment({"key": "exp", "variants": variants, **fields})


def _ids(rng: np.random.Generator, count: int) -> list[str]:
    return [f"user-{value}" for value in rng.integers(0, 2**62, size=count)]


unit_ids = st.text(min_size=1, max_size=30)
shares = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


# --- determinism -------------------------------------------------------------------------

_CHILD = """
import json, sys
from abflow.routing import assign, bucket_hash
from abflow.spec import parse_experiment
spec = parse_experiment(json.loads(sys.argv[1]))
ids = json.loads(sys.stdin.read())
out = [[assign(spec, {"user_id": u}).index, bucket_hash("seed", u), bucket_hash("seed", u, 1)]
       for u in ids]
print(json.dumps(out))
"""


def test_same_assignments_in_other_processes_and_hash_seeds(rng: np.random.Generator) -> None:
    spec_data = {
        "key": "determinism",
        "variants": [{"name": n, "model": f"models:/m@{n}"} for n in ("a", "b", "c")],
        "weights": [0.2, 0.3, 0.5],
        "coverage": 0.9,
    }
    spec = parse_experiment(spec_data)
    ids = [*_ids(rng, 300), "é", "日本語-ユーザー", "x" * 500]
    here = [
        [assign(spec, {"user_id": u}).index, bucket_hash("seed", u), bucket_hash("seed", u, 1)]
        for u in ids
    ]
    for hash_seed in ("0", "1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        child = subprocess.run(
            [sys.executable, "-c", _CHILD, json.dumps(spec_data)],
            input=json.dumps(ids),
            capture_output=True,
            text=True,
            env=env,
            check=True,
            timeout=60,
        )
        assert json.loads(child.stdout) == here, f"PYTHONHASHSEED={hash_seed}"


@settings(deadline=None)  # a busy shared machine must not fail a timing
@given(seed=st.text(max_size=20), unit=unit_ids, version=st.sampled_from([1, 2]))
def test_bucket_hash_is_a_pure_function_in_range(seed: str, unit: str, version: int) -> None:
    first = bucket_hash(seed, unit, version)
    assert first is not None
    assert first == bucket_hash(seed, unit, version)
    assert 0.0 <= first < 1.0
    scale = 10000 if version == 2 else 1000
    assert round(first * scale) / scale == first  # a whole number of buckets


# --- split accuracy ----------------------------------------------------------------------


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    raw=st.lists(st.integers(min_value=1, max_value=20), min_size=2, max_size=5),
    coverage=st.sampled_from([1.0, 0.8, 0.35]),
    version=st.sampled_from([1, 2]),
)
def test_observed_split_matches_weights(
    rng: np.random.Generator, raw: list[int], coverage: float, version: int
) -> None:
    weights = [r / sum(raw) for r in raw]
    weights[-1] = 1.0 - sum(weights[:-1])
    spec = _spec(n=len(raw), weights=weights, coverage=coverage, hash_version=version)
    count = 100_000
    result = assign_batch(spec, _ids(rng, count))

    # Exact probabilities under a uniform hash: count the buckets each range holds.
    scale = 10000 if version == 2 else 1000
    ranges = bucket_ranges(len(raw), coverage, weights)
    buckets = np.arange(scale) / scale
    widths = np.array([np.sum((buckets >= s) & (buckets < e)) for s, e in ranges], dtype=float)
    np.testing.assert_allclose(widths / scale, np.array(weights) * coverage, atol=1.5 / scale)

    # Coverage: units in the experiment ~ Binomial(count, covered share).
    entered = int(result.in_experiment.sum())
    covered = widths.sum() / scale
    assert stats.binomtest(entered, count, covered).pvalue > ALPHA

    # Split among those in the experiment: chi-square goodness of fit against the weights.
    observed = np.bincount(result.index[result.in_experiment], minlength=len(raw))
    keep = widths > 0
    assert observed[~keep].sum() == 0
    if keep.sum() > 1:
        expected = widths[keep] / widths[keep].sum() * observed.sum()
        assert stats.chisquare(observed[keep], expected).pvalue > ALPHA


def test_buckets_are_uniform(rng: np.random.Generator) -> None:
    result = assign_batch(_spec(), _ids(rng, 100_000))
    counts, _ = np.histogram(result.bucket, bins=20, range=(0.0, 1.0))
    assert stats.chisquare(counts).pvalue > ALPHA
    assert stats.kstest(result.bucket, "uniform").pvalue > ALPHA


# --- canary ramps ------------------------------------------------------------------------


@settings(deadline=None)  # a busy shared machine must not fail a timing
@given(units=st.lists(unit_ids, min_size=1, max_size=25), low=shares, high=shares, coverage=shares)
def test_raising_the_canary_share_only_moves_units_from_control(
    units: list[str], low: float, high: float, coverage: float
) -> None:
    low, high = sorted((low, high))
    spec = _spec(coverage=coverage)
    before, after = compile_canary(spec, low), compile_canary(spec, high)
    for unit in units:
        a, b = before.assign({"user_id": unit}), after.assign({"user_id": unit})
        assert a.in_experiment == b.in_experiment  # nobody enters or leaves
        if a.index == 1:
            assert b.index == 1  # a challenger unit stays with the challenger
        if b.index == 0:
            assert a.index == 0  # a control unit after the raise was control before


@settings(deadline=None)  # a busy shared machine must not fail a timing
@given(low=shares, high=shares, coverage=shares, bucket=st.integers(0, 9999))
def test_canary_ranges_are_monotone_on_every_bucket(
    low: float, high: float, coverage: float, bucket: int
) -> None:
    low, high = sorted((low, high))
    h = bucket / 10000

    def owner(ranges: list[tuple[float, float]]) -> int:
        return next((i for i, (s, e) in enumerate(ranges) if s <= h < e), -1)

    a, b = owner(canary_ranges(low, coverage)), owner(canary_ranges(high, coverage))
    assert (a == -1) == (b == -1)
    assert not (a == 1 and b == 0)


@settings(deadline=None)  # a busy shared machine must not fail a timing
@given(share=shares)
def test_canary_at_full_coverage_is_growthbook_layout(share: float) -> None:
    ranges = canary_ranges(share)
    expected = bucket_ranges(2, 1.0, canary_weights(share))
    np.testing.assert_allclose(ranges, expected, atol=1e-12)


def test_growthbook_layout_below_full_coverage_is_not_monotone() -> None:
    # Why the ramp has its own ranges: with coverage 0.5, GrowthBook's challenger window
    # [1 - t, 1 - t + 0.5 t) moves down as t grows, dropping units it held.
    before = bucket_ranges(2, 0.5, canary_weights(0.1))
    after = bucket_ranges(2, 0.5, canary_weights(0.5))
    h = 0.92
    assert before[1][0] <= h < before[1][1]
    assert not after[1][0] <= h < after[1][1]


# --- namespaces --------------------------------------------------------------------------


@settings(deadline=None)  # a busy shared machine must not fail a timing
@given(
    units=st.lists(unit_ids, min_size=1, max_size=25),
    cut=st.floats(min_value=0.01, max_value=0.99),
    # A NUL: no store can hold the spec (parse_experiment refuses it)
    name=st.text(st.characters(exclude_characters="\x00"), min_size=1, max_size=12),
)
def test_disjoint_namespace_slices_share_no_unit(units: list[str], cut: float, name: str) -> None:
    left = _spec(namespace=[name, 0.0, cut])
    right = _spec(namespace=[name, cut, 1.0])
    for unit in units:
        in_left = assign(left, {"user_id": unit}).reason != "namespace"
        in_right = assign(right, {"user_id": unit}).reason != "namespace"
        assert in_left != in_right  # exactly one slice holds each unit
        assert left.namespace is not None
        assert in_left == in_namespace(unit, left.namespace.as_tuple())


def test_namespace_slices_hold_their_share(rng: np.random.Generator) -> None:
    ids = _ids(rng, 100_000)
    slices = [(0.0, 0.25), (0.25, 0.6), (0.6, 1.0)]
    members = [
        assign_batch(_spec(namespace=["shared", s, e]), ids).reason != 3  # 3 = "namespace"
        for s, e in slices
    ]
    stacked = np.vstack(members)
    assert (stacked.sum(axis=0) == 1).all()
    observed = stacked.sum(axis=1)
    expected = np.array([e - s for s, e in slices]) * len(ids)
    assert stats.chisquare(observed, expected).pvalue > ALPHA


# --- batch == single ---------------------------------------------------------------------

batch_ids = st.lists(
    st.one_of(
        st.text(max_size=12),
        st.text(alphabet=st.characters(codec="ascii"), max_size=40),
        st.just(""),
        st.text(min_size=200, max_size=400),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(
    ids=batch_ids,
    version=st.sampled_from([1, 2]),
    coverage=st.sampled_from([1.0, 0.6]),
    namespace=st.sampled_from([None, ["ns", 0.2, 0.7]]),
    seed=st.sampled_from(["exp", "sé-日", ""]),
    forced_pick=st.integers(min_value=0, max_value=3),
)
def test_assign_batch_equals_assign_on_every_unit(
    ids: list[str],
    version: int,
    coverage: float,
    namespace: list[Any] | None,
    seed: str,
    forced_pick: int,
) -> None:
    # A forced unit id with a NUL: no store can hold the spec (parse_experiment refuses it)
    forced = (
        {ids[forced_pick]: "v1"}
        if forced_pick < len(ids) and "\x00" not in ids[forced_pick]
        else {}
    )
    spec = _spec(
        n=3,
        hash_version=version,
        coverage=coverage,
        namespace=namespace,
        seed=seed,
        forced=forced,
    )
    batch = assign_batch(spec, ids)
    assert len(batch) == len(ids)
    for row, unit in enumerate(ids):
        single = assign(spec, {"user_id": unit})
        bucket = None if np.isnan(batch.bucket[row]) else float(batch.bucket[row])
        assert (int(batch.index[row]), bucket, batch.reasons[batch.reason[row]]) == (
            single.index,
            single.bucket,
            single.reason,
        ), repr(unit)
        assert bool(batch.in_experiment[row]) is single.in_experiment
        assert batch.variants[row] == single.variant


def test_assign_batch_equals_assign_with_a_condition(rng: np.random.Generator) -> None:
    spec = _spec(condition={"country": {"$in": ["fr", "de"]}, "age": {"$gte": 18}})
    ids = _ids(rng, 500)
    countries = rng.choice(["fr", "de", "us"], size=len(ids))
    ages = rng.integers(10, 40, size=len(ids))
    attributes = [{"country": str(c), "age": int(a)} for c, a in zip(countries, ages, strict=True)]
    batch = assign_batch(spec, ids, attributes)
    for row, unit in enumerate(ids):
        single = assign(spec, {"user_id": unit, **attributes[row]})
        assert int(batch.index[row]) == single.index
        assert batch.reasons[batch.reason[row]] == single.reason
    assert 0 < int(batch.in_experiment.sum()) < len(ids)


def test_assign_batch_accepts_numpy_and_object_arrays(rng: np.random.Generator) -> None:
    ids = _ids(rng, 1000)
    spec = _spec(n=4)
    expected = assign_batch(spec, ids)
    for form in (np.array(ids), np.array(ids, dtype=object), tuple(ids)):
        np.testing.assert_array_equal(assign_batch(spec, form).index, expected.index)


@pytest.mark.parametrize("unit", ["a\x00", "\x00", "é\x00\x00"])
def test_trailing_nul_ids_are_assigned_exactly(unit: str) -> None:
    spec = _spec(n=3)
    batch = assign_batch(spec, ["x", unit, "y"])
    single = assign(spec, {"user_id": unit})
    assert int(batch.index[1]) == single.index
    assert float(batch.bucket[1]) == single.bucket
