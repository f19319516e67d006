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

import numpy as np
from numpy.polynomial.hermite_e import hermegauss
from scipy import special

from abflow.errors import InvalidArgumentError
from abflow.stats.frequentist import t_critical
from abflow.stats.power_results import Alternative, ProportionVariance

__all__ = ["Plan"]

_NODES, _WEIGHTS = hermegauss(96)
_WEIGHTS = _WEIGHTS / math.sqrt(2.0 * math.pi)
"""Gauss-Hermite rule for a standard normal expectation (exact for smooth integrands)."""


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
            crit = float(t_critical(df, level))
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
        """Power of the delta-method test on the lift ``x1 / x0 - 1``, integrated over ``x0``.

        The statistic is ``T = (x1 - x0) / S`` with ``S^2 = v(x1) / n1 + (x1 / x0)^2 v(x0) / n0``,
        the test ``compare(relative=True)`` runs. ``S`` grows with ``x1`` and ``T`` is bounded
        by the control mean's own z-score, so ``T`` is far from ``N(lift / se, 1)`` at large
        lifts (a first-order expansion overstated power by up to ten points near 80 %).
        Given the control mean ``x0``, ``|T| > z`` is a quadratic inequality in ``u = x1 - x0``,
        so the rejection probability over ``x1 ~ N(m1, v1 / n1)`` is exact in closed form;
        Gauss-Hermite quadrature integrates it over ``x0 ~ N(m0, v0 / n0)``. Variances are
        the true ones (means) or tied to the rates (proportions), the critical value is the
        t quantile at Welch's degrees of freedom, and means are in units of ``std`` so every
        term stays moderate. ``x0`` outside the metric's range (``<= 0``, or ``>= 1`` for a
        rate) counts as no rejection.
        """
        if self.std is None:
            m0 = self.baseline
            m1 = m0 * (1.0 + effect)
            v0, v1 = m0 * (1.0 - m0), m1 * (1.0 - m1)
        else:
            m0 = self.baseline / self.std
            v0 = v1 = 1.0
        a0, a1 = v0 / n0, v1 / n1
        share = a1 / (a0 + a1)
        df = 1.0 / (share**2 / (n1 - 1.0) + (1.0 - share) ** 2 / (n0 - 1.0))
        z2 = float(t_critical(df, level)) ** 2
        s1 = math.sqrt(a1)
        offset = math.sqrt(a0) * _NODES  # x0 - m0 at each node
        x0 = m0 + offset
        # Coefficients of Q(u) = u^2 - z^2 S^2(x0, x0 + u); Q(0) < 0, and |T| > z iff Q > 0.
        with np.errstate(all="ignore"):
            if self.std is None:
                inside = (x0 > 0.0) & (x0 < 1.0)
                quad = 1.0 + z2 / n1 - z2 * (1.0 - x0) / (n0 * x0)
                lin = -z2 * ((1.0 - 2.0 * x0) / n1 + 2.0 * (1.0 - x0) / n0)
                const = -z2 * x0 * (1.0 - x0) * (1.0 / n1 + 1.0 / n0)
            else:
                inside = x0 > 0.0
                quad = 1.0 - z2 / (n0 * x0 * x0)
                lin = -2.0 * z2 / (n0 * x0)
                const = np.full_like(x0, -z2 * (1.0 / n1 + 1.0 / n0))
            disc = lin * lin - 4.0 * quad * const
            root = np.sqrt(np.maximum(disc, 0.0))
            q = -0.5 * (lin + np.where(lin >= 0.0, root, -root))  # roots without cancellation
            low = np.minimum(q / quad, const / q)
            high = np.maximum(q / quad, const / q)
            # x1 = x0 + u against x1 ~ N(m1, s1^2), with m1 - m0 = m0 * effect.
            t_low = (offset + low - m0 * effect) / s1
            t_high = (offset + high - m0 * effect) / s1
            between = special.ndtr(t_high) - special.ndtr(t_low)
            opens_up = quad > 0.0  # reject outside the roots, else between them
            upper = np.where(opens_up, special.ndtr(-t_high), np.where(low > 0.0, between, 0.0))
            lower = np.where(opens_up, special.ndtr(t_low), np.where(high < 0.0, between, 0.0))
            rejected = upper + lower if two_sided else upper
            usable = inside & (disc >= 0.0) & np.isfinite(rejected)
            value = float(np.dot(_WEIGHTS, np.where(usable, rejected, 0.0)))
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
