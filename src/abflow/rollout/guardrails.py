"""Judging a rollout's guardrails so that harm seen in one arm only still counts.

Analysis reports a guardrail's effect relative to the control. When the control's value is
0 (no complaint at all in the control) that effect is undefined (``zero_control_mean``) and
analysis can only say "inconclusive", which would leave a challenger that causes complaints
running. The controller therefore judges such a guardrail on the absolute difference (its
margin, relative to a control value of 0, allows no harm at all). When neither arm varies
(every challenger unit complained, no control unit did) there is no standard error either:
an exact permutation test decides, whose p-value for two constant arms is
``1 / C(n_c + n_t, n_t)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from abflow.analysis.results import ComparisonResult, ExperimentResult, MetricResult

__all__ = ["GuardrailCheck", "judge_guardrails", "permutation_p_value"]

ABSOLUTE_BASIS = "absolute difference (the control's value is 0)"
EXACT_BASIS = "exact permutation test (neither arm varies)"


@dataclass(frozen=True, slots=True)
class GuardrailCheck:
    """One plan guardrail of the challenger, as the controller judged it."""

    metric: str
    status: str
    """``pass``, ``fail`` or ``inconclusive``."""
    effect: float
    ci_low: float
    ci_high: float
    relative: bool
    basis: str
    """What the status rests on: the analysis as reported, or a fallback named here."""
    error_code: str | None
    p_value: float | None
    units: dict[str, int]
    values: dict[str, float]

    def evidence(self) -> dict[str, Any]:
        """The audit form (undefined numbers become null when written)."""
        return {
            "metric": self.metric,
            "status": self.status,
            "effect": self.effect,
            "ci": [self.ci_low, self.ci_high],
            "relative": self.relative,
            "basis": self.basis,
            "error_code": self.error_code,
            "p_value": self.p_value,
            "units": self.units,
            "values": self.values,
        }


def permutation_p_value(n_control: int, n_treatment: int) -> float:
    """One-sided exact p-value when each arm is constant and the two constants differ.

    Every arrangement of the pooled units is equally likely under no effect, and only one
    puts all the treatment's values above (or below) all the control's.
    """
    if n_control < 1 or n_treatment < 1:
        return math.nan
    log_ways = (
        math.lgamma(n_control + n_treatment + 1)
        - math.lgamma(n_control + 1)
        - math.lgamma(n_treatment + 1)
    )
    return math.exp(-log_ways)


def judge_guardrails(
    result: ExperimentResult,
    names: list[str],
    challenger: str,
    absolute: Callable[[], ExperimentResult],
) -> list[GuardrailCheck]:
    """Each plan guardrail (default: every guardrail metric) of ``challenger``, judged.

    ``absolute`` analyses the same phase with absolute effects; it is called at most once,
    and only when a guardrail's control value is 0.
    """
    wanted = set(names) or {m.name for m in result.metrics if m.role == "guardrail"}
    cache: list[ExperimentResult] = []

    def absolute_metric(name: str) -> MetricResult:
        if not cache:
            cache.append(absolute())
        return cache[0].metric(name)

    checks = []
    for metric in result.metrics:
        if metric.name not in wanted:
            continue
        for comparison in metric.comparisons:
            if comparison.variant != challenger:
                continue
            judged, basis = metric, "analysis"
            if comparison.error_code == "zero_control_mean" and metric.relative:
                judged, basis = absolute_metric(metric.name), ABSOLUTE_BASIS
                comparison = _comparison_of(judged, challenger)
            checks.append(_check(result.control, judged, comparison, basis, result.alpha))
    return checks


def _comparison_of(metric: MetricResult, variant: str) -> ComparisonResult:
    return next(c for c in metric.comparisons if c.variant == variant)


def _check(
    control: str, metric: MetricResult, comparison: ComparisonResult, basis: str, alpha: float
) -> GuardrailCheck:
    values = {v.variant: v for v in metric.values}
    units = {name: values[name].n for name in (control, comparison.variant) if name in values}
    means = {name: values[name].value for name in units}
    status: str = comparison.guardrail or "inconclusive"
    p_value = comparison.p_value
    if comparison.error_code == "zero_variance" and len(units) == 2:
        status, p_value = _exact(metric, means[control], means[comparison.variant], units, alpha)
        basis = EXACT_BASIS
    return GuardrailCheck(
        metric=metric.name,
        status=status,
        effect=comparison.effect,
        ci_low=comparison.ci_low,
        ci_high=comparison.ci_high,
        relative=metric.relative,
        basis=basis,
        error_code=comparison.error_code,
        p_value=p_value,
        units=units,
        values=means,
    )


def _exact(
    metric: MetricResult,
    control_value: float,
    challenger_value: float,
    units: dict[str, int],
    alpha: float,
) -> tuple[str, float | None]:
    """Both arms constant: harm beyond the margin with an exact p below alpha fails."""
    if not (math.isfinite(control_value) and math.isfinite(challenger_value)):
        return "inconclusive", None
    sign = 1.0 if metric.direction == "decrease" else -1.0
    harm = (challenger_value - control_value) * sign
    allowed = (metric.margin or 0.0) * abs(control_value)  # the margin is relative to control
    if harm <= 0:
        return "pass", None
    n_control, n_challenger = units.values()
    p_value = permutation_p_value(n_control, n_challenger)
    if harm > allowed and p_value < alpha:
        return "fail", p_value
    return "inconclusive", p_value
