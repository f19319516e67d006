"""Ratio metrics (delta method) and CUPED against naive references written here."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import statsmodels.api as sm

from abflow.errors import InvalidArgumentError
from abflow.stats import (
    CupedStats,
    RatioCupedStats,
    RatioStats,
    SampleStats,
    compare,
    compare_many,
)


def _users(rng: np.random.Generator, n: int, rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Sessions and clicks per user, with heterogeneous users (clicks correlate with sessions)."""
    sessions = rng.poisson(rng.gamma(2.0, 2.0, n)) + 1
    propensity = rng.beta(2.0, 2.0 / rate - 2.0, n)
    clicks = rng.binomial(sessions * 2, propensity)
    return clicks.astype(float), sessions.astype(float)


def test_merge_and_from_values_agree(rng: np.random.Generator) -> None:
    m, d = _users(rng, 500, 0.2)
    pm, pd = _users(rng, 500, 0.2)
    whole = RatioCupedStats.from_values(m, d, pm, pd)
    halves = RatioCupedStats.from_values(m[:200], d[:200], pm[:200], pd[:200]) + (
        RatioCupedStats.from_values(m[200:], d[200:], pm[200:], pd[200:])
    )
    for field in dataclasses.fields(whole):
        assert getattr(halves, field.name) == pytest.approx(getattr(whole, field.name), rel=1e-12)
    assert whole.mean == pytest.approx(m.sum() / d.sum())
    assert whole.ratio == RatioStats.from_values(m, d)
    cuped = CupedStats.from_values(m, pm)
    assert cuped.post == SampleStats.from_values(m)
    assert cuped.pre == SampleStats.from_values(pm)
    with pytest.raises(InvalidArgumentError, match="same length"):
        RatioStats.from_values(m, d[:-1])
    with pytest.raises(InvalidArgumentError, match="NaN"):
        SampleStats.from_values([1.0, math.nan])


def test_ratio_standard_error_matches_simulation_and_bootstrap(rng: np.random.Generator) -> None:
    n = 2000
    m_c, d_c = _users(rng, n, 0.20)
    m_t, d_t = _users(rng, n, 0.22)
    result = compare(RatioStats.from_values(m_c, d_c), RatioStats.from_values(m_t, d_t))
    assert result.effect == pytest.approx((m_t.sum() / d_t.sum()) / (m_c.sum() / d_c.sum()) - 1)

    # naive simulation: fresh experiments from the same population
    sims = 600
    estimates = np.empty(sims)
    for i in range(sims):
        a, b = _users(rng, n, 0.20)
        c, d = _users(rng, n, 0.22)
        estimates[i] = (c.sum() / d.sum()) / (a.sum() / b.sum()) - 1
    assert result.standard_error == pytest.approx(estimates.std(ddof=1), rel=0.10)

    # bootstrap over users of the one observed experiment
    boots = 1000
    ic = rng.integers(0, n, (boots, n))
    it = rng.integers(0, n, (boots, n))
    ratio_c = m_c[ic].sum(axis=1) / d_c[ic].sum(axis=1)
    ratio_t = m_t[it].sum(axis=1) / d_t[it].sum(axis=1)
    boot = ratio_t / ratio_c - 1
    assert result.standard_error == pytest.approx(boot.std(ddof=1), rel=0.08)
    absolute = compare(
        RatioStats.from_values(m_c, d_c), RatioStats.from_values(m_t, d_t), relative=False
    )
    assert absolute.standard_error == pytest.approx((ratio_t - ratio_c).std(ddof=1), rel=0.08)


def test_ratio_zero_denominator_is_an_error_record() -> None:
    empty = RatioStats(10, 0.0, 0.0, 0.0, 0.0, 0.0)
    full = RatioStats(10, 5.0, 5.0, 10.0, 10.0, 5.0)
    result = compare(empty, full)
    assert result.error_code == "zero_denominator"
    assert math.isnan(result.ci_low)


def _cuped_naive(
    y_c: np.ndarray, x_c: np.ndarray, y_t: np.ndarray, x_t: np.ndarray
) -> tuple[float, float, float]:
    """Deng et al. (2013): theta = cov(Y, X) / var(X) on the pooled sample; Y - theta X."""
    y, x = np.concatenate([y_c, y_t]), np.concatenate([x_c, x_t])
    theta = np.cov(y, x)[0, 1] / np.var(x, ddof=1)
    adj_c, adj_t = y_c - theta * x_c, y_t - theta * x_t
    effect = adj_t.mean() - adj_c.mean()
    se = math.sqrt(adj_t.var(ddof=1) / adj_t.size + adj_c.var(ddof=1) / adj_c.size)
    raw_se = math.sqrt(y_t.var(ddof=1) / y_t.size + y_c.var(ddof=1) / y_c.size)
    return effect, se, 1 - (se / raw_se) ** 2


