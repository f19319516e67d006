"""Post-stratification (issue #14, item 9) against independent references: statsmodels' OLS
with cell indicators and their interaction with the arm (Lin's regression adjustment, HC2
standard errors), the weighted cell means written out here, and a simulation of the
variance it removes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm

from abflow.errors import InvalidArgumentError
from abflow.stats import RatioStats, SampleStats, compare
from abflow.stats.poststrat import compare_post_stratified

CELL_MEANS = (5.0, 10.0, 20.0)  # three countries with very different spend


def _experiment(
    rng: np.random.Generator, n: int, lift: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cell, arm (1 = treatment) and outcome of ``n`` units."""
    cell = rng.choice(len(CELL_MEANS), n, p=[0.5, 0.3, 0.2])
    treated = rng.integers(0, 2, n)
    outcome = np.asarray(CELL_MEANS)[cell] * (1 + lift * treated) + rng.normal(0, 2.0, n)
    return cell, treated, outcome


def _cells(
    cell: np.ndarray, treated: np.ndarray, y: np.ndarray
) -> tuple[list[SampleStats], list[SampleStats]]:
    controls = [SampleStats.from_values(y[(cell == k) & (treated == 0)]) for k in range(3)]
    treatments = [SampleStats.from_values(y[(cell == k) & (treated == 1)]) for k in range(3)]
    return controls, treatments


def test_absolute_effect_is_lins_regression_estimate(rng: np.random.Generator) -> None:
    cell, treated, y = _experiment(rng, 3_000, 0.05)
    got = compare_post_stratified(*_cells(cell, treated, y), relative=False)
    dummies = np.column_stack([(cell == k).astype(float) for k in (1, 2)])
    centred = dummies - dummies.mean(axis=0)
    design = sm.add_constant(np.column_stack([treated, dummies, treated[:, None] * centred]))
    ols = sm.OLS(y, design).fit(cov_type="HC2")
    assert got.effect == pytest.approx(ols.params[1], rel=1e-9)
    assert got.standard_error == pytest.approx(ols.bse[1], rel=0.01)
    assert got.ci_low < got.effect < got.ci_high
    assert got.p_value is not None
    assert got.p_value < 1e-6
    assert got.method == "post-stratified"


def test_relative_effect_of_weighted_cell_means(rng: np.random.Generator) -> None:
    cell, treated, y = _experiment(rng, 3_000, 0.05)
    got = compare_post_stratified(*_cells(cell, treated, y))
    weights = np.array([np.mean(cell == k) for k in range(3)])
    mean_c = sum(weights[k] * y[(cell == k) & (treated == 0)].mean() for k in range(3))
    mean_t = sum(weights[k] * y[(cell == k) & (treated == 1)].mean() for k in range(3))
    assert got.effect == pytest.approx(mean_t / mean_c - 1, rel=1e-9)
    # delta method on two independent weighted means
    var = {
        arm: sum(
            weights[k] ** 2
            * np.var(y[(cell == k) & (treated == arm)], ddof=1)
            / np.sum((cell == k) & (treated == arm))
            for k in range(3)
        )
        for arm in (0, 1)
    }
    se = math.sqrt(var[1] / mean_c**2 + mean_t**2 * var[0] / mean_c**4)
    assert got.standard_error == pytest.approx(se, rel=1e-9)


def test_it_removes_the_variance_the_cells_explain(rng: np.random.Generator) -> None:
    effects, plain, covered = [], [], 0
    reps = 400
    for _ in range(reps):
        cell, treated, y = _experiment(rng, 1_000, 0.0)
        controls, treatments = _cells(cell, treated, y)
        result = compare_post_stratified(controls, treatments, relative=False)
        effects.append(result.effect)
        covered += result.ci_low <= 0.0 <= result.ci_high
        pooled_c = SampleStats.from_values(y[treated == 0])
        pooled_t = SampleStats.from_values(y[treated == 1])
        plain.append(compare(pooled_c, pooled_t, relative=False).effect)
    spread, plain_spread = np.std(effects, ddof=1), np.std(plain, ddof=1)
    assert spread < 0.5 * plain_spread  # cells explain most of the variance here
    assert abs(np.mean(effects)) < 3 * spread / math.sqrt(reps)
    assert 0.92 <= covered / reps <= 0.98


def test_ratio_cells_and_the_single_cell_fallback(rng: np.random.Generator) -> None:
    sessions = [rng.poisson(3.0, 500) + 1 for _ in range(4)]
    clicks = [rng.binomial(s, p) for s, p in zip(sessions, (0.1, 0.1, 0.3, 0.32), strict=True)]
    arms = [RatioStats.from_values(c, s) for c, s in zip(clicks, sessions, strict=True)]
    got = compare_post_stratified([arms[0], arms[2]], [arms[1], arms[3]], relative=False)
    ratio = [c.sum() / s.sum() for c, s in zip(clicks, sessions, strict=True)]
    assert got.effect == pytest.approx(0.5 * (ratio[1] - ratio[0]) + 0.5 * (ratio[3] - ratio[2]))

    one = compare_post_stratified([arms[0]], [arms[1]])
    assert one.method == "frequentist (single-cell fallback)"
    assert one.effect == pytest.approx(compare(arms[0], arms[1]).effect, rel=1e-12)
    thin = compare_post_stratified(
        [SampleStats.proportion(500, 50), SampleStats.proportion(1, 1)],
        [SampleStats.proportion(500, 60), SampleStats.proportion(3, 1)],
    )
    assert thin.method == "frequentist (single-cell fallback)"
    assert thin.effect == pytest.approx(
        compare(SampleStats.proportion(501, 51), SampleStats.proportion(503, 61)).effect, rel=1e-12
    )
    with pytest.raises(InvalidArgumentError, match="one control and one treatment"):
        compare_post_stratified([arms[0]], [])
