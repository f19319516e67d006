"""Regular expressions and number text in conditions read as JavaScript reads them.

GrowthBook's SDK hands ``$regex`` patterns to JavaScript's ``RegExp`` and converts text with
``Number``; each answer below is what ``evalCondition`` of @growthbook/growthbook 1.8.0 gave
for ``{"a": value}`` and ``{"a": {operator: argument}}`` (Node.js, run once, pinned here).
"""

from __future__ import annotations

from typing import Any

import pytest

from abflow.routing import eval_condition
from abflow.targeting.js_regex import translate

JS_ANSWERS: list[tuple[str, str, Any, bool]] = [
    ("ab\n", "$regex", "b$", False),
    ("ab", "$regex", "b$", True),
    ("ab", "$regex", "(?<n>a)b", True),
    ("aa", "$regex", "(?<n>a)\\k<n>", True),
    ("ak", "$regex", "a\\k", True),
    ("A", "$regex", "(?i)a", False),
    ("a", "$regex", "(?P<n>a)", False),
    ("aa", "$regex", "a*+", False),
    ("x\ry", "$regex", "x.y", False),
    ("x-y", "$regex", "x.y", True),
    ("Z\u00fcrich", "$regex", "^\\w+$", False),
    ("Zurich", "$regex", "^\\w+$", True),
    ("\u0663", "$regex", "^\\d$", False),
    ("\u00e9 b", "$regex", "\\bb", True),
    ("\u00e9b", "$regex", "\\bb", True),
    ("\u00a0", "$regex", "^\\s$", True),
    ("\u001c", "$regex", "^\\s$", False),
    ("", "$regex", "[^]", False),
    ("q", "$regex", "[^]", True),
    ("q", "$regex", "[]", False),
    ("a", "$regex", "a{,2}", False),
    ("a{,2}", "$regex", "a{,2}", True),
    ("aa", "$regex", "^a{2}$", True),
    ("Z", "$regex", "\\Z", True),
    ("", "$regex", "\\Z", False),
    ("A", "$regex", "\\A", True),
    ("\n", "$regex", "\\cJ", True),
    ("]", "$regex", "[\\]]", True),
    ("&", "$regex", "[&&]", True),
    ("12", "$gt", "\uff11", False),
    ("1000", "$eq", 1000, False),
    ("1_000", "$gt", 1, False),
    ("\u0663", "$gt", 2, False),
    ("\u0130", "$regexi", "[\\w]+$", False),
    ("\u017f", "$regexi", "s", False),
    ("\u212a", "$regexi", "k", False),
    ("\u0131", "$regexi", "^i$", False),
    ("\u017f", "$regexi", "\u017f", True),
    ("S", "$regexi", "\u017f", False),
    ("\u00c4", "$regexi", "\u00e4", True),
    ("\u0130", "$regexi", "\u0130", True),
]


@pytest.mark.parametrize(("value", "operator", "argument", "answer"), JS_ANSWERS)
def test_conditions_answer_as_the_javascript_sdk(
    value: str, operator: str, argument: Any, answer: bool
) -> None:
    assert eval_condition({"a": value}, {"a": {operator: argument}}) is answer


@pytest.mark.parametrize("pattern", ["(?i)a", "(?P<n>a)", "a*+", "a{1}+", "[a", "a\\", "(?#x)"])
def test_patterns_javascript_rejects_translate_to_none(pattern: str) -> None:
    assert translate(pattern) is None


def test_plain_patterns_keep_their_meaning() -> None:
    assert translate("^a|b") == "^a|b"
    assert translate("[a-c]+?x") == "[a-c]+?x"
