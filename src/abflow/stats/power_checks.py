"""Argument checks of power analysis: every input is bounded before any search starts.

Extreme but legal numbers must give an answer or a clear InvalidArgumentError, never an
arithmetic exception, so the bounds here are part of the contract (see the constants).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

from abflow.errors import InvalidArgumentError
from abflow.stats.power_model import Plan
from abflow.stats.validation import real_number, real_numbers

__all__ = [
    "MAX_UNITS_PER_VARIANT",
    "MAX_VARIANTS",
    "STD_RANGE",
    "check_coverage",
    "check_mde",
    "check_sizes",
    "check_target",
    "check_weights",
    "make_plan",
]


MAX_VARIANTS = 1000
"""Every treatment is a Bonferroni comparison; beyond this the plan is meaningless and slow."""

MAX_UNITS_PER_VARIANT = 10**15
"""Larger samples than any population; standard errors would underflow to zero."""

STD_RANGE = (1e-150, 1e150)
"""A std whose square (or standard error) leaves the normal float range cannot be planned."""


def _check_open_unit(name: str, value: float) -> None:
    if not (0.0 < real_number(name, value) < 1.0):
        msg = f"{name} must be strictly between 0 and 1, got {value!r}"
        raise InvalidArgumentError(msg)


def make_plan(
    baseline: float,
    std: float | None,
    relative: bool,
    alpha: float,
    variants: int,
    alternative: str,
    proportion_variance: str,
) -> Plan:
    _check_open_unit("alpha", alpha)
    if isinstance(variants, bool) or not isinstance(variants, numbers.Integral) or variants < 2:
        msg = f"variants must be an integer of at least 2 (control and one treatment), got {variants!r}"
        raise InvalidArgumentError(msg)
    if variants > MAX_VARIANTS:
        msg = f"variants must be at most {MAX_VARIANTS} (control included), got {variants}"
        raise InvalidArgumentError(msg)
    if alternative not in ("two-sided", "one-sided"):
        msg = f"alternative must be 'two-sided' or 'one-sided', got {alternative!r}"
        raise InvalidArgumentError(msg)
    if proportion_variance not in ("unpooled", "pooled", "arcsine"):
        msg = f"proportion_variance must be 'unpooled', 'pooled' or 'arcsine', got {proportion_variance!r}"
        raise InvalidArgumentError(msg)
    if std is None:
        _check_open_unit("baseline (a proportion)", baseline)
    else:
        std = real_number("std", std)
        baseline = real_number("baseline", baseline)
        if not (math.isfinite(std) and std > 0):
            msg = f"std must be a positive finite number, got {std!r}"
            raise InvalidArgumentError(msg)
        if not STD_RANGE[0] <= std <= STD_RANGE[1]:
            low, high = STD_RANGE
            msg = f"std must be between {low:.0e} and {high:.0e} (rescale the metric), got {std!r}"
            raise InvalidArgumentError(msg)
        if not math.isfinite(baseline) or (relative and baseline <= 0):
            msg = (
                f"baseline mean must be finite (and positive for a relative mde), got {baseline!r}"
            )
            raise InvalidArgumentError(msg)
    return Plan(
        baseline=float(baseline),
        std=None if std is None else float(std),
        relative=relative,
        alpha=float(alpha),
        variants=int(variants),
        alternative=alternative,
        proportion_variance=proportion_variance,
    )


def check_mde(plan: Plan, value: float) -> None:
    value = real_number("mde", value)
    if not (math.isfinite(value) and value > 0):
        msg = f"mde must be a positive finite number, got {value!r}"
        raise InvalidArgumentError(msg)
    if not math.isfinite(plan.treatment_mean(value)):
        msg = f"mde {value!r} puts the treatment mean beyond the floating-point range"
        raise InvalidArgumentError(msg)
    if value >= plan.max_effect():
        rate = plan.treatment_mean(value)
        msg = f"mde {value} puts the treatment rate at {rate:.4g}, which must stay below 1"
        raise InvalidArgumentError(msg)


def check_target(target: float, alpha: float) -> None:
    _check_open_unit("power", target)
    if target <= alpha:
        msg = f"power ({target}) must exceed alpha ({alpha})"
        raise InvalidArgumentError(msg)


def check_weights(weights: Sequence[float] | None, variants: int) -> tuple[float, ...]:
    if weights is None:
        return tuple(1.0 / variants for _ in range(variants))
    values = real_numbers("weights", weights)
    if len(values) != variants:
        msg = f"weights has {len(values)} entries for {variants} variants"
        raise InvalidArgumentError(msg)
    if not all(math.isfinite(w) and w > 0 for w in values):
        msg = f"weights must all be positive, got {list(values)}"
        raise InvalidArgumentError(msg)
    if abs(sum(values) - 1.0) > 1e-6:
        msg = f"weights must sum to 1, got {sum(values):.6g}"
        raise InvalidArgumentError(msg)
    return values


def check_sizes(n_per_variant: int | Sequence[int], variants: int) -> tuple[int, ...]:
    sizes = (
        (real_number("n_per_variant", n_per_variant),) * variants
        if isinstance(n_per_variant, numbers.Real)
        else real_numbers("n_per_variant", n_per_variant)
    )
    if len(sizes) != variants:
        msg = f"n_per_variant has {len(sizes)} entries for {variants} variants"
        raise InvalidArgumentError(msg)
    if not all(math.isfinite(n) and n >= 2 for n in sizes):
        msg = f"every variant needs at least 2 units, got {list(sizes)}"
        raise InvalidArgumentError(msg)
    if max(sizes) > MAX_UNITS_PER_VARIANT:
        msg = (
            f"sample size must be at most {MAX_UNITS_PER_VARIANT:.0e} units per variant, "
            f"got {max(sizes)}"
        )
        raise InvalidArgumentError(msg)
    return tuple(int(n) for n in sizes)


def check_coverage(coverage: float) -> None:
    coverage = real_number("coverage", coverage)
    if not (math.isfinite(coverage) and 0 < coverage <= 1):
        msg = f"coverage must be in (0, 1], got {coverage!r}"
        raise InvalidArgumentError(msg)
