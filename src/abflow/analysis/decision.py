"""From comparisons to a verdict: which variant should serve, and why, in plain words.

The rules are deliberately simple and printed with the result, so a reader can check them:
a broken split (SRM) invalidates everything; a guardrail that fails keeps the control; the
primary metric must be significantly better (after correction) for a treatment to ship.
"""

from __future__ import annotations

import math

from abflow.analysis.formatting import format_effect, format_interval
from abflow.analysis.results import (
    ComparisonResult,
    Decision,
    GuardrailEvidence,
    GuardrailStatus,
    MetricResult,
    Outcome,
    SrmSummary,
)
from abflow.spec import ExperimentSpec
from abflow.stats.compare import ERROR_MESSAGES

__all__ = [
    "decide",
    "exact_description",
    "guardrail_status",
    "margin_on_effect_scale",
    "outcome_of",
    "underpowered",
]


def outcome_of(comparison: ComparisonResult, direction: str, alpha: float) -> tuple[Outcome, bool]:
    """``better``/``worse`` when the evidence is strong enough, else ``inconclusive``."""
    if comparison.error_code is not None or not math.isfinite(comparison.effect):
        return "error", False
    good_sign = 1.0 if direction == "increase" else -1.0
    if comparison.chance_to_win is not None:  # Bayesian: chance_to_win is P(treatment better)
        if comparison.chance_to_win >= 1 - alpha:
            return "better", True
        if comparison.chance_to_win <= alpha:
            return "worse", True
        return "inconclusive", False
    p = comparison.adjusted_p_value
    if p is None or not math.isfinite(p) or p >= alpha:
        return "inconclusive", False
    return ("better" if comparison.effect * good_sign > 0 else "worse"), True


def guardrail_status(
    comparison: ComparisonResult | GuardrailEvidence, direction: str, margin: float
) -> GuardrailStatus:
    """``pass`` when the interval rules out harm beyond ``margin``; ``fail`` when harm is
    significant and its estimate exceeds the margin; ``inconclusive`` otherwise."""
    if comparison.error_code is not None or not math.isfinite(comparison.ci_low):
        return "inconclusive"
    sign = 1.0 if direction == "decrease" else -1.0  # harm = change in the bad direction
    harm = comparison.effect * sign
    harm_low = min(comparison.ci_low * sign, comparison.ci_high * sign)
    harm_high = max(comparison.ci_low * sign, comparison.ci_high * sign)
    if harm_high <= margin:
        return "pass"
    if harm_low > 0 and harm > margin:
        return "fail"
    return "inconclusive"


def margin_on_effect_scale(metric: MetricResult, relative: bool) -> float:
    """The spec's margin is relative; an absolute effect compares with margin x control value."""
    margin = metric.margin or 0.0
    if relative or not metric.values:
        return margin
    control = metric.values[0].value
    return margin * abs(control) if math.isfinite(control) else margin


def underpowered(metric: MetricResult, comparison: ComparisonResult) -> str | None:
    """Why an inconclusive guardrail cannot tell harm within its margin from none, or None.

    A guardrail is underpowered when its interval's half-width exceeds the margin: even an
    effect of exactly zero would leave harm beyond the margin inside the interval, so
    "no failure" says nothing yet. The phrase names the half-width and the margin.
    """
    if comparison.guardrail != "inconclusive":
        return None
    evidence = comparison.guardrail_evidence
    relative = metric.relative if evidence is None else evidence.relative
    low = comparison.ci_low if evidence is None else evidence.ci_low
    high = comparison.ci_high if evidence is None else evidence.ci_high
    if evidence is not None and evidence.basis.startswith("exact"):
        return _exact_underpowered(metric, comparison, evidence)
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    half_width = (high - low) / 2
    margin = margin_on_effect_scale(metric, relative)
    if half_width <= margin:
        return None
    if relative:
        spread, allowed = f"±{half_width * 100:.3g}%", f"{margin * 100:.3g}%"
    else:
        spread, allowed = f"±{half_width:.4g}", f"{margin:.4g}"
    return (
        f"guardrail {metric.name} is underpowered ({spread} for {comparison.variant}, "
        f"margin {allowed})"
    )


def _exact_underpowered(
    metric: MetricResult, comparison: ComparisonResult, evidence: GuardrailEvidence
) -> str | None:
    """Neither arm varies and the challenger is worse beyond the margin, but too few units
    for the exact test: that harm cannot be ruled out (a no-harm gate passed every
    challenger unit complaining against none of the control's, on 3 units per arm)."""
    values = {v.variant: v for v in metric.values}
    if not metric.values or comparison.variant not in values:
        return None
    control, challenger = metric.values[0].value, values[comparison.variant].value
    if not (math.isfinite(control) and math.isfinite(challenger)):
        return None
    sign = 1.0 if metric.direction == "decrease" else -1.0
    if (challenger - control) * sign <= (metric.margin or 0.0) * abs(control):
        return None  # equal arms, or a challenger no worse: nothing seen to rule out
    p = "" if evidence.p_value is None else f", exact p = {evidence.p_value:.3g}"
    return (
        f"guardrail {metric.name} is underpowered ({comparison.variant} {challenger:.4g} against "
        f"{control:.4g}, too few units for the exact test{p})"
    )


