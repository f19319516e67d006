"""Guardrails, outcomes and the verdict, on hand-made comparisons."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from analysis_support import SPEC, START, register, simulate, write

from abflow.analysis import analyze, render_markdown
from abflow.analysis.decision import decide, guardrail_status, outcome_of, underpowered
from abflow.analysis.guardrails import judge_guardrail
from abflow.analysis.results import ComparisonResult, MetricResult, SrmSummary, VariantValue
from abflow.spec import parse_experiment
from abflow.stats import SampleStats, compare


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


def _generated(name: str, role: str, control: np.ndarray, treatment: np.ndarray) -> MetricResult:
    """A metric judged as analysis judges it, from generated per-unit values."""
    kind, direction = ("latency", "decrease") if role == "guardrail" else ("conversion", "increase")
    stats = [SampleStats(len(a), float(a.sum()), float((a**2).sum())) for a in (control, treatment)]
    cmp = compare(stats[0], stats[1], relative=True)
    p = cmp.p_value
    base = ComparisonResult(
        "treatment", cmp.effect, cmp.ci_low, cmp.ci_high, p, p, None, None, False, "inconclusive"
    )
    metric = MetricResult(
        name=name,
        kind=kind,
        role=role,
        direction=direction,
        relative=True,
        method="frequentist",
        margin=0.05 if role == "guardrail" else None,
        values=[
            VariantValue("control", len(control), float(control.mean())),
            VariantValue("treatment", len(treatment), float(treatment.mean())),
        ],
        comparisons=[base],
    )
    if role == "guardrail":
        status, evidence = judge_guardrail(metric, base, 0.05)
        judged = dataclasses.replace(base, guardrail=status, guardrail_evidence=evidence)
    else:
        outcome, significant = outcome_of(base, direction, 0.05)
        judged = dataclasses.replace(base, outcome=outcome, is_significant=significant)
    return dataclasses.replace(metric, comparisons=[judged])


def _latency(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.lognormal(mean=4.0, sigma=1.6, size=n)  # heavy-tailed milliseconds


def test_wide_guardrail_interval_is_underpowered_never_holds(rng: np.random.Generator) -> None:
    spec = parse_experiment(SPEC)
    healthy = SrmSummary(p_value=0.5, alpha=0.001, is_mismatch=False)
    primary = _generated(
        "converted", "primary", rng.binomial(1, 0.10, 20_000), rng.binomial(1, 0.14, 20_000)
    )
    assert primary.comparisons[0].outcome == "better"
    narrow = _generated("latency", "guardrail", _latency(rng, 12), _latency(rng, 12))
    judged = narrow.comparisons[0]
    half_width = (judged.ci_high - judged.ci_low) / 2
    assert judged.guardrail == "inconclusive"
    assert half_width > 0.5  # ten times the 5 % margin: 12 units per arm see almost nothing

    decision = decide(spec, [primary, narrow], healthy, "control")

    assert (decision.verdict, decision.winner) == ("keep_running", None)
    expected = f"cannot tell yet: guardrail latency is underpowered (±{half_width * 100:.3g}%"
    assert expected in decision.summary
    assert "for treatment, margin 5%)" in decision.summary
    assert "holds" not in decision.summary
    assert not any("holds" in reason for reason in decision.reasons)
    assert sum("underpowered" in reason for reason in decision.reasons) == 1


def test_powered_guardrail_holds(rng: np.random.Generator) -> None:
    spec = parse_experiment(SPEC)
    healthy = SrmSummary(p_value=0.5, alpha=0.001, is_mismatch=False)
    primary = _generated(
        "converted", "primary", rng.binomial(1, 0.10, 20_000), rng.binomial(1, 0.14, 20_000)
    )
    same = rng.lognormal(mean=4.0, sigma=0.3, size=40_000)
    wide = _generated("latency", "guardrail", same[:20_000], same[20_000:])
    judged = wide.comparisons[0]
    assert judged.guardrail == "pass"
    assert (judged.ci_high - judged.ci_low) / 2 < 0.05
    decision = decide(spec, [primary, wide], healthy, "control")
    assert decision.verdict == "ship"
    assert (
        decision.summary
        == "Ship treatment: it beats control on converted and every guardrail holds."
    )
    assert underpowered(wide, judged) is None


def test_underpowered_needs_half_width_beyond_margin() -> None:
    inside = dataclasses.replace(_comparison(0.03, 0.01, 0.08), guardrail="inconclusive")
    metric = _metric("g", "guardrail", inside)  # margin 5 %, half-width 3.5 %
    assert underpowered(metric, inside) is None
    wide = dataclasses.replace(_comparison(0.0, -0.65, 0.65), guardrail="inconclusive")
    assert underpowered(metric, wide) == (
        "guardrail g is underpowered (±65% for treatment, margin 5%)"
    )


def test_markdown_footer_counts_rows_in_words(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    write(url, simulate(np.random.default_rng(9), units=400))
    phases = [{"phase": 1, "weights_json": "[0.5, 0.5]", "coverage": 1.0, "started_at": START}]
    register(url, parse_experiment(SPEC), phases)
    result = analyze(url, "checkout")
    footer = next(line for line in render_markdown(result).splitlines() if "<sub>" in line)
    rows = result.provenance.rows
    assert rows["units"] == 400
    assert f"· 400 units · {rows['unit_event_rows']:,} unit event rows · " in footer
    assert f"{rows['prediction_event_rows']:,} prediction event rows · " in footer
    assert "{" not in footer
    assert "_" not in footer


def test_a_comparison_without_data_reads_as_a_sentence() -> None:
    spec = parse_experiment(SPEC)
    healthy = SrmSummary(p_value=0.5, alpha=0.001, is_mismatch=False)
    empty = dataclasses.replace(
        _comparison(math.nan, math.nan, math.nan), outcome="error", error_code="too_few_units"
    )
    decision = decide(spec, [_metric("purchase", "primary", empty)], healthy, "control")
    assert decision.verdict == "keep_running"
    assert decision.reasons == [
        "treatment: purchase cannot be compared yet: "
        "each arm needs at least two units to estimate a variance"
    ]
