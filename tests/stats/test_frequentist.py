"""Fixed-horizon tests against published values, scipy and statsmodels."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy import stats as sps
from statsmodels.stats import proportion as sm_proportion

from abflow.errors import InvalidArgumentError
from abflow.stats import RatioStats, SampleStats, compare, compare_many


def test_reference_proportions_relative() -> None:
    control = SampleStats.proportion(10_000, 1_000)
    treatment = SampleStats.proportion(10_000, 1_100)
    result = compare(control, treatment)
    assert result.is_ok
    assert result.effect == pytest.approx(0.10)
    assert result.ci_low == pytest.approx(0.0109, abs=5e-5)
    assert result.ci_high == pytest.approx(0.1891, abs=5e-5)
    assert result.p_value == pytest.approx(0.0279, abs=5e-5)
    assert result.ci_low < result.effect < result.ci_high


def test_reference_proportions_absolute_is_wald() -> None:
    control = SampleStats.proportion(10_000, 1_000)
    treatment = SampleStats.proportion(10_000, 1_100)
    result = compare(control, treatment, relative=False)
    wald = sm_proportion.test_proportions_2indep(
        1_100, 10_000, 1_000, 10_000, method="wald", compare="diff"
    )
    assert result.p_value == pytest.approx(0.0211, abs=5e-5)
    assert result.p_value == pytest.approx(wald.pvalue, rel=1e-3)  # t with ~20k df vs z
    assert result.effect == pytest.approx(0.01)


def test_welch_matches_scipy_on_many_cases(rng: np.random.Generator) -> None:
    controls, treatments, refs = [], [], []
    for _ in range(200):
        n_c, n_t = rng.integers(2, 500, size=2)
        x = rng.normal(rng.normal(5, 2), rng.uniform(0.1, 5), n_c)
        y = rng.normal(rng.normal(5, 2), rng.uniform(0.1, 5), n_t)
        controls.append(SampleStats.from_values(x))
        treatments.append(SampleStats.from_values(y))
        refs.append(sps.ttest_ind(y, x, equal_var=False))
    results = compare_many(controls, treatments, relative=False)
    assert_allclose([r.p_value for r in results], [ref.pvalue for ref in refs], rtol=1e-8)
    assert_allclose([r.degrees_of_freedom for r in results], [ref.df for ref in refs], rtol=1e-8)
    lows = [ref.confidence_interval(0.95).low for ref in refs]
    assert_allclose([r.ci_low for r in results], lows, rtol=1e-8)


def test_one_sided_matches_scipy(rng: np.random.Generator) -> None:
    x = rng.normal(10, 3, 300)
    y = rng.normal(10.4, 3, 280)
    c, t = SampleStats.from_values(x), SampleStats.from_values(y)
    for alternative in ("greater", "less"):
        ref = sps.ttest_ind(y, x, equal_var=False, alternative=alternative)
        got = compare(c, t, relative=False, alternative=alternative)
        assert got.p_value == pytest.approx(ref.pvalue, rel=1e-9)
        bound = ref.confidence_interval(0.95)
        assert_allclose([got.ci_low, got.ci_high], [bound.low, bound.high], rtol=1e-9)


def test_non_inferiority_shifts_the_null(rng: np.random.Generator) -> None:
    x = rng.normal(10, 3, 400)
    y = rng.normal(9.9, 3, 400)
    c, t = SampleStats.from_values(x), SampleStats.from_values(y)
    margin = 0.8
    got = compare(c, t, relative=False, alternative="greater", margin=margin)
    # H0: mu_t - mu_c <= -margin, i.e. mu_t + margin <= mu_c
    ref = sps.ttest_ind(y + margin, x, equal_var=False, alternative="greater")
    assert got.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert (got.p_value < 0.05) == (got.ci_low > -margin)
    lower = compare(c, t, relative=False, alternative="less", margin=margin)
    ref_less = sps.ttest_ind(y - margin, x, equal_var=False, alternative="less")
    assert lower.p_value == pytest.approx(ref_less.pvalue, rel=1e-9)


def test_relative_delta_method_against_simulation(rng: np.random.Generator) -> None:
    """The relative effect's standard error matches the spread of simulated estimates."""
    n, mu_c, mu_t, sd = 400, 4.0, 4.4, 3.0
    sims = 4000
    xc = rng.normal(mu_c, sd, (sims, n))
    xt = rng.normal(mu_t, sd, (sims, n))
    ratios = xt.mean(axis=1) / xc.mean(axis=1) - 1.0
    result = compare(SampleStats.from_values(xc[0]), SampleStats.from_values(xt[0]))
    assert result.standard_error == pytest.approx(ratios.std(), rel=0.06)


