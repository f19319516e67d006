"""The one operator table: validation and evaluation agree on every operator.

Each operator in :data:`abflow.targeting.OPERATORS` has an example here that it matches and
one it does not (so it really evaluates, rather than falling to the unknown-operator
``False``) and that validation accepts; an operator missing from the table is rejected by
validation and never matches; every operator of GrowthBook's JavaScript SDK vectors and of
DESIGN's contract is in the table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from abflow.routing import eval_condition as routing_eval_condition
from abflow.spec import validate_condition as spec_validate_condition
from abflow.targeting import OPERATORS, eval_condition, validate_condition
from abflow.targeting.conditions import LOGICAL_OPERATORS

GROUPS = {"g": ["u1"], "h": ["u2"]}

# operator: (attribute value, an argument that matches it, an argument that does not)
EXAMPLES: dict[str, tuple[Any, Any, Any]] = {
    "$eq": (1, 1, 2),
    "$ne": (1, 2, 1),
    "$lt": (1, 2, 0),
    "$lte": (1, 1, 0),
    "$gt": (2, 1, 3),
    "$gte": (2, 2, 3),
    "$veq": ("1.2.3", "v1.2.3", "1.2.4"),
    "$vne": ("1.2.3", "1.2.4", "1.2.3"),
    "$vlt": ("1.2.3", "1.10.0", "1.2.0"),
    "$vlte": ("1.2.3", "1.2.3", "1.2.0"),
    "$vgt": ("1.10.0", "1.9.0", "1.10.1"),
    "$vgte": ("1.10.0", "1.10.0", "1.10.1"),
    "$in": ("a", ["a", "b"], ["c"]),
    "$nin": ("a", ["c"], ["a"]),
    "$ini": ("A", ["a"], ["b"]),
    "$nini": ("A", ["b"], ["a"]),
    "$all": (["a", "b"], ["a", "b"], ["a", "c"]),
    "$alli": (["A", "b"], ["a", "B"], ["c"]),
    "$inGroup": ("u1", "g", "h"),
    "$notInGroup": ("u1", "h", "g"),
    "$regex": ("abc", "^a", "^b"),
    "$regexi": ("ABC", "^a", "^b"),
    "$notRegex": ("abc", "^b", "^a"),
    "$notRegexi": ("ABC", "^b", "^a"),
    "$exists": (1, True, False),
    "$type": (1, "number", "string"),
    "$not": (1, {"$eq": 2}, {"$eq": 1}),
    "$size": ([1, 2], 2, 3),
    "$elemMatch": ([1, 5], {"$gt": 4}, {"$gt": 6}),
}

# an argument of the wrong shape for each argument kind validation checks
BAD_ARGUMENT: dict[str, Any] = {
    "list": "a",
    "size": "two",
    "flag": "yes",
    "type": "text",
    "regex": "(",
    "not": 1,
    "elem_match": 1,
}

CONTRACT = [
    *("$eq", "$ne", "$lt", "$lte", "$gt", "$gte", "$in", "$nin", "$all", "$elemMatch"),
    *("$size", "$exists", "$type", "$regex", "$not", "$and", "$or", "$nor"),
    *("$veq", "$vne", "$vgt", "$vgte", "$vlt", "$vlte"),
]
"""The operators DESIGN.md promises (Routing contract)."""


def test_every_operator_in_the_table_has_an_example() -> None:
    assert sorted(EXAMPLES) == sorted(OPERATORS)
    assert len(OPERATORS) == 29


@pytest.mark.parametrize("operator", sorted(EXAMPLES))
def test_every_operator_in_the_table_validates_and_evaluates(operator: str) -> None:
    actual, matching, other = EXAMPLES[operator]
    for argument, expected in ((matching, True), (other, False)):
        condition = {"x": {operator: argument}}
        assert validate_condition(condition) == []
        assert eval_condition({"x": actual}, condition, GROUPS) is expected
        assert eval_condition({"x": actual}, {"$not": condition}, GROUPS) is not expected


@pytest.mark.parametrize(
    "operator", sorted(name for name, entry in OPERATORS.items() if entry.argument != "value")
)
def test_validation_checks_the_argument_kind_the_table_names(operator: str) -> None:
    bad = BAD_ARGUMENT[OPERATORS[operator].argument]
    problems = validate_condition({"x": {operator: bad}})
    assert len(problems) == 1
    assert problems[0][0] == f".x.{operator}"


def test_an_operator_outside_the_table_is_rejected_and_never_matches() -> None:
    condition = {"x": {"$ge": 1}}  # a typo of $gte
    assert validate_condition(condition) == [(".x.$ge", "unknown operator '$ge'")]
    assert eval_condition({"x": 2}, condition) is False
    assert eval_condition({"x": 2}, {"$not": condition}) is True


def test_the_sdk_vectors_and_the_contract_use_only_operators_in_the_table() -> None:
    vectors = json.loads(
        (Path(__file__).parents[1] / "golden" / "growthbook-js-conditions.json").read_text()
    )
    used: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            used.update(key for key in node if key.startswith("$"))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for _, condition, _ in vectors["cases"]:
        walk(condition)
    known = set(OPERATORS) | LOGICAL_OPERATORS
    assert len(used) == 30
    assert sorted(used - known) == []
    assert sorted(set(CONTRACT) - known) == []


def test_spec_and_routing_use_the_targeting_functions() -> None:
    assert spec_validate_condition is validate_condition
    assert routing_eval_condition is eval_condition
