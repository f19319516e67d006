"""Sufficient statistics for ratio metrics and CUPED, beyond the plain ``SampleStats``.

Every field is a count, a sum, a sum of squares or a sum of cross products over units, so
SQL can compute them in one pass (``count(*)``, ``sum(x)``, ``sum(x*x)``, ``sum(x*y)``) and
two batches merge with ``+``. The engine turns them into means and a covariance matrix and
applies the delta method; see :mod:`abflow.stats.moments`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar, Self

import numpy as np
import numpy.typing as npt

from abflow.errors import InvalidArgumentError
from abflow.stats.records import SampleStats, as_float_array, check_stats_fields, checked_sums

__all__ = ["CupedStats", "RatioCupedStats", "RatioStats"]


def _same_length(*arrays: npt.NDArray[np.float64]) -> None:
    sizes = {a.size for a in arrays}
    if len(sizes) != 1:
        msg = f"raw value arrays must have the same length, got sizes {sorted(sizes)}"
        raise InvalidArgumentError(msg)


class _Additive:
    """``+`` merges two batches of the same statistics field by field."""

    __slots__ = ()

    def __add__(self, other: Self) -> Self:
        if type(other) is not type(self):
            return NotImplemented
        values = {
            f.name: getattr(self, f.name) + getattr(other, f.name)
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
        }
        return type(self)(**values)


@dataclass(frozen=True, slots=True)
class RatioStats(_Additive):
    """A ratio metric such as clicks per session, with users (not sessions) as the unit.

    Per unit: numerator ``m`` and denominator ``d``; the metric is ``sum(m) / sum(d)``.
    """

    n: float
    numerator_sum: float
    numerator_sum_squares: float
    denominator_sum: float
    denominator_sum_squares: float
    sum_products: float

    SUMS: ClassVar[tuple[str, ...]] = ("numerator_sum", "denominator_sum")
    PRODUCTS: ClassVar[tuple[tuple[str, ...], ...]] = (
        ("numerator_sum_squares", "sum_products"),
        ("sum_products", "denominator_sum_squares"),
    )

    def __post_init__(self) -> None:
        check_stats_fields(self)

    @classmethod
    def from_values(cls, numerator: npt.ArrayLike, denominator: npt.ArrayLike) -> RatioStats:
        """Statistics of per-unit numerators and denominators."""
        m = as_float_array(numerator, "numerator")
        d = as_float_array(denominator, "denominator")
        _same_length(m, d)
        sums = (float(m.sum()), float(np.dot(m, m)), float(d.sum()), float(np.dot(d, d)))
        checked_sums("numerator or denominator", *sums)
        return cls(float(m.size), *sums, sum_products=float(np.dot(m, d)))

    @property
    def numerator(self) -> SampleStats:
        return SampleStats(self.n, self.numerator_sum, self.numerator_sum_squares)

    @property
    def denominator(self) -> SampleStats:
        return SampleStats(self.n, self.denominator_sum, self.denominator_sum_squares)

    @property
    def mean(self) -> float:
        """The ratio ``sum(m) / sum(d)`` (NaN when the denominator sums to zero)."""
        return self.numerator_sum / self.denominator_sum if self.denominator_sum else math.nan


@dataclass(frozen=True, slots=True)
class CupedStats(_Additive):
    """A mean metric with a pre-period covariate (CUPED): post ``y`` and pre ``x`` per unit."""

    n: float
    sum: float
    sum_squares: float
    pre_sum: float
    pre_sum_squares: float
    sum_products: float

    SUMS: ClassVar[tuple[str, ...]] = ("sum", "pre_sum")
    PRODUCTS: ClassVar[tuple[tuple[str, ...], ...]] = (
        ("sum_squares", "sum_products"),
        ("sum_products", "pre_sum_squares"),
    )

    def __post_init__(self) -> None:
        check_stats_fields(self)

    @classmethod
    def from_values(cls, values: npt.ArrayLike, pre_values: npt.ArrayLike) -> CupedStats:
        """Statistics of per-unit metric values and their pre-period covariate."""
        y = as_float_array(values, "values")
        x = as_float_array(pre_values, "pre_values")
        _same_length(y, x)
        sums = (float(y.sum()), float(np.dot(y, y)), float(x.sum()), float(np.dot(x, x)))
        checked_sums("values or pre_values", *sums)
        return cls(float(y.size), *sums, sum_products=float(np.dot(y, x)))

    @property
    def post(self) -> SampleStats:
        return SampleStats(self.n, self.sum, self.sum_squares)

    @property
    def pre(self) -> SampleStats:
        return SampleStats(self.n, self.pre_sum, self.pre_sum_squares)

    @property
    def mean(self) -> float:
        return self.sum / self.n if self.n > 0 else math.nan


@dataclass(frozen=True, slots=True)
class RatioCupedStats(_Additive):
    """A ratio metric with its own pre-period ratio as covariate (CUPED for ratios).

    Per unit: ``m``, ``d`` in the experiment and ``pm``, ``pd`` in the pre-period; every
    cross product among the four is kept so the delta method sees the full covariance.
    """

    n: float
    numerator_sum: float
    numerator_sum_squares: float
    denominator_sum: float
    denominator_sum_squares: float
    pre_numerator_sum: float
    pre_numerator_sum_squares: float
    pre_denominator_sum: float
    pre_denominator_sum_squares: float
    numerator_denominator_products: float
    numerator_pre_numerator_products: float
    numerator_pre_denominator_products: float
    denominator_pre_numerator_products: float
    denominator_pre_denominator_products: float
    pre_numerator_pre_denominator_products: float

    SUMS: ClassVar[tuple[str, ...]] = (
        "numerator_sum",
        "denominator_sum",
        "pre_numerator_sum",
        "pre_denominator_sum",
    )
    PRODUCTS: ClassVar[tuple[tuple[str, ...], ...]] = (
        (
            "numerator_sum_squares",
            "numerator_denominator_products",
            "numerator_pre_numerator_products",
            "numerator_pre_denominator_products",
        ),
        (
            "numerator_denominator_products",
            "denominator_sum_squares",
            "denominator_pre_numerator_products",
            "denominator_pre_denominator_products",
        ),
        (
            "numerator_pre_numerator_products",
            "denominator_pre_numerator_products",
            "pre_numerator_sum_squares",
            "pre_numerator_pre_denominator_products",
        ),
        (
            "numerator_pre_denominator_products",
            "denominator_pre_denominator_products",
            "pre_numerator_pre_denominator_products",
            "pre_denominator_sum_squares",
        ),
    )

    def __post_init__(self) -> None:
        check_stats_fields(self)

    @classmethod
    def from_values(
        cls,
        numerator: npt.ArrayLike,
        denominator: npt.ArrayLike,
        pre_numerator: npt.ArrayLike,
        pre_denominator: npt.ArrayLike,
    ) -> RatioCupedStats:
        """Statistics of per-unit numerators and denominators, now and in the pre-period."""
        m = as_float_array(numerator, "numerator")
        d = as_float_array(denominator, "denominator")
        pm = as_float_array(pre_numerator, "pre_numerator")
        pd = as_float_array(pre_denominator, "pre_denominator")
        _same_length(m, d, pm, pd)
        squares = [float(np.dot(v, v)) for v in (m, d, pm, pd)]
        totals = [float(v.sum()) for v in (m, d, pm, pd)]
        checked_sums("raw values", *squares, *totals)
        return cls(
            n=float(m.size),
            numerator_sum=totals[0],
            numerator_sum_squares=squares[0],
            denominator_sum=totals[1],
            denominator_sum_squares=squares[1],
            pre_numerator_sum=totals[2],
            pre_numerator_sum_squares=squares[2],
            pre_denominator_sum=totals[3],
            pre_denominator_sum_squares=squares[3],
            numerator_denominator_products=float(np.dot(m, d)),
            numerator_pre_numerator_products=float(np.dot(m, pm)),
            numerator_pre_denominator_products=float(np.dot(m, pd)),
            denominator_pre_numerator_products=float(np.dot(d, pm)),
            denominator_pre_denominator_products=float(np.dot(d, pd)),
            pre_numerator_pre_denominator_products=float(np.dot(pm, pd)),
        )

    @property
    def ratio(self) -> RatioStats:
        """The experiment-period ratio alone (dropping the covariate)."""
        return RatioStats(
            self.n,
            self.numerator_sum,
            self.numerator_sum_squares,
            self.denominator_sum,
            self.denominator_sum_squares,
            self.numerator_denominator_products,
        )

    @property
    def mean(self) -> float:
        return self.numerator_sum / self.denominator_sum if self.denominator_sum else math.nan
