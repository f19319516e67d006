"""Every case of GrowthBook's shared SDK test vectors that abflow's routing promises.

The vectors are read at test time from ``../shared/conformance/growthbook-cases.json``
(see ``growthbook_cases.py``); this module skips, with that reason, where they are absent.
The ``run`` section is checked in ``test_routing_run_vectors.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
from growthbook_cases import load_or_skip

from abflow.routing import (
    assign,
    assign_batch,
    bucket_hash,
    bucket_ranges,
    choose_variation,
    compile_experiment,
    eval_condition,
    get_equal_weights,
    in_namespace,
)
from abflow.spec import parse_experiment

CASES: dict[str, Any] = load_or_skip()


def _ids(section: str) -> list[str]:
    return [str(case[0]) for case in CASES[section]]


@pytest.mark.parametrize(
    "case", CASES["hash"], ids=[f"{c[0]}|{c[1]}|v{c[2]}" for c in CASES["hash"]]
)
def test_hash(case: list[Any]) -> None:
    seed, value, version, expected = case
    assert bucket_hash(seed, value, version) == expected


@pytest.mark.parametrize("case", CASES["getBucketRange"], ids=_ids("getBucketRange"))
def test_bucket_ranges(case: list[Any]) -> None:
    _, (n, coverage, weights), expected = case
    ranges = bucket_ranges(n, coverage, weights)
    assert len(ranges) == len(expected)
    for got, want in zip(ranges, expected, strict=True):
        assert got == pytest.approx(tuple(want), abs=1e-9)


@pytest.mark.parametrize("case", CASES["chooseVariation"], ids=_ids("chooseVariation"))
def test_choose_variation(case: list[Any]) -> None:
    _, h, ranges, expected = case
    assert choose_variation(h, [tuple(r) for r in ranges]) == expected


@pytest.mark.parametrize("case", CASES["inNamespace"], ids=_ids("inNamespace"))
def test_in_namespace(case: list[Any]) -> None:
    _, unit_id, namespace, expected = case
    assert in_namespace(unit_id, tuple(namespace)) is expected


@pytest.mark.parametrize("case", CASES["getEqualWeights"], ids=_ids("getEqualWeights"))
def test_equal_weights(case: list[Any]) -> None:
    n, expected = case
    weights = get_equal_weights(n)
    assert weights == pytest.approx(expected, abs=1e-8)
    if n > 0:
        assert sum(weights) == pytest.approx(1.0)


@pytest.mark.parametrize("case", CASES["evalCondition"], ids=_ids("evalCondition"))
def test_eval_condition(case: list[Any]) -> None:
    _, condition, attributes, expected, *rest = case
    saved_groups = rest[0] if rest else None
    assert eval_condition(attributes, condition, saved_groups) is expected


SAVED_GROUP_CASES = [case for case in CASES["evalCondition"] if len(case) > 4]


@pytest.mark.parametrize("case", SAVED_GROUP_CASES, ids=[c[0] for c in SAVED_GROUP_CASES])
def test_saved_group_conditions_through_assign(case: list[Any]) -> None:
    """The same vectors as experiments: groups given per call, per batch, or compiled in."""
    _, condition, attributes, expected, saved_groups = case
    spec = parse_experiment(
        {
            "key": "grouped",
            "unit": "unit",
            "variants": [
                {"name": "a", "model": "models:/m/1"},
                {"name": "b", "model": "models:/m/2"},
            ],
            "condition": condition,
        }
    )
    row = {**attributes, "unit": "u1"}
    assert assign(spec, row, saved_groups=saved_groups).in_experiment is expected
    batch = assign_batch(spec, ["u1"], [row], saved_groups=saved_groups)
    assert bool(batch.in_experiment[0]) is expected
    compiled = compile_experiment(spec, saved_groups=saved_groups)
    assert compiled.assign(row).in_experiment is expected
    assert bool(assign_batch(compiled, ["u1"], [row]).in_experiment[0]) is expected


def test_every_section_is_present_and_complete() -> None:
    assert CASES["specVersion"] == "0.8.0"
    sizes = {section: len(CASES[section]) for section in CASES if section != "specVersion"}
    assert sizes == {
        "hash": 15,
        "getBucketRange": 13,
        "chooseVariation": 13,
        "inNamespace": 16,
        "getEqualWeights": 6,
        "evalCondition": 248,
        "run": 73,
        "stickyBucket": 13,
        # SDK features abflow does not promise (see ../shared/conformance/README.md)
        "feature": 55,
        "getQueryStringOverride": 16,
        "decrypt": 10,
        "urlRedirect": 4,
        "contextualBandit": 35,
    }
    assert len(SAVED_GROUP_CASES) == 8
