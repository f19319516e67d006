"""Turning samples into comparable histograms: reference-quantile bins and category shares.

Binned measures (PSI, Jensen-Shannon) compare shares of the same bins in both samples. The
bins come from the reference alone (its quantiles), so the current sample is judged against
a fixed yardstick and repeated checks against one reference stay comparable.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from abflow.errors import InvalidArgumentError

__all__ = ["bin_counts", "category_counts", "quantile_edges", "sorted_bin_counts"]


def quantile_edges(reference: np.ndarray, bins: int) -> np.ndarray:
    """Inner bin edges at the reference's quantiles 1/bins … (bins-1)/bins, repeats removed.

    Ties collapse edges, so a feature with few distinct values gets fewer, not empty, bins.
    A value the reference piles up on (a repeated quantile, or the maximum as the top edge)
    gets a bin of its own, ``[v, next float after v)``: otherwise values above it would
    share its bin, and a constant reference could not see the current sample move up.
    """
    if bins < 2:
        msg = f"bins must be at least 2, got {bins}"
        raise InvalidArgumentError(msg)
    levels = np.arange(1, bins) / bins
    edges, repeats = np.unique(np.quantile(reference, levels), return_counts=True)
    atoms = edges[(repeats > 1) | (edges == np.max(reference))]
    return np.unique(np.concatenate([edges, np.nextafter(atoms, np.inf)]))


def bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """How many values fall in each bin; bin i holds edges[i-1] <= x < edges[i] (open ends)."""
    index = np.searchsorted(edges, values, side="right")
    return np.bincount(index, minlength=len(edges) + 1).astype(np.float64)


def sorted_bin_counts(sorted_values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """:func:`bin_counts` of values sorted ascending: a binary search per edge, not per value."""
    below = np.searchsorted(sorted_values, edges, side="left")  # values < each edge
    bounds = np.concatenate([[0], below, [sorted_values.size]])
    return np.diff(bounds).astype(np.float64)


def category_counts(
    reference: Sequence[str], current: Sequence[str]
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Counts of every category seen in either sample, in one shared (sorted) order."""
    categories = sorted(set(reference) | set(current))
    position = {name: i for i, name in enumerate(categories)}
    ref = np.zeros(len(categories))
    cur = np.zeros(len(categories))
    for name in reference:
        ref[position[name]] += 1
    for name in current:
        cur[position[name]] += 1
    return categories, ref, cur
