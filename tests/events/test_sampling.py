"""The monitoring sampler: Bernoulli at the configured rate, bottom-k per variant and window."""

from __future__ import annotations

import random

import numpy as np
import pytest
from scipy import stats

from abflow.events.sampling import FeatureSampler, window_start
from abflow.spec import MonitoringSpec

ROW = np.array([[0.5, -1.0, 2.0]])


def offer_many(
    sampler: FeatureSampler, config: MonitoringSpec, n: int, *, ts: float = 3600.0
) -> list[dict[str, object]]:
    written = []
    for i in range(n):
        written += sampler.offer(
            config=config,
            experiment_key="fraud",
            phase=1,
            variant="challenger",
            model_version="7",
            request_id=f"r{i}",
            rows=ROW,
            outputs=[float(i)],
            ts=ts,
        )
    return written


def test_rows_are_kept_at_the_sample_rate() -> None:
    config = MonitoringSpec(sample_rate=0.05, max_samples_per_window=100_000)
    written = offer_many(FeatureSampler(seed=1), config, 20_000)
    # Every kept row is written while the reservoir is not full: a binomial count.
    test = stats.binomtest(len(written), 20_000, 0.05)
    assert test.pvalue > 1e-3
    assert all(row["priority"] < 0.05 for row in written)  # type: ignore[operator]


def test_writes_per_window_follow_the_bottom_k_expectation() -> None:
    """Row i (1-based) is written iff its draw is among the k lowest of the first i, which
    happens with probability min(1, k / i): the expected count is k (1 + H_n - H_k)."""
    n, k, runs = 2_000, 20, 60
    counts = [
        len(
            offer_many(
                FeatureSampler(seed=seed),
                MonitoringSpec(sample_rate=1.0, max_samples_per_window=k),
                n,
            )
        )
        for seed in range(runs)
    ]
    expected = k + sum(k / i for i in range(k + 1, n + 1))
    variance = sum((k / i) * (1 - k / i) for i in range(k + 1, n + 1))
    z = (np.mean(counts) - expected) / np.sqrt(variance / runs)
    assert abs(z) < 4


def test_the_lowest_priorities_are_a_uniform_sample_of_the_window() -> None:
    """Across runs, the rows a monitor reads (the k of lowest priority) are uniform over the
    window's rows: chi-square of their positions against equal shares."""
    n, k = 500, 10
    positions = []
    for seed in range(150):
        written = offer_many(
            FeatureSampler(seed=seed), MonitoringSpec(sample_rate=1.0, max_samples_per_window=k), n
        )
        chosen = sorted(written, key=lambda row: row["priority"])[:k]  # type: ignore[arg-type, return-value]
        positions += [int(row["request_id"][1:]) for row in chosen]  # type: ignore[index]
    counts = np.bincount(np.array(positions) * 10 // n, minlength=10)
    assert stats.chisquare(counts).pvalue > 1e-3


def test_two_replicas_lowest_priorities_equal_one_reservoir_over_both() -> None:
    config = MonitoringSpec(sample_rate=1.0, max_samples_per_window=15)
    a = offer_many(FeatureSampler(seed=3), config, 400)
    b = offer_many(FeatureSampler(seed=4), config, 400)
    union = sorted(row["priority"] for row in a + b)[:15]  # type: ignore[type-var]
    # The reference: both replicas' draws (one per row, in order), the 15 lowest of all.
    draws = []
    for seed in (3, 4):
        generator = random.Random(seed)
        draws += [generator.random() for _ in range(400)]
    assert union == sorted(draws)[:15]


def test_a_new_window_starts_a_new_reservoir() -> None:
    config = MonitoringSpec(sample_rate=1.0, max_samples_per_window=10, window_hours=1.0)
    sampler = FeatureSampler(seed=5)
    first = offer_many(sampler, config, 10, ts=3600.0 * 5 + 10)
    second = offer_many(sampler, config, 10, ts=3600.0 * 6 + 10)
    assert len(first) == len(second) == 10  # each window's first k rows are all kept
    assert {row["window_start"] for row in first} == {window_start(3600.0 * 5 + 10, 1.0)}
    assert {row["window_start"] for row in second} == {3600.0 * 6}


def test_a_sample_row_holds_the_features_and_score() -> None:
    config = MonitoringSpec(sample_rate=1.0)
    (row,) = offer_many(FeatureSampler(seed=6), config, 1)
    assert row["features_json"] == "[0.5,-1.0,2.0]"
    assert row["score"] == 0.0
    assert row["variant"] == "challenger"
    assert row["model_version"] == "7"


@pytest.mark.parametrize("rate", [0.0])
def test_rate_zero_samples_nothing(rate: float) -> None:
    assert offer_many(FeatureSampler(seed=7), MonitoringSpec(sample_rate=rate), 1000) == []
