"""A deploy gate: turn an experiment's analysis into pass or fail, with every check listed.

The rules are printed with the verdict so that a failed pipeline explains itself:

* the split must be trustworthy: a sample ratio mismatch fails the gate, whatever else;
* each arm needs ``min_units`` units (not enough data is a failure, not a pass);
* no guardrail may fail, nor be underpowered (its interval wider than the margin both ways:
  the verdict says "cannot tell yet" then, and the gate agrees); with ``non-inferior`` each
  must positively pass (its interval rules out harm beyond the margin);
* the primary metric must not be significantly worse; with ``win`` it must be better;
* ``shadow-no-harm`` judges shadow variants instead (:func:`shadow_checks`): on the
  requests both models answered, the bound of each guardrail's paired difference in the
  harmful direction must stay within its margin.

A comparison abflow could not compute (an ``error_code``) fails the check it belongs to:
a gate that cannot see must not open.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from abflow.analysis.decision import exact_description, underpowered
from abflow.analysis.formatting import format_effect, format_interval
from abflow.analysis.results import (
    ComparisonResult,
    ExperimentResult,
    MetricResult,
    ShadowMeasure,
    ShadowResult,
)
from abflow.errors import InvalidArgumentError

__all__ = [
    "SHADOW_MEASURES",
    "SHADOW_UNOBSERVABLE",
    "GateCheck",
    "GatePolicy",
    "GateResult",
    "Requirement",
    "evaluate_gate",
    "shadow_checks",
    "shadow_harms",
]

SHADOW_MEASURES = {
    "false_positive_rate": "false_positive_rate",
    "recall": "recall",
    "accuracy": "accuracy",
    "error_rate": "error_rate",
    "latency": "latency",
}
"""Guardrail kind → the paired shadow measure that judges it (latency: the paired mean)."""

SHADOW_UNOBSERVABLE = frozenset(
    {"conversion", "mean", "sum", "ratio", "quantile", "fallback_rate", "cost"}
)
"""Guardrail kinds a shadow model cannot move (its answers reach no one) or does not have."""


class Requirement(StrEnum):
    """How much evidence the candidate must bring."""

    no_harm = "no-harm"
    """No guardrail fails and the primary metric is not significantly worse."""
    non_inferior = "non-inferior"
    """Every guardrail passes its non-inferiority margin; primary not significantly worse."""
    win = "win"
    """Non-inferior on guardrails and significantly better on the primary metric."""
    shadow_no_harm = "shadow-no-harm"
    """Each shadow model is paired non-inferior to the served model on every guardrail."""


@dataclass(frozen=True, slots=True)
class GatePolicy:
    """What the gate requires; the defaults suit a merge gate on a running experiment."""

    require: Requirement = Requirement.no_harm
    min_units: int = 0
    """Units each arm must have before the gate can pass."""
    variants: tuple[str, ...] = ()
    """Candidates to judge (default: every variant but the control)."""


@dataclass(frozen=True, slots=True)
class GateCheck:
    """One rule, one variant: whether it held, and the numbers that say so."""

    check: str
    variant: str | None
    passed: bool
    detail: str


@dataclass(frozen=True, slots=True)
class GateResult:
    """The verdict: passed only when every check passed."""

    experiment_key: str
    phase: int
    require: Requirement
    checks: list[GateCheck] = field(default_factory=list)
    spec_version: int | None = None
    spec_hash: str = ""
    window: tuple[float | None, float | None] = (None, None)
    """The analysed data's time window (its end is no cutoff: see ``until``)."""
    until: float | None = None
    """The data cutoff the gate was given: ``abflow gate --phase N --until UNTIL`` judges the
    same events again. None: every event of the phase, which a re-run would not repeat."""

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def failures(self) -> list[GateCheck]:
        return [check for check in self.checks if not check.passed]

    def as_dict(self) -> dict[str, Any]:
        return {
            "experiment_key": self.experiment_key,
            "phase": self.phase,
            "require": self.require.value,
            "passed": self.passed,
            "spec_version": self.spec_version,
            "spec_hash": self.spec_hash,
            "window": list(self.window),
            "until": self.until,
            "checks": [
                {
                    "check": c.check,
                    "variant": c.variant,
                    "passed": c.passed,
                    "detail": c.detail,
                }
                for c in self.checks
            ],
        }


