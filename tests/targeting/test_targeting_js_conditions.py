"""Targeting conditions against GrowthBook's JavaScript SDK on 3,000 generated cases.

``tests/golden/growthbook-js-conditions.json`` holds random attributes and conditions, half
well-formed and half odd (mixed types, missing attributes, arrays, nested paths), each with
the answer of the SDK's own ``evalCondition`` (see ``make_condition_vectors.py``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from abflow.routing import eval_condition

VECTORS = json.loads(
    (Path(__file__).parents[1] / "golden" / "growthbook-js-conditions.json").read_text()
)


def test_every_generated_case_matches_the_javascript_sdk() -> None:
    groups = VECTORS["saved_groups"]
    cases: list[list[Any]] = VECTORS["cases"]
    assert len(cases) >= 2900
    assert {answer for _, _, answer in cases} == {True, False}  # both outcomes are exercised
    wrong = [
        (attributes, condition, answer)
        for attributes, condition, answer in cases
        if eval_condition(attributes, condition, groups) is not answer
    ]
    assert wrong == [], f"{len(wrong)} of {len(cases)} differ from {VECTORS['sdk']}: {wrong[:3]}"
