"""Routing: which variant each unit sees, deterministically and without shared state.

GrowthBook-compatible hashing and bucket ranges (:mod:`abflow.routing.hashing`), targeting
conditions (evaluated by :mod:`abflow.targeting`, re-exported here), the per-request :func:`assign`, canary ramps
(:mod:`abflow.routing.ramp`), the vectorised :func:`assign_batch` and sticky bucketing
(:mod:`abflow.routing.sticky`). Pure: no I/O.
"""

from __future__ import annotations

from abflow.routing.batch import BatchAssignment, assign_batch, fnv1a32_array
from abflow.routing.experiment import (
    REASONS,
    Assignment,
    CompiledExperiment,
    assign,
    compile_experiment,
    unit_text,
)
from abflow.routing.hashing import (
    bucket_hash,
    bucket_ranges,
    choose_variation,
    fnv1a32,
    get_equal_weights,
    in_namespace,
    in_range,
    utf16_units,
)
from abflow.routing.ramp import canary_ranges, canary_weights, compile_canary
from abflow.routing.sticky import (
    InMemoryStickyBuckets,
    StickyBucketStore,
    StickyResult,
    StickySettings,
    assign_sticky,
    sticky_key,
)
from abflow.targeting import SavedGroups, eval_condition, padded_version, value_type

__all__ = [
    "REASONS",
    "Assignment",
    "BatchAssignment",
    "CompiledExperiment",
    "InMemoryStickyBuckets",
    "SavedGroups",
    "StickyBucketStore",
    "StickyResult",
    "StickySettings",
    "assign",
    "assign_batch",
    "assign_sticky",
    "bucket_hash",
    "bucket_ranges",
    "canary_ranges",
    "canary_weights",
    "choose_variation",
    "compile_canary",
    "compile_experiment",
    "eval_condition",
    "fnv1a32",
    "fnv1a32_array",
    "get_equal_weights",
    "in_namespace",
    "in_range",
    "padded_version",
    "sticky_key",
    "unit_text",
    "utf16_units",
    "value_type",
]
