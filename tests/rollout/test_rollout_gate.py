"""The deploy gate's rules, on analysis results built to sit on each side of each rule."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from abflow.analysis.decision import underpowered
from abflow.analysis.results import (
    ComparisonResult,
    Decision,
    ExperimentResult,
    MetricResult,
    Progress,
    Provenance,
    SrmSummary,
    VariantCount,
)
from abflow.errors import InvalidArgumentError
from abflow.rollout import GatePolicy, Requirement, evaluate_gate


def comparison(
    variant: str = "challenger",
    *,
    effect: float = 0.0,
    outcome: str = "inconclusive",
    guardrail: str | None = None,
    error_code: str | None = None,
) -> ComparisonResult:
    return ComparisonResult(
        variant=variant,
        effect=effect,
        ci_low=effect - 0.01,
        ci_high=effect + 0.01,
        p_value=0.5,
        adjusted_p_value=0.5,
        chance_to_win=None,
        expected_loss=None,
        is_significant=outcome in ("better", "worse"),
        outcome=outcome,  # type: ignore[arg-type]
        guardrail=guardrail,  # type: ignore[arg-type]
        error_code=error_code,
    )


def metric(name: str, role: str, *comparisons: ComparisonResult) -> MetricResult:
    return MetricResult(
        name=name,
        kind="conversion",
        role=role,
        direction="decrease" if role == "guardrail" else "increase",
        relative=True,
        method="frequentist",
        margin=0.05 if role == "guardrail" else None,
        values=[],
        comparisons=list(comparisons),
    )


def result(
    *metrics: MetricResult, srm_p: float = 0.5, units: tuple[int, ...] = (1000, 1000)
) -> ExperimentResult:
    names = ["control", "challenger", "other"][: len(units)]
    return ExperimentResult(
        experiment_key="exp",
        name="exp",
        phase=2,
        phases=[1, 2],
        method="frequentist",
        alpha=0.05,
        correction="holm",
        provenance=Provenance("exp", 1, "h", 2, None, None, {}, "0", 0.0, "sqlite://"),
        variants=[
            VariantCount(n, u, 1 / len(units), 1 / len(units))
            for n, u in zip(names, units, strict=True)
        ],
        srm=SrmSummary(srm_p, 0.001, srm_p < 0.001),
        metrics=list(metrics),
        progress=Progress(sum(units), None, None, 1.0, None),
        decision=Decision("keep_running", None, "", []),
    )


def failed(gate_result: object) -> list[tuple[str, str | None]]:
    return [(c.check, c.variant) for c in gate_result.failures]  # type: ignore[attr-defined]


def test_clean_result_passes_and_lists_every_check() -> None:
    got = evaluate_gate(
        result(
            metric("fpr", "guardrail", comparison(guardrail="pass")),
            metric("recall", "primary", comparison(effect=0.1, outcome="better")),
        )
    )
    assert got.passed
    assert [c.check for c in got.checks] == ["sample ratio", "guardrail fpr", "primary recall"]
    assert got.as_dict()["passed"] is True
    assert (got.experiment_key, got.phase) == ("exp", 2)


def test_sample_ratio_mismatch_fails_whatever_else() -> None:
    got = evaluate_gate(
        result(metric("recall", "primary", comparison(outcome="better")), srm_p=1e-6)
    )
    assert failed(got) == [("sample ratio", None)]


@pytest.mark.parametrize(
    ("status", "no_harm", "non_inferior"),
    [("pass", True, True), ("inconclusive", True, False), ("fail", False, False)],
)
def test_guardrail_status_by_requirement(status: str, no_harm: bool, non_inferior: bool) -> None:
    analysed = result(metric("fpr", "guardrail", comparison(guardrail=status)))
    assert evaluate_gate(analysed).passed is no_harm
    strict = GatePolicy(require=Requirement.non_inferior)
    assert evaluate_gate(analysed, strict).passed is non_inferior


@pytest.mark.parametrize(("half_width", "passes"), [(0.049, True), (0.3, False)])
def test_no_harm_refuses_a_guardrail_too_wide_to_see_harm(half_width: float, passes: bool) -> None:
    wide = replace(comparison(guardrail="inconclusive"), ci_low=-half_width, ci_high=half_width)
    guardrail = metric("fpr", "guardrail", wide)  # margin 5 %
    got = evaluate_gate(result(guardrail))
    assert got.passed is passes
    assert (underpowered(guardrail, wide) is None) is passes  # the verdict's own rule
    if not passes:
        assert failed(got) == [("guardrail fpr", "challenger")]
        (check,) = [c for c in got.checks if not c.passed]
        assert check.detail.startswith("underpowered, cannot rule out harm: ")


@pytest.mark.parametrize(
    ("outcome", "no_harm", "win"),
    [("better", True, True), ("inconclusive", True, False), ("worse", False, False)],
)
def test_primary_outcome_by_requirement(outcome: str, no_harm: bool, win: bool) -> None:
    analysed = result(metric("recall", "primary", comparison(outcome=outcome)))
    assert evaluate_gate(analysed).passed is no_harm
    assert evaluate_gate(analysed, GatePolicy(require=Requirement.win)).passed is win


def test_win_needs_a_primary_metric() -> None:
    got = evaluate_gate(result(), GatePolicy(require=Requirement.win))
    assert failed(got) == [("primary metric", None)]


def test_a_gate_that_saw_nothing_does_not_open() -> None:
    """No metric to judge and too few units to check the split: the gate passed. With
    enough units it checks the split alone, as a canary's analysis job may want."""
    assert evaluate_gate(result()).passed
    assert not evaluate_gate(result(srm_p=1e-9)).passed
    unchecked = SrmSummary(math.nan, 0.001, False, "not_enough_data", "no_units")
    blind = replace(result(units=(0, 0)), srm=unchecked)
    assert failed(evaluate_gate(blind)) == [("metrics", None)]
    secondary = replace(blind, metrics=[metric("clicks", "secondary", comparison(outcome="worse"))])
    got = evaluate_gate(secondary, GatePolicy(require=Requirement.non_inferior))
    assert failed(got) == [("metrics", None)]
    assert "nothing was judged" in got.failures[0].detail


