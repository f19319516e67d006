"""A quantile comparison where one arm's interval collapses (all values around its quantile
equal) is refused (issue #14, item 8), as gbstats refuses it, instead of a confident result
from the other arm's spread alone."""

from __future__ import annotations

import math

import numpy as np
import pytest

from abflow.stats.quantile import compare_quantiles, quantile_stats

gb_stats = pytest.importorskip("gbstats.models.statistics", reason="gbstats 0.8.0 not installed")
gb_freq = pytest.importorskip("gbstats.frequentist.tests")
gb_messages = pytest.importorskip("gbstats.messages")


def _gb(values: np.ndarray, q: float) -> object:
    ours = quantile_stats(values, q)
    return gb_stats.QuantileStatistic(
        n=int(ours.n),
        n_star=int(ours.n),
        nu=q,
        quantile_hat=ours.quantile,
        quantile_lower=ours.lower,
        quantile_upper=ours.upper,
    )


@pytest.mark.parametrize("relative", [False, True])
def test_one_collapsed_arm_is_refused_like_gbstats(
    rng: np.random.Generator, relative: bool
) -> None:
    varying = rng.lognormal(3.0, 0.5, 600)
    collapsed = np.full(600, 20.0)  # a timeout: every request took 20 ms
    for control, treatment in ((varying, collapsed), (collapsed, varying)):
        got = compare_quantiles(control, treatment, 0.9, relative=relative)
        assert got.error_code == "zero_quantile_spread"
        assert math.isnan(got.effect)
        assert math.isnan(got.ci_low)
        assert math.isnan(got.ci_high)
        assert not got.is_significant
        config = gb_freq.FrequentistConfig(difference_type="relative" if relative else "absolute")
        theirs = gb_freq.TwoSidedTTest(_gb(control, 0.9), _gb(treatment, 0.9), config)
        assert theirs.compute_result().error_message == gb_messages.ZERO_NEGATIVE_VARIANCE_MESSAGE


def test_two_varying_arms_still_agree_with_gbstats_spread(rng: np.random.Generator) -> None:
    control, treatment = rng.lognormal(3.0, 0.5, 600), rng.lognormal(3.1, 0.5, 600)
    got = compare_quantiles(control, treatment, 0.9)
    assert got.error_code is None
    theirs = gb_freq.TwoSidedTTest(
        _gb(control, 0.9),
        _gb(treatment, 0.9),
        gb_freq.FrequentistConfig(difference_type="absolute"),
    ).compute_result()
    assert theirs.error_message is None
    assert got.effect == pytest.approx(theirs.expected, rel=1e-9)
