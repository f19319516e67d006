"""A targeting regex that backtracks without end cannot hold the gateway: each match stops at
:data:`REGEX_MATCH_SECONDS` and the condition fails. With Python's ``re`` one prediction for
``(a|aa)+$`` and forty ``a`` followed by ``!`` ran at 100 % CPU until the process was killed,
and every other request (health checks included) waited behind it."""

from __future__ import annotations

import time
from typing import Any

import pytest

from abflow.routing import assign
from abflow.spec import parse_experiment
from abflow.targeting import eval_condition
from abflow.targeting.conditions import REGEX_MATCH_SECONDS, SlowRegexWarning

EVIL = "a" * 40 + "!"


@pytest.mark.parametrize(
    "condition",
    [
        {"country": {"$regex": "(a|aa)+$"}},
        {"country": {"$regexi": "(A|AA)+$"}},
        {"country": {"$notRegex": "(a|a)+$"}},
        {"$not": {"country": {"$regex": "(a|aa)+$"}}},
        {"$or": [{"country": {"$regex": "(a|aa)+$"}}, {"country": "xx"}]},
    ],
)
def test_a_runaway_match_fails_the_condition_in_bounded_time(condition: dict[str, Any]) -> None:
    started = time.monotonic()
    with pytest.warns(SlowRegexWarning, match="ran over 10 ms; the condition failed"):
        assert eval_condition({"country": EVIL}, condition) is False
    assert time.monotonic() - started < 50 * REGEX_MATCH_SECONDS


def test_the_same_patterns_still_decide_values_they_match_quickly() -> None:
    assert eval_condition({"country": "aaaa"}, {"country": {"$regex": "(a|aa)+$"}}) is True
    assert eval_condition({"country": "b"}, {"country": {"$notRegex": "(a|a)+$"}}) is True
    assert eval_condition({"country": "AA"}, {"country": {"$regexi": "^(a|aa)+$"}}) is True


def test_a_unit_with_such_a_value_is_not_targeted() -> None:
    spec = parse_experiment(
        {
            "key": "regex-target",
            "unit": "id",
            "variants": [
                {"name": "a", "model": "python:m:a"},
                {"name": "b", "model": "python:m:b"},
            ],
            "condition": {"country": {"$regex": "(a|aa)+$"}},
        }
    )
    started = time.monotonic()
    with pytest.warns(SlowRegexWarning, match=r"'\(a\|aa\)\+\$'") as caught:
        outcomes = [assign(spec, {"id": f"u{i}", "country": EVIL}) for i in range(20)]
    assert time.monotonic() - started < 20 * 50 * REGEX_MATCH_SECONDS
    assert {(o.in_experiment, o.reason) for o in outcomes} == {(False, "condition")}
    assert all(w.category is SlowRegexWarning for w in caught)
