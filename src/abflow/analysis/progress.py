"""Is the split healthy, and how far is the experiment from the sample it planned for?

The sample-ratio-mismatch test is the first thing to read in any result: when units land in
variants in proportions the weights did not promise, something upstream (assignment,
targeting, logging, bots) is broken and every metric is suspect. Progress compares the
units so far with what the primary metric needs to detect the planned minimum effect.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from abflow.analysis.metrics import MetricPlan, stats_for
from abflow.analysis.results import MetricResult, Progress, SrmSummary
from abflow.errors import InvalidArgumentError
from abflow.spec import ExperimentSpec
from abflow.stats.power import sample_size
from abflow.stats.records import SampleStats
from abflow.stats.srm import srm_test
from abflow.stats.sufficient import CupedStats, RatioStats
from abflow.store.aggregates import Moments

__all__ = ["estimate_progress", "srm_check"]

SECONDS_PER_DAY = 86400.0


def srm_check(counts: Sequence[int], weights: Sequence[float], alpha: float) -> SrmSummary:
    """Chi-square goodness of fit of the observed split against the weights.

    Without enough units for the test (none, or fewer than five expected in an arm) the
    p-value is NaN and the status ``not_enough_data``, never ``healthy``.
    """
    result = srm_test(counts, weights, alpha=alpha)
    return SrmSummary(
        p_value=result.p_value,
        alpha=alpha,
        is_mismatch=result.is_mismatch,
        status=result.status,
        error_code=result.error_code,
    )


def _baseline(plan: MetricPlan, moments: Moments) -> tuple[float, float | None]:
    """Control mean and per-unit standard deviation (None for a proportion)."""
    stats = stats_for(plan, moments)
    if isinstance(stats, SampleStats):
        if plan.metric.kind == "conversion":
            return stats.mean, None
        return stats.mean, math.sqrt(stats.variance)
    if isinstance(stats, CupedStats):
        return stats.mean, math.sqrt(stats.post.variance)
    assert isinstance(stats, RatioStats)
    n = stats.n
    if n < 2 or stats.denominator_sum == 0:
        return math.nan, math.nan
    ratio = stats.mean
    mean_d = stats.denominator_sum / n
    var_m = stats.numerator.sample_variance
    var_d = stats.denominator.sample_variance
    cov = (stats.sum_products - stats.numerator_sum * stats.denominator_sum / n) / (n - 1)
    variance = (var_m - 2 * ratio * cov + ratio * ratio * var_d) / (mean_d * mean_d)
    return ratio, math.sqrt(max(variance, 0.0))


def estimate_progress(
    spec: ExperimentSpec,
    metrics: Sequence[MetricResult],
    control_moments: Mapping[str, Moments],
    plans: Sequence[MetricPlan],
    weights: Sequence[float],
    units: int,
    started_at: float,
    ended_at: float,
) -> Progress:
    """Units so far against the planned sample of the primary metric, and days left."""
    elapsed = max(ended_at - started_at, 0.0) / SECONDS_PER_DAY
    plan = next((p for p in plans if p.metric.role == "primary"), None)
    mde = spec.analysis.minimum_detectable_effect
    if plan is None or mde is None:
        why = "no primary metric" if plan is None else "no analysis.minimum_detectable_effect"
        return Progress(units, None, None, elapsed, None, f"sample size not planned: {why}")
    if plan.source == "histogram":
        return Progress(units, None, None, elapsed, None, "sample size not planned for quantiles")
    moments = control_moments.get(spec.control.name)
    if moments is None or moments.n < 2:
        return Progress(units, None, None, elapsed, None, "too few control units to plan")
    baseline, std = _baseline(plan, moments)
    try:
        result = sample_size(
            baseline,
            mde,
            std=std,
            relative=spec.analysis.relative and plan.relative_allowed,
            alpha=spec.analysis.alpha,
            power=spec.analysis.power,
            variants=len(spec.variants),
            weights=list(weights),
        )
    except (InvalidArgumentError, ValueError) as exc:
        return Progress(units, None, None, elapsed, None, f"sample size not planned: {exc}")
    required = result.total
    fraction = min(units / required, 1.0) if required else 1.0
    remaining_units = max(required - units, 0)
    rate = spec.analysis.daily_units or (units / elapsed if elapsed > 0 else None)
    remaining = remaining_units / rate if rate else None
    note = f"primary metric {plan.metric.name}, MDE {mde:g}, power {spec.analysis.power:g}"
    return Progress(units, required, fraction, elapsed, remaining, note)
