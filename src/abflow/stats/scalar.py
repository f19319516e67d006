"""The fast path of a single ``compare`` call on two ``SampleStats``: plain floats, no arrays.

``compare_many`` is built for thousands of pairs: stacking, masks and a dozen numpy calls
cost about 200 µs whatever the count, which dominates one comparison (a dashboard cell, an
API request, the rollout controller). This module repeats the same formulas on Python floats
for the common case, means and proportions with usable data, in each method. Anything else
(ratios, CUPED, degenerate data that gets an ``error_code``, a t quantile that scipy cannot
give directly) returns ``None`` and goes the vectorised way, so the two paths can only
differ by floating-point rounding (tests/stats/test_compare_fast_path.py checks 1e-12).
"""

from __future__ import annotations

import math
from typing import Any

from scipy import special

from abflow.stats.frequentist import t_critical
from abflow.stats.moments import PRECISION_RATIO
from abflow.stats.records import Comparison, GaussianPrior, SampleStats
from abflow.stats.sequential import rho_squared

__all__ = ["compare_scalar"]

_SQRT_2PI = math.sqrt(2.0 * math.pi)


def _arm(stats: SampleStats) -> tuple[float, float, float] | None:
    """``(n, mean, unit variance)`` as ``moments.summarize`` computes them; None if n < 2
    or the variance is lost to rounding (the vectorised way gives those their error)."""
    n, total, squares = float(stats.n), float(stats.sum), float(stats.sum_squares)
    if not n >= 2.0:
        return None
    mean = total / n
    if squares == total and 0.0 <= total <= n:  # a proportion: Bernoulli variance
        variance = mean * (1.0 - mean)
    else:
        centered = squares - total * total / n
        if centered != 0.0 and abs(centered) < PRECISION_RATIO * squares:
            return None  # the vectorised way names the lost precision
        variance = max(centered / (n - 1.0), 0.0)
    return n, mean, variance


def _t_critical(df: float, level: float) -> float:
    """``t_critical`` for one df: scipy's quantile when it round-trips, else the full repair.

    scipy's quantile only goes wrong far in the tail with few degrees of freedom (see
    ``t_critical``); for usual levels and df >= 2 the round-trip check is skipped.
    """
    critical = -float(special.stdtrit(df, level))
    if level >= 1e-4 and df >= 2.0 and 0.0 < critical < math.inf:
        return critical
    if level < 0.5 and not (
        0.0 < critical < math.inf and abs(float(special.stdtr(df, -critical)) / level - 1.0) < 1e-6
    ):
        return float(t_critical(df, level))
    return critical


def compare_scalar(
    control: object,
    treatment: object,
    **options: Any,
) -> Comparison | None:
    """The comparison ``compare_many`` would return for this one pair, or None when the
    fast path does not apply. Arguments are already checked.

    Python floats raise where numpy's give inf or NaN (a control mean whose fourth power
    underflows, a sum of squares that overflows): such extremes go the vectorised way too.
    """
    if type(control) is not SampleStats or type(treatment) is not SampleStats:
        return None
    try:
        return _compare(control, treatment, **options)
    except (ZeroDivisionError, OverflowError, ValueError):
        return None


