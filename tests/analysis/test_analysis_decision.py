"""Guardrails, outcomes and the verdict, on hand-made comparisons."""

from __future__ import annotations

import math

import pytest
from analysis_support import SPEC

from abflow.analysis.decision import decide, guardrail_status, outcome_of
from abflow.analysis.results import ComparisonResult, MetricResult, SrmSummary, VariantValue
from abflow.spec import parse_experiment


def _comparison(effect: float, low: float, high: float, p: float = 0.01) -> ComparisonResult:
    return ComparisonResult(
        variant="treatment",
        effect=effect,
        ci_low=low,
        ci_high=high,
        p_value=p,
        adjusted_p_value=p,
        chance_to_win=None,
        expected_loss=None,
        is_significant=False,
        outcome="inconclusive",
    )


@pytest.mark.parametrize(
    ("direction", "effect", "low", "high", "margin", "expected"),
    [
        ("decrease", 0.01, -0.02, 0.04, 0.05, "pass"),  # harm ruled out beyond 5 %
        ("decrease", 0.10, 0.06, 0.14, 0.05, "fail"),  # significantly worse, beyond margin
        ("decrease", 0.03, 0.01, 0.08, 0.05, "inconclusive"),  # worse, but maybe within margin
        ("increase", -0.10, -0.14, -0.06, 0.05, "fail"),  # a drop is harm when up is good
        ("increase", 0.10, 0.06, 0.14, 0.05, "pass"),
    ],
)
def test_guardrail_status(
    direction: str, effect: float, low: float, high: float, margin: float, expected: str
) -> None:
    assert guardrail_status(_comparison(effect, low, high), direction, margin) == expected


def test_outcome_follows_direction_and_adjusted_p() -> None:
    assert outcome_of(_comparison(0.1, 0.05, 0.15), "increase", 0.05) == ("better", True)
    assert outcome_of(_comparison(0.1, 0.05, 0.15), "decrease", 0.05) == ("worse", True)
    assert outcome_of(_comparison(0.1, -0.05, 0.25, p=0.2), "increase", 0.05)[0] == "inconclusive"
    broken = _comparison(math.nan, math.nan, math.nan)
    assert outcome_of(broken, "increase", 0.05) == ("error", False)


def _metric(name: str, role: str, comparison: ComparisonResult) -> MetricResult:
    return MetricResult(
        name=name,
        kind="conversion",
        role=role,
        direction="increase",
        relative=True,
        method="frequentist",
        margin=0.05 if role == "guardrail" else None,
        values=[VariantValue("control", 100, 0.5), VariantValue("treatment", 100, 0.55)],
        comparisons=[comparison],
    )


def test_verdicts() -> None:
    spec = parse_experiment(SPEC)
    healthy = SrmSummary(p_value=0.5, alpha=0.001, is_mismatch=False)
    better = ComparisonResult("treatment", 0.1, 0.05, 0.15, 0.01, 0.01, None, None, True, "better")
    passing = ComparisonResult(
        "treatment", 0.0, -0.01, 0.01, 0.9, 0.9, None, None, False, "inconclusive", "pass"
    )
    failing = ComparisonResult(
        "treatment", -0.2, -0.3, -0.1, 0.001, 0.001, None, None, True, "worse", "fail"
    )
    ship = decide(
        spec,
        [_metric("m", "primary", better), _metric("g", "guardrail", passing)],
        healthy,
        "control",
    )
    assert (ship.verdict, ship.winner) == ("ship", "treatment")
    keep = decide(
        spec,
        [_metric("m", "primary", better), _metric("g", "guardrail", failing)],
        healthy,
        "control",
    )
    assert (keep.verdict, keep.winner) == ("keep_control", "control")
    wait = decide(spec, [_metric("m", "primary", passing)], healthy, "control")
    assert wait.verdict == "keep_running"
    broken = SrmSummary(p_value=1e-6, alpha=0.001, is_mismatch=True)
    assert decide(spec, [_metric("m", "primary", better)], broken, "control").verdict == "invalid"
