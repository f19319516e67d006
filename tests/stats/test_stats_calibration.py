"""Calibration by simulation: error rates and coverage of the tests, from sufficient statistics.

Each experiment's statistics are drawn from their exact sampling distributions (binomial
counts; normal sums with chi-square or Wishart scatter), so thousands of experiments take
milliseconds and no raw rows are ever materialised.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

from abflow.stats import CupedStats, SampleStats, compare_many

Array = npt.NDArray[np.float64]


def _normal_stats(
    rng: np.random.Generator, n: int, mean: float, sd: float, size: int
) -> list[SampleStats]:
    """``size`` groups of ``n`` normal values, summarised without drawing the values."""
    sums = rng.normal(n * mean, sd * np.sqrt(n), size)
    scatter = sd**2 * rng.chisquare(n - 1, size)
    return [
        SampleStats(n, float(s), float(w + s * s / n)) for s, w in zip(sums, scatter, strict=True)
    ]


def _proportions(rng: np.random.Generator, n: int, p: float, size: int) -> list[SampleStats]:
    return [SampleStats.proportion(n, float(k)) for k in rng.binomial(n, p, size)]


def _rejection_rate(results: list) -> float:  # type: ignore[type-arg]
    return float(np.mean([r.p_value < r.alpha for r in results]))


def test_aa_false_positive_rate_is_alpha(rng: np.random.Generator) -> None:
    experiments = 5000
    for make in (
        lambda: _proportions(rng, 4000, 0.08, experiments),
        lambda: _normal_stats(rng, 300, 12.0, 6.0, experiments),
    ):
        control, treatment = make(), make()
        for relative in (True, False):
            rate = _rejection_rate(compare_many(control, treatment, relative=relative))
            assert 0.04 <= rate <= 0.06, (relative, rate)


def test_intervals_cover_the_true_effect(rng: np.random.Generator) -> None:
    experiments = 6000
    p_c, lift = 0.10, 0.05
    control = _proportions(rng, 8000, p_c, experiments)
    treatment = _proportions(rng, 8000, p_c * (1 + lift), experiments)
    for relative, truth in ((True, lift), (False, p_c * lift)):
        results = compare_many(control, treatment, relative=relative)
        cover = np.mean([r.ci_low <= truth <= r.ci_high for r in results])
        assert 0.94 <= cover <= 0.96, (relative, cover)
    control = _normal_stats(rng, 400, 20.0, 8.0, experiments)
    treatment = _normal_stats(rng, 350, 21.0, 11.0, experiments)  # unequal n and variance
    results = compare_many(control, treatment, relative=False)
    cover = np.mean([r.ci_low <= 1.0 <= r.ci_high for r in results])
    assert 0.94 <= cover <= 0.96, cover


def _cumulative_looks(
    rng: np.random.Generator, experiments: int, looks: int, batch: int
) -> list[list[SampleStats]]:
    """Per look, the cumulative statistics of every experiment (normal data, batches added)."""
    sums = rng.normal(0.0, np.sqrt(batch), (experiments, looks)).cumsum(axis=1)
    batch_sums = np.diff(sums, axis=1, prepend=0.0)
    within = rng.chisquare(batch - 1, (experiments, looks))  # scatter inside each batch
    squares = (within + batch_sums**2 / batch).cumsum(axis=1)
    # shift the metric from mean 0 to mean 5 so relative effects are defined: x -> x + 5
    n = batch * np.arange(1, looks + 1)
    shifted_sums = sums + 5.0 * n
    shifted_squares = squares + 10.0 * sums + 25.0 * n
    return [
        [
            SampleStats(float(n[j]), float(shifted_sums[i, j]), float(shifted_squares[i, j]))
            for i in range(experiments)
        ]
        for j in range(looks)
    ]


def test_sequential_survives_peeking_and_fixed_does_not(rng: np.random.Generator) -> None:
    experiments, looks, batch = 2000, 20, 250
    control = _cumulative_looks(rng, experiments, looks, batch)
    treatment = _cumulative_looks(rng, experiments, looks, batch)
    ever_fixed = np.zeros(experiments, bool)
    ever_sequential = np.zeros(experiments, bool)
    for c, t in zip(control, treatment, strict=True):
        fixed = compare_many(c, t)
        sequential = compare_many(c, t, method="sequential")
        ever_fixed |= np.array([r.p_value < 0.05 for r in fixed])
        ever_sequential |= np.array([r.p_value < 0.05 for r in sequential])
    print(
        f"peeking 20 looks: sequential {ever_sequential.mean():.4f}, fixed {ever_fixed.mean():.4f}"
    )
    assert ever_sequential.mean() <= 0.05
    assert ever_fixed.mean() > 0.10
    # a single look of the fixed test is still calibrated (same data, last look only)
    last = _rejection_rate(compare_many(control[-1], treatment[-1]))
    assert 0.03 <= last <= 0.07


def _cuped_stats(
    rng: np.random.Generator, n: int, mean: Array, cov: Array, size: int
) -> list[CupedStats]:
    """Bivariate normal (post, pre) samples summarised by sums and a Wishart scatter."""
    sums = rng.multivariate_normal(n * mean, n * cov, size)
    scatter = sps.wishart.rvs(df=n - 1, scale=cov, size=size, random_state=rng)
    products = scatter + sums[:, :, None] * sums[:, None, :] / n
    return [
        CupedStats(n, s[0], p[0, 0], s[1], p[1, 1], p[0, 1])
        for s, p in zip(sums, products, strict=True)
    ]


def test_cuped_narrows_intervals_without_bias(rng: np.random.Generator) -> None:
    experiments, n, rho, sd, effect = 4000, 500, 0.7, 4.0, 0.5
    cov = sd**2 * np.array([[1.0, rho], [rho, 1.0]])
    control = _cuped_stats(rng, n, np.array([10.0, 10.0]), cov, experiments)
    treatment = _cuped_stats(rng, n, np.array([10.0 + effect, 10.0]), cov, experiments)
    adjusted = compare_many(control, treatment, relative=False)
    plain = compare_many([c.post for c in control], [t.post for t in treatment], relative=False)
    width_ratio = np.mean([a.ci_high - a.ci_low for a in adjusted]) / np.mean(
        [p.ci_high - p.ci_low for p in plain]
    )
    assert abs(width_ratio - np.sqrt(1 - rho**2)) < 0.02
    estimates = np.array([a.effect for a in adjusted])
    assert abs(estimates.mean() - effect) < 3 * estimates.std() / np.sqrt(experiments)
    assert estimates.std() < 0.8 * np.std([p.effect for p in plain])
    cover = np.mean([a.ci_low <= effect <= a.ci_high for a in adjusted])
    assert 0.94 <= cover <= 0.96
    reduction = np.array([a.variance_reduction for a in adjusted])
    assert abs(reduction.mean() - rho**2) < 0.02
    relative = compare_many(control, treatment, relative=True)
    cover_rel = np.mean([r.ci_low <= effect / 10.0 <= r.ci_high for r in relative])
    assert 0.94 <= cover_rel <= 0.96
