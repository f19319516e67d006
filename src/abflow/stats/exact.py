"""Exact tests for the case the normal-theory tests cannot handle: arms that do not vary."""

from __future__ import annotations

import math

__all__ = ["permutation_p_value"]


def permutation_p_value(n_control: int, n_treatment: int) -> float:
    """One-sided exact p-value when each arm is constant and the two constants differ.

    Every arrangement of the pooled units is equally likely under no effect, and only one
    puts all the treatment's values above (or below) all the control's:
    ``1 / C(n_c + n_t, n_t)``. NaN when an arm is empty.
    """
    if n_control < 1 or n_treatment < 1:
        return math.nan
    log_ways = (
        math.lgamma(n_control + n_treatment + 1)
        - math.lgamma(n_control + 1)
        - math.lgamma(n_treatment + 1)
    )
    return math.exp(-log_ways)