def _compare(
    control: SampleStats,
    treatment: SampleStats,
    *,
    relative: bool,
    method: str,
    alpha: float,
    alternative: str,
    margin: float | None,
    prior: GaussianPrior | None,
    tuning_sample_size: float,
) -> Comparison | None:
    arm_c, arm_t = _arm(control), _arm(treatment)
    if arm_c is None or arm_t is None:
        return None
    n_c, mean_c, var_c = arm_c
    n_t, mean_t, var_t = arm_t
    if not (math.isfinite(mean_c) and math.isfinite(mean_t)):
        return None
    if relative:
        if mean_c == 0.0:
            return None
        effect = (mean_t - mean_c) / abs(mean_c)
        variance = var_t / (mean_c**2 * n_t) + var_c * mean_t**2 / (mean_c**4 * n_c)
    else:
        effect = mean_t - mean_c
        variance = var_t / n_t + var_c / n_c
    standard_error = math.sqrt(variance) if variance >= 0.0 else math.nan
    if not (0.0 < standard_error < math.inf and math.isfinite(effect)):
        return None
    null_value = 0.0 if margin is None else (-margin if alternative == "greater" else margin)
    common = {
        "method": method,
        "relative": relative,
        "alpha": alpha,
        "control_mean": mean_c,
        "treatment_mean": mean_t,
        "alternative": alternative,
        "margin": margin,
    }
    if method == "bayesian":
        return _bayesian(effect, variance, prior, alpha, alternative, null_value, common)
    if method == "sequential":
        low, high, p_value = _sequential(
            effect, variance, n_c + n_t, alpha, alternative, null_value, tuning_sample_size
        )
        return Comparison(
            effect=effect,
            ci_low=low,
            ci_high=high,
            p_value=p_value,
            standard_error=standard_error,
            **common,  # type: ignore[arg-type]
        )
    a = var_t / n_t
    w = a / (a + var_c / n_c)
    df = 1.0 / (w**2 / (n_t - 1.0) + (1.0 - w) ** 2 / (n_c - 1.0))
    stat = (effect - null_value) / standard_error
    if alternative == "two-sided":
        p_value = 2.0 * float(special.stdtr(df, -abs(stat)))
        width = _t_critical(df, alpha / 2.0) * standard_error
        low, high = effect - width, effect + width
    elif alternative == "greater":
        width = _t_critical(df, alpha) * standard_error
        low, high, p_value = effect - width, math.inf, float(special.stdtr(df, -stat))
    else:
        width = _t_critical(df, alpha) * standard_error
        low, high, p_value = -math.inf, effect + width, float(special.stdtr(df, stat))
    return Comparison(
        effect=effect,
        ci_low=low,
        ci_high=high,
        p_value=p_value,
        standard_error=standard_error,
        degrees_of_freedom=df,
        **common,  # type: ignore[arg-type]
    )


def _sequential(
    effect: float,
    variance: float,
    n_total: float,
    alpha: float,
    alternative: str,
    null_value: float,
    tuning_sample_size: float,
) -> tuple[float, float, float]:
    """``sequential.confidence_sequence`` for one comparison."""
    r2 = rho_squared(alpha, tuning_sample_size)
    spread = n_total * r2 + 1.0
    half_width = math.sqrt(variance) * math.sqrt(
        2.0 * spread * math.log(math.sqrt(spread) / alpha) / (n_total * r2)
    )
    z2 = (effect - null_value) ** 2 / variance
    log_e = r2 * n_total * z2 / (2.0 * spread) - 0.5 * math.log(spread)
    p_value = min(1.0, math.exp(-log_e))  # log_e >= -log(spread) / 2: no overflow
    low, high = effect - half_width, effect + half_width
    if alternative == "greater":
        return low, math.inf, p_value if effect > null_value else 1.0
    if alternative == "less":
        return -math.inf, high, p_value if effect < null_value else 1.0
    return low, high, p_value


def _bayesian(
    effect: float,
    variance: float,
    prior: GaussianPrior | None,
    alpha: float,
    alternative: str,
    threshold: float,
    common: dict[str, object],
) -> Comparison:
    """``bayesian.gaussian_posterior`` for one comparison."""
    if prior is None:
        mean, sd = effect, math.sqrt(variance)
    else:
        precision = 1.0 / variance + 1.0 / prior.variance
        mean = (effect / variance + prior.mean / prior.variance) / precision
        sd = math.sqrt(1.0 / precision)
    z_crit = -float(special.ndtri(alpha / 2.0))
    z = mean / sd
    win = float(special.ndtr((mean - threshold) / sd))
    density = math.exp(-0.5 * z * z) / _SQRT_2PI
    loss_control = sd * density + mean * float(special.ndtr(z))
    loss_treatment = sd * density - mean * float(special.ndtr(-z))
    if alternative == "less":
        win = 1.0 - win
        loss_control, loss_treatment = loss_treatment, loss_control
    return Comparison(
        effect=mean,
        ci_low=mean - z_crit * sd,
        ci_high=mean + z_crit * sd,
        p_value=None,
        chance_to_win=win,
        expected_loss=loss_treatment,
        expected_loss_control=loss_control,
        standard_error=sd,
        **common,  # type: ignore[arg-type]
    )
