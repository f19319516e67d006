"""Relative lift with a negative control mean keeps the sign of the difference (issue #14,
item 6): ``(mean_t - mean_c) / |mean_c|``, as current GrowthBook does, in every method.

References: the delta-method formula written here with scipy's t quantile, and gbstats 0.8.0
(which still divides by the signed mean, so its relative result is ours mirrored).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy import stats as scipy_stats

from abflow.stats import CupedStats, RatioStats, SampleStats, compare
from abflow.stats.quantile import compare_quantiles

gb_freq = pytest.importorskip("gbstats.frequentist.tests", reason="gbstats 0.8.0 not installed")
gb_stats = pytest.importorskip("gbstats.models.statistics")


def _losses(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A loss per unit (negative mean); the treatment loses less: a rise of about 0.5."""
    control = rng.normal(-1.0, 0.8, 2_000)
    treatment = rng.normal(-0.5, 0.8, 1_800)
    return control, treatment


def _welch_relative(c: np.ndarray, t: np.ndarray, alpha: float) -> tuple[float, float, float]:
    """Relative lift over |mean_c|, its delta-method interval (Welch df) and p-value."""
    mc, mt = c.mean(), t.mean()
    vc, vt = c.var(ddof=1), t.var(ddof=1)
    effect = (mt - mc) / abs(mc)
    se = math.sqrt(vt / (mc**2 * t.size) + vc * mt**2 / (mc**4 * c.size))
    a, b = vt / t.size, vc / c.size
    df = (a + b) ** 2 / (a**2 / (t.size - 1) + b**2 / (c.size - 1))
    half = scipy_stats.t.ppf(1 - alpha / 2, df) * se
    return effect, effect - half, 2 * scipy_stats.t.sf(abs(effect) / se, df)


def test_frequentist_relative_lift_keeps_its_sign(rng: np.random.Generator) -> None:
    c, t = _losses(rng)
    got = compare(SampleStats.from_values(c), SampleStats.from_values(t))
    effect, low, p_value = _welch_relative(c, t, 0.05)
    assert effect > 0.4  # about +0.5: the loss shrank by half
    assert got.effect == pytest.approx(effect, rel=1e-12)
    assert got.ci_low == pytest.approx(low, rel=1e-9)
    assert got.ci_high == pytest.approx(2 * effect - low, rel=1e-9)
    assert got.p_value == pytest.approx(p_value, rel=1e-6, abs=1e-300)
    # One-sided: "greater" is the direction the data moved, so its p-value is tiny.
    greater = compare(SampleStats.from_values(c), SampleStats.from_values(t), alternative="greater")
    assert greater.p_value is not None
    assert greater.p_value < 1e-12


def test_frequentist_and_sequential_are_gbstats_mirrored(rng: np.random.Generator) -> None:
    c, t = _losses(rng)
    ours_c, ours_t = SampleStats.from_values(c), SampleStats.from_values(t)
    gb_c = gb_stats.SampleMeanStatistic(n=c.size, sum=ours_c.sum, sum_squares=ours_c.sum_squares)
    gb_t = gb_stats.SampleMeanStatistic(n=t.size, sum=ours_t.sum, sum_squares=ours_t.sum_squares)
    fixed = gb_freq.TwoSidedTTest(gb_c, gb_t, gb_freq.FrequentistConfig()).compute_result()
    ours = compare(ours_c, ours_t)
    assert fixed.expected < 0  # gbstats 0.8.0: divided by the signed mean
    assert_allclose(
        [ours.effect, ours.ci_low, ours.ci_high],
        [-fixed.expected, -fixed.ci[1], -fixed.ci[0]],
        rtol=1e-9,
    )
    config = gb_freq.SequentialConfig(sequential_tuning_parameter=5000.0)
    seq = gb_freq.SequentialTwoSidedTTest(gb_c, gb_t, config).compute_result()
    ours_seq = compare(ours_c, ours_t, method="sequential")
    assert_allclose(
        [ours_seq.effect, ours_seq.ci_low, ours_seq.ci_high],
        [-seq.expected, -seq.ci[1], -seq.ci[0]],
        rtol=1e-9,
    )


def test_bayesian_relative_lift_keeps_its_sign(rng: np.random.Generator) -> None:
    c, t = _losses(rng)
    got = compare(SampleStats.from_values(c), SampleStats.from_values(t), method="bayesian")
    effect, low, _ = _welch_relative(c, t, 0.05)
    se = (effect - low) / scipy_stats.t.ppf(0.975, 3_000)  # about the normal sd
    assert got.effect == pytest.approx(effect, rel=1e-12)  # flat prior: the posterior mean
    assert got.chance_to_win is not None
    assert got.chance_to_win > 0.999  # the treatment loses less: it wins
    assert got.ci_low == pytest.approx(effect - 1.959964 * se, rel=1e-3)


def test_cuped_and_ratio_relative_lifts_keep_their_sign(rng: np.random.Generator) -> None:
    pre_c, pre_t = rng.normal(-1.0, 0.8, 2_000), rng.normal(-1.0, 0.8, 1_800)
    post_c = pre_c + rng.normal(0.0, 0.3, pre_c.size)
    post_t = pre_t + 0.5 + rng.normal(0.0, 0.3, pre_t.size)
    cuped = compare(CupedStats.from_values(post_c, pre_c), CupedStats.from_values(post_t, pre_t))
    absolute = compare(
        CupedStats.from_values(post_c, pre_c),
        CupedStats.from_values(post_t, pre_t),
        relative=False,
    )
    assert cuped.effect == pytest.approx(absolute.effect / abs(post_c.mean()), rel=1e-12)
    assert cuped.effect > 0.3

    # A ratio with a negative numerator: net margin per order (refunds exceed sales).
    orders_c, orders_t = rng.poisson(3.0, 2_000) + 1, rng.poisson(3.0, 1_800) + 1
    margin_c = orders_c * rng.normal(-2.0, 1.0, orders_c.size)
    margin_t = orders_t * rng.normal(-1.0, 1.0, orders_t.size)
    ratio = compare(
        RatioStats.from_values(margin_c, orders_c), RatioStats.from_values(margin_t, orders_t)
    )
    r_c, r_t = margin_c.sum() / orders_c.sum(), margin_t.sum() / orders_t.sum()
    assert r_c < 0
    assert ratio.effect == pytest.approx((r_t - r_c) / abs(r_c), rel=1e-12)
    assert ratio.effect > 0.3


def test_quantile_relative_lift_keeps_its_sign(rng: np.random.Generator) -> None:
    c, t = _losses(rng)
    got = compare_quantiles(c, t, 0.9, relative=True)
    q_c, q_t = np.quantile(c, 0.9), np.quantile(t, 0.9)
    assert q_c < 0
    assert got.effect == pytest.approx((q_t - q_c) / abs(q_c), rel=1e-12)
    assert got.effect > 0.3
