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
  not ``N(lift / se, 1)``; its own mean and spread under the alternative come from the delta
  method (near 80 % the naive formula understates power by up to two and a half points).
- More than two variants: each treatment is compared with control at the Bonferroni level
  ``alpha / (variants - 1)``, and the sample must give every comparison the target power.
- The effect is an increase of ``mde`` (a one-sided test looks for an increase only).

Inputs are bounded so that extreme but legal numbers give an answer or a clear
InvalidArgumentError, never an arithmetic exception: at most ``MAX_VARIANTS`` variants, at
most ``MAX_UNITS_PER_VARIANT`` units per variant, and a ``std`` within ``STD_RANGE`` (its
square and its standard errors must stay normal floating-point numbers).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from scipy import optimize, special

from abflow.errors import InvalidArgumentError

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

Alternative = Literal["two-sided", "one-sided"]
ProportionVariance = Literal["unpooled", "pooled", "arcsine"]

_MAX_TOTAL = 1e13
"""Sample sizes beyond this are reported as undetectable rather than searched for."""

MAX_VARIANTS = 1000
"""Every treatment is a Bonferroni comparison; beyond this the plan is meaningless and slow."""

MAX_UNITS_PER_VARIANT = 10**15
"""Larger samples than any population; standard errors would underflow to zero."""

STD_RANGE = (1e-150, 1e150)
"""A std whose square (or standard error) leaves the normal float range cannot be planned."""


@dataclass(frozen=True, slots=True)
class SampleSizeResult:
    """Units each variant needs (control first) to detect ``mde`` with the target ``power``."""

    per_variant: tuple[int, ...]
    total: int
    achieved_power: float
    duration_days: int | None
    mde: float
    power: float
    baseline: float
    std: float | None
    relative: bool
    alpha: float
    adjusted_alpha: float
    variants: int
    weights: tuple[float, ...]
    alternative: Alternative
    proportion_variance: ProportionVariance
    daily_units: float | None
    coverage: float


@dataclass(frozen=True, slots=True)
class MdeResult:
    """Smallest effect the given sample detects with the target ``power``."""

    mde: float
    treatment_mean: float
    per_variant: tuple[int, ...]
    total: int
    duration_days: int | None
    power: float
    baseline: float
    std: float | None
    relative: bool
    alpha: float
    adjusted_alpha: float
    variants: int
    alternative: Alternative
    proportion_variance: ProportionVariance
    daily_units: float | None
    coverage: float


@dataclass(frozen=True, slots=True)
class PowerResult:
    """Power the given sample achieves against an effect of ``mde`` (worst comparison)."""

    power: float
    per_comparison: tuple[float, ...]
    mde: float
    per_variant: tuple[int, ...]
    total: int
    baseline: float
    std: float | None
    relative: bool
    alpha: float
    adjusted_alpha: float
    variants: int
    alternative: Alternative
    proportion_variance: ProportionVariance


def _check_open_unit(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and 0.0 < value < 1.0):
        msg = f"{name} must be strictly between 0 and 1, got {value!r}"
        raise InvalidArgumentError(msg)


def _nct_cdf(df: float, ncp: float, t: float, normal: Callable[[], float]) -> float:
    """Noncentral t CDF; scipy gives NaN far in the tails, where the normal limit is exact enough."""
    value = float(special.nctdtr(df, ncp, t))
    return normal() if math.isnan(value) else value


