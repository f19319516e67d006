"""Did the variants of one request see the same features? Counted from the shadow path.

A shadow copy scores the served request and both predictions log ``features_hash``, the
hash of the feature vector the model was given (serving/features.py). Joining a shadow
prediction to the served one of the same request (as store/shadow_pairs.py does) and
comparing the two hashes counts the requests whose variants saw identical inputs: anything
short of all of them means a cache, a feature pipeline or a client gave the variants
different inputs, and their comparison is not like for like. Pairs where either side logged
no hash (a batch request, an older gateway) are counted apart, not as identical.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from abflow.store.aggregates import StoreTarget, Window, connect
from abflow.store.engine import raise_store_error
from abflow.store.schema import predictions

__all__ = ["FeatureIdentity", "feature_identity"]


@dataclass(frozen=True, slots=True)
class FeatureIdentity:
    """Per shadow variant: requests paired with the served prediction, those where both
    logged a features hash (``compared``), and those where the two hashes are equal."""

    variant: str
    pairs: int
    compared: int
    identical: int

    @property
    def share(self) -> float:
        """Identical among compared (NaN when nothing could be compared)."""
        return self.identical / self.compared if self.compared else math.nan


def feature_identity(
    target: StoreTarget, experiment_key: str, phase: int, *, window: Window | None = None
) -> dict[str, FeatureIdentity]:
    """Per shadow variant with paired predictions in the phase (and window of the served
    predictions' times), how many pairs saw identical features."""
    served = predictions.alias("served")
    shadow = predictions.alias("shadow")
    window = window or Window()
    conditions = [
        shadow.c.experiment_key == experiment_key,
        shadow.c.phase == phase,
        shadow.c.is_shadow,
    ]
    if window.start is not None:
        conditions.append(served.c.ts >= window.start)
    if window.end is not None:
        conditions.append(served.c.ts < window.end)
    # The served side's keys behind coalesce(), as in shadow_pairs, so that each shadow row
    # finds its served row through the request-id index.
    join_on = sa.and_(
        served.c.request_id == shadow.c.request_id,
        sa.func.coalesce(served.c.experiment_key, "") == shadow.c.experiment_key,
        sa.func.coalesce(served.c.phase, -1) == shadow.c.phase,
        ~served.c.is_shadow,
    )
    both = sa.and_(served.c.features_hash.is_not(None), shadow.c.features_hash.is_not(None))
    same = sa.and_(both, served.c.features_hash == shadow.c.features_hash)
    query = (
        sa.select(
            shadow.c.variant,
            sa.func.count().label("pairs"),
            sa.func.sum(sa.case((both, 1), else_=0)).label("compared"),
            sa.func.sum(sa.case((same, 1), else_=0)).label("identical"),
        )
        .select_from(shadow.join(served, join_on))
        .where(*conditions)
        .group_by(shadow.c.variant)
    )
    try:
        with connect(target).connect() as connection:
            rows = connection.execute(query).all()
    except SQLAlchemyError as exc:
        raise_store_error(exc, "compare the features hashes of shadow predictions")
    return {
        str(row.variant): FeatureIdentity(
            str(row.variant), int(row.pairs), int(row.compared or 0), int(row.identical or 0)
        )
        for row in rows
    }