def test_cuped_matches_deng_definition_and_ancova(rng: np.random.Generator) -> None:
    x_c, x_t = rng.gamma(3.0, 4.0, 1500), rng.gamma(3.0, 4.0, 1300)
    y_c = 2.0 + 0.8 * x_c + rng.normal(0, 5, x_c.size)
    y_t = 2.6 + 0.8 * x_t + rng.normal(0, 5, x_t.size)
    got = compare(
        CupedStats.from_values(y_c, x_c), CupedStats.from_values(y_t, x_t), relative=False
    )
    effect, se, reduction = _cuped_naive(y_c, x_c, y_t, x_t)
    assert got.effect == pytest.approx(effect, rel=1e-9)
    assert got.standard_error == pytest.approx(se, rel=1e-9)
    assert got.variance_reduction == pytest.approx(reduction, rel=1e-9)
    # regression adjustment as ANCOVA: y ~ 1 + treated + x (theta within groups, close to pooled)
    treated = np.r_[np.zeros(x_c.size), np.ones(x_t.size)]
    design = sm.add_constant(np.column_stack([treated, np.r_[x_c, x_t]]))
    ols = sm.OLS(np.r_[y_c, y_t], design).fit()
    assert got.effect == pytest.approx(ols.params[1], abs=0.05 * got.standard_error)
    assert got.standard_error == pytest.approx(ols.bse[1], rel=0.03)


def _ratio_cuped_naive(c: tuple[np.ndarray, ...], t: tuple[np.ndarray, ...]) -> tuple[float, float]:
    """Linearise each unit's contribution to both ratios and apply CUPED to those."""
    pooled = [np.concatenate([a, b]) for a, b in zip(c, t, strict=True)]

    def influence(arm: list[np.ndarray] | tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray]:
        m, d, pm, pd = arm
        r, r_pre = m.mean() / d.mean(), pm.mean() / pd.mean()
        return (m - r * d) / d.mean(), (pm - r_pre * pd) / pd.mean()

    post, pre = influence(pooled)
    theta = np.cov(post, pre)[0, 1] / np.var(pre, ddof=1)
    estimates, variances = [], []
    for arm in (c, t):
        m, d, pm, pd = arm
        post, pre = influence(arm)
        estimates.append(m.sum() / d.sum() - theta * pm.sum() / pd.sum())
        variances.append(np.var(post - theta * pre, ddof=1) / m.size)
    return estimates[1] - estimates[0], math.sqrt(sum(variances))


def test_ratio_cuped_matches_naive_linearisation(rng: np.random.Generator) -> None:
    arms = []
    for rate, n in ((0.20, 1200), (0.23, 1000)):
        pm, pd = _users(rng, n, rate)
        m = rng.binomial(pd.astype(int) * 2, np.clip(pm / pd / 2 + 0.02, 0, 1)).astype(float)
        arms.append((m, pd + rng.poisson(1.0, n), pm, pd))
    got = compare(
        RatioCupedStats.from_values(*arms[0]), RatioCupedStats.from_values(*arms[1]), relative=False
    )
    effect, se = _ratio_cuped_naive(arms[0], arms[1])
    assert got.effect == pytest.approx(effect, rel=1e-9)
    assert got.standard_error == pytest.approx(se, rel=1e-9)
    assert got.variance_reduction is not None
    assert got.variance_reduction > 0.1


def test_ratio_cuped_is_unbiased_and_narrower_by_simulation(rng: np.random.Generator) -> None:
    sims, n = 400, 800
    controls, treatments = [], []
    for _ in range(sims):
        pair = []
        for lift in (0.0, 0.1):
            pm, pd = _users(rng, n, 0.2)
            d = pd + rng.poisson(0.5, n)
            m = rng.binomial(d.astype(int), np.clip(pm / (2 * pd) * (1 + lift), 0, 1)).astype(float)
            pair.append(RatioCupedStats.from_values(m, d, pm, pd))
        controls.append(pair[0])
        treatments.append(pair[1])
    adjusted = compare_many(controls, treatments, relative=True)
    plain = compare_many([c.ratio for c in controls], [t.ratio for t in treatments], relative=True)
    adj_effects = np.array([r.effect for r in adjusted])
    plain_effects = np.array([r.effect for r in plain])
    truth = plain_effects.mean()  # no covariate, so only the (tiny) ratio bias of both
    assert abs(adj_effects.mean() - truth) < 3 * adj_effects.std() / math.sqrt(sims)
    assert adj_effects.std() < 0.9 * plain_effects.std()
    assert np.mean([r.standard_error for r in adjusted]) == pytest.approx(
        adj_effects.std(), rel=0.1
    )
