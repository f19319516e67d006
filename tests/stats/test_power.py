"""Power analysis against statsmodels' power functions and seeded simulations of the test."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from statsmodels.stats.power import NormalIndPower, TTestIndPower
from statsmodels.stats.proportion import power_proportions_2indep, proportion_effectsize
from typer.testing import CliRunner, Result

from abflow.cli.main import app
from abflow.errors import InvalidArgumentError
from abflow.stats.power import (
    MAX_UNITS_PER_VARIANT,
    MAX_VARIANTS,
    STD_RANGE,
    duration_days,
    mde,
    power,
    sample_size,
)


def test_unpooled_equal_split_matches_normal_ind_power() -> None:
    # With equal arms the unpooled Wald test is a z-test with the average Bernoulli variance.
    p0, p1, n = 0.10, 0.11, 12_000
    effect_size = (p1 - p0) / math.sqrt((p0 * (1 - p0) + p1 * (1 - p1)) / 2)
    expected = NormalIndPower().power(effect_size, nobs1=n, alpha=0.05, ratio=1.0)
    got = power(p0, p1 - p0, n, relative=False)
    np.testing.assert_allclose(got.power, expected, rtol=1e-9)
    needed = NormalIndPower().solve_power(effect_size, alpha=0.05, power=0.8, ratio=1.0)
    result = sample_size(p0, p1 - p0, relative=False)
    assert result.per_variant == (math.ceil(needed),) * 2
    assert result.achieved_power >= 0.8


@pytest.mark.parametrize(("n0", "n1"), [(5_000, 5_000), (8_000, 2_000), (3_000, 9_000)])
def test_pooled_matches_power_proportions_2indep(n0: int, n1: int) -> None:
    p0, p1 = 0.20, 0.23
    # statsmodels: group 1 (nobs1) has prop2 + diff, group 2 has prop2 and nobs1 * ratio units.
    expected = power_proportions_2indep(p1 - p0, p0, nobs1=n1, ratio=n0 / n1, alpha=0.05)
    got = power(p0, p1 - p0, [n0, n1], relative=False, proportion_variance="pooled")
    np.testing.assert_allclose(got.power, expected.power, rtol=1e-9)


@pytest.mark.parametrize(("n0", "n1"), [(4_000, 4_000), (6_000, 2_000)])
def test_arcsine_matches_cohens_h(n0: int, n1: int) -> None:
    p0, p1 = 0.05, 0.06
    h = proportion_effectsize(p1, p0)
    expected = NormalIndPower().power(h, nobs1=n1, alpha=0.01, ratio=n0 / n1)
    got = power(p0, 0.2, [n0, n1], alpha=0.01, proportion_variance="arcsine")
    np.testing.assert_allclose(got.power, expected, rtol=1e-9)


@pytest.mark.parametrize(("n0", "n1"), [(40, 40), (300, 150), (2_000, 2_000)])
def test_means_match_ttest_ind_power(n0: int, n1: int) -> None:
    d = 0.25
    expected = TTestIndPower().power(d, nobs1=n1, alpha=0.05, ratio=n0 / n1)
    got = power(10.0, d * 3.0, [n0, n1], std=3.0, relative=False)
    np.testing.assert_allclose(got.power, expected, rtol=1e-9)


def test_means_sample_size_matches_ttest_solve_power() -> None:
    needed = TTestIndPower().solve_power(0.1, alpha=0.05, power=0.9, ratio=1.0)
    result = sample_size(50.0, 2.0, std=20.0, relative=False, power=0.9)
    assert result.per_variant == (math.ceil(needed),) * 2


def test_one_sided_matches_statsmodels_larger() -> None:
    d = 0.08
    expected = TTestIndPower().power(d, nobs1=1_500, alpha=0.05, alternative="larger")
    got = power(1.0, d, 1_500, std=1.0, relative=False, alternative="one-sided")
    np.testing.assert_allclose(got.power, expected, rtol=1e-9)
    two_sided = power(1.0, d, 1_500, std=1.0, relative=False)
    assert got.power > two_sided.power


def test_relative_proportion_power_by_simulation(rng: np.random.Generator) -> None:
    # The default plans the delta-method Wald test on the relative lift; run that test.
    p0, lift = 0.08, 0.10
    plan = sample_size(p0, lift)
    n0, n1 = plan.per_variant
    reps = 6_000
    x0 = rng.binomial(n0, p0, reps) / n0
    x1 = rng.binomial(n1, p0 * (1 + lift), reps) / n1
    se = np.sqrt(x1 * (1 - x1) / (n1 * x0**2) + x1**2 * x0 * (1 - x0) / (n0 * x0**4))
    rejected = np.abs((x1 / x0 - 1) / se) > stats.norm.isf(0.025)
    tolerance = 3.5 * math.sqrt(0.8 * 0.2 / reps)
    assert abs(rejected.mean() - plan.achieved_power) < tolerance
    # The same n planned for an absolute test is smaller: ignoring the delta term underpowers.
    assert sample_size(p0, p0 * lift, relative=False).per_variant[0] < n0


def test_relative_mean_power_by_simulation(rng: np.random.Generator) -> None:
    mu, sigma, lift = 20.0, 15.0, 0.04
    n = 3_000
    expected = power(mu, lift, n, std=sigma).power
    reps = 6_000
    # Normal data: sample means and variances drawn from their exact distributions.
    m0 = rng.normal(mu, sigma / math.sqrt(n), reps)
    m1 = rng.normal(mu * (1 + lift), sigma / math.sqrt(n), reps)
    v0 = sigma**2 * rng.chisquare(n - 1, reps) / (n - 1)
    v1 = sigma**2 * rng.chisquare(n - 1, reps) / (n - 1)
    se = np.sqrt(v1 / (n * m0**2) + m1**2 * v0 / (n * m0**4))
    rejected = np.abs((m1 / m0 - 1) / se) > stats.norm.isf(0.025)
    assert 0.3 < expected < 0.95
    assert abs(rejected.mean() - expected) < 3.5 * math.sqrt(expected * (1 - expected) / reps)


def test_several_variants_use_bonferroni_alpha() -> None:
    three = sample_size(0.3, 0.04, variants=3, alpha=0.05)
    two_at_half_alpha = sample_size(0.3, 0.04, variants=2, alpha=0.025)
    assert three.adjusted_alpha == pytest.approx(0.025)
    assert three.per_variant == (two_at_half_alpha.per_variant[0],) * 3
    assert three.total == 3 * three.per_variant[0]


def test_unequal_split_is_minimal_and_follows_weights() -> None:
    weights = (0.5, 0.3, 0.2)
    result = sample_size(0.1, 0.1, variants=3, weights=weights)
    shares = np.array(result.per_variant) / result.total
    np.testing.assert_allclose(shares, weights, atol=1e-3)
    check = power(0.1, 0.1, result.per_variant, variants=3)
    assert check.power >= 0.8
    # The smallest arm's comparison binds; one percent less traffic misses the target.
    assert check.per_comparison[1] == check.power
    smaller = [math.floor(n * 0.99) for n in result.per_variant]
    assert power(0.1, 0.1, smaller, variants=3).power < 0.8


@pytest.mark.parametrize(
    ("std", "relative", "n"), [(None, True, 20_000), (None, False, 3_000), (7.0, True, 500)]
)
def test_mde_inverts_power_and_sample_size(std: float | None, relative: bool, n: int) -> None:
    baseline = 0.25 if std is None else 30.0
    found = mde(baseline, n, std=std, relative=relative, power=0.85)
    achieved = power(baseline, found.mde, n, std=std, relative=relative).power
    np.testing.assert_allclose(achieved, 0.85, atol=1e-8)
    back = sample_size(baseline, found.mde, std=std, relative=relative, power=0.85)
    assert abs(back.per_variant[0] - n) <= 1
    expected_mean = baseline * (1 + found.mde) if relative else baseline + found.mde
    assert found.treatment_mean == pytest.approx(expected_mean)


def test_mde_out_of_reach_raises() -> None:
    with pytest.raises(InvalidArgumentError, match="cannot reach power"):
        mde(0.9, 3, alpha=0.001, power=0.99)


def test_duration_in_whole_days() -> None:
    assert duration_days(121_312, 10_000) == 13
    assert duration_days(120_000, 10_000) == 12
    assert duration_days(120_000, 10_000, coverage=0.5) == 24
    result = sample_size(0.1, 0.05, daily_units=5_000, coverage=0.8)
    assert result.duration_days == math.ceil(result.total / 4_000)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"alpha": 1.5}, "alpha must be strictly between 0 and 1"),
        ({"alpha": 0.0}, "alpha must be strictly between 0 and 1"),
        ({"baseline": 1.2}, "baseline"),
        ({"baseline": 0.0}, "baseline"),
        ({"mde": 0.0}, "mde must be a positive"),
        ({"mde": -0.1}, "mde must be a positive"),
        ({"mde": 9.0}, "must stay below 1"),
        ({"daily_units": -5}, "daily_units must be a positive"),
        ({"power": 0.01}, "must exceed alpha"),
        ({"variants": 1}, "variants must be an integer of at least 2"),
        ({"weights": [0.6, 0.6]}, "weights must sum to 1"),
        ({"weights": [1.0]}, "weights has 1 entries for 2 variants"),
        ({"std": -1.0}, "std must be a positive"),
        ({"alternative": "larger"}, "alternative must be"),
        ({"proportion_variance": "exact"}, "proportion_variance must be"),
        ({"variants": MAX_VARIANTS + 1}, f"variants must be at most {MAX_VARIANTS}"),
        ({"std": 1e-320, "baseline": 1.0}, "std must be between"),
        ({"std": 1e308, "baseline": 1e308}, "std must be between"),
        ({"coverage": -1.0}, "coverage must be in"),
        ({"coverage": 0.0}, "coverage must be in"),
        ({"mde": 1e308, "baseline": 1e308, "std": 1.0}, "beyond the floating-point range"),
    ],
)
def test_invalid_arguments_raise(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"baseline": 0.1, "mde": 0.05} | kwargs
    with pytest.raises(InvalidArgumentError, match=match):
        sample_size(**args)  # type: ignore[arg-type]


def test_too_small_samples_raise() -> None:
    with pytest.raises(InvalidArgumentError, match="at least 2 units"):
        power(0.1, 0.05, [1_000, 1])


# `abflow power`: the command prints what the functions compute, and fails in one sentence.

JSON_KEYS = [
    "mode",
    "metric",
    "per_variant",
    "total",
    "achieved_power",
    "duration_days",
    "mde",
    "power",
    "baseline",
    "std",
    "relative",
    "alpha",
    "adjusted_alpha",
    "variants",
    "weights",
    "alternative",
    "proportion_variance",
    "daily_units",
    "coverage",
]


def _run(*args: str) -> Result:
    return CliRunner().invoke(app, ["power", *args])


def test_cli_table_shows_the_sample_size() -> None:
    result = _run("--baseline", "0.10", "--mde", "0.05", "--daily-units", "20000")
    assert result.exit_code == 0, result.output
    expected = sample_size(0.10, 0.05, daily_units=20_000)
    assert f"{expected.per_variant[0]:,}" in result.stdout
    assert f"{expected.total:,}" in result.stdout
    assert f"{expected.duration_days} days" in result.stdout


def test_cli_json_is_stable_and_matches_the_function() -> None:
    result = _run(
        "--mean", "42", "--std", "30", "--mde", "0.02", "--variants", "3",
        "--weights", "0.5,0.25,0.25", "--format", "json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert list(payload) == JSON_KEYS
    expected = sample_size(42.0, 0.02, std=30.0, variants=3, weights=[0.5, 0.25, 0.25])
    assert payload["per_variant"] == list(expected.per_variant)
    assert payload["mode"] == "sample_size"
    assert payload["metric"] == "mean"
    assert payload["adjusted_alpha"] == pytest.approx(0.025)


def test_cli_solves_for_mde_and_power() -> None:
    found = _run("--baseline", "0.10", "--sample-size", "50000", "--format", "json")
    assert found.exit_code == 0, found.output
    payload = json.loads(found.stdout)
    assert payload["mode"] == "mde"
    assert payload["mde"] == pytest.approx(mde(0.10, 50_000).mde)
    achieved = _run(
        "--baseline", "0.1", "--mde", "0.005", "--absolute", "--sample-size", "30000,20000",
        "--format", "json",
    )  # fmt: skip
    assert achieved.exit_code == 0, achieved.output
    payload = json.loads(achieved.stdout)
    expected = power(0.1, 0.005, [30_000, 20_000], relative=False).power
    assert payload["mode"] == "power"
    assert payload["power"] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--baseline", "1.2", "--mde", "0.05"], "baseline (a proportion) must be strictly"),
        (["--mde", "0.05"], "give --baseline"),
        (["--mean", "3", "--mde", "0.05"], "--mean needs --std"),
        (["--baseline", "0.1"], "give --mde"),
        (["--baseline", "0.1", "--mde", "0.1", "--alpha", "2"], "alpha must be"),
        (["--baseline", "0.1", "--sample-size", "10,x"], "comma-separated list"),
        (["--baseline", "0.1", "--sample-size", "100", "--weights", "0.5,0.5"], "--weights"),
        (["--baseline", "0.1", "--mde", "0.1", "--daily-units", "-3"], "daily_units"),
    ],
)
def test_cli_errors_are_one_sentence_with_exit_code_2(args: list[str], message: str) -> None:
    result = _run(*args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stderr.startswith("error: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_cli_help_has_examples() -> None:
    result = _run("--help")
    assert result.exit_code == 0
    assert "Examples" in result.stdout
    assert "--sample-size" in result.stdout


@settings(max_examples=40, deadline=None)
@given(
    st.floats(0.01, 0.9),
    st.floats(0.01, 0.5),
    st.integers(100, 200_000),
    st.sampled_from(["unpooled", "pooled", "arcsine"]),
    st.booleans(),
)
def test_power_grows_with_sample_and_absolute_effect(
    baseline: float, lift: float, n: int, variance: str, relative: bool
) -> None:
    effect = lift if relative else lift * baseline
    if baseline + 1.1 * (effect * baseline if relative else effect) >= 0.999:
        return
    kwargs = {"relative": relative, "proportion_variance": variance}
    base = power(baseline, effect, n, **kwargs).power  # type: ignore[arg-type]
    assert 0.0 < base <= 1.0
    if not relative or base >= 0.5:
        # Below that the relative test rejects mostly in the wrong direction, and doubling a
        # tiny sample can lower its power (0.037 -> 0.027 for 12.5 % +12.5 % at 100 -> 200
        # per arm; a simulation of compare() gives 0.037 -> 0.025).
        doubled = power(baseline, effect, 2 * n, **kwargs).power  # type: ignore[arg-type]
        assert doubled >= base - 1e-12
    if not relative:
        # Not for the relative test: its standard error grows with the lift, and at small
        # samples its power can even fall as the lift grows (a simulation shows it too).
        bigger = power(baseline, effect * 1.1, n, **kwargs).power  # type: ignore[arg-type]
        assert bigger >= base - 1e-12


# Extreme but legal numbers: a correct finite answer, or InvalidArgumentError naming the input.


def _grid_relative_power(
    mu: float, sigma: float | None, lift: float, n0: int, n1: int, two_sided: bool = True
) -> float:
    """Rejection rate of compare()'s relative test by brute force on an (x0, x1) grid.

    Independent of the closed-form roots: the statistic is evaluated at every grid point
    and its rejection region weighed by the normal densities of the two means.
    """
    if sigma is None:  # a proportion: variances follow the observed rates
        m0, m1 = mu, mu * (1 + lift)
        sd0, sd1 = math.sqrt(m0 * (1 - m0) / n0), math.sqrt(m1 * (1 - m1) / n1)
    else:
        m0, m1 = mu, mu * (1 + lift)
        sd0, sd1 = sigma / math.sqrt(n0), sigma / math.sqrt(n1)
    x0 = m0 + sd0 * np.linspace(-8, 8, 2_001)
    x1 = m1 + sd1 * np.linspace(-8, 8, 4_001)
    g0, g1 = np.meshgrid(x0, x1, indexing="ij")
    if sigma is None:
        var0, var1 = g0 * (1 - g0), g1 * (1 - g1)
    else:
        var0 = var1 = np.full_like(g0, sigma**2)
    with np.errstate(invalid="ignore", divide="ignore"):
        se = np.sqrt(var1 / (n1 * g0**2) + g1**2 * var0 / (n0 * g0**4))
        stat = (g1 / g0 - 1) / se
    a0, a1 = sd0**2, sd1**2
    df = (a0 + a1) ** 2 / (a0**2 / (n0 - 1) + a1**2 / (n1 - 1))
    crit = stats.t.isf(0.025 if two_sided else 0.05, df)
    rejected = (np.abs(stat) > crit) if two_sided else (stat > crit)
    rejected &= g0 > 0
    weight = np.outer(stats.norm.pdf(x0, m0, sd0), stats.norm.pdf(x1, m1, sd1))
    return float(np.sum(weight * rejected) * (x0[1] - x0[0]) * (x1[1] - x1[0]))


@pytest.mark.parametrize(
    ("mu", "sigma", "lift", "n0", "n1", "two_sided"),
    [
        (20.0, 15.0, 0.04, 3_000, 3_000, True),
        (5.0, 9.0, 0.3, 80, 80, True),  # the old first-order formula said 0.072, this is 0.008
        (1.0, 3.0, 1.0, 218, 218, True),
        (0.01, None, 1.0, 3_196, 3_196, True),
        (0.125, None, 0.125, 200, 200, True),
        (0.3, None, 0.02, 45_757, 183_025, False),
        (0.05, None, 0.5, 500, 1_500, True),
    ],
)
def test_relative_power_matches_a_brute_force_integral(
    mu: float, sigma: float | None, lift: float, n0: int, n1: int, two_sided: bool
) -> None:
    alternative = "two-sided" if two_sided else "one-sided"
    got = power(mu, lift, [n0, n1], std=sigma, alternative=alternative).power  # type: ignore[arg-type]
    expected = _grid_relative_power(mu, sigma, lift, n0, n1, two_sided)
    np.testing.assert_allclose(got, expected, atol=1e-3)


def test_relative_power_at_large_lifts_matches_a_simulation(rng: np.random.Generator) -> None:
    # 1 % baseline, +100 %: the earlier delta expansion planned 3,196 per arm for 80 % power;
    # the test run on that many units rejects about 77 % of the time.
    p0, lift, n = 0.01, 1.0, 3_196
    expected = power(p0, lift, n).power
    reps = 40_000
    x0 = rng.binomial(n, p0, reps) / n
    x1 = rng.binomial(n, p0 * (1 + lift), reps) / n
    se = np.sqrt(x1 * (1 - x1) / (n * x0**2) + x1**2 * x0 * (1 - x0) / (n * x0**4))
    rejected = np.abs((x1 / x0 - 1) / se) > stats.t.isf(0.025, 2 * n - 2)
    assert abs(rejected.mean() - expected) < 3.5 * math.sqrt(expected * (1 - expected) / reps)
    assert expected < 0.785


def test_a_mean_far_from_zero_in_std_units_still_gets_its_power() -> None:
    # A lift of one std on a huge mean is a z-test with d = 1 (the delta term is ~1e-12),
    # read against Student's t at 198 degrees of freedom as compare() does.
    crit = stats.t.isf(0.025, 198)
    expected = stats.norm.sf(crit - 1.0 / math.sqrt(0.02)) + stats.norm.cdf(
        -crit - 1.0 / math.sqrt(0.02)
    )
    for mu in (1e12, 1e300):
        np.testing.assert_allclose(power(mu, 1.0 / mu, 100, std=1.0).power, expected, rtol=1e-9)
        np.testing.assert_allclose(
            power(mu, 1.0, 100, std=1.0, relative=False).power,
            TTestIndPower().power(1.0, nobs1=100, alpha=0.05),
            rtol=1e-9,
        )


def test_largest_sample_matches_normal_ind_power() -> None:
    p0, p1 = 0.1, 0.1 + 1e-7
    effect_size = (p1 - p0) / math.sqrt((p0 * (1 - p0) + p1 * (1 - p1)) / 2)
    expected = NormalIndPower().power(effect_size, nobs1=MAX_UNITS_PER_VARIANT, alpha=0.05)
    got = power(p0, p1 - p0, MAX_UNITS_PER_VARIANT, relative=False)
    np.testing.assert_allclose(got.power, expected, rtol=1e-9)
    found = mde(p0, MAX_UNITS_PER_VARIANT)
    np.testing.assert_allclose(power(p0, found.mde, MAX_UNITS_PER_VARIANT).power, 0.8, atol=1e-8)
    with pytest.raises(InvalidArgumentError, match="sample size must be at most 1e\\+15"):
        power(p0, 0.05, MAX_UNITS_PER_VARIANT + 1)


def test_t_test_power_far_in_the_tail_is_one_not_nan() -> None:
    # scipy's noncentral t gives NaN here (so does statsmodels); the normal limit is exact.
    got = power(0.5, 0.05, 1_000_000, std=1.0, relative=False).power
    assert got == pytest.approx(
        NormalIndPower().power(0.05, nobs1=1_000_000, alpha=0.05), abs=1e-12
    )
    assert power(1.0, 1e10, 2, std=1.0, relative=False).power == pytest.approx(1.0)


def test_std_range_edges_are_accepted() -> None:
    for std in STD_RANGE:
        result = sample_size(std, 0.05, std=std)
        assert result.per_variant == sample_size(1.0, 0.05, std=1.0).per_variant
        found = mde(3.0 * std, 500, std=std, relative=False)
        d = TTestIndPower().solve_power(nobs1=500, alpha=0.05, power=0.8, ratio=1.0)
        np.testing.assert_allclose(found.mde / std, d, rtol=1e-6)


def test_most_variants_stays_bonferroni_and_fast() -> None:
    many = sample_size(0.1, 0.05, variants=MAX_VARIANTS)
    two = sample_size(0.1, 0.05, alpha=0.05 / (MAX_VARIANTS - 1))
    assert many.per_variant == (two.per_variant[0],) * MAX_VARIANTS


@settings(max_examples=150, deadline=None)
@given(
    st.one_of(st.none(), st.floats(1e-300, 1e300)),
    st.floats(-1e300, 1e300),
    st.floats(1e-300, 1e300),
    st.integers(2, MAX_UNITS_PER_VARIANT),
    st.booleans(),
)
def test_extreme_inputs_answer_or_refuse_clearly(
    std: float | None, baseline: float, effect: float, n: int, relative: bool
) -> None:
    if std is None:
        baseline = abs(baseline) % 1.0
    calls = (
        lambda: power(baseline, effect, n, std=std, relative=relative).power,
        lambda: mde(baseline, n, std=std, relative=relative).mde,
        lambda: float(sample_size(baseline, effect, std=std, relative=relative).total),
    )
    for call in calls:
        message = ""
        try:
            value = call()
        except InvalidArgumentError as exc:
            message = str(exc)
        if message:
            assert len(message.splitlines()) == 1
            assert any(name in message for name in ("baseline", "std", "mde", "effect", "units"))
        else:
            assert math.isfinite(value)


LIMIT_CASES = [
    (["--baseline", "0.1", "--sample-size", "99999999999999999999999999"], "--sample-size"),
    (["--baseline", "0.1", "--sample-size", "1000,99999999999999999999"], "--sample-size"),
    (["--mean", "1e308", "--std", "1e308", "--mde", "0.5"], "std must be between"),
    (["--mean", "1", "--std", "1e-320", "--mde", "0.5"], "std must be between"),
    (["--baseline", "0.1", "--mde", "0.05", "--variants", "100000"], "variants must be at most"),
    (["--baseline", "0.1", "--mde", "0.05", "--coverage", "-1"], "--coverage must be in (0, 1]"),
    (["--baseline", "0.1", "--mde", "0.05", "--coverage", "nan"], "--coverage"),
    (["--baseline", "0.1", "--sample-size", "5000", "--coverage", "0"], "--coverage"),
    (
        ["--baseline", "0.1", "--sample-size", "5000", "--mde", "0.1", "--coverage", "3"],
        "--coverage",
    ),
]


@pytest.mark.parametrize(("args", "message"), LIMIT_CASES)
def test_cli_limits_are_one_sentence_with_exit_code_2(args: list[str], message: str) -> None:
    result = _run(*args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ")
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_accepts_the_largest_legal_values() -> None:
    result = _run("--baseline", "0.1", "--mde", "0.05", "--variants", str(MAX_VARIANTS),
                  "--format", "json")  # fmt: skip
    assert result.exit_code == 0, result.output
    expected = sample_size(0.1, 0.05, variants=MAX_VARIANTS)
    assert json.loads(result.stdout)["per_variant"] == list(expected.per_variant)
    found = _run(
        "--baseline", "0.1", "--sample-size", str(MAX_UNITS_PER_VARIANT), "--format", "json"
    )
    assert found.exit_code == 0, found.output
    assert json.loads(found.stdout)["mde"] == pytest.approx(mde(0.1, MAX_UNITS_PER_VARIANT).mde)
    huge_mean = _run("--mean", "1e308", "--std", "1", "--mde", "0.5", "--format", "json")
    assert huge_mean.exit_code == 0, huge_mean.output
    assert json.loads(huge_mean.stdout)["per_variant"] == [2, 2]
