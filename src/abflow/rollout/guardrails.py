"""The rollout plan's guardrails of the challenger, read from the analysis result.

Analysis judges every guardrail (:mod:`abflow.analysis.guardrails`), including harm seen in
one arm only: a control value of 0 is judged on the absolute difference, two constant arms
by an exact permutation test. The controller does not judge again; it picks the plan's
guardrails for the challenger and keeps what the audit trail needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from abflow.analysis.decision import underpowered
from abflow.analysis.guardrails import EXACT_BASIS, reported_evidence
from abflow.analysis.results import ComparisonResult, ExperimentResult, MetricResult
from abflow.stats.exact import permutation_p_value

__all__ = ["GuardrailCheck", "judge_guardrails", "permutation_p_value"]


@dataclass(frozen=True, slots=True)
class GuardrailCheck:
    """One plan guardrail of the challenger, as analysis judged it."""

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
    unresolved_harm: str | None = None
    """Why the challenger looks worse beyond the margin yet the exact test (neither arm
    varies) has too few units to call it: a step must not advance on that."""

    def describe(self) -> str:
        """The effect and interval, or, judged by the exact test, the two constant values."""
        if self.basis.startswith("exact") and len(self.values) == 2:
            control, challenger = self.values.values()
            p = "" if self.p_value is None else f", p = {self.p_value:.3g}"
            return f"{control:.4g} (control) against {challenger:.4g}, judged by {self.basis}{p}"
        scale = "relative" if self.relative else "absolute"
        text = f"{scale} effect {self.effect:+.4g} [{self.ci_low:+.4g}, {self.ci_high:+.4g}]"
        return text if self.basis == "analysis" else f"{text}, judged by {self.basis}"

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


def judge_guardrails(
    result: ExperimentResult, names: list[str], challenger: str
) -> list[GuardrailCheck]:
    """Each plan guardrail (default: every guardrail metric) of ``challenger``."""
    wanted = set(names) or {m.name for m in result.metrics if m.role == "guardrail"}
    return [
        _check(result.control, metric, comparison)
        for metric in result.metrics
        if metric.name in wanted
        for comparison in metric.comparisons
        if comparison.variant == challenger
    ]


def _check(control: str, metric: MetricResult, comparison: ComparisonResult) -> GuardrailCheck:
    values = {v.variant: v for v in metric.values}
    units = {name: values[name].n for name in (control, comparison.variant) if name in values}
    evidence = comparison.guardrail_evidence or reported_evidence(comparison, metric.relative)
    return GuardrailCheck(
        metric=metric.name,
        status=comparison.guardrail or "inconclusive",
        effect=evidence.effect,
        ci_low=evidence.ci_low,
        ci_high=evidence.ci_high,
        relative=evidence.relative,
        basis=evidence.basis,
        error_code=evidence.error_code,
        p_value=evidence.p_value,
        units=units,
        values={name: values[name].value for name in units},
        unresolved_harm=underpowered(metric, comparison) if evidence.basis == EXACT_BASIS else None,
    )
