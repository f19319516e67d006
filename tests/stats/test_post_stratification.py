"""Post-stratification (issue #14, item 9) against independent references: gbstats' own
post-stratification test numbers (GrowthBook's packages/stats/tests/frequentist/
test_post_strat.py: five cells of means and of ratios, absolute and relative), statsmodels'
OLS with cell indicators and their interaction with the arm (Lin's regression adjustment,
HC2 standard errors), the weighted cell means and their variance written out here, and a
simulation of the variance it removes."""

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
    # the estimated cell shares vary too (multinomial): Cov(M_c, M_t) gets that term
    means = np.array(
        [[y[(cell == k) & (treated == arm)].mean() for k in range(3)] for arm in (0, 1)]
    )
    shares = (np.diag(weights) - np.outer(weights, weights)) / len(y)
    cov = means @ shares @ means.T + np.diag([var[0], var[1]])
    gradient = np.array([-mean_t / mean_c**2, 1 / mean_c])
    assert got.standard_error == pytest.approx(math.sqrt(gradient @ cov @ gradient), rel=1e-9)


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
    # numerator and denominator means are weighted separately (as gbstats does), then divided
    w = [(sessions[0].size + sessions[1].size) / 2000, (sessions[2].size + sessions[3].size) / 2000]

    def arm(i: int, j: int) -> float:
        top = w[0] * clicks[i].mean() + w[1] * clicks[j].mean()
        return top / (w[0] * sessions[i].mean() + w[1] * sessions[j].mean())

    assert got.effect == pytest.approx(arm(1, 3) - arm(0, 2), rel=1e-12)

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


def test_a_ratio_whose_numerators_are_all_0_or_1_has_the_same_error_as_any_other(
    rng: np.random.Generator,
) -> None:
    """At most one order per user: a cell's numerator holds only 0 and 1. Its variance was
    taken as a proportion's, p(1 - p) over n, beside a covariance over n - 1, and the
    standard error came out 6.5 % too small; nudging one value by 1e-9 restored it."""

    def cells(p: float) -> tuple[list[RatioStats], list[RatioStats]]:
        binary, nudged = [], []
        for _ in range(2):
            d = rng.poisson(2, 8) + 1.0
            m = (rng.random(8) < p).astype(float)
            binary.append(RatioStats.from_values(m, d))
            nudged.append(RatioStats.from_values(m + 1e-9 * (np.arange(8) == 0), d))
        return binary, nudged

    (control, control_nudged), (treatment, treatment_nudged) = cells(0.4), cells(0.5)
    got = compare_post_stratified(control, treatment, relative=False)
    smooth = compare_post_stratified(control_nudged, treatment_nudged, relative=False)
    assert got.standard_error == pytest.approx(smooth.standard_error, rel=1e-6)
    assert got.p_value == pytest.approx(smooth.p_value, rel=1e-5)


# gbstats' test cells: (n, sum, sum of squares) of the numerator, then of the denominator and
# the sum of products for ratios; control first. Means use the numerator alone.
GBSTATS_CONTROL = [
    (21, 330.0696210595999, 5377.811252605509, 890.9766550739607, 38220.95223835553, 14263.937571840695),
    (65, 1391.96628040659, 30546.63404187155, 2769.8126179473184, 118719.96077578884, 59924.702385890436),
    (102, 2916.824124651419, 86396.06886690554, 4445.780384331884, 195387.7733842407, 129041.55268673625),
    (151, 5172.587929941052, 182453.04528037464, 6510.170220892494, 283094.7243365024, 226127.20135744457),
    (160, 6539.348445231273, 274981.98909352464, 6906.305872710853, 300900.3106781779, 286483.9732935189),
]  # fmt: skip
GBSTATS_TREATMENT = [
    (42, 708.1220000911836, 12249.255519049513, 1745.9858250014954, 73194.53424221886, 29826.620793423102),
    (75, 1807.4703052657744, 45000.287664918586, 3184.8395612061063, 136710.92474497214, 78119.14871556411),
    (101, 3104.5399914554023, 98365.40553530994, 4235.277718489282, 179690.4720421368, 132444.36911739354),
    (121, 4613.696610070716, 180520.64781229294, 5079.943060454901, 215529.32009367683, 196562.8269130501),
    (162, 7431.953259880505, 349244.6690736718, 6899.004661928157, 296839.44355002965, 321057.8410309036),
]  # fmt: skip
GBSTATS_EXPECTED = {  # (kind, relative) -> (point estimate, standard error)
    ("mean", False): (3.548094377986586, 0.37634374823059685),
    ("mean", True): (0.10994584851937336, 0.012225394656480164),
    ("ratio", False): (0.10008903417216031, 0.005071004003792392),
    ("ratio", True): (0.13371299783026003, 0.007131233706378072),
}


def _gbstats_cells(kind: str) -> tuple[list[SampleStats | RatioStats], ...]:
    def cell(row: tuple[float, ...]) -> SampleStats | RatioStats:
        if kind == "mean":
            return SampleStats(row[0], row[1], row[2])
        return RatioStats(row[0], row[1], row[2], row[3], row[4], row[5])

    return [cell(r) for r in GBSTATS_CONTROL], [cell(r) for r in GBSTATS_TREATMENT]


@pytest.mark.parametrize(("kind", "relative"), list(GBSTATS_EXPECTED))
def test_gbstats_post_stratification_numbers(kind: str, relative: bool) -> None:
    controls, treatments = _gbstats_cells(kind)
    got = compare_post_stratified(controls, treatments, relative=relative)
    effect, se = GBSTATS_EXPECTED[(kind, relative)]
    assert got.method == "post-stratified"
    assert got.effect == pytest.approx(effect, rel=1e-12)
    assert got.standard_error == pytest.approx(se, rel=1e-12)
