"""Power analysis: how many units an experiment needs, what it can detect, and for how long.

Planning must describe the test that will actually run, or the promised power is fiction.
The defaults therefore match :func:`abflow.stats.compare`: a Wald test with *unpooled*
variances (each arm keeps its own variance), on the absolute difference or, with
``relative=True``, on the relative lift with its delta-method standard error.

- Proportions (``std=None``; ``baseline`` is the control rate ``p0``): normal test.
  ``proportion_variance`` picks the standard error:
  ``"unpooled"`` (default) ``sqrt(p0 q0 / n0 + p1 q1 / n1)`` under both hypotheses;
  ``"pooled"`` the classical two-proportion z-test, ``sqrt(p q (1/n0 + 1/n1))`` with the
  pooled rate ``p`` under the null and the unpooled one under the alternative;
  ``"arcsine"`` Cohen's ``h = 2 asin(sqrt p1) - 2 asin(sqrt p0)`` with standard error
  ``sqrt(1/n0 + 1/n1)``. The last two test ``p1 = p0`` and read a relative ``mde`` only as
  ``p1 = p0 (1 + mde)``.
- Means (``std`` given; ``baseline`` is the control mean, the same ``std`` in both arms):
  absolute effects use a t-test with ``n0 + n1 - 2`` degrees of freedom (noncentral t).
- Relative effects (means, and unpooled proportions) plan the delta-method Wald test on the
  lift ``x1 / x0 - 1``. Its standard error grows with the observed lift, so the statistic is
  not ``N(lift / se, 1)``; its rejection probability is integrated over the control mean
  (see :meth:`abflow.stats.power_model.Plan`), which matches simulations of the test where
  first-order formulas overstated power by up to ten points at large lifts.
- More than two variants: each treatment is compared with control at the Bonferroni level
  ``alpha / (variants - 1)``, and the sample must give every comparison the target power.
- The effect is an increase of ``mde`` (a one-sided test looks for an increase only).

Inputs are bounded so that extreme but legal numbers give an answer or a clear
InvalidArgumentError, never an arithmetic exception: at most ``MAX_VARIANTS`` variants, at
most ``MAX_UNITS_PER_VARIANT`` units per variant, and a ``std`` within ``STD_RANGE`` (its
square and its standard errors must stay normal floating-point numbers).

This module holds the three solvers; the result records are in
:mod:`abflow.stats.power_results`, one comparison's power in :mod:`abflow.stats.power_model`
and the argument checks in :mod:`abflow.stats.power_checks`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from scipy import optimize

from abflow.errors import InvalidArgumentError
from abflow.stats.power_checks import (
    MAX_UNITS_PER_VARIANT,
    MAX_VARIANTS,
    STD_RANGE,
    check_coverage,
    check_mde,
    check_sizes,
    check_target,
    check_weights,
    make_plan,
)
from abflow.stats.power_results import (
    Alternative,
    MdeResult,
    PowerResult,
    ProportionVariance,
    SampleSizeResult,
)
from abflow.stats.validation import real_number

__all__ = [
    "MAX_UNITS_PER_VARIANT",
    "MAX_VARIANTS",
    "STD_RANGE",
    "MdeResult",
    "PowerResult",
    "SampleSizeResult",
    "duration_days",
    "mde",
    "power",
    "sample_size",
]

_MAX_TOTAL = 1e13
"""Sample sizes beyond this are reported as undetectable rather than searched for."""


def duration_days(total: float, daily_units: float, coverage: float = 1.0) -> int:
    """Whole days until ``total`` units enter, given ``daily_units`` eligible units a day.

    ``coverage`` is the share of eligible traffic the experiment includes. Days are rounded
    up: a partial day still has to run, and weekly patterns argue for whole weeks anyway.
    """
    daily_units = real_number("daily_units", daily_units)
    total = real_number("total", total)
    if not (math.isfinite(daily_units) and daily_units > 0):
        msg = f"daily_units must be a positive number, got {daily_units!r}"
        raise InvalidArgumentError(msg)
    check_coverage(coverage)
    if not (math.isfinite(total) and total >= 0):
        msg = f"total must be a non-negative number, got {total!r}"
        raise InvalidArgumentError(msg)
    days = total / (daily_units * coverage) - 1e-9 if total else 0.0
    if not math.isfinite(days):
        msg = (
            f"{total:g} units at {daily_units:g} a day and coverage {coverage:g} take too many "
            "days to count: check the daily units and the coverage"
        )
        raise InvalidArgumentError(msg)
    return math.ceil(days)


def _root(func: Callable[[float], float], low: float, high: float) -> float:
    # The tolerance scales with the bracket: an MDE may be 1e-7, or 1e-150 in tiny units.
    return float(optimize.brentq(func, low, high, xtol=1e-14 * high, rtol=1e-12, maxiter=500))


def sample_size(
    baseline: float,
    mde: float,
    *,
    std: float | None = None,
    relative: bool = True,
    alpha: float = 0.05,
    power: float = 0.8,
    variants: int = 2,
    weights: Sequence[float] | None = None,
    alternative: Alternative = "two-sided",
    proportion_variance: ProportionVariance = "unpooled",
    daily_units: float | None = None,
    coverage: float = 1.0,
) -> SampleSizeResult:
    """Units per variant to detect an increase of ``mde`` with probability ``power``.

    ``std=None`` plans a proportion (``baseline`` is the control rate); a ``std`` plans a
    mean. ``weights`` is the traffic split (control first, equal by default); with
    ``daily_units`` the result also says how many days the experiment runs.
    """
    plan = make_plan(baseline, std, relative, alpha, variants, alternative, proportion_variance)
    check_mde(plan, mde)
    check_target(power, plan.alpha)
    check_coverage(coverage)
    split = check_weights(weights, variants)
    smallest = 2.0 / min(split)

    def gap(total: float) -> float:
        return min(plan.worst_power(mde, [total * w for w in split])) - power

    if gap(smallest) >= 0:
        best = smallest
    else:
        high = smallest * 2.0
        while gap(high) < 0:
            if high > _MAX_TOTAL:
                msg = f"an effect of {mde} needs more than {_MAX_TOTAL:.0e} units to detect"
                raise InvalidArgumentError(msg)
            high *= 2.0
        best = _root(gap, high / 2.0, high)
    sizes = tuple(max(2, math.ceil(best * w - 1e-9)) for w in split)
    total = sum(sizes)
    return SampleSizeResult(
        per_variant=sizes,
        total=total,
        achieved_power=min(plan.worst_power(mde, sizes)),
        duration_days=None if daily_units is None else duration_days(total, daily_units, coverage),
        mde=float(mde),
        power=float(power),
        **plan.echo(),
        weights=split,
        daily_units=daily_units,
        coverage=coverage,
    )


def mde(
    baseline: float,
    n_per_variant: int | Sequence[int],
    *,
    std: float | None = None,
    relative: bool = True,
    alpha: float = 0.05,
    power: float = 0.8,
    variants: int = 2,
    alternative: Alternative = "two-sided",
    proportion_variance: ProportionVariance = "unpooled",
    daily_units: float | None = None,
    coverage: float = 1.0,
) -> MdeResult:
    """Smallest increase detectable with probability ``power`` from the given sample.

    ``n_per_variant`` is one count for every variant, or one per variant (control first).
    Raises InvalidArgumentError when no possible effect reaches the power (a tiny sample).
    """
    plan = make_plan(baseline, std, relative, alpha, variants, alternative, proportion_variance)
    check_target(power, plan.alpha)
    check_coverage(coverage)
    sizes = check_sizes(n_per_variant, variants)

    def gap(effect: float) -> float:
        return min(plan.worst_power(effect, sizes)) - power

    ceiling = plan.max_effect()
    if math.isfinite(ceiling):
        high = ceiling * (1.0 - 1e-9)
        if gap(high) < 0:
            msg = f"{list(sizes)} units per variant cannot reach power {power} for any rate below 1"
            raise InvalidArgumentError(msg)
    else:
        scale = abs(plan.baseline) if plan.relative else float(plan.std or 1.0)
        high = 1e-3 if plan.relative else scale * 1e-3
        while gap(high) < 0:
            if high > 1e9 * max(scale, 1.0):
                msg = f"{list(sizes)} units per variant cannot reach power {power} for any effect"
                raise InvalidArgumentError(msg)
            high *= 2.0
    low = high * 1e-12
    while gap(low) >= 0:
        # A huge sample detects tiny effects; stop before the effect underflows.
        if low < high * 1e-250:
            msg = f"{list(sizes)} units per variant detect effects too small to compute an MDE"
            raise InvalidArgumentError(msg)
        low *= 1e-12
    effect = _root(gap, low, high)
    total = sum(sizes)
    return MdeResult(
        mde=effect,
        treatment_mean=plan.treatment_mean(effect),
        per_variant=sizes,
        total=total,
        duration_days=None if daily_units is None else duration_days(total, daily_units, coverage),
        power=float(power),
        **plan.echo(),
        daily_units=daily_units,
        coverage=coverage,
    )


def power(
    baseline: float,
    mde: float,
    n_per_variant: int | Sequence[int],
    *,
    std: float | None = None,
    relative: bool = True,
    alpha: float = 0.05,
    variants: int = 2,
    alternative: Alternative = "two-sided",
    proportion_variance: ProportionVariance = "unpooled",
) -> PowerResult:
    """Probability that the planned test detects an increase of ``mde`` with this sample.

    With several treatments ``power`` is the worst comparison's; ``per_comparison`` has each.
    """
    plan = make_plan(baseline, std, relative, alpha, variants, alternative, proportion_variance)
    check_mde(plan, mde)
    sizes = check_sizes(n_per_variant, variants)
    each = plan.worst_power(mde, sizes)
    return PowerResult(
        power=min(each),
        per_comparison=each,
        mde=float(mde),
        per_variant=sizes,
        total=sum(sizes),
        **plan.echo(),
    )
