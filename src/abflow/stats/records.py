"""Sufficient statistics and result records: the small frozen values the engine works on.

Analysis computes these in SQL (counts, sums, sums of squares, cross products), so the
engine never needs raw rows; two batches' statistics add up to the statistics of the union.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt

from abflow.errors import InvalidArgumentError
from abflow.stats.validation import real_number

__all__ = [
    "Comparison",
    "GaussianPrior",
    "SampleStats",
    "as_float_array",
    "check_stats_fields",
    "checked_sums",
]

_SQUARES_TOLERANCE = 1e-6
"""Relative slack for ``sum^2 / n <= sum_squares``: float sums over many rows are not exact."""


def check_stats_fields(stats: Any) -> None:
    """Reject impossible sufficient statistics at construction (shared by every stats type).

    Besides types and signs, each variable's sum of squares must be at least its sum squared
    over ``n`` (Cauchy-Schwarz: a variance is never negative). Statistics that break this
    cannot come from any data, and would otherwise flow into a test as a negative variance.
    The tolerance leaves room for the rounding of sums over millions of rows.
    """
    for field in dataclasses.fields(stats):
        value = real_number(field.name, getattr(stats, field.name))
        if not math.isfinite(value):
            msg = f"{field.name} must be finite, got {value}"
            raise InvalidArgumentError(msg)
        if field.name.endswith("sum_squares") and value < 0:
            msg = f"{field.name} must be non-negative, got {value}"
            raise InvalidArgumentError(msg)
    n = float(stats.n)
    if n < 0:
        msg = f"n must be a non-negative finite number, got {stats.n}"
        raise InvalidArgumentError(msg)
    if not n.is_integer():
        msg = f"n counts units and must be a whole number, got {stats.n!r}"
        raise InvalidArgumentError(msg)
    products = type(stats).PRODUCTS
    for i, name in enumerate(type(stats).SUMS):
        total = float(getattr(stats, name))
        squares = float(getattr(stats, products[i][i]))
        if n == 0:
            impossible = total != 0 or squares != 0
        else:
            mean = total / n
            impossible = mean * mean > (squares / n) * (1.0 + _SQUARES_TOLERANCE)
        if impossible:
            msg = (
                f"{products[i][i]} ({squares!r}) is smaller than {name} squared over n "
                f"({total!r}^2 / {stats.n!r}): no data has these statistics"
            )
            raise InvalidArgumentError(msg)


def as_float_array(values: npt.ArrayLike, name: str) -> npt.NDArray[np.float64]:
    """One-dimensional float view of raw values (no copy when already float64)."""
    try:
        array = np.asarray(values, dtype=np.float64).ravel()
    except (TypeError, ValueError) as exc:
        msg = f"{name} must be numbers, got {type(values).__name__}: {exc}"
        raise InvalidArgumentError(msg) from exc
    return array


def checked_sums(name: str, *sums: float) -> None:
    """Refuse raw values whose sums are not finite: NaN or infinite values, or overflow.

    Checking the sums rather than every value saves a full pass over the data: any NaN or
    infinity among the values makes some sum non-finite.
    """
    if not all(math.isfinite(s) for s in sums):
        msg = f"{name} contains NaN or infinite values (or values too large to square)"
        raise InvalidArgumentError(msg)


@dataclass(frozen=True, slots=True)
class SampleStats:
    """Count, sum and sum of squares of one metric in one group.

    Proportions are the special case ``sum_squares == sum`` (values are 0 or 1); their
    variance is then the Bernoulli ``p (1 - p)``.
    """

    n: float
    sum: float
    sum_squares: float

    SUMS: ClassVar[tuple[str, ...]] = ("sum",)
    PRODUCTS: ClassVar[tuple[tuple[str, ...], ...]] = (("sum_squares",),)

    def __post_init__(self) -> None:
        check_stats_fields(self)

    @classmethod
    def proportion(cls, n: float, successes: float) -> SampleStats:
        """A binary metric: ``successes`` of ``n`` units converted."""
        count, hits = real_number("n", n), real_number("successes", successes)
        if not 0 <= hits <= count:
            msg = f"successes must be between 0 and n ({n!r}), got {successes!r}"
            raise InvalidArgumentError(msg)
        return cls(n=n, sum=successes, sum_squares=successes)

    @classmethod
    def from_values(cls, values: npt.ArrayLike) -> SampleStats:
        """Statistics of raw per-unit values (one number per unit)."""
        x = as_float_array(values, "values")
        total, squares = float(x.sum()), float(np.dot(x, x))
        checked_sums("values", total, squares)
        return cls(n=float(x.size), sum=total, sum_squares=squares)

    @property
    def is_proportion(self) -> bool:
        return self.sum_squares == self.sum and 0 <= self.sum <= self.n

    @property
    def mean(self) -> float:
        return self.sum / self.n if self.n > 0 else math.nan

    @property
    def variance(self) -> float:
        """Sample variance (``n - 1`` denominator); Bernoulli ``p (1 - p)`` for proportions."""
        if self.is_proportion and self.n > 0:
            p = self.mean
            return p * (1.0 - p)
        return self.sample_variance

    @property
    def sample_variance(self) -> float:
        """Sample variance (``n - 1``) even of values that are all 0 or 1: what the parts of a
        ratio need, whose covariance divides by ``n - 1`` too."""
        if self.n < 2:
            return math.nan
        value = (self.sum_squares - self.sum * self.sum / self.n) / (self.n - 1)
        return max(value, 0.0)

    def __add__(self, other: Self) -> Self:
        if type(other) is not type(self):
            return NotImplemented
        return type(self)(
            n=self.n + other.n,
            sum=self.sum + other.sum,
            sum_squares=self.sum_squares + other.sum_squares,
        )


@dataclass(frozen=True, slots=True)
class GaussianPrior:
    """A normal prior on the effect, on the scale of the comparison (relative or absolute)."""

    mean: float = 0.0
    variance: float = 1.0

    def __post_init__(self) -> None:
        real_number("prior mean", self.mean)
        real_number("prior variance", self.variance)
        if not math.isfinite(self.mean):
            msg = f"prior mean must be finite, got {self.mean}"
            raise InvalidArgumentError(msg)
        if not (self.variance > 0 and math.isfinite(self.variance)):
            msg = f"prior variance must be positive and finite, got {self.variance}"
            raise InvalidArgumentError(msg)


@dataclass(frozen=True, slots=True)
class Comparison:
    """Treatment against control for one metric: an effect with its interval and evidence.

    ``effect`` is relative (``0.1`` = +10 %) when ``relative`` is true, else absolute.
    Frequentist and sequential results fill ``p_value``; Bayesian results fill
    ``chance_to_win`` and ``expected_loss`` (the loss expected if treatment ships) and
    ``expected_loss_control`` (if control stays) instead, and ``standard_error`` is then the
    posterior standard deviation. ``degrees_of_freedom`` is Welch's for the fixed test (NaN
    for the normal-theory sequential and Bayesian methods). ``variance_reduction`` is the
    share of the variance of the difference removed by CUPED (``None`` without a covariate).
    One-sided tests give one infinite bound. Degenerate data gives a record with
    ``error_code`` set and NaN numbers rather than an exception.
    """

    effect: float
    ci_low: float
    ci_high: float
    p_value: float | None
    method: str
    relative: bool
    alpha: float
    chance_to_win: float | None = None
    expected_loss: float | None = None
    control_mean: float = math.nan
    treatment_mean: float = math.nan
    standard_error: float = math.nan
    error_code: str | None = None
    error_message: str = ""
    alternative: str = "two-sided"
    margin: float | None = None
    degrees_of_freedom: float = math.nan
    expected_loss_control: float | None = None
    variance_reduction: float | None = None

    @property
    def is_ok(self) -> bool:
        return self.error_code is None

    @property
    def is_significant(self) -> bool:
        """Whether the p-value is below alpha (Bayesian results are never "significant")."""
        return self.p_value is not None and self.is_ok and self.p_value < self.alpha
