"""Canary ramps: give a challenger a growing share of traffic without reshuffling anyone.

During a ramp the challenger gets share ``t`` of the covered traffic and the control keeps
the rest. The layout puts the control at the bottom of the covered interval and the
challenger at its top::

    0 ─── control ───▶ c·(1-t) ─── challenger ───▶ c ··· not covered ··· 1

so raising ``t`` only moves the boundary down: units cross from control to challenger and
never back, and no unit enters or leaves the experiment. At full coverage these are exactly
GrowthBook's ranges for weights ``[1 - t, t]``; below full coverage GrowthBook's layout
(each range starts at its cumulative weight) would move the challenger's window, which is
why a ramp uses these ranges instead.
"""

from __future__ import annotations

import math

from abflow.errors import InvalidArgumentError
from abflow.routing.experiment import CompiledExperiment, compile_experiment
from abflow.routing.hashing import Range
from abflow.spec import ExperimentSpec

__all__ = ["canary_ranges", "canary_weights", "compile_canary"]


def _check(share: float, n_variants: int, challenger: int) -> None:
    if not (math.isfinite(share) and 0.0 <= share <= 1.0):
        msg = f"challenger share {share} must be between 0 and 1"
        raise InvalidArgumentError(msg)
    if n_variants < 2:
        msg = f"a canary needs at least 2 variants, got {n_variants}"
        raise InvalidArgumentError(msg)
    if not 1 <= challenger < n_variants:
        msg = f"challenger index {challenger} must name a variant other than the control (0)"
        raise InvalidArgumentError(msg)


def canary_ranges(
    share: float, coverage: float = 1.0, *, n_variants: int = 2, challenger: int = 1
) -> list[Range]:
    """Bucket ranges for a ramp step: the challenger holds ``share`` of covered traffic.

    The control (index 0) keeps ``[0, coverage·(1-share))``, the challenger takes
    ``[coverage·(1-share), coverage)``, and any other variant gets an empty range.
    """
    _check(share, n_variants, challenger)
    if not (math.isfinite(coverage) and 0.0 <= coverage <= 1.0):
        msg = f"coverage {coverage} must be between 0 and 1"
        raise InvalidArgumentError(msg)
    boundary = coverage * (1.0 - share)
    ranges: list[Range] = [(coverage, coverage)] * n_variants
    ranges[0] = (0.0, boundary)
    ranges[challenger] = (boundary, coverage)
    return ranges


def canary_weights(share: float, *, n_variants: int = 2, challenger: int = 1) -> list[float]:
    """Spec weights for a ramp step at full coverage: ``1 - share`` control, ``share`` challenger.

    With ``coverage = 1`` a spec carrying these weights routes exactly like
    :func:`canary_ranges`, so a phase can be written down as a plain spec.
    """
    _check(share, n_variants, challenger)
    weights = [0.0] * n_variants
    weights[0] = 1.0 - share
    weights[challenger] = share
    return weights


def compile_canary(spec: ExperimentSpec, share: float) -> CompiledExperiment:
    """Route ``spec`` as a ramp step: its rollout challenger (default the second variant)
    gets ``share`` of the spec's covered traffic, the control the rest."""
    n_variants = len(spec.variants)
    challenger = spec.challenger_index
    ranges = canary_ranges(share, spec.coverage, n_variants=n_variants, challenger=challenger)
    return compile_experiment(spec, ranges=ranges)