@dataclass(frozen=True, slots=True)
class _Plan:
    """Validated design shared by the three solvers: computes one comparison's power."""

    baseline: float
    std: float | None
    relative: bool
    alpha: float
    variants: int
    alternative: Alternative
    proportion_variance: ProportionVariance

    @property
    def adjusted_alpha(self) -> float:
        return self.alpha / (self.variants - 1)

    def echo(self) -> dict[str, Any]:
        """The inputs every result record repeats."""
        return {
            "baseline": self.baseline,
            "std": self.std,
            "relative": self.relative,
            "alpha": self.alpha,
            "adjusted_alpha": self.adjusted_alpha,
            "variants": self.variants,
            "alternative": self.alternative,
            "proportion_variance": self.proportion_variance,
        }

    @property
    def is_proportion(self) -> bool:
        return self.std is None

    def treatment_mean(self, effect: float) -> float:
        return self.baseline * (1.0 + effect) if self.relative else self.baseline + effect

    def max_effect(self) -> float:
        """Largest effect with a valid treatment rate (infinite for means)."""
        if not self.is_proportion:
            return math.inf
        room = 1.0 - self.baseline
        return room / self.baseline if self.relative else room

    def comparison_power(self, effect: float, n0: float, n1: float) -> float:
        two_sided = self.alternative == "two-sided"
        level = self.adjusted_alpha / 2.0 if two_sided else self.adjusted_alpha
        m0, m1 = self.baseline, self.treatment_mean(effect)
        # The difference from the effect itself: m1 - m0 loses it when |m0| dwarfs it.
        shift = m0 * effect if self.relative else effect
        if self.relative and (self.std is not None or self.proportion_variance == "unpooled"):
            return self._relative_power(effect, n0, n1, level, two_sided)
        if self.std is not None:
            df = n0 + n1 - 2.0
            ncp = shift / self.std / math.sqrt(1.0 / n0 + 1.0 / n1)
            crit = -float(special.stdtrit(df, level))
            value = 1.0 - _nct_cdf(df, ncp, crit, lambda: float(special.ndtr(crit - ncp)))
            if two_sided:
                value += _nct_cdf(df, ncp, -crit, lambda: float(special.ndtr(-crit - ncp)))
            return value
        v0, v1 = m0 * (1.0 - m0), m1 * (1.0 - m1)
        if self.proportion_variance == "arcsine":
            diff = 2.0 * math.asin(math.sqrt(m1)) - 2.0 * math.asin(math.sqrt(m0))
            se_null = se_alt = math.sqrt(1.0 / n0 + 1.0 / n1)
        elif self.proportion_variance == "pooled":
            diff = m1 - m0
            pooled = (n0 * m0 + n1 * m1) / (n0 + n1)
            se_null = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n0 + 1.0 / n1))
            se_alt = math.sqrt(v0 / n0 + v1 / n1)
        else:
            diff = shift
            se_null = se_alt = math.sqrt(v0 / n0 + v1 / n1)
        z = -float(special.ndtri(level))
        value = float(special.ndtr((diff - z * se_null) / se_alt))
        if two_sided:
            value += float(special.ndtr((-z * se_null - diff) / se_alt))
        return value

    def _relative_power(
        self, effect: float, n0: float, n1: float, level: float, two_sided: bool
    ) -> float:
        """Power of the delta-method Wald test on the lift ``x1 / x0 - 1``.

        Its standard error grows with the observed lift, so the statistic
        ``T = (x1 - x0) / S`` with ``S^2 = v(x1) / n1 + (x1 / x0)^2 v(x0) / n0`` is not
        ``N(lift / se, 1)`` under the alternative: its mean and standard deviation come from
        the delta method applied to ``T(x0, x1)`` itself (sample variances held at their
        expected values for means, tied to the rates for proportions). The gradient is
        exact, so no difference step can vanish against a large mean; means are taken in
        units of ``std``, where ``T`` is the same and every number stays moderate.
        """
        if self.std is None:
            x0 = self.baseline
            v0, slope0 = x0 * (1.0 - x0), 1.0 - 2.0 * x0
            x1 = x0 * (1.0 + effect)
            v1, slope1 = x1 * (1.0 - x1), 1.0 - 2.0 * x1
        else:
            x0 = self.baseline / self.std
            v0 = v1 = 1.0
            slope0 = slope1 = 0.0
        ratio = 1.0 + effect
        var0, var1 = v0 / n0, v1 / n1
        spread_t = math.sqrt(var1 + ratio**2 * var0)
        center = x0 * effect / spread_t
        # d(S^2)/dx0 and d(S^2)/dx1, then dT/dx = (±1 - T dS/dx) / S with dS = d(S^2) / 2S.
        ds2_0 = ratio**2 / n0 * (slope0 - 2.0 * v0 / x0)
        ds2_1 = slope1 / n1 + 2.0 * ratio * v0 / (x0 * n0)
        grad0 = (-1.0 - center * ds2_0 / (2.0 * spread_t)) / spread_t
        grad1 = (1.0 - center * ds2_1 / (2.0 * spread_t)) / spread_t
        spread = math.sqrt(grad0**2 * var0 + grad1**2 * var1)
        z = -float(special.ndtri(level))
        value = float(special.ndtr((center - z) / spread))
        if two_sided:
            value += float(special.ndtr((-z - center) / spread))
        return value

    def worst_power(self, effect: float, sizes: Sequence[float]) -> tuple[float, ...]:
        """Power of each treatment against control (equal arms computed once)."""
        known: dict[float, float] = {}
        for n in sizes[1:]:
            if n not in known:
                known[n] = self._safe_power(effect, sizes[0], n)
        return tuple(known[n] for n in sizes[1:])

    def _safe_power(self, effect: float, n0: float, n1: float) -> float:
        """One comparison's power, or an InvalidArgumentError when the numbers are too extreme."""
        try:
            value = self.comparison_power(effect, n0, n1)
        except ArithmeticError:
            value = math.nan
        if not math.isfinite(value):
            msg = (
                f"baseline {self.baseline!r}, std {self.std!r} and mde {effect!r} are too far "
                "apart in scale to compute power; rescale the metric"
            )
            raise InvalidArgumentError(msg)
        return min(max(value, 0.0), 1.0)


