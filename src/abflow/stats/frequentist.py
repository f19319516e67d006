"""Fixed-horizon frequentist tests: Welch's t on the difference of means, absolute or relative.

The absolute effect is ``mean_t - mean_c`` with variance ``v_t / n_t + v_c / n_c``. The
relative effect ``(mean_t - mean_c) / mean_c`` gets its variance from the delta method,
``v_t / (mu_c^2 n_t) + v_c mu_t^2 / (mu_c^4 n_c)``: the second term is the uncertainty of the
control mean in the denominator, which a naive "absolute CI divided by mu_c" forgets. This is
the formula GrowthBook's engine uses, and ``mu`` here are the unadjusted means so CUPED
changes the numerator's variance only. Degrees of freedom are Welch-Satterthwaite's.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import special

from abflow.stats.moments import ArmSummary

__all__ = ["effect_and_variance", "fixed_test", "welch_df"]

Array = npt.NDArray[np.float64]


def effect_and_variance(c: ArmSummary, t: ArmSummary, *, relative: bool) -> tuple[Array, Array]:
    """Point estimate of the effect and the variance of that estimate."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        diff = t.mean - c.mean
        if relative:
            mu_c, mu_t = c.unadjusted_mean, t.unadjusted_mean
            effect = diff / mu_c
            variance = t.variance / (mu_c**2 * t.n) + c.variance * mu_t**2 / (mu_c**4 * c.n)
        else:
            effect = diff
            variance = t.variance / t.n + c.variance / c.n
    return effect, variance


def welch_df(c: ArmSummary, t: ArmSummary) -> Array:
    """Welch-Satterthwaite degrees of freedom of the absolute difference."""
    # Written with the treatment's share w of the variance, (a + b)^2 / (a^2/(n_t - 1) +
    # b^2/(n_c - 1)) = 1 / (w^2/(n_t - 1) + (1 - w)^2/(n_c - 1)), which cannot underflow.
    with np.errstate(divide="ignore", invalid="ignore"):
        a = t.variance / t.n
        w = a / (a + c.variance / c.n)
        df: Array = 1.0 / (w**2 / (t.n - 1.0) + (1.0 - w) ** 2 / (c.n - 1.0))
    return df


def fixed_test(
    effect: Array,
    standard_error: Array,
    df: Array,
    *,
    alpha: float,
    alternative: str,
    null_value: float,
) -> tuple[Array, Array, Array]:
    """Confidence bounds and p-value of a t-test of ``effect == null_value``.

    One-sided tests give a one-sided interval (the other bound infinite), so the interval
    excludes ``null_value`` exactly when ``p < alpha``.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = (effect - null_value) / standard_error
    # scipy.special's t functions (stdtr: cdf, stdtrit: quantile) skip the per-call overhead
    # of scipy.stats distribution objects, which dominates small inputs.
    if alternative == "two-sided":
        p = 2.0 * special.stdtr(df, -np.abs(stat))
        width = -special.stdtrit(df, alpha / 2.0) * standard_error
        return effect - width, effect + width, p
    width = -special.stdtrit(df, alpha) * standard_error
    inf = np.full_like(effect, np.inf)
    if alternative == "greater":
        return effect - width, inf, special.stdtr(df, -stat)
    return -inf, effect + width, special.stdtr(df, stat)