def test_degenerate_inputs_give_error_records() -> None:
    good = SampleStats.proportion(100, 10)
    cases = {
        "too_few_units": (SampleStats(1, 1.0, 1.0), good),
        "zero_control_mean": (SampleStats.proportion(100, 0), good),
        "zero_variance": (SampleStats(50, 100.0, 200.0), SampleStats(50, 100.0, 200.0)),
    }
    for code, (control, treatment) in cases.items():
        result = compare(control, treatment)
        assert result.error_code == code
        assert result.error_message
        assert math.isnan(result.effect)
        assert result.p_value is not None
        assert math.isnan(result.p_value)
        assert not result.is_significant
    assert compare(SampleStats.proportion(100, 0), good, relative=False).is_ok
    empty = compare(SampleStats(0, 0, 0), SampleStats(0, 0, 0), method="bayesian")
    assert empty.error_code == "too_few_units"
    assert empty.p_value is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"alpha": 0.0},
        {"alpha": 1.5},
        {"alpha": math.nan},
        {"method": "magic"},
        {"alternative": "sideways"},
        {"margin": 0.1},
        {"margin": -0.1, "alternative": "greater"},
        {"tuning_sample_size": 0},
    ],
)
def test_invalid_arguments_raise(kwargs: dict[str, object]) -> None:
    c, t = SampleStats.proportion(100, 10), SampleStats.proportion(100, 12)
    with pytest.raises(InvalidArgumentError):
        compare(c, t, **kwargs)  # type: ignore[arg-type]


def test_invalid_stats_raise() -> None:
    with pytest.raises(InvalidArgumentError, match="n must be"):
        SampleStats(-1, 0, 0)
    with pytest.raises(InvalidArgumentError, match="finite"):
        SampleStats(3, math.inf, 0)
    with pytest.raises(InvalidArgumentError, match="1 control and 2 treatment"):
        compare_many([SampleStats(3, 1, 1)], [SampleStats(3, 1, 1), SampleStats(3, 1, 1)])
    with pytest.raises(InvalidArgumentError, match="one type"):
        compare(SampleStats(3, 1, 1), RatioStats(3, 1, 1, 3, 3, 1))  # type: ignore[arg-type]


def test_compare_many_equals_compare_one_by_one(rng: np.random.Generator) -> None:
    controls, treatments = [], []
    for _ in range(60):
        n_c, n_t = rng.integers(0, 40, size=2)
        controls.append(SampleStats.proportion(n_c, float(rng.integers(0, n_c + 1))))
        treatments.append(SampleStats.proportion(n_t, float(rng.integers(0, n_t + 1))))
    for method in ("frequentist", "sequential", "bayesian"):
        batch = compare_many(controls, treatments, method=method)  # type: ignore[arg-type]
        single = [
            compare(c, t, method=method)  # type: ignore[arg-type]
            for c, t in zip(controls, treatments, strict=True)
        ]
        assert {r.error_code for r in batch} > {None}  # the mix holds errors and results
        for a, b in zip(batch, single, strict=True):
            assert a.error_code == b.error_code
            assert_allclose([a.effect, a.ci_low, a.ci_high], [b.effect, b.ci_low, b.ci_high])
