"""A guardrail's status, judged so that harm seen in one arm only still counts.

A guardrail's effect is usually relative to the control. When the control's value is 0 (no
complaint at all in the control) that effect is undefined (``zero_control_mean``), and a
status read from it alone would be "inconclusive", leaving a challenger that causes
complaints running. Such a guardrail is judged on the absolute difference instead (its
margin, relative to a control value of 0, allows no harm at all). When neither arm varies
(every challenger unit complained, no control unit did) there is no standard error either:
an exact permutation test decides, whose p-value for two constant arms is
``1 / C(n_c + n_t, n_t)``. Two equal constant arms (no complaint anywhere) show nothing
either way: inconclusive.

This is the one place the rule lives: ``abflow analyze``, ``abflow gate``, the dashboard and
the rollout controller all read the status and its :class:`GuardrailEvidence` from the
analysis result.
"""

from __future__ import annotations

import dataclasses
import math

from abflow.analysis.decision import guardrail_status, margin_on_effect_scale
from abflow.analysis.results import (
    ComparisonResult,
    GuardrailEvidence,
    GuardrailStatus,
    MetricResult,
)
from abflow.stats.exact import permutation_p_value

__all__ = [
    "ABSOLUTE_BASIS",
    "ANALYSIS_BASIS",
    "EXACT_BASIS",
    "absolute_evidence",
    "judge_guardrail",
    "reported_evidence",
]

ANALYSIS_BASIS = "analysis"
ABSOLUTE_BASIS = "absolute difference (the control's value is 0)"
EXACT_BASIS = "exact permutation test (neither arm varies)"


def reported_evidence(comparison: ComparisonResult, relative: bool) -> GuardrailEvidence:
    """The comparison as analysis reports it."""
    return GuardrailEvidence(
        basis=ANALYSIS_BASIS,
        effect=comparison.effect,
        ci_low=comparison.ci_low,
        ci_high=comparison.ci_high,
        relative=relative,
        p_value=comparison.p_value,
        error_code=comparison.error_code,
    )


def absolute_evidence(
    effect: float,
    ci_low: float,
    ci_high: float,
    p_value: float | None,
    error_code: str | None,
) -> GuardrailEvidence:
    """The absolute comparison that stands in for an undefined relative one."""
    return GuardrailEvidence(ABSOLUTE_BASIS, effect, ci_low, ci_high, False, p_value, error_code)


def judge_guardrail(
    metric: MetricResult, comparison: ComparisonResult, alpha: float
) -> tuple[GuardrailStatus, GuardrailEvidence]:
    """The status of one guardrail comparison and the evidence it rests on.

    ``comparison.guardrail_evidence``, when set, is the absolute stand-in computed with the
    comparison; otherwise the comparison as reported is judged.
    """
    evidence = comparison.guardrail_evidence or reported_evidence(comparison, metric.relative)
    values = {v.variant: v for v in metric.values}
    control = metric.values[0] if metric.values else None
    if (
        evidence.error_code == "zero_variance"
        and metric.method != "quantile"  # a quantile's spread can vanish in a varying arm
        and control is not None
        and comparison.variant in values
    ):
        challenger = values[comparison.variant]
        status, p_value = _exact(
            metric, control.value, challenger.value, control.n, challenger.n, alpha
        )
        return status, dataclasses.replace(evidence, basis=EXACT_BASIS, p_value=p_value)
    margin = margin_on_effect_scale(metric, evidence.relative)
    return guardrail_status(evidence, metric.direction, margin), evidence


def _exact(
    metric: MetricResult,
    control_value: float,
    challenger_value: float,
    n_control: int,
    n_challenger: int,
    alpha: float,
) -> tuple[GuardrailStatus, float | None]:
    """Both arms constant: harm beyond the margin with an exact p below alpha fails; a
    challenger better with an exact p below alpha passes. Equal arms pass nothing: no
    complaint in 50 units per arm (or an event never logged) leaves a complaint rate of a
    few percent possible in either arm, which no margin relative to 0 allows."""
    if not (math.isfinite(control_value) and math.isfinite(challenger_value)):
        return "inconclusive", None
    sign = 1.0 if metric.direction == "decrease" else -1.0
    harm = (challenger_value - control_value) * sign
    if harm == 0:
        return "inconclusive", None
    allowed = (metric.margin or 0.0) * abs(control_value)  # the margin is relative to control
    p_value = permutation_p_value(n_control, n_challenger)
    if p_value >= alpha:
        return "inconclusive", p_value
    if harm < 0:
        return "pass", p_value
    return ("fail" if harm > allowed else "inconclusive"), p_value
