"""Fixed-horizon frequentist tests: Welch's t on the difference of means, absolute or relative.

The absolute effect is ``mean_t - mean_c`` with variance ``v_t / n_t + v_c / n_c``. The
relative effect ``(mean_t - mean_c) / |mean_c|`` gets its variance from the delta method,
``v_t / (mu_c^2 n_t) + v_c mu_t^2 / (mu_c^4 n_c)``: the second term is the uncertainty of the
control mean in the denominator, which a naive "absolute CI divided by mu_c" forgets. This is
the formula GrowthBook's engine uses, and ``mu`` here are the unadjusted means so CUPED
changes the numerator's variance only. Dividing by the absolute control mean (as GrowthBook
does since "keep the sign of relative lift when the baseline mean is negative") keeps the
sign of the difference: a rise is positive whatever the sign of the baseline. The variance
has only even powers of ``mu_c``, so it is the same either way. Degrees of freedom are
Welch-Satterthwaite's.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import special

from abflow.stats.moments import ArmSummary

__all__ = ["effect_and_variance", "fixed_test", "t_critical", "welch_df"]

Array = npt.NDArray[np.float64]


def effect_and_variance(c: ArmSummary, t: ArmSummary, *, relative: bool) -> tuple[Array, Array]:
    """Point estimate of the effect and the variance of that estimate."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        diff = t.mean - c.mean
        if relative:
            mu_c, mu_t = c.unadjusted_mean, t.unadjusted_mean
            effect = diff / np.abs(mu_c)
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


def t_critical(df: Array | float, level: float) -> Array:
    """Critical value ``c`` with ``P(T_df > c) = level`` (positive when ``level < 0.5``).

    scipy's ``stdtrit`` returns ``+inf`` for tiny levels at few degrees of freedom (5.7 df at
    1e-300, where the answer is about 7e52), which put a two-sided interval's bounds the wrong
    way round, and saturates near 7e153 further out. Where its answer does not give back
    ``level`` the quantile comes from the incomplete beta function instead:
    ``c^2 = df (1 - x) / x`` with ``x = I^-1_{2 level}(df / 2, 1 / 2)``, and where even ``x``
    underflows (``c`` beyond 1e145) from the density's power-law tail,
    ``P(T > c) = K df^((df - 2) / 2) c^-df`` with ``K = G((df + 1) / 2) / (sqrt(pi) G(df / 2))``.
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        critical: Array = -np.asarray(special.stdtrit(df, level), dtype=np.float64)
        if level < 0.5:
            # Wrong sign, infinite, or saturated (its tail probability is not ``level``).
            round_trip = special.stdtr(df, -critical) / level - 1.0
            broken = ~(critical > 0.0) | ~np.isfinite(critical) | ~(np.abs(round_trip) < 1e-6)
            if np.any(broken):
                nu = np.asarray(df, dtype=np.float64)
                x = special.betaincinv(nu * 0.5, 0.5, 2.0 * level)
                log_k = special.gammaln((nu + 1.0) / 2.0) - special.gammaln(nu / 2.0)
                log_tail = log_k - 0.5 * np.log(np.pi) + (nu - 2.0) / 2.0 * np.log(nu)
                tail = np.exp((log_tail - np.log(level)) / nu)
                beta = np.sqrt(nu * (1.0 - x) / x)
                repaired = np.where(x > 1e-300, beta, tail)
                critical = np.where(broken, repaired, critical)
    return critical


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
        width = t_critical(df, alpha / 2.0) * standard_error
        return effect - width, effect + width, p
    width = t_critical(df, alpha) * standard_error
    inf = np.full_like(effect, np.inf)
    if alternative == "greater":
        return effect - width, inf, special.stdtr(df, -stat)
    return -inf, effect + width, special.stdtr(df, stat)
