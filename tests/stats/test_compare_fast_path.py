"""The scalar fast path of ``compare`` (issue #14, item 12) gives what the vectorised
``compare_many`` gives, in every method and alternative, and scipy's Welch test where that
applies; degenerate data and other statistics types take the vectorised path."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pytest
from scipy import stats as scipy_stats

from abflow.stats import GaussianPrior, RatioStats, SampleStats, compare, compare_many
from abflow.stats.scalar import compare_scalar

OPTIONS: list[dict[str, Any]] = [
    {"method": method, "relative": relative, "alternative": alternative, "margin": margin}
    for method in ("frequentist", "sequential", "bayesian")
    for relative in (True, False)
    for alternative, margin in (("two-sided", None), ("greater", None), ("less", 0.02))
]


def _pairs(rng: np.random.Generator) -> list[tuple[SampleStats, SampleStats]]:
    """Means (some with a negative mean, from 2 units) and proportions (from 202 units)."""
    pairs = []
    for _ in range(30):
        n_c, n_t = (int(k) for k in rng.integers(2, 20_000, 2))
        loc = rng.normal(0, 10)
        x_c, x_t = rng.normal(loc, 3, n_c), rng.normal(loc + rng.normal(0, 0.5), 3, n_t)
        pairs.append((SampleStats.from_values(x_c), SampleStats.from_values(x_t)))
        p = rng.uniform(0.05, 0.8)
        n_c, n_t = n_c + 200, n_t + 200
        pairs.append(
            (
                SampleStats.proportion(n_c, int(rng.binomial(n_c, p))),
                SampleStats.proportion(n_t, int(rng.binomial(n_t, p * rng.uniform(0.8, 1.2)))),
            )
        )
    return pairs


def _assert_same(fast: Any, slow: Any) -> None:
    for field in dataclasses.fields(slow):
        a, b = getattr(fast, field.name), getattr(slow, field.name)
        if isinstance(b, float) and not (math.isnan(b) or math.isinf(b)):
            assert a == pytest.approx(b, rel=1e-12, abs=1e-300), field.name
        elif isinstance(b, float) and math.isnan(b):
            assert math.isnan(a), field.name
        else:
            assert a == b, field.name


@pytest.mark.parametrize("options", OPTIONS)
def test_fast_path_matches_compare_many(rng: np.random.Generator, options: dict[str, Any]) -> None:
    taken = 0
    for control, treatment in _pairs(rng):
        kwargs = {**options, "alpha": 0.05, "prior": None, "tuning_sample_size": 5000.0}
        fast = compare_scalar(control, treatment, **kwargs)
        [slow] = compare_many([control], [treatment], **options)
        assert fast is not None  # every generated pair is regular: the fast path applies
        taken += 1
        _assert_same(fast, slow)
        _assert_same(compare(control, treatment, **options), slow)
    assert taken == 60


def test_fast_path_matches_scipy_welch(rng: np.random.Generator) -> None:
    for control, treatment in _pairs(rng):
        got = compare(control, treatment, relative=False)
        reference = scipy_stats.ttest_ind_from_stats(
            treatment.mean,
            math.sqrt(treatment.variance),
            treatment.n,
            control.mean,
            math.sqrt(control.variance),
            control.n,
            equal_var=False,
        )
        assert got.p_value == pytest.approx(reference.pvalue, rel=1e-8, abs=1e-300)


def test_bayesian_prior_and_small_alpha_agree(rng: np.random.Generator) -> None:
    prior = GaussianPrior(0.01, 0.05**2)
    for control, treatment in _pairs(rng)[:10]:
        for alpha in (0.2, 1e-9):
            slow = compare_many([control], [treatment], method="bayesian", prior=prior, alpha=alpha)
            fast = compare(control, treatment, method="bayesian", prior=prior, alpha=alpha)
            _assert_same(fast, slow[0])
            [slow_t] = compare_many([control], [treatment], alpha=alpha)
            _assert_same(compare(control, treatment, alpha=alpha), slow_t)


@pytest.mark.parametrize(
    ("control", "treatment", "code"),
    [
        (SampleStats(1, 1.0, 1.0), SampleStats(10, 5.0, 5.0), "too_few_units"),
        (SampleStats(10, 0.0, 0.0), SampleStats(10, 5.0, 5.0), "zero_control_mean"),
        (SampleStats(10, 10.0, 10.0), SampleStats(10, 10.0, 10.0), "zero_variance"),
    ],
)
def test_degenerate_pairs_take_the_vectorised_path(
    control: SampleStats, treatment: SampleStats, code: str
) -> None:
    kwargs: dict[str, Any] = {
        "relative": True,
        "method": "frequentist",
        "alpha": 0.05,
        "alternative": "two-sided",
        "margin": None,
        "prior": None,
        "tuning_sample_size": 5000.0,
    }
    assert compare_scalar(control, treatment, **kwargs) is None
    got = compare(control, treatment)
    assert got.error_code == code
    _assert_same(got, compare_many([control], [treatment])[0])


def test_other_statistics_take_the_vectorised_path() -> None:
    ratio = RatioStats(100, 30.0, 50.0, 200.0, 500.0, 90.0)
    kwargs: dict[str, Any] = {
        "relative": True,
        "method": "frequentist",
        "alpha": 0.05,
        "alternative": "two-sided",
        "margin": None,
        "prior": None,
        "tuning_sample_size": 5000.0,
    }
    assert compare_scalar(ratio, ratio, **kwargs) is None
    assert compare(ratio, ratio).effect == 0.0
