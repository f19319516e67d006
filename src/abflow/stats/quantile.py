"""Quantile metrics (P50, P90, P95 latency): differences of sample quantiles with intervals.

Means hide tails; a model that is faster on average can still be slower for the worst 5 %
of requests. A sample quantile ``x_q`` is asymptotically normal with variance
``q (1 - q) / (n f(x_q)^2)``, where ``f`` is the density at the quantile. The density is
estimated from the spacing of two quantiles around ``q``, taken at the edges of the
distribution-free 95 % confidence interval of the quantile,
``p = q -/+ 1.96 sqrt(q (1 - q) / n)``:

    se(x_q) = sqrt(q (1 - q) / n) * (x_{p_upper} - x_{p_lower}) / (p_upper - p_lower)

Everything is read off the quantile function at three probabilities, so the sufficient
statistic (:class:`QuantileStats`) comes from raw values, from a fine histogram, or from SQL
(``percentile_cont(ARRAY[p_lower, q, p_upper]) WITHIN GROUP (ORDER BY value)`` in
PostgreSQL, after a first query for ``n``). Point estimates use linear interpolation between
order statistics, as ``numpy.quantile`` and ``percentile_cont`` do. Two arms' estimates are
independent, so the difference has variance ``se_c^2 + se_t^2`` (the delta method gives the
relative lift); the interval is normal.

Assumes independent values, one per randomisation unit or at least not clustered by unit;
per-request latencies of users who send many requests make the interval too narrow.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from abflow.errors import InvalidArgumentError
from abflow.stats.records import Comparison, as_float_array
from abflow.stats.validation import real_number

__all__ = [
    "QuantileStats",
    "compare_quantile_stats",
    "compare_quantiles",
    "quantile_probabilities",
    "quantile_stats",
    "quantile_stats_from_bins",
    "quantile_stats_from_histogram",
]

DENSITY_Z = 1.959963984540054
"""Half-width, in binomial standard deviations, of the window that estimates the density."""

METHOD = "quantile"


@dataclass(frozen=True, slots=True)
class QuantileStats:
    """One arm's sample quantile and the two quantiles that bracket it.

    ``lower`` and ``upper`` are the values at ``p_lower`` and ``p_upper``
    (see :func:`quantile_probabilities`).
    """

    n: float
    q: float
    quantile: float
    lower: float
    upper: float
    p_lower: float
    p_upper: float

    def __post_init__(self) -> None:
        _check_q(self.q)
        if not (math.isfinite(self.n) and self.n >= 0):
            msg = f"n must be a non-negative finite number, got {self.n}"
            raise InvalidArgumentError(msg)
        if not self.lower <= self.quantile <= self.upper:
            msg = (
                f"need lower <= quantile <= upper, got {self.lower}, {self.quantile}, {self.upper}"
            )
            raise InvalidArgumentError(msg)

    @property
    def is_supported(self) -> bool:
        """The density window fits inside (0, 1): enough units for this quantile."""
        return self.n > 0 and 0.0 < self.p_lower < self.q < self.p_upper < 1.0

    @property
    def standard_error(self) -> float:
        """Asymptotic standard error ``sqrt(q (1 - q) / n) / f(x_q)``; NaN when unsupported."""
        if not self.is_supported:
            return math.nan
        spread = (self.upper - self.lower) / (self.p_upper - self.p_lower)
        return math.sqrt(self.q * (1.0 - self.q) / self.n) * spread


def _check_q(q: float) -> None:
    if isinstance(q, bool) or not isinstance(q, numbers.Real) or not 0.0 < q < 1.0:
        msg = f"q must be strictly between 0 and 1 (0.95 for P95), got {q!r}"
        raise InvalidArgumentError(msg)


def quantile_probabilities(n: float, q: float) -> tuple[float, float, float]:
    """``(p_lower, q, p_upper)``: where to read the quantile function for ``n`` units.

    The outer two are clipped to [0, 1]; when clipping happens there are too few units for
    this quantile and comparisons report ``too_few_units``.
    """
    _check_q(q)
    if not (math.isfinite(n) and n > 0):
        msg = f"n must be a positive number, got {n!r}"
        raise InvalidArgumentError(msg)
    half = DENSITY_Z * math.sqrt(q * (1.0 - q) / n)
    return max(q - half, 0.0), q, min(q + half, 1.0)


def quantile_stats(values: ArrayLike, q: float) -> QuantileStats:
    """Sufficient statistic of the ``q`` quantile of raw values (NaN values are an error)."""
    data = as_float_array(values, "values")
    if data.size == 0:
        msg = "values is empty; a quantile needs at least one value"
        raise InvalidArgumentError(msg)
    if not np.all(np.isfinite(data)):
        msg = "values must be finite (drop missing values before computing quantiles)"
        raise InvalidArgumentError(msg)
    probabilities = quantile_probabilities(data.size, q)
    lower, middle, upper = _linear_quantiles(np.sort(data), probabilities)
    return QuantileStats(data.size, q, middle, lower, upper, probabilities[0], probabilities[2])


def _linear_quantiles(ordered: np.ndarray, probabilities: Sequence[float]) -> list[float]:
    """Linear interpolation between order statistics (numpy's default, ``percentile_cont``).

    Written out because ``numpy.quantile`` costs far more than the sort it performs.
    """
    last = ordered.size - 1
    values = []
    for p in probabilities:
        position = p * last
        below = min(math.floor(position), last)
        above = min(below + 1, last)
        fraction = position - below
        low, high = float(ordered[below]), float(ordered[above])
        gap = high - low
        # Values near the float limit: weigh the two ends instead of overflowing their gap.
        value = (
            low + fraction * gap if math.isfinite(gap) else (1 - fraction) * low + fraction * high
        )
        values.append(value)
    return values


def quantile_stats_from_histogram(
    bin_edges: Sequence[float], counts: Sequence[float], q: float
) -> QuantileStats:
    """Sufficient statistic from a histogram, values spread evenly within each bin.

    With bins much narrower than the spread between ``p_lower`` and ``p_upper`` (say 1 ms
    bins for latencies of tens of ms) this matches the raw-value statistic closely.
    """
    edges = np.asarray(bin_edges, dtype=float)
    weights = np.asarray(counts, dtype=float)
    if edges.ndim != 1 or weights.ndim != 1 or edges.size != weights.size + 1:
        msg = f"need len(bin_edges) == len(counts) + 1, got {edges.size} and {weights.size}"
        raise InvalidArgumentError(msg)
    if not (np.all(np.isfinite(edges)) and np.all(np.diff(edges) > 0)):
        msg = "bin_edges must be finite and strictly increasing"
        raise InvalidArgumentError(msg)
    if not (np.all(np.isfinite(weights)) and np.all(weights >= 0)) or weights.sum() <= 0:
        msg = "counts must be non-negative with a positive total"
        raise InvalidArgumentError(msg)
    return _from_cdf(edges, np.concatenate([[0.0], np.cumsum(weights)]), q)


def quantile_stats_from_bins(
    bins: Sequence[tuple[float, float]], width: float, q: float
) -> QuantileStats:
    """Sufficient statistic from sparse fixed-width bins ``[(lower edge, count), ...]``.

    The shape SQL returns for ``floor(value / width) * width`` grouped counts: empty bins are
    simply missing. Values are spread evenly within each bin.
    """
    if not (math.isfinite(width) and width > 0):
        msg = f"width must be a positive number, got {width!r}"
        raise InvalidArgumentError(msg)
    pairs = np.asarray(bins, dtype=float).reshape(-1, 2)
    lowers, weights = pairs[:, 0], pairs[:, 1]
    if not (np.all(np.isfinite(lowers)) and np.all(np.diff(lowers) >= width * (1 - 1e-9))):
        msg = "bin lower edges must be finite, sorted and at least one width apart"
        raise InvalidArgumentError(msg)
    if not (np.all(np.isfinite(weights)) and np.all(weights >= 0)) or weights.sum() <= 0:
        msg = "counts must be non-negative with a positive total"
        raise InvalidArgumentError(msg)
    # Each bin contributes its two edges; a gap between bins is a flat stretch of the CDF.
    points = np.column_stack([lowers, lowers + width]).ravel()
    cumulative = np.cumsum(weights)
    levels = np.column_stack([cumulative - weights, cumulative]).ravel()
    return _from_cdf(points, levels, q)


def _from_cdf(points: np.ndarray, cumulative_counts: np.ndarray, q: float) -> QuantileStats:
    """Read the three quantiles off a piecewise-linear CDF given at ``points``."""
    n = float(cumulative_counts[-1])
    probabilities = quantile_probabilities(n, q)
    # Inverse CDF by interpolation; flat stretches (no values) are never landed inside.
    values = np.interp(probabilities, cumulative_counts / n, points)
    lower, middle, upper = (float(v) for v in values)
    return QuantileStats(n, q, middle, lower, upper, probabilities[0], probabilities[2])


def _failed(
    control: QuantileStats, treatment: QuantileStats, relative: bool, alpha: float, code: str
) -> Comparison:
    messages = {
        "too_few_units": "Too few units to estimate this quantile's spread in one of the arms.",
        "zero_variance": "The values around the quantile are all equal, so it has no spread.",
        "zero_control_quantile": "The control quantile is zero, so a relative effect is undefined.",
        "zero_quantile_spread": (
            "One arm's values around the quantile are all equal, so its spread is unknown."
        ),
    }
    return Comparison(
        effect=math.nan,
        ci_low=math.nan,
        ci_high=math.nan,
        p_value=math.nan,
        method=METHOD,
        relative=relative,
        alpha=alpha,
        control_mean=control.quantile,
        treatment_mean=treatment.quantile,
        error_code=code,
        error_message=messages[code],
    )


def compare_quantile_stats(
    control: QuantileStats,
    treatment: QuantileStats,
    *,
    relative: bool = False,
    alpha: float = 0.05,
) -> Comparison:
    """Difference (or relative lift) of treatment's quantile over control's, two-sided.

    ``control_mean`` and ``treatment_mean`` of the result hold the two quantiles.
    """
    if not (0.0 < real_number("alpha", alpha) < 1.0):
        msg = f"alpha must be strictly between 0 and 1, got {alpha!r}"
        raise InvalidArgumentError(msg)
    if control.q != treatment.q:
        msg = f"both arms must describe the same quantile, got {control.q} and {treatment.q}"
        raise InvalidArgumentError(msg)
    if not (control.is_supported and treatment.is_supported):
        return _failed(control, treatment, relative, alpha, "too_few_units")
    se_c, se_t = control.standard_error, treatment.standard_error
    x_c, x_t = control.quantile, treatment.quantile
    if relative:
        if x_c == 0:
            return _failed(control, treatment, relative, alpha, "zero_control_quantile")
        effect = (x_t - x_c) / abs(x_c)  # keeps the sign of the difference, as GrowthBook
        se = math.sqrt(se_t**2 / x_c**2 + x_t**2 * se_c**2 / x_c**4)
    else:
        effect = x_t - x_c
        se = math.sqrt(se_c**2 + se_t**2)
    if (se_c > 0) != (se_t > 0):
        # One arm's interval collapsed (all values around its quantile equal): a standard
        # error from the other arm alone would be falsely confident. gbstats refuses too.
        return _failed(control, treatment, relative, alpha, "zero_quantile_spread")
    if not se > 0:
        return _failed(control, treatment, relative, alpha, "zero_variance")
    if not (math.isfinite(se) and math.isfinite(effect)):
        msg = "quantiles or their spread exceed the floating-point range; rescale the values"
        raise InvalidArgumentError(msg)
    z = float(special.ndtri(1.0 - alpha / 2.0))
    return Comparison(
        effect=effect,
        ci_low=effect - z * se,
        ci_high=effect + z * se,
        p_value=float(2.0 * special.ndtr(-abs(effect) / se)),
        method=METHOD,
        relative=relative,
        alpha=alpha,
        control_mean=x_c,
        treatment_mean=x_t,
        standard_error=se,
    )


def compare_quantiles(
    control_values: ArrayLike,
    treatment_values: ArrayLike,
    q: float,
    *,
    relative: bool = False,
    alpha: float = 0.05,
) -> Comparison:
    """Compare the ``q`` quantile (0.95 for P95) of two samples of raw values."""
    return compare_quantile_stats(
        quantile_stats(control_values, q),
        quantile_stats(treatment_values, q),
        relative=relative,
        alpha=alpha,
    )