def evaluate_gate(result: ExperimentResult, policy: GatePolicy | None = None) -> GateResult:
    """Apply ``policy`` to one analysed phase; InvalidArgumentError for an unknown variant."""
    policy = policy or GatePolicy()
    if policy.min_units < 0:
        msg = f"min_units must be >= 0, got {policy.min_units}"
        raise InvalidArgumentError(msg)
    names = [count.variant for count in result.variants]
    if not names:
        msg = f"experiment {result.experiment_key!r} has no variants to judge"
        raise InvalidArgumentError(msg)
    control, treatments = names[0], names[1:]
    unknown = [name for name in policy.variants if name not in treatments]
    if unknown:
        msg = (
            f"{unknown[0]!r} is not a treatment of {result.experiment_key!r}; "
            f"treatments are {', '.join(treatments) or 'none'}"
        )
        raise InvalidArgumentError(msg)
    candidates = list(dict.fromkeys(policy.variants)) or treatments
    provenance = result.provenance
    gate = GateResult(
        result.experiment_key,
        result.phase,
        policy.require,
        spec_version=provenance.spec_version,
        spec_hash=provenance.spec_hash,
        window=(provenance.window_start, provenance.window_end),
        until=provenance.until,
    )
    if policy.require is Requirement.shadow_no_harm:
        gate.checks.extend(shadow_checks(result, list(policy.variants), policy.min_units))
        return gate
    srm = result.srm
    gate.checks.append(
        GateCheck(
            "sample ratio",
            None,
            not srm.is_mismatch,
            f"SRM not enough data ({srm.error_code or 'undefined test'}); not checked"
            if srm.status == "not_enough_data"
            else f"SRM p-value {srm.p_value:.3g} (mismatch below {srm.alpha:g})",
        )
    )
    if policy.min_units:
        units = {count.variant: count.units for count in result.variants}
        for name in [control, *candidates]:
            gate.checks.append(
                GateCheck(
                    "sample size",
                    name,
                    units[name] >= policy.min_units,
                    f"{units[name]:,} units (need {policy.min_units:,})",
                )
            )
    for metric in result.metrics:
        if metric.role == "guardrail":
            gate.checks.extend(_guardrail_checks(metric, candidates, policy.require))
    primary = next((m for m in result.metrics if m.role == "primary"), None)
    if primary is not None:
        gate.checks.extend(_primary_checks(primary, candidates, policy.require))
    elif policy.require is Requirement.win:
        gate.checks.append(
            GateCheck("primary metric", None, False, "the spec names no primary metric to win on")
        )
    elif (
        not any(metric.role == "guardrail" for metric in result.metrics)
        and srm.status == "not_enough_data"
    ):
        # No metric, and too few units to check the split: a gate that saw nothing must not
        # open. (With enough units it is a check of the split, which a canary may want.)
        detail = (
            "the spec names no primary or guardrail metric and the split could not be "
            "checked: nothing was judged"
        )
        gate.checks.append(GateCheck("metrics", None, False, detail))
    return gate


def _comparisons(
    metric: MetricResult, candidates: list[str], check: str
) -> tuple[list[ComparisonResult], list[GateCheck]]:
    """The candidates' comparisons, and a failed check for each candidate that has none."""
    found = [c for c in metric.comparisons if c.variant in candidates]
    seen = {c.variant for c in found}
    missing = [
        GateCheck(check, name, False, f"no comparison with the control on {metric.name}")
        for name in candidates
        if name not in seen
    ]
    return found, missing


def _blind(comparison: ComparisonResult) -> str | None:
    """Why a comparison cannot be judged (an error code, or an effect that is not a number)."""
    if comparison.error_code is not None:
        return comparison.error_code
    if comparison.outcome == "error" or not math.isfinite(comparison.effect):
        return "effect is not a number"
    return None


def _effect(metric: MetricResult, comparison: ComparisonResult) -> str:
    return f"{format_effect(metric, comparison.effect)} {format_interval(metric, comparison)}"


def _guardrail_effect(metric: MetricResult, comparison: ComparisonResult) -> str:
    evidence = comparison.guardrail_evidence
    if evidence is None or evidence.basis == "analysis":
        return _effect(metric, comparison)
    exact = exact_description(metric, comparison)
    if exact is not None:
        return exact
    scale = "relative" if evidence.relative else "absolute"
    return (
        f"{scale} effect {evidence.effect:+.4g} [{evidence.ci_low:+.4g}, {evidence.ci_high:+.4g}]"
        f" judged by {evidence.basis}"
    )


def _guardrail_blind(comparison: ComparisonResult) -> str | None:
    """Why a guardrail cannot be judged: analysis's fallbacks (the absolute difference when
    the control's value is 0, an exact test when neither arm varies) can see what the
    reported comparison cannot."""
    evidence = comparison.guardrail_evidence
    if evidence is None or evidence.basis == "analysis":
        return _blind(comparison)
    if evidence.basis.startswith("exact") or comparison.guardrail == "fail":
        return None
    if evidence.error_code is not None:
        return evidence.error_code
    return None if math.isfinite(evidence.effect) else "effect is not a number"


def _guardrail_checks(
    metric: MetricResult, candidates: list[str], require: Requirement
) -> list[GateCheck]:
    check = f"guardrail {metric.name}"
    found, checks = _comparisons(metric, candidates, check)
    margin = f"margin {(metric.margin or 0.0) * 100:g}% of control"
    for comparison in found:
        status: str = comparison.guardrail or "inconclusive"
        blind = _guardrail_blind(comparison)
        if blind is not None:
            passed, status = False, f"not computable ({blind})"
        elif require is Requirement.no_harm:
            weak = underpowered(metric, comparison)
            passed = status != "fail" and weak is None
            if weak is not None:
                status = "underpowered, cannot rule out harm"
        else:
            passed = status == "pass"
        detail = f"{status}: {_guardrail_effect(metric, comparison)}, {margin}, {metric.direction} is good"
        checks.append(GateCheck(check, comparison.variant, passed, detail))
    return checks


