"""Drift measures against independent references: scipy, brute force and hand-worked values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps
from scipy.spatial.distance import jensenshannon

from abflow.drift import (
    PSI_FLOOR,
    chi_square_test,
    compare_feature,
    jensen_shannon,
    ks_test,
    population_stability_index,
    wasserstein_normed,
)
from abflow.drift.binning import bin_counts, category_counts, quantile_edges
from abflow.errors import InvalidArgumentError

counts = st.lists(st.integers(0, 1000), min_size=2, max_size=12)


def test_psi_by_hand() -> None:
    # shares (0.25, 0.25, 0.5) -> (0.5, 0.25, 0.25): 0.25 ln 2 + 0 + (-0.25) ln(1/2) = 0.5 ln 2
    got = population_stability_index(np.array([25, 25, 50]), np.array([50, 25, 25]))
    assert got == pytest.approx(0.5 * math.log(2), rel=1e-12)


def test_psi_floors_empty_bins() -> None:
    got = population_stability_index(np.array([10, 0]), np.array([5, 5]))
    expected = (0.5 - 1.0) * math.log(0.5 / 1.0) + (0.5 - PSI_FLOOR) * math.log(0.5 / PSI_FLOOR)
    assert got == pytest.approx(expected, rel=1e-12)


@given(counts, st.data())
@settings(max_examples=200, deadline=None)
def test_psi_is_symmetric_and_zero_only_for_equal_shares(
    ref: list[int], data: st.DataObject
) -> None:
    cur = data.draw(st.lists(st.integers(0, 1000), min_size=len(ref), max_size=len(ref)))
    if sum(ref) == 0 or sum(cur) == 0:
        return
    a = population_stability_index(np.array(ref), np.array(cur))
    b = population_stability_index(np.array(cur), np.array(ref))
    assert a == pytest.approx(b, rel=1e-9, abs=1e-12)
    assert a >= 0
    assert population_stability_index(np.array(ref), np.array(ref) * 3) == pytest.approx(
        0, abs=1e-15
    )


@given(counts, st.data())
@settings(max_examples=200, deadline=None)
def test_jensen_shannon_matches_scipy(ref: list[int], data: st.DataObject) -> None:
    cur = data.draw(st.lists(st.integers(0, 1000), min_size=len(ref), max_size=len(ref)))
    if sum(ref) == 0 or sum(cur) == 0:
        return
    expected = float(jensenshannon(np.array(ref, float), np.array(cur, float), base=2))
    assert jensen_shannon(np.array(ref), np.array(cur)) == pytest.approx(expected, abs=1e-7)


def test_jensen_shannon_bounds() -> None:
    assert jensen_shannon(np.array([5, 0]), np.array([0, 7])) == pytest.approx(1.0)
    assert jensen_shannon(np.array([3, 4]), np.array([6, 8])) == pytest.approx(0.0, abs=1e-12)


@given(counts, st.data())
@settings(max_examples=200, deadline=None)
def test_chi_square_matches_scipy_contingency(ref: list[int], data: st.DataObject) -> None:
    cur = data.draw(st.lists(st.integers(0, 1000), min_size=len(ref), max_size=len(ref)))
    if sum(ref) == 0 or sum(cur) == 0:
        return
    got = chi_square_test(np.array(ref), np.array(cur))
    table = np.array([ref, cur])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        assert (got.statistic, got.p_value) == (0.0, 1.0)
        return
    expected = sps.chi2_contingency(table, correction=False)
    assert got.statistic == pytest.approx(expected.statistic, rel=1e-9, abs=1e-9)
    assert got.p_value == pytest.approx(expected.pvalue, rel=1e-7, abs=1e-12)


def _ks_by_brute_force(a: np.ndarray, b: np.ndarray) -> float:
    points = np.concatenate([a, b])
    return max(abs(np.mean(a <= x) - np.mean(b <= x)) for x in points)


@given(
    st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=40),
    st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=40),
)
@settings(max_examples=200, deadline=None)
def test_ks_statistic_is_the_largest_ecdf_gap(a: list[float], b: list[float]) -> None:
    got = ks_test(np.array(a), np.array(b))
    assert got.statistic == pytest.approx(_ks_by_brute_force(np.array(a), np.array(b)), abs=1e-12)
    assert 0 <= got.p_value <= 1


@given(st.integers(2, 50), st.integers(0, 2**32 - 1))
@settings(max_examples=100, deadline=None)
def test_wasserstein_of_equal_sizes_is_the_mean_sorted_gap(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 2, n)
    b = rng.normal(1, 3, n)
    expected = np.mean(np.abs(np.sort(a) - np.sort(b))) / np.std(a)
    assert wasserstein_normed(a, b) == pytest.approx(expected, rel=1e-9)


def test_wasserstein_constant_reference_uses_pooled_spread() -> None:
    assert wasserstein_normed(np.array([1.0, 1.0]), np.array([1.0])) == 0.0
    ref, cur = np.array([0.0, 0.0]), np.array([1.0, 1.0])
    assert wasserstein_normed(ref, cur) == pytest.approx(1.0 / 0.5)


def test_a_pure_shift_of_one_sd_is_one() -> None:
    rng = np.random.default_rng(7)
    ref = rng.normal(0, 1, 200_000)
    assert wasserstein_normed(ref, ref + 1.0) == pytest.approx(1.0, rel=0.01)


def test_ks_false_positive_rate_on_equal_distributions() -> None:
    """A/A: p < 0.05 in about 5 % of 600 pairs of samples from one distribution."""
    rng = np.random.default_rng(11)
    hits = sum(
        ks_test(rng.normal(size=300), rng.normal(size=300)).p_value < 0.05 for _ in range(600)
    )
    # Binomial(600, 0.05): mean 30, sd 5.3; the exact KS test is slightly conservative.
    assert 12 <= hits <= 48


def test_chi_square_false_positive_rate_on_equal_distributions() -> None:
    rng = np.random.default_rng(12)
    shares = [0.5, 0.3, 0.2]
    hits = 0
    for _ in range(600):
        ref = rng.multinomial(500, shares)
        cur = rng.multinomial(400, shares)
        hits += chi_square_test(ref, cur).p_value < 0.05
    assert 12 <= hits <= 48


def test_quantile_bins_hold_equal_shares_of_the_reference() -> None:
    rng = np.random.default_rng(3)
    ref = rng.lognormal(size=100_000)
    counts_ = bin_counts(ref, quantile_edges(ref, 10))
    assert counts_.sum() == ref.size
    assert np.allclose(counts_ / ref.size, 0.1, atol=0.001)


def test_ties_collapse_bins_and_edges_go_right() -> None:
    edges = quantile_edges(np.array([1.0, 1.0, 1.0, 2.0]), 4)
    # quantiles 1, 1, 1.25: the repeat is dropped, and the atom 1 gets a bin of its own
    assert list(edges) == [1.0, np.nextafter(1.0, 2.0), 1.25]
    assert list(bin_counts(np.array([0.5, 1.0, 3.0]), np.array([1.0, 2.0]))) == [1, 1, 1]


def test_category_counts_share_one_order() -> None:
    names, ref, cur = category_counts(["b", "a", "b"], ["c", "a"])
    assert names == ["a", "b", "c"]
    assert list(ref) == [1, 2, 0]
    assert list(cur) == [1, 0, 1]


@pytest.mark.parametrize(
    ("ref", "cur", "message"),
    [
        ([0, 0], [1, 1], "reference counts is empty"),
        ([1, 2], [1, 2, 3], "must match"),
        ([1, -1], [1, 1], "non-negative"),
        ([], [], "non-empty"),
    ],
)
def test_bad_counts_are_clear_errors(ref: list[int], cur: list[int], message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        population_stability_index(np.array(ref), np.array(cur))


def test_bad_samples_are_clear_errors() -> None:
    with pytest.raises(InvalidArgumentError, match="NaN or infinite"):
        ks_test(np.array([1.0, np.nan]), np.array([1.0]))
    with pytest.raises(InvalidArgumentError, match="non-empty"):
        wasserstein_normed(np.array([]), np.array([1.0]))
    with pytest.raises(InvalidArgumentError, match="at least 2"):
        quantile_edges(np.array([1.0]), 1)


@pytest.mark.parametrize("method", ["psi", "js"])
def test_a_constant_reference_sees_a_move_either_way(method: str) -> None:
    """Values above a reference atom must not share its bin (PSI was 0 up, 18 down)."""
    up = compare_feature("x", [0.0] * 50, [5.0] * 50, method=method).statistic
    down = compare_feature("x", [5.0] * 50, [0.0] * 50, method=method).statistic
    assert up == pytest.approx(down)
    # brute force: one bin holds the whole reference, another the whole current sample
    expected = 2 * (1 - PSI_FLOOR) * math.log(1 / PSI_FLOOR) if method == "psi" else 1.0
    assert up == pytest.approx(expected)


def test_values_above_a_tied_top_edge_get_their_own_bin() -> None:
    ref = np.array([0.0] * 80 + [1.0] * 20)
    edges = quantile_edges(ref, 10)
    # deciles 0 (x7), 0.2 (interpolated), 1: edges 0, 0+, 0.2, 1, 1+
    counts_ = bin_counts(np.array([-1.0, 0.0, 0.1, 0.5, 1.0, 1.5]), edges)
    # below the reference, the atom 0, two bins between the atoms, the atom 1, above it
    assert list(counts_) == [1, 1, 1, 1, 1, 1]


def test_continuous_bins_are_unchanged_by_atom_splitting() -> None:
    rng = np.random.default_rng(5)
    ref = rng.normal(size=1001)  # deciles land exactly on data values
    edges = quantile_edges(ref, 10)
    assert np.array_equal(edges, np.quantile(ref, np.arange(1, 10) / 10))