def _make_plan(
    baseline: float,
    std: float | None,
    relative: bool,
    alpha: float,
    variants: int,
    alternative: str,
    proportion_variance: str,
) -> _Plan:
    _check_open_unit("alpha", alpha)
    if isinstance(variants, bool) or not isinstance(variants, int) or variants < 2:
        msg = f"variants must be an integer of at least 2 (control and one treatment), got {variants!r}"
        raise InvalidArgumentError(msg)
    if variants > MAX_VARIANTS:
        msg = f"variants must be at most {MAX_VARIANTS} (control included), got {variants}"
        raise InvalidArgumentError(msg)
    if alternative not in ("two-sided", "one-sided"):
        msg = f"alternative must be 'two-sided' or 'one-sided', got {alternative!r}"
        raise InvalidArgumentError(msg)
    if proportion_variance not in ("unpooled", "pooled", "arcsine"):
        msg = f"proportion_variance must be 'unpooled', 'pooled' or 'arcsine', got {proportion_variance!r}"
        raise InvalidArgumentError(msg)
    if std is None:
        _check_open_unit("baseline (a proportion)", baseline)
    else:
        if not (math.isfinite(std) and std > 0):
            msg = f"std must be a positive finite number, got {std!r}"
            raise InvalidArgumentError(msg)
        if not STD_RANGE[0] <= std <= STD_RANGE[1]:
            low, high = STD_RANGE
            msg = f"std must be between {low:.0e} and {high:.0e} (rescale the metric), got {std!r}"
            raise InvalidArgumentError(msg)
        if not math.isfinite(baseline) or (relative and baseline <= 0):
            msg = (
                f"baseline mean must be finite (and positive for a relative mde), got {baseline!r}"
            )
            raise InvalidArgumentError(msg)
    return _Plan(
        baseline=float(baseline),
        std=None if std is None else float(std),
        relative=relative,
        alpha=float(alpha),
        variants=variants,
        alternative=alternative,  # type: ignore[arg-type]  # checked just above
        proportion_variance=proportion_variance,  # type: ignore[arg-type]  # checked just above
    )


