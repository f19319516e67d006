"""Did the variants of one request see the same features? Counted from the shadow path and
from the monitoring samples.

Shadow path: a shadow copy scores the served request and both predictions log
``features_hash``, the hash of the feature vector the model was given (serving/features.py).
Joining a shadow prediction to the served one of the same request (as store/shadow_pairs.py
does) and comparing the two hashes counts the requests whose variants saw identical inputs:
anything short of all of them means a cache, a feature pipeline or a client gave the variants
different inputs, and their comparison is not like for like. Pairs where either side logged
no hash (a batch request, an older gateway) are counted apart, not as identical.

Samples: a monitoring sample (events/sampling.py) stores the row the variant's model scored.
Joined by request id to the served prediction, its row is hashed as the gateway hashes a
request's row (``feature_vector_hash`` over the names ``"0"``, ``"1"``, … and the float
values; or over the spec's ``monitoring.features`` names, for a feature source whose features
are all floats) and compared with the logged ``features_hash``. A mismatch means the model
scored something other than the vector its prediction vouches for. A feature source with
integer, boolean or text features hashes typed values that a sample's floats cannot
reproduce: such samples never match.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import orjson
import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from abflow.features.vector import feature_vector_hash
from abflow.store.aggregates import StoreTarget, Window, connect
from abflow.store.engine import raise_store_error
from abflow.store.schema import feature_samples, predictions
from abflow.store.shadow_pairs import shadow_join

__all__ = ["FeatureIdentity", "feature_identity", "sampled_feature_identity"]


@dataclass(frozen=True, slots=True)
class FeatureIdentity:
    """Per variant: requests paired (a shadow prediction or a sample with the served
    prediction), those where a hash could be compared (``compared``), and those where the
    two hashes are equal."""

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
    conditions, join_on = shadow_join(served, shadow, experiment_key, phase, window or Window())
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


def _row_hashes(row: list[float], names: Sequence[str]) -> tuple[str, ...]:
    """The hashes the gateway could have logged for this row (see the module docstring)."""
    positional = feature_vector_hash([str(i) for i in range(len(row))], row)
    if len(names) != len(row) or list(names) == [str(i) for i in range(len(row))]:
        return (positional,)
    return (positional, feature_vector_hash(names, row))


def sampled_feature_identity(
    target: StoreTarget,
    experiment_key: str,
    phase: int,
    *,
    window: Window | None = None,
    names: Sequence[str] = (),
) -> dict[str, FeatureIdentity]:
    """Per variant with monitoring samples in the phase (and window of the samples' times),
    how many samples' rows hash to the ``features_hash`` their served prediction logged.
    ``names`` are the spec's ``monitoring.features`` (empty: positional names only)."""
    s = feature_samples
    p = predictions
    window = window or Window()
    conditions = [s.c.experiment_key == experiment_key, s.c.phase == phase]
    if window.start is not None:
        conditions.append(s.c.ts >= window.start)
    if window.end is not None:
        conditions.append(s.c.ts < window.end)
    join_on = sa.and_(
        p.c.request_id == s.c.request_id,
        p.c.experiment_key == s.c.experiment_key,
        p.c.variant == s.c.variant,
        ~p.c.is_shadow,
    )
    query = (
        sa.select(s.c.variant, s.c.features_json, p.c.features_hash)
        .select_from(s.join(p, join_on))
        .where(*conditions)
    )
    counts: dict[str, list[int]] = {}
    try:
        with connect(target).connect() as connection:
            if not sa.inspect(connection).has_table(s.name):
                return {}  # a warehouse loaded without samples
            for variant, features_json, logged in connection.execute(query):
                tally = counts.setdefault(str(variant), [0, 0, 0])
                tally[0] += 1
                if logged is None:
                    continue
                tally[1] += 1
                tally[2] += logged in _row_hashes(orjson.loads(features_json), names)
    except SQLAlchemyError as exc:
        raise_store_error(exc, "compare monitoring samples with their features hashes")
    return {
        variant: FeatureIdentity(variant, pairs, compared, identical)
        for variant, (pairs, compared, identical) in sorted(counts.items())
    }
