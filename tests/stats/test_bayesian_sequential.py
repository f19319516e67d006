"""Bayesian results against hand-derived values; sequential results against their definition."""

from __future__ import annotations

import math

import numpy as np
import pytest

from abflow.stats import GaussianPrior, SampleStats, compare, compare_many


def _phi(z: float) -> float:
    return math.exp(-z * z / 2) / math.sqrt(2 * math.pi)


def _cdf(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def _with_variance(n: int, mean: float, variance: float) -> SampleStats:
    total = n * mean
    return SampleStats(n, total, (n - 1) * variance + total * total / n)


# Control mean 1.00, treatment 1.02, each n = 10,000 with variance 0.5: the absolute effect is
# 0.02 with standard error sqrt(0.5/1e4 + 0.5/1e4) = 0.01, so z = 2.
CONTROL = _with_variance(10_000, 1.00, 0.5)
TREATMENT = _with_variance(10_000, 1.02, 0.5)


def test_flat_prior_by_hand() -> None:
    got = compare(CONTROL, TREATMENT, relative=False, method="bayesian")
    assert got.p_value is None
    assert got.effect == pytest.approx(0.02)
    assert got.standard_error == pytest.approx(0.01)
    assert got.chance_to_win == pytest.approx(_cdf(2.0))  # 0.97725
    assert got.ci_low == pytest.approx(0.02 - 1.959964 * 0.01, rel=1e-6)
    assert got.ci_high == pytest.approx(0.02 + 1.959964 * 0.01, rel=1e-6)
    # E[max(0, -D)] for D ~ N(0.02, 0.01^2): s*phi(m/s) - m*Phi(-m/s)
    assert got.expected_loss == pytest.approx(0.01 * _phi(2.0) - 0.02 * _cdf(-2.0), rel=1e-9)
    # E[max(0, D)] = s*phi(m/s) + m*Phi(m/s); and E[max(0,D)] - E[max(0,-D)] = E[D]
    assert got.expected_loss_control == pytest.approx(0.01 * _phi(2.0) + 0.02 * _cdf(2.0), rel=1e-9)
    assert got.expected_loss_control - got.expected_loss == pytest.approx(0.02)


def test_proper_prior_by_hand() -> None:
    # prior N(0, 0.01^2) and likelihood N(0.02, 0.01^2): equal precisions, so the posterior
    # mean is the average 0.01 and the posterior sd is 0.01 / sqrt(2).
    prior = GaussianPrior(mean=0.0, variance=0.01**2)
    got = compare(CONTROL, TREATMENT, relative=False, method="bayesian", prior=prior)
    assert got.effect == pytest.approx(0.01)
    assert got.standard_error == pytest.approx(0.01 / math.sqrt(2))
    assert got.chance_to_win == pytest.approx(_cdf(math.sqrt(2)))


def test_lower_is_better_and_margin() -> None:
    got = compare(CONTROL, TREATMENT, relative=False, method="bayesian", alternative="less")
    assert got.chance_to_win == pytest.approx(_cdf(-2.0))
    assert got.expected_loss == pytest.approx(0.01 * _phi(2.0) + 0.02 * _cdf(2.0), rel=1e-9)
    # guardrail: chance that treatment is not worse by more than 0.01 (higher is better)
    guard = compare(
        TREATMENT, CONTROL, relative=False, method="bayesian", alternative="greater", margin=0.01
    )
    assert guard.chance_to_win == pytest.approx(_cdf((-0.02 + 0.01) / 0.01))


def test_relative_bayesian_uses_delta_method_variance() -> None:
    got = compare(CONTROL, TREATMENT, method="bayesian")
    variance = 0.5 / (1.0**2 * 10_000) + 0.5 * 1.02**2 / (1.0**4 * 10_000)
    assert got.effect == pytest.approx(0.02)
    assert got.standard_error == pytest.approx(math.sqrt(variance))
    assert got.chance_to_win == pytest.approx(_cdf(0.02 / math.sqrt(variance)))


def test_sequential_by_definition() -> None:
    alpha, tuning = 0.05, 5000.0
    got = compare(CONTROL, TREATMENT, relative=False, method="sequential")
    n = 20_000
    rho2 = (-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / tuning
    sigma2 = 0.01**2 * n
    half = math.sqrt(
        sigma2 * 2 * (n * rho2 + 1) / (n * n * rho2) * math.log(math.sqrt(n * rho2 + 1) / alpha)
    )
    assert got.ci_low == pytest.approx(0.02 - half)
    assert got.ci_high == pytest.approx(0.02 + half)
    e_value = math.exp(rho2 * n * 4.0 / (2 * (n * rho2 + 1))) / math.sqrt(n * rho2 + 1)
    assert got.p_value == pytest.approx(min(1.0, 1 / e_value))
    fixed = compare(CONTROL, TREATMENT, relative=False)
    assert got.ci_high - got.ci_low > fixed.ci_high - fixed.ci_low


def test_sequential_p_value_agrees_with_its_interval(rng: np.random.Generator) -> None:
    controls, treatments = [], []
    for _ in range(400):
        n = int(rng.integers(100, 20_000))
        controls.append(SampleStats.proportion(n, float(rng.binomial(n, 0.1))))
        treatments.append(
            SampleStats.proportion(n, float(rng.binomial(n, 0.1 * rng.uniform(0.9, 1.2))))
        )
    for alternative in ("two-sided", "greater", "less"):
        results = compare_many(controls, treatments, method="sequential", alternative=alternative)
        for r in results:
            excludes = r.ci_low > 0 or r.ci_high < 0
            if abs(r.p_value - r.alpha) > 1e-9:  # skip exact ties
                assert (r.p_value < r.alpha) == excludes
