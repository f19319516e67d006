"""Sample ratio mismatch against scipy's chi-square test and an A/A simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from abflow.errors import InvalidArgumentError
from abflow.stats.srm import SrmResult, srm_test


@pytest.mark.parametrize(
    ("counts", "weights"),
    [
        ([5_000, 5_400], [0.5, 0.5]),
        ([5_000, 5_150], None),
        ([10_120, 4_870, 5_010], [0.5, 0.25, 0.25]),
        ([912, 88], [0.9, 0.1]),
        ([300, 310, 290, 330], [1, 1, 1, 1]),
    ],
)
def test_matches_scipy_chisquare(counts: list[int], weights: list[float] | None) -> None:
    total = sum(counts)
    shares = np.full(len(counts), 1 / len(counts)) if weights is None else np.array(weights)
    shares = shares / shares.sum()
    reference = stats.chisquare(counts, f_exp=total * shares)
    result = srm_test(counts, weights)
    assert result.is_ok
    np.testing.assert_allclose(result.chi_square, reference.statistic, rtol=1e-12)
    np.testing.assert_allclose(result.p_value, reference.pvalue, rtol=1e-10)
    np.testing.assert_allclose(result.expected_counts, total * shares, rtol=1e-12)
    assert result.df == len(counts) - 1
    assert result.is_mismatch == (reference.pvalue < 0.001)


def test_flags_a_real_mismatch_only_below_alpha() -> None:
    lost = srm_test([5_000, 5_400], [0.5, 0.5])
    assert lost.is_mismatch
    assert lost.p_value < 0.001
    borderline = srm_test([5_000, 5_300], [0.5, 0.5])
    assert 0.001 < borderline.p_value < 0.01
    assert not borderline.is_mismatch
    assert srm_test([5_000, 5_300], [0.5, 0.5], alpha=0.01).is_mismatch


def test_false_alarm_rate_in_a_a_simulation(rng: np.random.Generator) -> None:
    weights = np.array([0.5, 0.3, 0.2])
    reps = 10_000
    draws = rng.multinomial(4_000, weights, size=reps)
    results = [srm_test(row.tolist(), weights.tolist()) for row in draws]
    p_values = np.array([r.p_value for r in results])
    for alpha in (0.05, 0.01):
        rate = np.mean(p_values < alpha)
        assert abs(rate - alpha) < 3.5 * math.sqrt(alpha * (1 - alpha) / reps), alpha
    alarms = sum(r.is_mismatch for r in results)
    assert alarms <= 21  # Poisson(10) at the default 0.001 threshold: 22 or more has p < 0.001


def test_unnormalised_weights_are_normalised() -> None:
    a = srm_test([480, 520], [1, 1])
    b = srm_test([480, 520], [0.5, 0.5])
    assert a.p_value == pytest.approx(b.p_value)
    assert a.expected_weights == (0.5, 0.5)
    assert a.observed_shares == pytest.approx((0.48, 0.52))


def test_zero_weight_variant() -> None:
    off_and_empty = srm_test([480, 520, 0], [0.5, 0.5, 0.0])
    reference = stats.chisquare([480, 520])
    assert off_and_empty.df == 1
    assert off_and_empty.p_value == pytest.approx(reference.pvalue)
    leaked = srm_test([480, 520, 3], [0.5, 0.5, 0.0])
    assert leaked.is_mismatch
    assert leaked.p_value == 0.0
    assert math.isinf(leaked.chi_square)
    assert leaked.df == 1


@pytest.mark.parametrize(
    ("counts", "weights", "code"),
    [
        ([0, 0], [0.5, 0.5], "no_units"),
        ([1_000], None, "single_variant"),
        ([1_000, 0], [1.0, 0.0], "single_variant"),
        ([3, 4], [0.5, 0.5], "too_few_units"),
        ([990, 10], [0.999, 0.001], "too_few_units"),
    ],
)
def test_degenerate_inputs_give_error_codes(
    counts: list[int], weights: list[float] | None, code: str
) -> None:
    result = srm_test(counts, weights)
    assert isinstance(result, SrmResult)
    assert result.error_code == code
    assert result.error_message.endswith(".")
    assert not result.is_mismatch
    assert math.isnan(result.p_value)


@pytest.mark.parametrize(
    ("counts", "weights", "alpha", "match"),
    [
        ([10, 20], [0.5, 0.5], 0.0, "alpha must be strictly between 0 and 1"),
        ([10, 20], [0.5, 0.5], 1.0, "alpha must be strictly between 0 and 1"),
        ([10, -1], [0.5, 0.5], 0.001, "non-negative finite"),
        ([10, math.nan], [0.5, 0.5], 0.001, "non-negative finite"),
        ([10, 20], [0.5, 0.3, 0.2], 0.001, "3 expected weights for 2 observed counts"),
        ([10, 20], [0.5, -0.5], 0.001, "non-negative with a positive sum"),
        ([10, 20], [0.0, 0.0], 0.001, "non-negative with a positive sum"),
        ([], None, 0.001, "empty"),
    ],
)
def test_invalid_arguments_raise(
    counts: list[float], weights: list[float] | None, alpha: float, match: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        srm_test(counts, weights, alpha=alpha)