def _primary_checks(
    metric: MetricResult, candidates: list[str], require: Requirement
) -> list[GateCheck]:
    check = f"primary {metric.name}"
    found, checks = _comparisons(metric, candidates, check)
    for comparison in found:
        outcome: str = comparison.outcome
        blind = _blind(comparison)
        if blind is not None:
            passed, outcome = False, f"not computable ({blind})"
        elif require is Requirement.win:
            passed = outcome == "better"
        else:
            passed = outcome != "worse"
        detail = f"{outcome}: {_effect(metric, comparison)}, {metric.direction} is good"
        checks.append(GateCheck(check, comparison.variant, passed, detail))
    return checks


def shadow_checks(
    result: ExperimentResult, variants: list[str], min_units: int = 0
) -> list[GateCheck]:
    """Paired non-inferiority of each shadow variant on each guardrail.

    A guardrail passes when the ``1 - alpha`` paired interval's bound in the harmful
    direction is at most ``margin`` times the served model's value (margin 0 when unset).
    No shadow predictions, too few pairs, a measure that cannot be computed, or a guardrail
    kind without a paired measure fail: a gate that cannot see stays closed.
    """
    shadows = [s for s in result.shadow if not variants or s.variant in variants]
    seen = {s.variant for s in shadows}
    checks = [
        GateCheck("shadow predictions", name, False, "no shadow predictions in this phase")
        for name in variants
        if name not in seen
    ]
    if not shadows and not variants:
        checks.append(
            GateCheck("shadow predictions", None, False, "no shadow predictions in this phase")
        )
    guardrails = [m for m in result.metrics if m.role == "guardrail"]
    for shadow in shadows:
        enough = shadow.pairs >= max(min_units, 2)
        checks.append(
            GateCheck(
                "shadow pairs",
                shadow.variant,
                enough,
                f"{shadow.pairs:,} requests answered by both models (need {max(min_units, 2):,})",
            )
        )
        checks.extend(_shadow_guardrail(metric, shadow) for metric in guardrails)
    return checks


def _shadow_guardrail(metric: MetricResult, shadow: ShadowResult) -> GateCheck:
    check = f"shadow guardrail {metric.name}"
    if metric.kind in SHADOW_UNOBSERVABLE:
        detail = f"{metric.kind}: not moved by a shadow model (its answers reach no one)"
        return GateCheck(check, shadow.variant, True, detail)
    name = SHADOW_MEASURES.get(metric.kind)
    if name is None:
        detail = f"not computable (no paired shadow measure for {metric.kind})"
        return GateCheck(check, shadow.variant, False, detail)
    measure = shadow.measure(name)
    harm = "increase" if metric.direction == "decrease" else "decrease"
    bound = _harm_bound(measure, harm)
    allowed = (metric.margin or 0.0) * abs(measure.served)
    figures = (
        f"served {measure.served:.4g}, shadow {measure.shadow:.4g}, difference "
        f"{measure.difference:+.4g} [{measure.ci_low:+.4g}, {measure.ci_high:+.4g}] on "
        f"{measure.n:,} paired requests"
    )
    if measure.error_code is not None or not math.isfinite(bound) or not math.isfinite(allowed):
        reason = measure.error_code or "interval is not a number"
        return GateCheck(check, shadow.variant, False, f"not computable ({reason}): {figures}")
    passed = bool(bound <= allowed)
    verdict = "within" if passed else "beyond"
    detail = (
        f"{figures}; worst plausible {harm} {bound:.4g} {verdict} the margin "
        f"{allowed:.4g} ({(metric.margin or 0.0) * 100:g}% of served)"
    )
    return GateCheck(check, shadow.variant, passed, detail)


def shadow_harms(result: ExperimentResult, variant: str) -> list[str]:
    """Guardrails on which shadow ``variant`` is worse beyond the margin with confidence:
    the whole paired interval lies past it (the gate only asks that the interval rule harm
    out, so an undecided gate is not harm)."""
    shadow = next((s for s in result.shadow if s.variant == variant), None)
    if shadow is None:
        return []
    harms = []
    for metric in result.metrics:
        name = SHADOW_MEASURES.get(metric.kind)
        if metric.role != "guardrail" or name is None:
            continue
        measure = shadow.measure(name)
        harm = "increase" if metric.direction == "decrease" else "decrease"
        best = measure.ci_low if harm == "increase" else -measure.ci_high
        allowed = (metric.margin or 0.0) * abs(measure.served)
        if measure.error_code is None and math.isfinite(best) and best > allowed:
            harms.append(
                f"shadow guardrail {metric.name} fails: {name} difference "
                f"{measure.difference:+.4g} [{measure.ci_low:+.4g}, {measure.ci_high:+.4g}] on "
                f"{measure.n:,} paired requests, all of it beyond the margin {allowed:.4g}"
            )
    return harms


def _harm_bound(measure: ShadowMeasure, harm: str) -> float:
    """How far in the harmful direction the interval reaches (negative: it rules harm out)."""
    return measure.ci_high if harm == "increase" else -measure.ci_low
