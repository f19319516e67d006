"""Outcomes sent for an experiment but dated before it began: reused ids or a wrong clock.

An outcome counts for a unit only after the unit's first exposure, so such outcomes never
enter a metric; but an outcome that names this experiment cannot honestly predate it. A
test harness or a demo replaying the same unit ids and times, or a sender whose clock is
off, produces them, and the person reading the result should know. Outcomes sent without
an experiment are not judged: a returning user's purchases before the experiment are normal
(CUPED uses them).
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from abflow.store.aggregates import StoreTarget, Window, connect, exposure_conditions
from abflow.store.schema import exposures, outcomes

__all__ = ["EarlyOutcomes", "early_outcomes"]


@dataclass(frozen=True, slots=True)
class EarlyOutcomes:
    """How many outcome rows, of how many exposed units, are dated before ``before``."""

    rows: int
    units: int
    before: float


def early_outcomes(
    target: StoreTarget,
    experiment_key: str,
    phase: int,
    before: float,
    window: Window | None = None,
) -> EarlyOutcomes:
    """Outcomes naming ``experiment_key``, of the units the phase exposed in ``window``, dated
    before ``before`` (and the window's data cutoff)."""
    window = window or Window()
    exposed = (
        sa.select(exposures.c.unit_id)
        .where(*exposure_conditions(experiment_key, phase, window))
        .distinct()
        .subquery("exposed")
    )
    o = outcomes
    query = (
        sa.select(sa.func.count(), sa.func.count(sa.distinct(o.c.unit_id)))
        .select_from(exposed.join(o, o.c.unit_id == exposed.c.unit_id))
        .where(
            o.c.ts < before,
            o.c.experiment_key == experiment_key,
            *window.before_cutoff(o.c.ts),
        )
    )
    with connect(target).connect() as connection:
        rows, units = connection.execute(query).one()
    return EarlyOutcomes(int(rows or 0), int(units or 0), before)
