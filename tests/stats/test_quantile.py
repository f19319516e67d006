"""Quantile comparisons: coverage by seeded simulation, estimates against numpy, SQL form."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from abflow.errors import InvalidArgumentError
from abflow.stats.quantile import (
    QuantileStats,
    compare_quantile_stats,
    compare_quantiles,
    quantile_probabilities,
    quantile_stats,
    quantile_stats_from_bins,
    quantile_stats_from_histogram,
)

QUANTILES = (0.5, 0.9, 0.95)


def _draw(kind: str, rng: np.random.Generator, size: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """Control and treatment samples (treatment 10 % slower) and the true quantile gaps."""
    if kind == "lognormal":
        control, treatment = rng.lognormal(0.0, 1.0, size), rng.lognormal(0.1, 1.0, size)
        truth = np.exp(stats.norm.ppf(QUANTILES)) * (math.exp(0.1) - 1.0)
        return control, treatment, truth, np.full(3, math.exp(0.1) - 1.0)
    control, treatment = rng.exponential(1.0, size), rng.exponential(1.1, size)
    truth = -np.log1p(-np.array(QUANTILES)) * 0.1
    return control, treatment, truth, np.full(3, 0.1)


@pytest.mark.parametrize("kind", ["lognormal", "exponential"])
def test_95_percent_intervals_cover_the_true_difference(
    kind: str, rng: np.random.Generator
) -> None:
    reps, n = 2_000, 1_000
    control, treatment, truth, lift = _draw(kind, rng, (reps, n))
    for j, q in enumerate(QUANTILES):
        absolute = relative = 0
        for i in range(reps):
            arms = quantile_stats(control[i], q), quantile_stats(treatment[i], q)
            result = compare_quantile_stats(*arms)
            absolute += result.ci_low <= truth[j] <= result.ci_high
            result = compare_quantile_stats(*arms, relative=True)
            relative += result.ci_low <= lift[j] <= result.ci_high
        assert 0.935 <= absolute / reps <= 0.965, (kind, q, absolute / reps)
        assert 0.935 <= relative / reps <= 0.965, (kind, q, relative / reps)


def test_point_estimates_match_numpy_quantile(rng: np.random.Generator) -> None:
    for n in (80, 1_001, 5_000):
        control, treatment = rng.lognormal(3.0, 0.7, n), rng.gamma(2.0, 12.0, n)
        for q in QUANTILES:
            result = compare_quantiles(control, treatment, q)
            expected = np.quantile(treatment, q) - np.quantile(control, q)
            np.testing.assert_allclose(result.control_mean, np.quantile(control, q), rtol=1e-12)
            np.testing.assert_allclose(result.effect, expected, rtol=1e-10)
            assert result.ci_low < result.effect < result.ci_high
            assert result.method == "quantile"
    values = rng.normal(size=301)
    stats_ = quantile_stats(values, 0.9)
    probabilities = [stats_.p_lower, 0.9, stats_.p_upper]
    np.testing.assert_allclose(
        [stats_.lower, stats_.quantile, stats_.upper], np.quantile(values, probabilities)
    )


def test_standard_error_matches_asymptotic_formula_with_true_density(
    rng: np.random.Generator,
) -> None:
    n = 200_000
    values = rng.exponential(2.0, n)
    for q in QUANTILES:
        x_q = -2.0 * math.log1p(-q)
        expected = math.sqrt(q * (1 - q) / n) / stats.expon.pdf(x_q, scale=2.0)
        np.testing.assert_allclose(quantile_stats(values, q).standard_error, expected, rtol=0.05)


def test_p_value_and_interval_agree(rng: np.random.Generator) -> None:
    control, treatment = rng.exponential(1.0, 3_000), rng.exponential(1.25, 3_000)
    result = compare_quantiles(control, treatment, 0.9, alpha=0.01)
    z = result.effect / result.standard_error
    np.testing.assert_allclose(result.p_value, 2 * stats.norm.sf(abs(z)))
    np.testing.assert_allclose(
        result.ci_high - result.effect, stats.norm.isf(0.005) * result.standard_error
    )
    assert (result.p_value < 0.01) == (result.ci_low > 0)


def test_histogram_statistic_matches_raw_values(rng: np.random.Generator) -> None:
    values = rng.lognormal(3.0, 0.5, 50_000)  # latencies around 20 ms, binned at 0.05 ms
    edges = np.arange(0.0, values.max() + 0.05, 0.05)
    counts, _ = np.histogram(values, bins=edges)
    for q in QUANTILES:
        raw = quantile_stats(values, q)
        binned = quantile_stats_from_histogram(edges, counts, q)
        assert binned.n == raw.n
        np.testing.assert_allclose(binned.quantile, raw.quantile, atol=0.05)
        np.testing.assert_allclose(binned.standard_error, raw.standard_error, rtol=0.1)


def test_sparse_bins_match_the_dense_histogram(rng: np.random.Generator) -> None:
    # Latencies binned at 2 ms with a gap: SQL returns only the non-empty bins.
    values = np.concatenate([rng.lognormal(3.0, 0.4, 3_000), rng.uniform(200.0, 260.0, 400)])
    width = 2.0
    edges = np.arange(0.0, 262.0 + width, width)
    counts, _ = np.histogram(values, bins=edges)
    sparse = [(float(lo), float(c)) for lo, c in zip(edges[:-1], counts, strict=True) if c > 0]
    assert len(sparse) < len(counts)
    for q in (*QUANTILES, 0.99):
        dense = quantile_stats_from_histogram(edges, counts, q)
        got = quantile_stats_from_bins(sparse, width, q)
        np.testing.assert_allclose(
            [got.lower, got.quantile, got.upper], [dense.lower, dense.quantile, dense.upper]
        )
        assert got.n == dense.n == values.size
        # Within one bin of the exact sample quantile.
        assert abs(got.quantile - np.quantile(values, q)) <= width
    with pytest.raises(InvalidArgumentError, match="at least one width apart"):
        quantile_stats_from_bins([(0.0, 3.0), (1.0, 4.0)], width, 0.5)
    with pytest.raises(InvalidArgumentError, match="width must be a positive"):
        quantile_stats_from_bins(sparse, 0.0, 0.5)


@pytest.mark.postgres
def test_sql_percentile_cont_gives_the_same_statistic(
    pg_url: str, rng: np.random.Generator
) -> None:
    import sqlalchemy as sa

    values = rng.exponential(30.0, 2_000)
    q = 0.95
    p_lower, _, p_upper = quantile_probabilities(values.size, q)
    engine = sa.create_engine(pg_url)
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE latency (value double precision)"))
        connection.execute(
            sa.text("INSERT INTO latency VALUES (:v)"), [{"v": float(v)} for v in values]
        )
        row = connection.execute(
            sa.text(
                "SELECT percentile_cont(ARRAY[:lo, :q, :hi]) WITHIN GROUP (ORDER BY value) "
                "FROM latency"
            ),
            {"lo": p_lower, "q": q, "hi": p_upper},
        ).scalar_one()
    engine.dispose()
    from_sql = QuantileStats(values.size, q, row[1], row[0], row[2], p_lower, p_upper)
    raw = quantile_stats(values, q)
    np.testing.assert_allclose(from_sql.quantile, raw.quantile, rtol=1e-12)
    np.testing.assert_allclose(from_sql.standard_error, raw.standard_error, rtol=1e-9)


def test_degenerate_samples_give_error_codes(rng: np.random.Generator) -> None:
    small = compare_quantiles(rng.normal(size=20), rng.normal(size=20), 0.95)
    assert small.error_code == "too_few_units"
    assert math.isnan(small.effect)
    # The P95 needs z^2 q / (1 - q) = 73 units for its upper bracket to exist.
    assert compare_quantiles(rng.normal(size=74), rng.normal(size=74), 0.95).is_ok
    flat = compare_quantiles(np.ones(500), np.ones(500), 0.5)
    assert flat.error_code == "zero_variance"
    zero = compare_quantiles(np.zeros(500), rng.exponential(size=500), 0.5, relative=True)
    assert zero.error_code == "zero_control_quantile"
    assert zero.error_message.endswith(".")


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: compare_quantiles([1.0, 2.0], [1.0, 2.0], 1.0), "q must be strictly between"),
        (lambda: compare_quantiles([1.0, 2.0], [1.0], 0.5, alpha=0), "alpha must be"),
        (lambda: compare_quantiles([], [1.0], 0.5), "values is empty"),
        (lambda: compare_quantiles([1.0, math.nan], [1.0], 0.5), "values must be finite"),
        (lambda: quantile_stats_from_histogram([0, 1], [1, 2], 0.5), "len\\(bin_edges\\)"),
        (lambda: quantile_stats_from_histogram([0, 2, 1], [1, 2], 0.5), "strictly increasing"),
        (lambda: quantile_stats_from_histogram([0, 1, 2], [0, 0], 0.5), "positive total"),
        (lambda: quantile_probabilities(0, 0.5), "n must be a positive"),
    ],
)
def test_invalid_arguments_raise(call: object, match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        call()  # type: ignore[operator]


def test_arms_must_share_the_quantile(rng: np.random.Generator) -> None:
    values = rng.normal(size=500)
    with pytest.raises(InvalidArgumentError, match="same quantile"):
        compare_quantile_stats(quantile_stats(values, 0.9), quantile_stats(values, 0.95))
