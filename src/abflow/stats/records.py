"""Sufficient statistics and result records: the small frozen values the engine works on.

Analysis computes these in SQL (counts, sums, sums of squares, cross products), so the
engine never needs raw rows; two batches' statistics add up to the statistics of the union.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from abflow.errors import InvalidArgumentError

__all__ = ["Comparison", "SampleStats"]


@dataclass(frozen=True, slots=True)
class SampleStats:
    """Count, sum and sum of squares of one metric in one group.

    Proportions are the special case ``sum_squares == sum`` (values are 0 or 1); their
    variance is then the Bernoulli ``p (1 - p)``.
    """

    n: float
    sum: float
    sum_squares: float

    def __post_init__(self) -> None:
        if not (self.n >= 0 and math.isfinite(self.n)):
            msg = f"n must be a non-negative finite number, got {self.n}"
            raise InvalidArgumentError(msg)
        if not (math.isfinite(self.sum) and math.isfinite(self.sum_squares)):
            msg = "sum and sum_squares must be finite"
            raise InvalidArgumentError(msg)
        if self.sum_squares < 0:
            msg = f"sum_squares must be non-negative, got {self.sum_squares}"
            raise InvalidArgumentError(msg)

    @classmethod
    def proportion(cls, n: float, successes: float) -> SampleStats:
        """A binary metric: ``successes`` of ``n`` units converted."""
        return cls(n=n, sum=successes, sum_squares=successes)

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
        if self.n < 2:
            return math.nan
        value = (self.sum_squares - self.sum * self.sum / self.n) / (self.n - 1)
        return max(value, 0.0)

    def __add__(self, other: SampleStats) -> SampleStats:
        return SampleStats(
            n=self.n + other.n,
            sum=self.sum + other.sum,
            sum_squares=self.sum_squares + other.sum_squares,
        )


@dataclass(frozen=True, slots=True)
class Comparison:
    """Treatment against control for one metric: an effect with its interval and evidence.

    ``effect`` is relative (``0.1`` = +10 %) when ``relative`` is true, else absolute.
    Frequentist and sequential results fill ``p_value``; Bayesian results fill
    ``chance_to_win`` and ``expected_loss`` instead. Degenerate data gives a record with
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

    @property
    def is_ok(self) -> bool:
        return self.error_code is None
