"""Inference on paired observations: the same request answered by two models.

A shadow model sees exactly the requests the served model saw, so the two are compared on
per-request differences (a paired t interval) and on discordant decisions (McNemar's test),
which is far tighter than treating them as two independent samples. Pure functions on
sufficient statistics: ``n``, the sum and the sum of squares of the differences, or the two
discordant counts of a 2x2 table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats as sps

from abflow.errors import InvalidArgumentError

__all__ = [
    "MCNEMAR_EXACT_BELOW",
    "McNemarResult",
    "PairedDifference",
    "mcnemar",
    "paired_mean_difference",
]

MCNEMAR_EXACT_BELOW = 25
"""Discordant pairs below which McNemar's test is the exact binomial test (the chi-square
approximation is poor there)."""


@dataclass(frozen=True, slots=True)
class PairedDifference:
    """Mean of per-pair differences (second minus first) with a paired t interval."""

    n: int
    mean: float
    std_error: float
    ci_low: float
    ci_high: float
    p_value: float | None
    error_code: str | None = None


@dataclass(frozen=True, slots=True)
class McNemarResult:
    """McNemar's test on the discordant pairs ``b`` (first only) and ``c`` (second only)."""

    b: int
    c: int
    statistic: float
    p_value: float
    is_exact: bool


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        msg = f"alpha must be in (0, 1), got {alpha}"
        raise InvalidArgumentError(msg)


def paired_mean_difference(
    n: int, total: float, sum_squares: float, *, alpha: float = 0.05
) -> PairedDifference:
    """The mean difference from ``n`` pairs whose differences sum to ``total`` and whose
    squared differences sum to ``sum_squares``; a two-sided ``1 - alpha`` t interval.

    Fewer than two pairs give NaN with ``error_code`` ``too_few_pairs``; differences that
    never vary give a zero-width interval at the mean and ``p_value`` 1 when it is 0.
    """
    _check_alpha(alpha)
    if n < 0 or sum_squares < 0:
        msg = f"n and sum_squares must be >= 0, got n={n}, sum_squares={sum_squares}"
        raise InvalidArgumentError(msg)
    nan = math.nan
    if n < 2:
        mean = total / n if n else nan
        return PairedDifference(n, mean, nan, nan, nan, None, "too_few_pairs")
    mean = total / n
    variance = max(sum_squares - n * mean * mean, 0.0) / (n - 1)
    std_error = math.sqrt(variance / n)
    if std_error == 0.0:
        p_value = 1.0 if mean == 0.0 else 0.0
        return PairedDifference(n, mean, 0.0, mean, mean, p_value, "zero_variance")
    t = float(sps.t.ppf(1.0 - alpha / 2.0, n - 1))
    p_value = float(2.0 * sps.t.sf(abs(mean / std_error), n - 1))
    return PairedDifference(n, mean, std_error, mean - t * std_error, mean + t * std_error, p_value)


def mcnemar(b: int, c: int, *, exact: bool | None = None) -> McNemarResult:
    """McNemar's test of ``b == c``: exact (two-sided binomial) when ``exact`` or, by
    default, when ``b + c < MCNEMAR_EXACT_BELOW``; else chi-square with continuity
    correction, as ``statsmodels.stats.contingency_tables.mcnemar``."""
    if b < 0 or c < 0:
        msg = f"discordant counts must be >= 0, got b={b}, c={c}"
        raise InvalidArgumentError(msg)
    discordant = b + c
    if exact is None:
        exact = discordant < MCNEMAR_EXACT_BELOW
    if discordant == 0:
        return McNemarResult(b, c, 0.0 if exact else math.nan, 1.0, exact)
    if exact:
        smaller = min(b, c)
        p_value = min(1.0, 2.0 * float(sps.binom.cdf(smaller, discordant, 0.5)))
        return McNemarResult(b, c, float(smaller), p_value, True)
    statistic = (abs(b - c) - 1.0) ** 2 / discordant
    return McNemarResult(b, c, statistic, float(sps.chi2.sf(statistic, 1)), False)