def exact_description(metric: MetricResult, comparison: ComparisonResult) -> str | None:
    """A guardrail judged by the exact test, in words: the two constant values and the
    p-value (it has no interval, which printed as ``+nan [+nan, +nan]``); else None."""
    evidence = comparison.guardrail_evidence
    if evidence is None or not evidence.basis.startswith("exact") or not metric.values:
        return None
    challenger = next((v for v in metric.values if v.variant == comparison.variant), None)
    if challenger is None:
        return None
    p = "" if evidence.p_value is None else f", p = {evidence.p_value:.3g}"
    return (
        f"{metric.name} {metric.values[0].value:.4g} (control) against "
        f"{challenger.value:.4g}, judged by {evidence.basis}{p}"
    )


def _describe(metric: MetricResult, comparison: ComparisonResult) -> str:
    evidence = comparison.guardrail_evidence
    exact = exact_description(metric, comparison)
    if exact is not None:
        return exact
    if evidence is not None and evidence.basis != "analysis":
        return (
            f"{metric.name} {'relative' if evidence.relative else 'absolute'} effect "
            f"{evidence.effect:+.4g} [{evidence.ci_low:+.4g}, {evidence.ci_high:+.4g}], "
            f"judged by {evidence.basis}"
        )
    if comparison.error_code is not None:
        code = comparison.error_code
        reason = ERROR_MESSAGES.get(code, code.replace("_", " "))
        return f"{metric.name} cannot be compared yet: {reason.rstrip('.').lower()}"
    return (
        f"{metric.name} {format_effect(metric, comparison.effect)} "
        f"{format_interval(metric, comparison)}"
    )


def decide(
    spec: ExperimentSpec, metrics: list[MetricResult], srm: SrmSummary, control: str
) -> Decision:
    """The verdict: ship a treatment, keep the control, keep running, or distrust the data."""
    if srm.is_mismatch:
        return Decision(
            "invalid",
            None,
            "Sample ratio mismatch: the split differs from the weights; fix assignment or "
            "logging before reading any metric.",
            [f"SRM p-value {srm.p_value:.2g} < {srm.alpha:g}"],
        )
    reasons: list[str] = []
    failed: dict[str, list[str]] = {}
    unsure: dict[str, list[str]] = {}  # variant -> underpowered guardrail phrases
    not_passed: dict[str, list[str]] = {}  # variant -> guardrails that did not pass
    for metric in metrics:
        if metric.role != "guardrail":
            continue
        for comparison in metric.comparisons:
            if comparison.guardrail != "pass":
                not_passed.setdefault(comparison.variant, []).append(metric.name)
            if comparison.guardrail == "fail":
                failed.setdefault(comparison.variant, []).append(metric.name)
                reasons.append(
                    f"guardrail failed for {comparison.variant}: {_describe(metric, comparison)}"
                )
            weak = underpowered(metric, comparison)
            if weak is not None:
                unsure.setdefault(comparison.variant, []).append(weak)
                reasons.append(f"cannot tell yet: {weak}: {_describe(metric, comparison)}")
    primary = next((m for m in metrics if m.role == "primary"), None)
    if primary is None:
        primary = next((m for m in metrics if m.role == "secondary"), None)
    winners = []
    if primary is not None:
        for comparison in primary.comparisons:
            outcome = "" if comparison.error_code else f" ({comparison.outcome})"
            reasons.append(f"{comparison.variant}: {_describe(primary, comparison)}{outcome}")
            if comparison.outcome == "better" and comparison.variant not in failed:
                winners.append(comparison)
    primary_name = primary.name if primary else "the primary metric"
    sure = [c for c in winners if c.variant not in unsure]
    if sure:
        best = max(
            sure,
            key=lambda c: c.effect * (1 if primary and primary.direction == "increase" else -1),
        )
        open_ = not_passed.get(best.variant, [])
        guardrails = (
            "every guardrail holds"
            if not open_
            else f"no guardrail fails, though {', '.join(open_)} is not yet shown within its margin"
        )
        summary = f"Ship {best.variant}: it beats {control} on {primary_name} and {guardrails}."
        return Decision("ship", best.variant, summary, reasons)
    if failed:
        names = ", ".join(f"{v} ({', '.join(ms)})" for v, ms in failed.items())
        summary = f"Keep {control}: guardrails fail for {names}."
        return Decision("keep_control", control, summary, reasons)
    if winners:
        variant = winners[0].variant
        summary = (
            f"Keep running: {variant} beats {control} on {primary_name}, but cannot tell yet: "
            f"{'; '.join(unsure[variant])}."
        )
        return Decision("keep_running", None, summary, reasons)
    if (
        primary is not None
        and primary.comparisons
        and all(c.outcome == "worse" for c in primary.comparisons)
    ):
        summary = f"Keep {control}: every treatment is significantly worse on {primary.name}."
        return Decision("keep_control", control, summary, reasons)
    summary = "Keep running: no treatment is significantly better yet and no guardrail has failed."
    if unsure:
        phrases = [phrase for group in unsure.values() for phrase in group]
        summary = (
            "Keep running: no treatment is significantly better yet and no guardrail has "
            f"failed, but cannot tell yet: {'; '.join(phrases)}."
        )
    return Decision("keep_running", None, summary, reasons)
