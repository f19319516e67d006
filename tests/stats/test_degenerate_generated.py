"""Edge cases on generated inputs: a number, an error code or a clear InvalidArgumentError.

Never a silent NaN and never a TypeError or numpy traceback: impossible statistics, wrong
types, numpy scalars, extreme scales, empty and one-unit arms.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special

from abflow.errors import InvalidArgumentError
from abflow.stats import (
    CupedStats,
    GaussianPrior,
    RatioStats,
    SampleStats,
    adjust_p_values,
    compare,
    compare_quantiles,
    duration_days,
    mde,
    power,
    sample_size,
    srm_test,
)
from abflow.stats.frequentist import t_critical

# Values spanning most of the float range; squares and products must stay finite.
MAGNITUDES = st.sampled_from([1e-150, 1e-20, 1e-3, 1.0, 1e3, 1e20, 1e150])


def _values(seed: int, n: int, scale: float, shape: str) -> np.ndarray:
    gen = np.random.default_rng(seed)
    if shape == "normal":
        return gen.normal(0.0, 1.0, n) * scale
    if shape == "constant":
        return np.full(n, gen.normal()) * scale
    if shape == "binary":
        return gen.integers(0, 2, n).astype(float)
    if shape == "almost-constant":
        return (1.0 + gen.normal(0.0, 1e-12, n)) * scale
    return gen.exponential(1.0, n) * scale


SHAPES = st.sampled_from(["normal", "constant", "binary", "almost-constant", "exponential"])


def _stats(kind: str, seed: int, n: int, scale: float, shape: str) -> object:
    a = _values(seed, n, scale, shape)
    b = _values(seed + 7, n, scale, shape)
    if kind == "mean":
        return SampleStats.from_values(a)
    if kind == "ratio":
        return RatioStats.from_values(a, np.abs(b))
    return CupedStats.from_values(a, b)


@settings(max_examples=150, deadline=None)
@given(
    kind=st.sampled_from(["mean", "ratio", "cuped"]),
    seeds=st.tuples(st.integers(0, 2**31), st.integers(0, 2**31)),
    sizes=st.tuples(st.integers(0, 40), st.integers(0, 40)),
    scales=st.tuples(MAGNITUDES, MAGNITUDES),
    shapes=st.tuples(SHAPES, SHAPES),
    method=st.sampled_from(["frequentist", "sequential", "bayesian"]),
    relative=st.booleans(),
    alternative=st.sampled_from(["two-sided", "greater", "less"]),
)
def test_compare_gives_numbers_or_an_error_code(
    kind: str,
    seeds: tuple[int, int],
    sizes: tuple[int, int],
    scales: tuple[float, float],
    shapes: tuple[str, str],
    method: str,
    relative: bool,
    alternative: str,
) -> None:
    control = _stats(kind, seeds[0], sizes[0], scales[0], shapes[0])
    treatment = _stats(kind, seeds[1], sizes[1], scales[1], shapes[1])
    result = compare(
        control,  # type: ignore[arg-type]
        treatment,  # type: ignore[arg-type]
        method=method,  # type: ignore[arg-type]
        relative=relative,
        alternative=alternative,  # type: ignore[arg-type]
    )
    if not result.is_ok:
        assert math.isnan(result.effect)
        assert result.error_message
        return
    assert math.isfinite(result.effect)
    assert math.isfinite(result.standard_error)
    assert not (math.isnan(result.ci_low))
    assert not (math.isnan(result.ci_high))
    assert result.ci_low <= result.effect <= result.ci_high
    if alternative == "two-sided" or method == "bayesian":
        assert math.isfinite(result.ci_low)
        assert math.isfinite(result.ci_high)
    if method == "bayesian":
        assert result.chance_to_win is not None
        assert 0 <= result.chance_to_win <= 1
        assert result.expected_loss is not None
        assert math.isfinite(result.expected_loss)
    else:
        assert result.p_value is not None
        assert 0 <= result.p_value <= 1


def test_sequential_bounds_stay_finite_for_huge_variances() -> None:
    # Variance times units overflowed before the square root: the interval came back infinite.
    control = RatioStats(4.0, 4e-26, 4e-52, 3.8e31, 3.7e62, 3.8e5)
    treatment = RatioStats(25.0, 3.2e97, 3.4e199, 2.5e-54, 2.5e-109, 3.2e42)
    result = compare(control, treatment, method="sequential", relative=False)
    assert result.is_ok
    assert math.isfinite(result.ci_low)
    assert math.isfinite(result.ci_high)
    assert result.ci_low < result.effect < result.ci_high


@pytest.mark.parametrize(
    ("n", "total", "squares"),
    [
        (10, 12, 12),  # a "proportion" with more successes than units
        (10, 10, 5),  # sum of squares below sum^2 / n: a negative variance
        (0, 3, 9),  # sums without units
        (4, -8, 15.9),
    ],
)
def test_impossible_sample_stats_are_refused(n: float, total: float, squares: float) -> None:
    with pytest.raises(InvalidArgumentError, match="no data has these statistics"):
        SampleStats(n, total, squares)


@pytest.mark.parametrize(
    "make",
    [
        lambda: SampleStats(10.5, 3.0, 5.0),
        lambda: SampleStats.proportion(20.2, 3),
        lambda: RatioStats(2.5, 5, 15, 20, 210, 45),
        lambda: CupedStats(0.5, 1, 1, 1, 1, 1),
    ],
)
def test_a_fractional_number_of_units_is_refused(make: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="n counts units and must be a whole number"):
        make()


def test_impossible_ratio_and_cuped_stats_are_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="denominator_sum_squares"):
        RatioStats(10, 5, 5, 20, 30, 10)
    with pytest.raises(InvalidArgumentError, match="pre_sum_squares"):
        CupedStats(10, 5, 5, 20, 30, 10)


def test_an_impossible_proportion_is_refused() -> None:
    # Before: accepted, then compared with a negative variance into a +-1e67 interval.
    with pytest.raises(InvalidArgumentError, match="successes must be between 0 and n"):
        SampleStats.proportion(10, 12)
    with pytest.raises(InvalidArgumentError, match="successes must be between 0 and n"):
        SampleStats.proportion(10, -1)


@settings(max_examples=100, deadline=None)
@given(
    values=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=2000),
    merge_at=st.integers(0, 2000),
)
def test_real_data_and_merged_batches_always_pass_validation(
    values: list[float], merge_at: int
) -> None:
    x = np.array(values)
    whole = SampleStats.from_values(x)
    merged = SampleStats.from_values(x[:merge_at]) + SampleStats.from_values(x[merge_at:])
    assert merged.n == whole.n
    if merged.n >= 2:
        assert merged.variance >= 0


def test_sums_of_a_constant_over_many_rows_pass_validation() -> None:
    # Sums of 0.1 over ten million rows, rounded either way: sum^2 / n lands a hair above or
    # below sum_squares, and both must be accepted (the variance is then clamped at zero).
    x = np.full(10_000_000, 0.1)
    pairwise = SampleStats(float(x.size), float(np.sum(x)), float(np.sum(x * x)))
    rounded_up = SampleStats(1e7, 0.1 * 1e7 * (1 + 1e-9), 0.01 * 1e7)
    assert rounded_up.variance == 0.0
    assert pairwise.variance >= 0.0
    assert compare(rounded_up, rounded_up, relative=False).error_code == "zero_variance"


WRONG = ["0.05", None, [0.05], True]


@pytest.mark.parametrize("bad", WRONG)
def test_wrong_types_raise_invalid_argument(bad: object) -> None:
    good = SampleStats.proportion(100, 10)
    calls = [
        lambda: SampleStats(bad, 1, 1),  # type: ignore[arg-type]
        lambda: compare(good, good, alpha=bad),  # type: ignore[arg-type]
        lambda: compare(good, good, tuning_sample_size=bad),  # type: ignore[arg-type]
        lambda: compare(good, good, alternative="greater", margin=bad or "0.1"),  # type: ignore[arg-type]
        lambda: GaussianPrior(bad, 1.0),  # type: ignore[arg-type]
        lambda: sample_size(0.1, bad),  # type: ignore[arg-type]
        lambda: sample_size(0.1, 0.05, std=bad or "1"),  # type: ignore[arg-type]
        lambda: sample_size(0.1, 0.05, alpha=bad),  # type: ignore[arg-type]
        lambda: sample_size(0.1, 0.05, weights=[bad, 0.5]),  # type: ignore[list-item]
        lambda: mde(0.1, [bad, 1000]),  # type: ignore[list-item]
        lambda: duration_days(bad, 100.0),  # type: ignore[arg-type]
        lambda: srm_test([bad, 10]),  # type: ignore[list-item]
        lambda: srm_test([10, 10], [bad, 0.5]),  # type: ignore[list-item]
        lambda: adjust_p_values([0.01, bad]) if bad is not None else adjust_p_values(bad),  # type: ignore[arg-type, list-item]
        lambda: compare_quantiles(["fast", 1.0], [1.0, 2.0], 0.5),
    ]
    for call in calls:
        with pytest.raises(InvalidArgumentError):
            call()


def test_numpy_scalars_and_arrays_are_numbers() -> None:
    # np.int64 counts (from an array) used to fail: a TypeError, or "needs at least 2 units".
    by_int = power(0.1, 0.05, np.int64(30_000))
    by_array = power(0.1, 0.05, np.array([30_000, 30_000]))
    assert by_int.power == by_array.power == power(0.1, 0.05, 30_000).power
    plan = sample_size(np.float64(0.1), np.float32(0.05), variants=np.int64(3))  # type: ignore[arg-type]
    assert plan.variants == 3
    assert plan.per_variant == sample_size(0.1, 0.05, variants=3).per_variant
    assert mde(0.1, np.array([50_000, 50_000])).mde == mde(0.1, 50_000).mde
    counts = np.array([5_021, 4_979])
    assert srm_test(counts, np.array([0.5, 0.5])).p_value == srm_test([5_021, 4_979]).p_value
    assert adjust_p_values(np.array([0.01, 0.04])) == [0.02, 0.04]
    stats = SampleStats(np.int64(100), np.float64(10.0), np.float64(10.0))
    assert compare(stats, stats, alpha=np.float64(0.05)).p_value == 1.0


def test_quantiles_near_the_float_limit_raise_instead_of_overflowing() -> None:
    values = np.array([-1e308, 1e308] * 100)
    with pytest.raises(InvalidArgumentError, match="floating-point range"):
        compare_quantiles(values, values, 0.5)


@settings(max_examples=200, deadline=None)
@given(df=st.floats(1.0, 1e7), exponent=st.floats(-300.0, -0.31))
def test_t_critical_gives_back_its_tail_probability(df: float, exponent: float) -> None:
    level = 10.0**exponent
    critical = float(t_critical(df, level))
    assert math.isfinite(critical)
    assert critical > 0
    back = float(special.stdtr(df, -critical))
    if back > 0:
        assert back == pytest.approx(level, rel=1e-6)
    else:  # scipy's cdf underflows to 0 beyond ~1e154, where the power-law tail is exact
        assert critical > 1e150


def test_cauchy_critical_values_match_the_closed_form() -> None:
    # One degree of freedom is the Cauchy distribution: c = tan(pi (1/2 - level)).
    for level in (0.025, 1e-10, 1e-100, 1e-200, 1e-300):
        expected = 1.0 / math.tan(math.pi * level)
        assert float(t_critical(1.0, level)) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("alpha", [1e-300, 1e-200, 1e-50])
@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_tiny_alpha_keeps_the_interval_in_order(alpha: float, alternative: str) -> None:
    # scipy's stdtrit(5.7, 5e-301) is +inf: the two-sided bounds came back as (+inf, -inf).
    control = SampleStats.from_values([1.0, 2.0, 3.0, 4.0])
    treatment = SampleStats.from_values([2.0, 3.0, 4.0, 6.0])
    result = compare(control, treatment, alpha=alpha, alternative=alternative)  # type: ignore[arg-type]
    assert result.ci_low < result.effect < result.ci_high
    df = result.degrees_of_freedom
    level = alpha / 2 if alternative == "two-sided" else alpha
    width = (
        result.effect - result.ci_low
        if alternative == "greater"
        else result.ci_high - result.effect
    )
    assert math.isfinite(width)
    assert float(special.stdtr(df, -width / result.standard_error)) == pytest.approx(
        level, rel=1e-6
    )
