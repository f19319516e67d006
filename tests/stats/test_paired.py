"""Paired inference against scipy and statsmodels, and the interval's coverage by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar

from abflow.errors import InvalidArgumentError
from abflow.stats import mcnemar, paired_mean_difference


def test_paired_mean_difference_matches_ttest_rel(rng: np.random.Generator) -> None:
    first = rng.normal(0.3, 0.1, 400)
    second = first + rng.normal(0.02, 0.05, 400)
    d = second - first
    result = paired_mean_difference(d.size, float(d.sum()), float((d * d).sum()), alpha=0.05)
    reference = sps.ttest_rel(second, first)
    low, high = reference.confidence_interval(0.95)
    assert result.n == 400
    assert_allclose(result.mean, d.mean(), rtol=1e-12)
    assert_allclose([result.ci_low, result.ci_high], [low, high], rtol=1e-9)
    assert result.p_value is not None
    assert_allclose(result.p_value, reference.pvalue, rtol=1e-7)


def test_paired_interval_covers_at_its_level(rng: np.random.Generator) -> None:
    """2,000 simulated data sets of 30 skewed pairs: the 90 % interval covers the true mean
    difference in 90 % of them (within 2.5 binomial standard errors)."""
    trials, n, true_mean = 2000, 30, 0.1
    covered = 0
    for _ in range(trials):
        d = rng.gamma(2.0, 0.05, n) - 0.1 + true_mean
        result = paired_mean_difference(n, float(d.sum()), float((d * d).sum()), alpha=0.1)
        covered += result.ci_low <= true_mean <= result.ci_high
    rate = covered / trials
    assert abs(rate - 0.9) < 2.5 * math.sqrt(0.9 * 0.1 / trials), rate


@pytest.mark.parametrize(("b", "c"), [(0, 0), (3, 9), (12, 12), (1, 23), (40, 61), (150, 90)])
def test_mcnemar_matches_statsmodels(b: int, c: int) -> None:
    table = [[500, b], [c, 300]]
    exact = b + c < 25
    reference = sm_mcnemar(table, exact=exact, correction=True)
    result = mcnemar(b, c)
    assert result.is_exact is exact
    assert_allclose(result.p_value, reference.pvalue, rtol=1e-9)
    if b + c and not exact:
        assert_allclose(result.statistic, reference.statistic, rtol=1e-12)


def test_mcnemar_forced_forms_match_statsmodels() -> None:
    assert_allclose(mcnemar(40, 61, exact=True).p_value, sm_mcnemar([[1, 40], [61, 1]]).pvalue)
    chi = sm_mcnemar([[1, 5], [12, 1]], exact=False, correction=True)
    assert_allclose(mcnemar(5, 12, exact=False).p_value, chi.pvalue)


def test_degenerate_and_invalid_inputs() -> None:
    one = paired_mean_difference(1, 0.5, 0.25)
    assert one.error_code == "too_few_pairs"
    assert math.isnan(one.ci_low)
    flat = paired_mean_difference(10, 0.0, 0.0)
    assert (flat.ci_low, flat.ci_high, flat.p_value, flat.error_code) == (
        0.0,
        0.0,
        1.0,
        "zero_variance",
    )
    with pytest.raises(InvalidArgumentError, match="alpha"):
        paired_mean_difference(10, 1.0, 1.0, alpha=1.5)
    with pytest.raises(InvalidArgumentError, match="discordant"):
        mcnemar(-1, 3)
