"""Quantiles read off bins, against numpy on the raw values and a coverage simulation."""

from __future__ import annotations

import numpy as np
import pytest

from abflow.analysis.quantiles import compare_binned_quantiles, quantile_from_bins
from abflow.errors import InvalidArgumentError
from abflow.spec import MetricSpec

WIDTH = 0.25


def _bins(values: np.ndarray, width: float = WIDTH) -> list[tuple[float, int]]:
    index, counts = np.unique(np.floor(values / width).astype(int), return_counts=True)
    return [(float(i) * width, int(n)) for i, n in zip(index, counts, strict=True)]


@pytest.mark.parametrize("q", [0.5, 0.9, 0.95, 0.99])
def test_binned_quantile_is_within_one_bin_of_numpy(rng: np.random.Generator, q: float) -> None:
    values = rng.gamma(4.0, 3.0, size=20_000)
    assert abs(quantile_from_bins(_bins(values), WIDTH, q) - np.quantile(values, q)) <= WIDTH


def test_empty_bins_give_nan_and_bad_quantile_raises() -> None:
    assert np.isnan(quantile_from_bins([], WIDTH, 0.5))
    with pytest.raises(InvalidArgumentError):
        quantile_from_bins([(0.0, 3)], WIDTH, 1.5)


def test_difference_interval_covers_truth_about_95_percent(rng: np.random.Generator) -> None:
    """Two samples from one gamma: the relative P90 difference is 0 in truth."""
    reps, covered, rejected = 300, 0, 0
    for _ in range(reps):
        a, b = rng.gamma(4.0, 3.0, size=3000), rng.gamma(4.0, 3.0, size=3000)
        result = compare_binned_quantiles(_bins(a), _bins(b), width=WIDTH, q=0.9)
        covered += result.ci_low <= 0 <= result.ci_high
        rejected += result.p_value < 0.05
    assert 0.91 <= covered / reps <= 0.99
    assert rejected / reps <= 0.09


def test_a_real_shift_is_detected(rng: np.random.Generator) -> None:
    a, b = rng.gamma(4.0, 3.0, size=5000), rng.gamma(4.0, 3.3, size=5000)
    result = compare_binned_quantiles(_bins(a), _bins(b), width=WIDTH, q=0.9, relative=True)
    truth = 0.1  # scaling a gamma by 1.1 scales every quantile by 1.1
    assert result.ci_low <= truth <= result.ci_high
    assert result.p_value < 0.001


def test_too_few_values_is_an_error_code_not_a_crash() -> None:
    result = compare_binned_quantiles([(1.0, 1)], [(1.0, 5)], width=WIDTH, q=0.5)
    assert result.error_code == "too_few_units"


def test_cost_metric_takes_a_price_per_second_of_latency() -> None:
    metric = MetricSpec(name="cost", kind="cost", cost_per_1000=1.5, cost_per_second=0.2)
    assert metric.cost_per_second == 0.2
    with pytest.raises(ValueError, match="cost_per_second"):
        MetricSpec(name="cost", kind="cost", cost_per_second=-1.0)
