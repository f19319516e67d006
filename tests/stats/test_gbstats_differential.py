"""Differential tests against GrowthBook's engine (gbstats 0.8.0) on many generated cases.

Cases are drawn from a seeded generator in the test body; every field abflow reports is
compared with what gbstats computes from the same sufficient statistics.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from numpy.testing import assert_allclose

from abflow.stats import (
    CupedStats,
    GaussianPrior,
    RatioStats,
    SampleStats,
    compare_many,
)

gb_freq = pytest.importorskip("gbstats.frequentist.tests", reason="gbstats 0.8.0 not installed")
gb_bayes = pytest.importorskip("gbstats.bayesian.tests")
gb_stats = pytest.importorskip("gbstats.models.statistics")

CASES = 40


def _mean_cases(rng: np.random.Generator) -> list[tuple[Any, Any, SampleStats, SampleStats]]:
    cases = []
    for _ in range(CASES):
        pair = []
        base = rng.uniform(0.5, 20)
        for lift in (0.0, rng.normal(0, 0.1)):
            n = int(rng.integers(20, 5000))
            x = rng.gamma(2.0, base * (1 + lift) / 2.0, n)
            ours = SampleStats.from_values(x)
            theirs = gb_stats.SampleMeanStatistic(n=n, sum=ours.sum, sum_squares=ours.sum_squares)
            pair.append((theirs, ours))
        cases.append((pair[0][0], pair[1][0], pair[0][1], pair[1][1]))
    for _ in range(CASES):
        pair = []
        p = rng.uniform(0.02, 0.6)
        for lift in (0.0, rng.normal(0, 0.1)):
            n = int(rng.integers(50, 50_000))
            k = int(rng.binomial(n, min(p * (1 + lift), 0.99)))
            pair.append((gb_stats.ProportionStatistic(n=n, sum=k), SampleStats.proportion(n, k)))
        cases.append((pair[0][0], pair[1][0], pair[0][1], pair[1][1]))
    return cases


def _ratio_cases(rng: np.random.Generator) -> list[tuple[Any, Any, RatioStats, RatioStats]]:
    cases = []
    for _ in range(CASES):
        pair = []
        for lift in (0.0, rng.normal(0, 0.1)):
            n = int(rng.integers(30, 3000))
            sessions = rng.poisson(rng.uniform(1, 6), n) + 1
            clicks = rng.binomial(sessions * 3, min(0.2 * (1 + lift), 0.9))
            ours = RatioStats.from_values(clicks, sessions)
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
            pair.append((theirs, ours))
        cases.append((pair[0][0], pair[1][0], pair[0][1], pair[1][1]))
    return cases


def _cuped_cases(rng: np.random.Generator) -> list[tuple[Any, Any, CupedStats, CupedStats]]:
    cases = []
    for _ in range(CASES):
        pair = []
        rho = rng.uniform(0.1, 0.95)
        for lift in (0.0, rng.normal(0, 0.1)):
            n = int(rng.integers(30, 3000))
            pre = rng.normal(10, 3, n)
            post = 10 * (1 + lift) + rho * (pre - 10) + rng.normal(0, 3 * np.sqrt(1 - rho**2), n)
            ours = CupedStats.from_values(post, pre)
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
            pair.append((theirs, ours))
        cases.append((pair[0][0], pair[1][0], pair[0][1], pair[1][1]))
    return cases


def _all_cases(rng: np.random.Generator) -> list[tuple[Any, Any, Any, Any]]:
    return [*_mean_cases(rng), *_ratio_cases(rng), *_cuped_cases(rng)]


def _by_type(cases: list[tuple[Any, Any, Any, Any]]) -> dict[type, list[tuple[Any, Any, Any, Any]]]:
    groups: dict[type, list[tuple[Any, Any, Any, Any]]] = {}
    for case in cases:
        groups.setdefault(type(case[2]), []).append(case)
    return groups


@pytest.mark.parametrize("relative", [True, False])
@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_frequentist_matches_gbstats(
    rng: np.random.Generator, relative: bool, alternative: str
) -> None:
    gb_test = {
        "two-sided": gb_freq.TwoSidedTTest,
        "greater": gb_freq.OneSidedTreatmentGreaterTTest,
        "less": gb_freq.OneSidedTreatmentLesserTTest,
    }[alternative]
    config = gb_freq.FrequentistConfig(
        alpha=0.1, difference_type="relative" if relative else "absolute"
    )
    for group in _by_type(_all_cases(rng)).values():
        ours = compare_many(
            [c[2] for c in group],
            [c[3] for c in group],
            relative=relative,
            alpha=0.1,
            alternative=alternative,  # type: ignore[arg-type]
        )
        theirs = [gb_test(c[0], c[1], config).compute_result() for c in group]
        assert all(r.is_ok for r in ours)
        assert_allclose([r.effect for r in ours], [t.expected for t in theirs], rtol=1e-9)
        assert_allclose(
            [r.p_value for r in ours], [t.p_value for t in theirs], rtol=1e-7, atol=1e-12
        )
        assert_allclose([r.ci_low for r in ours], [t.ci[0] for t in theirs], rtol=1e-8)
        highs = [t.ci[1] for t in theirs]
        if alternative == "less":
            # gbstats 0.8.0 puts this bound at estimate - width (a sign slip); the upper
            # bound of a one-sided "less" interval is estimate + width, as scipy has it.
            highs = [2 * t.expected - t.ci[1] for t in theirs]
        assert_allclose([r.ci_high for r in ours], highs, rtol=1e-8)
        assert_allclose(
            [r.standard_error for r in ours], [t.uplift.stddev for t in theirs], rtol=1e-9
        )


@pytest.mark.parametrize("relative", [True, False])
def test_sequential_matches_gbstats(rng: np.random.Generator, relative: bool) -> None:
    for tuning in (5000.0, 800.0):
        config = gb_freq.SequentialConfig(
            difference_type="relative" if relative else "absolute",
            sequential_tuning_parameter=tuning,
        )
        for group in _by_type(_all_cases(rng)).values():
            ours = compare_many(
                [c[2] for c in group],
                [c[3] for c in group],
                relative=relative,
                method="sequential",
                tuning_sample_size=tuning,
            )
            with np.errstate(over="ignore"):  # gbstats' e-value overflows to inf: p = 0
                theirs = [
                    gb_freq.SequentialTwoSidedTTest(c[0], c[1], config).compute_result()
                    for c in group
                ]
            assert_allclose([r.ci_low for r in ours], [t.ci[0] for t in theirs], rtol=1e-8)
            assert_allclose([r.ci_high for r in ours], [t.ci[1] for t in theirs], rtol=1e-8)
            assert_allclose(
                [r.p_value for r in ours], [t.p_value for t in theirs], rtol=1e-7, atol=1e-12
            )


@pytest.mark.parametrize("relative", [True, False])
@pytest.mark.parametrize("prior", [None, (0.02, 0.05**2)])
@pytest.mark.parametrize("lower_is_better", [False, True])
def test_bayesian_matches_gbstats(
    rng: np.random.Generator,
    relative: bool,
    prior: tuple[float, float] | None,
    lower_is_better: bool,
) -> None:
    for group in _by_type(_all_cases(rng)).values():
        theirs = []
        for c in group:
            gb_prior = gb_bayes.GaussianPrior()
            if prior is not None:
                gb_prior = gb_bayes.GaussianPrior(mean=prior[0], variance=prior[1], proper=True)
            kind = "relative" if relative else "absolute"
            config = gb_bayes.EffectBayesianConfig(
                difference_type=kind,
                prior_type=kind,
                prior_effect=gb_prior,
                inverse=lower_is_better,
                alpha=0.1,
            )
            theirs.append(gb_bayes.EffectBayesianABTest(c[0], c[1], config).compute_result())
        ours = compare_many(
            [c[2] for c in group],
            [c[3] for c in group],
            relative=relative,
            method="bayesian",
            alpha=0.1,
            alternative="less" if lower_is_better else "two-sided",
            prior=None if prior is None else GaussianPrior(*prior),
        )
        assert all(r.p_value is None for r in ours)
        assert_allclose([r.effect for r in ours], [t.expected for t in theirs], rtol=1e-9)
        assert_allclose([r.ci_low for r in ours], [t.ci[0] for t in theirs], rtol=1e-8)
        assert_allclose([r.ci_high for r in ours], [t.ci[1] for t in theirs], rtol=1e-8)
        assert_allclose(
            [r.chance_to_win for r in ours],
            [t.chance_to_win for t in theirs],
            rtol=1e-7,
            atol=1e-12,
        )
        # gbstats lists risk as [control, treatment].
        assert_allclose(
            [r.expected_loss_control for r in ours],
            [t.risk[0] for t in theirs],
            rtol=1e-6,
            atol=1e-12,
        )
        assert_allclose(
            [r.expected_loss for r in ours], [t.risk[1] for t in theirs], rtol=1e-6, atol=1e-12
        )
