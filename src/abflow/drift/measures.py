"""Distances and tests between two distributions of one feature (pure numpy/scipy).

Each answers a different question: PSI and Jensen-Shannon measure how far the binned shares
moved (bounded, comparable across features), the normalised Wasserstein distance how far the
values moved in units of the feature's spread, and the Kolmogorov-Smirnov and chi-square
tests whether a difference is more than sampling noise (with large samples they flag even
negligible shifts, which is why distances are the default there).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from abflow.errors import InvalidArgumentError

__all__ = [
    "PSI_FLOOR",
    "TestResult",
    "chi_square_test",
    "jensen_shannon",
    "ks_test",
    "population_stability_index",
    "wasserstein_normed",
]

PSI_FLOOR = 1e-4
"""Share given to an empty bin, so that PSI stays finite (log of zero otherwise)."""


@dataclass(frozen=True, slots=True)
class TestResult:
    """A test statistic and its p-value."""

    statistic: float
    p_value: float


def _shares(counts: np.ndarray, name: str) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size == 0:
        msg = f"{name} must be a non-empty 1-D array of counts"
        raise InvalidArgumentError(msg)
    if not np.all(np.isfinite(counts)) or np.any(counts < 0):
        msg = f"{name} must hold finite, non-negative counts"
        raise InvalidArgumentError(msg)
    total = float(counts.sum())
    if total <= 0:
        msg = f"{name} is empty (all counts are zero)"
        raise InvalidArgumentError(msg)
    shares: np.ndarray = counts / total
    return shares


def _paired_shares(reference: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref = _shares(reference, "reference counts")
    cur = _shares(current, "current counts")
    if ref.shape != cur.shape:
        msg = f"reference and current have {ref.size} and {cur.size} bins; they must match"
        raise InvalidArgumentError(msg)
    return ref, cur


def population_stability_index(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """PSI = Σ (c - r) · ln(c / r) over bins, empty bins counted as :data:`PSI_FLOOR`.

    Rule of thumb: below 0.1 stable, 0.1-0.25 a moderate shift, above 0.25 a major one.
    """
    ref, cur = _paired_shares(reference_counts, current_counts)
    ref = np.maximum(ref, PSI_FLOOR)
    cur = np.maximum(cur, PSI_FLOOR)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def jensen_shannon(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """Jensen-Shannon distance (square root of the divergence, base 2): 0 same, 1 disjoint."""
    ref, cur = _paired_shares(reference_counts, current_counts)
    mid = (ref + cur) / 2

    def kl(p: np.ndarray) -> float:
        held = p > 0
        return float(np.sum(p[held] * np.log2(p[held] / mid[held])))

    divergence = max((kl(ref) + kl(cur)) / 2, 0.0)
    return float(min(np.sqrt(divergence), 1.0))


def _sample(values: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        msg = f"{name} must be a non-empty 1-D array of numbers"
        raise InvalidArgumentError(msg)
    if not np.all(np.isfinite(array)):
        msg = f"{name} holds NaN or infinite values; drop or impute them first"
        raise InvalidArgumentError(msg)
    return array


def ks_test(reference: np.ndarray, current: np.ndarray) -> TestResult:
    """Two-sample Kolmogorov-Smirnov: the largest gap between the two empirical CDFs."""
    ref = _sample(reference, "reference")
    cur = _sample(current, "current")
    with warnings.catch_warnings():
        # Where the exact distribution cannot be computed scipy falls back to the asymptotic
        # one and says so; that fallback is the documented behaviour, not a problem.
        warnings.simplefilter("ignore", RuntimeWarning)
        result = sps.ks_2samp(ref, cur)
    return TestResult(float(result.statistic), float(result.pvalue))


def chi_square_test(reference_counts: np.ndarray, current_counts: np.ndarray) -> TestResult:
    """Pearson's chi-square test of homogeneity on a 2 x k table of category counts.

    Both samples are treated as samples (not the reference as the truth). Categories absent
    from both are dropped; with a single category left there is nothing to test (p = 1).
    """
    _paired_shares(reference_counts, current_counts)
    table = np.vstack([reference_counts, current_counts]).astype(np.float64)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return TestResult(0.0, 1.0)
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    statistic = float(np.sum((table - expected) ** 2 / expected))
    dof = table.shape[1] - 1
    return TestResult(statistic, float(sps.chi2.sf(statistic, dof)))


def wasserstein_normed(reference: np.ndarray, current: np.ndarray) -> float:
    """Earth mover's distance between the samples, in standard deviations of the reference.

    A constant reference has no spread to measure in; the pooled standard deviation is used
    then (it is zero only when both samples are the same constant, and so is the distance).
    """
    ref = _sample(reference, "reference")
    cur = _sample(current, "current")
    distance = float(sps.wasserstein_distance(ref, cur))
    scale = float(np.std(ref))
    if scale == 0.0:
        scale = float(np.std(np.concatenate([ref, cur])))
    return 0.0 if scale == 0.0 else distance / scale