def _check_mde(plan: _Plan, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        msg = f"mde must be a positive finite number, got {value!r}"
        raise InvalidArgumentError(msg)
    if not math.isfinite(plan.treatment_mean(value)):
        msg = f"mde {value!r} puts the treatment mean beyond the floating-point range"
        raise InvalidArgumentError(msg)
    if value >= plan.max_effect():
        rate = plan.treatment_mean(value)
        msg = f"mde {value} puts the treatment rate at {rate:.4g}, which must stay below 1"
        raise InvalidArgumentError(msg)


def _check_target(target: float, alpha: float) -> None:
    _check_open_unit("power", target)
    if target <= alpha:
        msg = f"power ({target}) must exceed alpha ({alpha})"
        raise InvalidArgumentError(msg)


def _check_weights(weights: Sequence[float] | None, variants: int) -> tuple[float, ...]:
    if weights is None:
        return tuple(1.0 / variants for _ in range(variants))
    values = tuple(float(w) for w in weights)
    if len(values) != variants:
        msg = f"weights has {len(values)} entries for {variants} variants"
        raise InvalidArgumentError(msg)
    if not all(math.isfinite(w) and w > 0 for w in values):
        msg = f"weights must all be positive, got {list(values)}"
        raise InvalidArgumentError(msg)
    if abs(sum(values) - 1.0) > 1e-6:
        msg = f"weights must sum to 1, got {sum(values):.6g}"
        raise InvalidArgumentError(msg)
    return values


def _check_sizes(n_per_variant: int | Sequence[int], variants: int) -> tuple[int, ...]:
    sizes = (
        (n_per_variant,) * variants
        if isinstance(n_per_variant, int | float)
        else tuple(n_per_variant)
    )
    if len(sizes) != variants:
        msg = f"n_per_variant has {len(sizes)} entries for {variants} variants"
        raise InvalidArgumentError(msg)
    if not all(isinstance(n, int | float) and math.isfinite(n) and n >= 2 for n in sizes):
        msg = f"every variant needs at least 2 units, got {list(sizes)}"
        raise InvalidArgumentError(msg)
    if max(sizes) > MAX_UNITS_PER_VARIANT:
        msg = (
            f"sample size must be at most {MAX_UNITS_PER_VARIANT:.0e} units per variant, "
            f"got {max(sizes)}"
        )
        raise InvalidArgumentError(msg)
    return tuple(int(n) for n in sizes)


def _check_coverage(coverage: float) -> None:
    if not (math.isfinite(coverage) and 0 < coverage <= 1):
        msg = f"coverage must be in (0, 1], got {coverage!r}"
        raise InvalidArgumentError(msg)


def duration_days(total: float, daily_units: float, coverage: float = 1.0) -> int:
    """Whole days until ``total`` units enter, given ``daily_units`` eligible units a day.

    ``coverage`` is the share of eligible traffic the experiment includes. Days are rounded
    up: a partial day still has to run, and weekly patterns argue for whole weeks anyway.
    """
    if not (math.isfinite(daily_units) and daily_units > 0):
        msg = f"daily_units must be a positive number, got {daily_units!r}"
        raise InvalidArgumentError(msg)
    _check_coverage(coverage)
    if not (math.isfinite(total) and total >= 0):
        msg = f"total must be a non-negative number, got {total!r}"
        raise InvalidArgumentError(msg)
    return math.ceil(total / (daily_units * coverage) - 1e-9)


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
    plan = _make_plan(baseline, std, relative, alpha, variants, alternative, proportion_variance)
    _check_mde(plan, mde)
    _check_target(power, plan.alpha)
    _check_coverage(coverage)
    split = _check_weights(weights, variants)
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
    plan = _make_plan(baseline, std, relative, alpha, variants, alternative, proportion_variance)
    _check_target(power, plan.alpha)
    _check_coverage(coverage)
    sizes = _check_sizes(n_per_variant, variants)

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
    plan = _make_plan(baseline, std, relative, alpha, variants, alternative, proportion_variance)
    _check_mde(plan, mde)
    sizes = _check_sizes(n_per_variant, variants)
    each = plan.worst_power(mde, sizes)
    return PowerResult(
        power=min(each),
        per_comparison=each,
        mde=float(mde),
        per_variant=sizes,
        total=sum(sizes),
        **plan.echo(),
    )
