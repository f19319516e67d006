"""GrowthBook's engine (gbstats 0.8.0) against abflow on Hypothesis-generated extreme inputs.

The seeded differential tests cover moderate data; these reach rates from 1e-4 to 1 - 1e-4,
arms of 2 to 1e9 units, tiny samples of means, ratios and CUPED statistics at scales from
1e-6 to 1e6, for the fixed, sequential and Bayesian methods. Where both engines answer they
agree; where gbstats refuses (zero variance in one arm) abflow either refuses too or, for an
absolute effect, still has a positive standard error.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from abflow.stats import CupedStats, RatioStats, SampleStats, compare

gb_freq = pytest.importorskip("gbstats.frequentist.tests", reason="gbstats 0.8.0 not installed")
gb_bayes = pytest.importorskip("gbstats.bayesian.tests")
gb_stats = pytest.importorskip("gbstats.models.statistics")

SETTINGS = settings(max_examples=120, deadline=None)


def _gb_result(method: str, control: Any, treatment: Any, relative: bool) -> Any:
    kind = "relative" if relative else "absolute"
    with np.errstate(all="ignore"):  # gbstats' e-value overflows to inf for huge z
        if method == "frequentist":
            config = gb_freq.FrequentistConfig(difference_type=kind)
            return gb_freq.TwoSidedTTest(control, treatment, config).compute_result()
        if method == "sequential":
            config = gb_freq.SequentialConfig(difference_type=kind)
            return gb_freq.SequentialTwoSidedTTest(control, treatment, config).compute_result()
        config = gb_bayes.EffectBayesianConfig(difference_type=kind, prior_type=kind)
        return gb_bayes.EffectBayesianABTest(control, treatment, config).compute_result()


def _check_agreement(ours: Any, theirs: Any, method: str) -> None:
    if theirs.error_message is not None or not ours.is_ok:
        # gbstats refuses an arm without variance; abflow refuses too unless the effect's
        # standard error is still positive (the other arm varies, absolute effect).
        if not ours.is_ok:
            return
        assert not ours.relative or ours.control_mean != 0
        assert ours.standard_error > 0
        return
    magnitude = 1.0 if ours.relative else abs(ours.control_mean) + abs(ours.treatment_mean)
    exact_fit = ours.variance_reduction is not None and ours.variance_reduction > 1 - 1e-9
    if ours.standard_error < 1e-9 * magnitude or exact_fit:
        # A variance at rounding level (identical arms of two units: CUPED's line fits them
        # exactly): both engines compute rounding noise, which need not agree.
        return
    scale = abs(theirs.ci[0]) + abs(theirs.ci[1])
    assert_allclose(ours.ci_low, theirs.ci[0], rtol=1e-6, atol=1e-12 * scale)
    assert_allclose(ours.ci_high, theirs.ci[1], rtol=1e-6, atol=1e-12 * scale)
    if method == "bayesian":
        assert_allclose(ours.chance_to_win, theirs.chance_to_win, rtol=1e-6, atol=1e-12)
        loss_scale = abs(theirs.risk[0]) + abs(theirs.risk[1])
        assert_allclose(ours.expected_loss, theirs.risk[1], rtol=1e-5, atol=1e-12 * loss_scale)
    else:
        assert_allclose(ours.p_value, theirs.p_value, rtol=1e-6, atol=1e-12)


METHODS = st.sampled_from(["frequentist", "sequential", "bayesian"])


@SETTINGS
@given(
    sizes=st.tuples(st.integers(2, 10**9), st.integers(2, 10**9)),
    rates=st.tuples(st.floats(1e-4, 1 - 1e-4), st.floats(1e-4, 1 - 1e-4)),
    method=METHODS,
    relative=st.booleans(),
)
def test_extreme_proportions_agree_with_gbstats(
    sizes: tuple[int, int], rates: tuple[float, float], method: str, relative: bool
) -> None:
    counts = [round(n * p) for n, p in zip(sizes, rates, strict=True)]
    ours = compare(
        SampleStats.proportion(sizes[0], counts[0]),
        SampleStats.proportion(sizes[1], counts[1]),
        relative=relative,
        method=method,  # type: ignore[arg-type]
    )
    theirs = _gb_result(
        method,
        gb_stats.ProportionStatistic(n=sizes[0], sum=counts[0]),
        gb_stats.ProportionStatistic(n=sizes[1], sum=counts[1]),
        relative,
    )
    _check_agreement(ours, theirs, method)


def _arm(kind: str, seed: int, n: int, scale: float) -> tuple[Any, Any]:
    gen = np.random.default_rng(seed)
    x = gen.gamma(gen.uniform(0.3, 3.0), 1.0, n) * scale
    y = gen.gamma(2.0, 1.0, n) * scale + gen.uniform(0.0, 1.0) * x
    if kind == "mean":
        ours: Any = SampleStats.from_values(x)
        theirs = gb_stats.SampleMeanStatistic(n=n, sum=ours.sum, sum_squares=ours.sum_squares)
    elif kind == "ratio":
        ours = RatioStats.from_values(x, y)
        theirs = gb_stats.RatioStatistic(
            n=n,
            m_statistic=gb_stats.SampleMeanStatistic(
                n=n, sum=ours.numerator_sum, sum_squares=ours.numerator_sum_squares
            ),
            d_statistic=gb_stats.SampleMeanStatistic(
                n=n, sum=ours.denominator_sum, sum_squares=ours.denominator_sum_squares
            ),
            m_d_sum_of_products=ours.sum_products,
        )
    else:
        ours = CupedStats.from_values(y, x)
        theirs = gb_stats.RegressionAdjustedStatistic(
            n=n,
            post_statistic=gb_stats.SampleMeanStatistic(
                n=n, sum=ours.sum, sum_squares=ours.sum_squares
            ),
            pre_statistic=gb_stats.SampleMeanStatistic(
                n=n, sum=ours.pre_sum, sum_squares=ours.pre_sum_squares
            ),
            post_pre_sum_of_products=ours.sum_products,
            theta=0,
        )
    return ours, theirs


@SETTINGS
@given(
    kind=st.sampled_from(["mean", "ratio", "cuped"]),
    seeds=st.tuples(st.integers(0, 2**31), st.integers(0, 2**31)),
    sizes=st.tuples(st.integers(2, 60), st.integers(2, 60)),
    scale=st.sampled_from([1e-6, 1e-2, 1.0, 1e2, 1e6]),
    method=METHODS,
    relative=st.booleans(),
)
def test_small_samples_of_means_ratios_and_cuped_agree_with_gbstats(
    kind: str,
    seeds: tuple[int, int],
    sizes: tuple[int, int],
    scale: float,
    method: str,
    relative: bool,
) -> None:
    ours_c, theirs_c = _arm(kind, seeds[0], sizes[0], scale)
    ours_t, theirs_t = _arm(kind, seeds[1], sizes[1], scale)
    ours = compare(ours_c, ours_t, relative=relative, method=method)  # type: ignore[arg-type]
    theirs = _gb_result(method, theirs_c, theirs_t, relative)
    _check_agreement(ours, theirs, method)
    if ours.is_ok and theirs.error_message is None:
        assert math.isfinite(ours.effect)
