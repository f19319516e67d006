"""Power of one treatment-versus-control comparison under a validated plan.

:class:`Plan` holds the design (baseline, std, alpha, variants, alternative, variance rule)
and computes the probability that one comparison rejects at an effect and two arm sizes;
:mod:`abflow.stats.power` searches over it. The formulas are listed in that module.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from scipy import special

from abflow.errors import InvalidArgumentError
from abflow.stats.power_results import Alternative, ProportionVariance

__all__ = ["Plan"]


def _nct_cdf(df: float, ncp: float, t: float, normal: Callable[[], float]) -> float:
    """Noncentral t CDF; scipy gives NaN far in the tails, where the normal limit is exact enough."""
    value = float(special.nctdtr(df, ncp, t))
    return normal() if math.isnan(value) else value


@dataclass(frozen=True, slots=True)
class Plan:
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
