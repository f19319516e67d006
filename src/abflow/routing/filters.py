"""An experiment's ``filters``: hash slices on any attribute that a unit must fall in.

GrowthBook's filters generalise namespaces: each hashes one attribute (by default the
experiment's unit) with its own seed and hash version, and keeps the unit when the bucket
falls in one of its ranges; a unit must be kept by every filter. A unit whose attribute is
missing, empty or not a string or number is filtered out, as in GrowthBook's SDKs.

Each filter is compiled into a table of its bucket keys (10 000 for hash version 2, 1000
for version 1), so that checking it costs one hash and one lookup, on the single-unit path
and in :func:`abflow.routing.assign_batch` alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from abflow.routing.hashing import bucket_key, bucket_scale
from abflow.spec import ExperimentSpec

__all__ = ["CompiledFilter", "compile_filters"]


@dataclass(frozen=True, slots=True)
class CompiledFilter:
    """One filter: the attribute hashed, how, and whether each bucket key is kept."""

    attribute: str
    seed: str
    hash_version: int
    kept: bytes
    """``kept[key]`` is 1 when a unit whose bucket key is ``key`` passes the filter, else 0."""

    def keeps(self, text: str) -> bool:
        """Whether the attribute's text (as hashed, see ``unit_text``) passes the filter."""
        return self.kept[bucket_key(self.seed, text, self.hash_version)] == 1


def compile_filters(spec: ExperimentSpec) -> tuple[CompiledFilter, ...]:
    """The spec's filters with their tables; a filter without an attribute hashes the unit."""
    compiled = []
    for spec_filter in spec.filters:
        # key / scale in float64 is the bucket bucket_hash returns, to the last bit
        buckets = np.arange(bucket_scale(spec_filter.hash_version)) / bucket_scale(
            spec_filter.hash_version
        )
        kept = np.zeros(buckets.shape[0], dtype=bool)
        for start, end in spec_filter.ranges:
            kept |= (start <= buckets) & (buckets < end)
        compiled.append(
            CompiledFilter(
                spec_filter.attribute or spec.unit,
                spec_filter.seed,
                spec_filter.hash_version,
                kept.astype(np.uint8).tobytes(),
            )
        )
    return tuple(compiled)
