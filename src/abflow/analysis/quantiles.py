"""Quantiles (P50, P95, …) from binned counts, and a test of their difference.

Shipping every latency to Python does not scale, so SQL returns counts per fixed-width bin
and quantiles are read off the cumulative counts with linear interpolation inside a bin
(resolution: the bin width). The interval of a quantile uses the distribution-free
order-statistic bounds: with ``n`` values the ranks ``n q ± z sqrt(n q (1 - q))`` bracket the
true quantile with probability ``1 - alpha``; their half-width over ``z`` is the standard
error, and two independent variants combine as a normal difference (delta method for the
relative effect). Values are treated as independent (per prediction, not clustered by unit).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

from abflow.errors import InvalidArgumentError

__all__ = ["QuantileComparison", "compare_binned_quantiles", "quantile_from_bins"]

Bins = Sequence[tuple[float, int]]


def _rank_value(bins: Bins, width: float, rank: float) -> float:
    """Value at 0-based fractional ``rank`` of the sorted data, interpolating in its bin."""
    total = sum(n for _, n in bins)
    rank = min(max(rank, 0.0), total)
    seen = 0
    for lower, count in bins:
        if count and seen + count >= rank:
            return lower + width * (rank - seen) / count
        seen += count
    last_lower = bins[-1][0]
    return last_lower + width


def quantile_from_bins(bins: Bins, width: float, q: float) -> float:
    """The ``q`` quantile of values summarised as ``[(bin lower edge, count)]`` sorted by edge."""
    if not 0 < q < 1:
        msg = f"quantile must be between 0 and 1, got {q}"
        raise InvalidArgumentError(msg)
    total = sum(n for _, n in bins)
    if total == 0:
        return math.nan
    return _rank_value(bins, width, q * total)


def _quantile_and_se(bins: Bins, width: float, q: float, alpha: float) -> tuple[float, float, int]:
    total = sum(n for _, n in bins)
    if total == 0:
        return math.nan, math.nan, 0
    z = float(stats.norm.ppf(1 - alpha / 2))
    half = z * math.sqrt(total * q * (1 - q))
    low = _rank_value(bins, width, q * total - half)
    high = _rank_value(bins, width, q * total + half)
    return _rank_value(bins, width, q * total), (high - low) / (2 * z), total


@dataclass(frozen=True, slots=True)
class QuantileComparison:
    """Treatment's quantile against control's: effect, interval and two-sided p-value."""

    control_value: float
    treatment_value: float
    control_n: int
    treatment_n: int
    effect: float
    ci_low: float
    ci_high: float
    p_value: float
    error_code: str | None = None


def compare_binned_quantiles(
    control: Bins,
    treatment: Bins,
    *,
    width: float,
    q: float,
    alpha: float = 0.05,
    relative: bool = True,
) -> QuantileComparison:
    """Difference of the ``q`` quantiles of two binned samples (relative: over control's)."""
    if not 0 < alpha < 1:
        msg = f"alpha must be between 0 and 1, got {alpha}"
        raise InvalidArgumentError(msg)
    c, c_se, c_n = _quantile_and_se(control, width, q, alpha)
    t, t_se, t_n = _quantile_and_se(treatment, width, q, alpha)
    nan = math.nan
    if c_n < 2 or t_n < 2:
        return QuantileComparison(c, t, c_n, t_n, nan, nan, nan, nan, "too_few_units")
    if relative:
        if c == 0:
            return QuantileComparison(c, t, c_n, t_n, nan, nan, nan, nan, "zero_control_mean")
        effect = t / c - 1
        se = math.sqrt(t_se**2 / c**2 + t**2 * c_se**2 / c**4)
    else:
        effect = t - c
        se = math.hypot(t_se, c_se)
    if not se > 0:
        return QuantileComparison(c, t, c_n, t_n, effect, nan, nan, nan, "zero_variance")
    z = float(stats.norm.ppf(1 - alpha / 2))
    p_value = float(2 * stats.norm.sf(abs(effect) / se))
    return QuantileComparison(c, t, c_n, t_n, effect, effect - z * se, effect + z * se, p_value)
