"""Result records of power analysis: what a plan needs, detects and achieves.

Plain frozen records that repeat their inputs, so a printed or serialised plan says how it
was computed; the solvers live in :mod:`abflow.stats.power`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "Alternative",
    "MdeResult",
    "PowerResult",
    "ProportionVariance",
    "SampleSizeResult",
]

Alternative = Literal["two-sided", "one-sided"]
ProportionVariance = Literal["unpooled", "pooled", "arcsine"]


@dataclass(frozen=True, slots=True)
class SampleSizeResult:
    """Units each variant needs (control first) to detect ``mde`` with the target ``power``."""

    per_variant: tuple[int, ...]
    total: int
    achieved_power: float
    duration_days: int | None
    mde: float
    power: float
    baseline: float
    std: float | None
    relative: bool
    alpha: float
    adjusted_alpha: float
    variants: int
    weights: tuple[float, ...]
    alternative: Alternative
    proportion_variance: ProportionVariance
    daily_units: float | None
    coverage: float


@dataclass(frozen=True, slots=True)
class MdeResult:
    """Smallest effect the given sample detects with the target ``power``."""

    mde: float
    treatment_mean: float
    per_variant: tuple[int, ...]
    total: int
    duration_days: int | None
    power: float
    baseline: float
    std: float | None
    relative: bool
    alpha: float
    adjusted_alpha: float
    variants: int
    alternative: Alternative
    proportion_variance: ProportionVariance
    daily_units: float | None
    coverage: float


@dataclass(frozen=True, slots=True)
class PowerResult:
    """Power the given sample achieves against an effect of ``mde`` (worst comparison)."""

    power: float
    per_comparison: tuple[float, ...]
    mde: float
    per_variant: tuple[int, ...]
    total: int
    baseline: float
    std: float | None
    relative: bool
    alpha: float
    adjusted_alpha: float
    variants: int
    alternative: Alternative
    proportion_variance: ProportionVariance