def test_uncomputable_comparisons_keep_the_gate_closed() -> None:
    analysed = result(
        metric("fpr", "guardrail", comparison(guardrail="pass", error_code="zero_variance")),
        metric("recall", "primary", comparison(outcome="inconclusive", error_code="no_data")),
    )
    got = evaluate_gate(analysed)
    assert failed(got) == [("guardrail fpr", "challenger"), ("primary recall", "challenger")]
    assert "not computable (zero_variance)" in got.checks[1].detail


def test_min_units_checks_every_arm_judged() -> None:
    guardrail = metric(
        "fpr",
        "guardrail",
        comparison("challenger", guardrail="pass"),
        comparison("other", guardrail="pass"),
    )
    analysed = result(guardrail, units=(5000, 4000, 100))
    got = evaluate_gate(analysed, GatePolicy(min_units=4500))
    assert failed(got) == [("sample size", "challenger"), ("sample size", "other")]
    only = evaluate_gate(analysed, GatePolicy(min_units=4000, variants=("challenger",)))
    assert only.passed
    assert [c.variant for c in only.checks if c.check == "sample size"] == ["control", "challenger"]


def test_only_the_chosen_candidates_are_judged() -> None:
    analysed = result(
        metric(
            "fpr",
            "guardrail",
            comparison("challenger", guardrail="pass"),
            comparison("other", guardrail="fail"),
        ),
        units=(1000, 1000, 1000),
    )
    assert not evaluate_gate(analysed).passed
    assert evaluate_gate(analysed, GatePolicy(variants=("challenger",))).passed


def test_bad_policies_are_clear_errors() -> None:
    with pytest.raises(InvalidArgumentError, match="'control' is not a treatment"):
        evaluate_gate(result(), GatePolicy(variants=("control",)))
    with pytest.raises(InvalidArgumentError, match="min_units"):
        evaluate_gate(result(), GatePolicy(min_units=-1))


def test_an_effect_that_is_not_a_number_keeps_the_gate_closed() -> None:
    """outcome 'error' (a non-finite effect) is as blind as an error code, even under no-harm."""
    blind = comparison(effect=float("nan"), outcome="error", guardrail="inconclusive")
    analysed = result(metric("fpr", "guardrail", blind), metric("recall", "primary", blind))
    got = evaluate_gate(analysed)
    assert failed(got) == [("guardrail fpr", "challenger"), ("primary recall", "challenger")]
    assert got.checks[1].detail.startswith("not computable")


def test_a_candidate_missing_from_a_metric_keeps_the_gate_closed() -> None:
    analysed = result(
        metric("fpr", "guardrail", comparison("challenger", guardrail="pass")),
        metric("recall", "primary", comparison("challenger", outcome="better")),
        units=(1000, 1000, 1000),
    )
    got = evaluate_gate(analysed)
    assert failed(got) == [("guardrail fpr", "other"), ("primary recall", "other")]
    assert "no comparison" in got.failures[0].detail


def test_a_candidate_named_twice_is_judged_once() -> None:
    analysed = result(metric("fpr", "guardrail", comparison("challenger", guardrail="pass")))
    got = evaluate_gate(analysed, GatePolicy(min_units=1, variants=("challenger", "challenger")))
    assert [(c.check, c.variant) for c in got.checks] == [
        ("sample ratio", None),
        ("sample size", "control"),
        ("sample size", "challenger"),
        ("guardrail fpr", "challenger"),
    ]
