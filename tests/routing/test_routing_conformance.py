"""Every case of GrowthBook's shared SDK test vectors that abflow's routing promises."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from abflow.routing import (
    bucket_hash,
    bucket_ranges,
    choose_variation,
    eval_condition,
    get_equal_weights,
    in_namespace,
)

CASES: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "golden" / "growthbook-cases.json").read_text(encoding="utf-8")
)


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


def test_every_section_is_present_and_complete() -> None:
    sizes = {section: len(CASES[section]) for section in CASES if section != "specVersion"}
    assert sizes == {
        "hash": 15,
        "getBucketRange": 13,
        "chooseVariation": 13,
        "inNamespace": 16,
        "getEqualWeights": 6,
        "evalCondition": 248,
    }
