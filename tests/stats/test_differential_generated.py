"""abflow.stats against independent implementations on Hypothesis-generated inputs.

References: scipy's Welch test and chi-square, statsmodels' multiple-testing corrections and
power functions, and the delta-method formula written out naively here. Inputs range over
scales, sample sizes, allocations, alternatives and arm counts the hand-picked tests miss.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from multitest_reference import multipletests
from numpy.testing import assert_allclose
from scipy import stats
from statsmodels.stats.power import NormalIndPower, TTestIndPower
from statsmodels.stats.proportion import power_proportions_2indep, proportion_effectsize

from abflow.stats import (
    SampleStats,
    adjust_p_values,
    compare,
    mde,
    power,
    sample_size,
    srm_test,
)

SETTINGS = settings(max_examples=60, deadline=None)
SCALES = st.sampled_from([1e-6, 1e-3, 1.0, 1e3, 1e6])
ALTERNATIVES = st.sampled_from(["two-sided", "greater", "less"])


def _sample(seed: int, n: int, scale: float, shape: str) -> np.ndarray:
    gen = np.random.default_rng(seed)
    if shape == "normal":
        return gen.normal(gen.uniform(-3, 3), gen.uniform(0.1, 3), n) * scale
    if shape == "skewed":
        return gen.lognormal(0.0, 1.0, n) * scale
    return gen.integers(0, 5, n).astype(float) * scale  # heavy ties


SHAPES = st.sampled_from(["normal", "skewed", "ties"])


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    n_c=st.integers(2, 400),
    n_t=st.integers(2, 400),
    scale=SCALES,
    shape=SHAPES,
    alternative=ALTERNATIVES,
    alpha=st.sampled_from([0.01, 0.05, 0.1, 0.2]),
)
def test_absolute_effect_matches_scipy_welch(
    seed: int, n_c: int, n_t: int, scale: float, shape: str, alternative: str, alpha: float
) -> None:
    x = _sample(seed, n_c, scale, shape)
    y = _sample(seed + 1, n_t, scale, shape)
    assume(np.var(x) > 0 and np.var(y) > 0)
    assume(not set(np.unique(x)) <= {0.0, 1.0} and not set(np.unique(y)) <= {0.0, 1.0})
    got = compare(
        SampleStats.from_values(x),
        SampleStats.from_values(y),
        relative=False,
        alpha=alpha,
        alternative=alternative,  # type: ignore[arg-type]
    )
    ref = stats.ttest_ind(y, x, equal_var=False, alternative=alternative)
    ci = ref.confidence_interval(1 - alpha)
    assert got.is_ok
    assert_allclose(got.effect, y.mean() - x.mean(), rtol=1e-9, atol=1e-12 * scale)
    assert_allclose(got.p_value, ref.pvalue, rtol=1e-6, atol=1e-14)
    assert_allclose(got.degrees_of_freedom, ref.df, rtol=1e-6)
    assert_allclose([got.ci_low, got.ci_high], [ci.low, ci.high], rtol=1e-6, atol=1e-9 * scale)


@SETTINGS
@given(
    n_c=st.integers(2, 10**7),
    n_t=st.integers(2, 10**7),
    rate_c=st.floats(0.0005, 0.9995),
    rate_t=st.floats(0.0005, 0.9995),
    alternative=ALTERNATIVES,
)
def test_proportion_difference_matches_welch_on_bernoulli_variances(
    n_c: int, n_t: int, rate_c: float, rate_t: float, alternative: str
) -> None:
    # The Bernoulli variance p (1 - p) (GrowthBook's ProportionStatistic) fed to scipy's Welch
    # test from summary statistics; with many units this is the unpooled Wald z-test.
    k_c, k_t = round(n_c * rate_c), round(n_t * rate_t)
    assume(0 < k_c < n_c and 0 < k_t < n_t)
    p_c, p_t = k_c / n_c, k_t / n_t
    got = compare(
        SampleStats.proportion(n_c, k_c),
        SampleStats.proportion(n_t, k_t),
        relative=False,
        alternative=alternative,  # type: ignore[arg-type]
    )
    ref = stats.ttest_ind_from_stats(
        p_t,
        math.sqrt(p_t * (1 - p_t)),
        n_t,
        p_c,
        math.sqrt(p_c * (1 - p_c)),
        n_c,
        equal_var=False,
        alternative=alternative,
    )
    assert_allclose(got.effect, p_t - p_c, rtol=1e-12, atol=1e-15)
    assert_allclose(got.p_value, ref.pvalue, rtol=1e-6, atol=1e-14)


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    n_c=st.integers(2, 2000),
    n_t=st.integers(2, 2000),
    scale=SCALES,
    alpha=st.sampled_from([0.01, 0.05, 0.1]),
)
def test_relative_effect_matches_naive_delta_method(
    seed: int, n_c: int, n_t: int, scale: float, alpha: float
) -> None:
    gen = np.random.default_rng(seed)
    x = gen.gamma(2.0, 5.0, n_c) * scale
    y = gen.gamma(2.0, 5.0 * gen.uniform(0.8, 1.2), n_t) * scale
    got = compare(SampleStats.from_values(x), SampleStats.from_values(y), alpha=alpha)
    m_c, m_t = x.mean(), y.mean()
    v_c, v_t = x.var(ddof=1), y.var(ddof=1)
    # Written out from the textbook delta method for g(m_c, m_t) = m_t / m_c - 1.
    grad_c, grad_t = -m_t / m_c**2, 1.0 / m_c
    se = math.sqrt(grad_c**2 * v_c / n_c + grad_t**2 * v_t / n_t)
    df = (v_t / n_t + v_c / n_c) ** 2 / (
        (v_t / n_t) ** 2 / (n_t - 1) + (v_c / n_c) ** 2 / (n_c - 1)
    )
    effect = m_t / m_c - 1
    half = stats.t.ppf(1 - alpha / 2, df) * se
    assert_allclose(got.effect, effect, rtol=1e-9, atol=1e-12)
    assert_allclose(got.standard_error, se, rtol=1e-8)
    assert_allclose(
        [got.ci_low, got.ci_high], [effect - half, effect + half], rtol=1e-7, atol=1e-12
    )
    assert_allclose(got.p_value, 2 * stats.t.sf(abs(effect) / se, df), rtol=1e-6, atol=1e-14)


P_VALUES = st.one_of(
    st.floats(0.0, 1.0),
    st.sampled_from([0.0, 1.0, 5e-324, 1e-300, 0.01, 0.05, 0.5]),
)


@pytest.mark.slow  # 46 s at load 10
@settings(max_examples=100, deadline=None)
@given(
    p=st.lists(P_VALUES, min_size=1, max_size=40),
    missing=st.lists(st.sampled_from([None, math.nan]), max_size=5),
    method=st.sampled_from(
        [("holm", "holm"), ("benjamini-hochberg", "fdr_bh"), ("bonferroni", "bonferroni")]
    ),
    data=st.data(),
)
def test_corrections_match_statsmodels_multipletests(
    p: list[float], missing: list[float | None], method: tuple[str, str], data: st.DataObject
) -> None:
    ties = data.draw(st.lists(st.sampled_from(p), max_size=10))
    family = [*p, *ties]
    mixed: list[float | None] = list(family)
    for value in missing:  # missing values sit anywhere and stay outside the family
        mixed.insert(data.draw(st.integers(0, len(mixed))), value)
    got = adjust_p_values(mixed, method[0])  # type: ignore[arg-type]
    present = [g for g, m in zip(got, mixed, strict=True) if m is not None and not math.isnan(m)]
    expected = multipletests(np.array(family), method=method[1])[1]
    assert_allclose(present, expected, rtol=1e-12, atol=1e-300)  # subnormals round apart
    for g, m in zip(got, mixed, strict=True):
        if m is None:
            assert g is None
        elif math.isnan(m):
            assert g is not None
            assert math.isnan(g)


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    arms=st.integers(2, 8),
    total=st.integers(50, 10**9),
    zero_arms=st.integers(0, 2),
)
def test_srm_matches_scipy_chisquare(seed: int, arms: int, total: int, zero_arms: int) -> None:
    gen = np.random.default_rng(seed)
    weights = gen.dirichlet(np.ones(arms))
    counts = gen.multinomial(total, weights).astype(float)
    counts[: min(zero_arms, arms - 1)] = 0.0  # arms that lost all their traffic
    expected = counts.sum() * weights
    got = srm_test(counts.tolist(), weights.tolist())
    if counts.sum() == 0:
        assert got.error_code == "no_units"
        assert not got.is_mismatch
        return
    if expected.min() < 5:
        assert got.error_code == "too_few_units"
        assert not got.is_mismatch
        return
    ref = stats.chisquare(counts, expected)
    assert got.is_ok
    assert got.df == arms - 1
    assert_allclose(got.chi_square, ref.statistic, rtol=1e-9)
    assert_allclose(got.p_value, ref.pvalue, rtol=1e-7, atol=1e-300)
    assert got.is_mismatch == (ref.pvalue < 0.001)


def _larger(alternative: str) -> str:
    return "two-sided" if alternative == "two-sided" else "larger"


@SETTINGS
@given(
    n_c=st.integers(3, 10**6),
    n_t=st.integers(3, 10**6),
    variants=st.integers(2, 6),
    d=st.floats(0.001, 1.0),
    std=st.floats(1e-3, 1e3),
    alpha=st.sampled_from([0.01, 0.05, 0.1]),
    alternative=st.sampled_from(["two-sided", "one-sided"]),
)
def test_mean_power_matches_ttest_ind_power(
    n_c: int, n_t: int, variants: int, d: float, std: float, alpha: float, alternative: str
) -> None:
    sizes = [n_c] + [n_t] * (variants - 1)
    got = power(
        10.0,
        d * std,
        sizes,
        std=std,
        relative=False,
        alpha=alpha,
        variants=variants,
        alternative=alternative,  # type: ignore[arg-type]
    )
    ref = TTestIndPower().power(
        d,
        nobs1=n_t,
        alpha=alpha / (variants - 1),
        ratio=n_c / n_t,
        alternative=_larger(alternative),
    )
    assume(math.isfinite(ref))  # statsmodels' noncentral t gives NaN when power is ~1
    assert_allclose(got.power, ref, rtol=1e-7, atol=1e-10)


@SETTINGS
@given(
    n_c=st.integers(10, 10**6),
    n_t=st.integers(10, 10**6),
    variants=st.integers(2, 5),
    rate=st.floats(0.001, 0.9),
    lift=st.floats(0.001, 0.5),
    alpha=st.sampled_from([0.01, 0.05, 0.1]),
    alternative=st.sampled_from(["two-sided", "one-sided"]),
)
def test_proportion_power_matches_statsmodels(
    n_c: int,
    n_t: int,
    variants: int,
    rate: float,
    lift: float,
    alpha: float,
    alternative: str,
) -> None:
    assume(rate * (1 + lift) < 0.999)
    sizes = [n_c] + [n_t] * (variants - 1)
    level = alpha / (variants - 1)
    diff = rate * lift
    common = {"alpha": alpha, "variants": variants, "alternative": alternative}
    pooled = power(rate, diff, sizes, relative=False, proportion_variance="pooled", **common)  # type: ignore[arg-type]
    ref = power_proportions_2indep(
        diff, rate, nobs1=n_t, ratio=n_c / n_t, alpha=level, alternative=_larger(alternative)
    )
    assert_allclose(pooled.power, ref.power, rtol=1e-7, atol=1e-10)
    arcsine = power(rate, lift, sizes, relative=True, proportion_variance="arcsine", **common)  # type: ignore[arg-type]
    h = proportion_effectsize(rate * (1 + lift), rate)
    ref_h = NormalIndPower().power(
        h, nobs1=n_t, alpha=level, ratio=n_c / n_t, alternative=_larger(alternative)
    )
    assert_allclose(arcsine.power, ref_h, rtol=1e-7, atol=1e-10)
    unpooled = power(rate, diff, sizes, relative=False, **common)  # type: ignore[arg-type]
    p_t = rate + diff
    se = math.sqrt(rate * (1 - rate) / n_c + p_t * (1 - p_t) / n_t)
    z = stats.norm.isf(level / 2 if alternative == "two-sided" else level)
    ref_u = stats.norm.sf(z - diff / se)
    if alternative == "two-sided":
        ref_u += stats.norm.cdf(-z - diff / se)
    assert_allclose(unpooled.power, ref_u, rtol=1e-7, atol=1e-10)


@SETTINGS
@given(
    rate=st.floats(0.005, 0.8),
    lift=st.floats(0.01, 0.5),
    control_share=st.floats(0.1, 0.9),
    variants=st.integers(2, 4),
    target=st.sampled_from([0.5, 0.8, 0.9]),
    is_mean=st.booleans(),
    relative=st.booleans(),
)
def test_sample_size_is_the_smallest_that_reaches_the_target(
    rate: float,
    lift: float,
    control_share: float,
    variants: int,
    target: float,
    is_mean: bool,
    relative: bool,
) -> None:
    assume(rate * (1 + lift) < 0.99)
    rest = (1 - control_share) / (variants - 1)
    weights = [control_share] + [rest] * (variants - 1)
    std = 2.0 * rate if is_mean else None
    effect = lift if relative else rate * lift
    plan = sample_size(
        rate, effect, std=std, relative=relative, power=target, variants=variants, weights=weights
    )
    assert plan.achieved_power >= target
    again = power(
        rate, effect, list(plan.per_variant), std=std, relative=relative, variants=variants
    )
    assert_allclose(again.power, plan.achieved_power, rtol=1e-12)
    # A total one percent smaller, split the same way, falls short (sizes are whole units).
    smaller = [max(2, math.floor(n * 0.99)) for n in plan.per_variant]
    assume(smaller != list(plan.per_variant))
    short = power(rate, effect, smaller, std=std, relative=relative, variants=variants)
    assert short.power < target
    found = mde(
        rate, list(plan.per_variant), std=std, relative=relative, power=target, variants=variants
    )
    assert found.mde <= effect * (1 + 1e-9)
    assert_allclose(
        power(
            rate, found.mde, list(plan.per_variant), std=std, relative=relative, variants=variants
        ).power,
        target,
        rtol=1e-8,
    )
