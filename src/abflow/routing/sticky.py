"""Sticky bucketing with GrowthBook's semantics: a unit keeps the variant it was first given.

Hash-based routing moves units when weights or coverage change; with sticky bucketing the
first assignment is remembered in an assignment document per ``(attribute, value)`` and
reused, so weights may change and coverage may shrink without moving any exposed unit:

- the document key of an experiment is ``"<key>__<bucket_version>"``, its value the variant
  name. Raising ``bucket_version`` starts afresh (units are hashed again, the old entry is
  kept); raising ``min_bucket_version`` as well **blocks** every unit that holds an entry
  of an older version (it leaves the experiment, reason ``"blocked"``);
- a unit with a stored variant skips the condition, namespace, filter and coverage checks
  (reason ``"sticky"``); one without is routed as :func:`abflow.routing.assign` does and
  the result is saved;
- as in GrowthBook, an inactive experiment (``active: false``) reads no bucket, and the
  spec's ``force`` wins over a stored bucket too; neither is saved;
- ``fallback_attribute`` (e.g. a device id) is hashed when the unit attribute is missing,
  and documents stored under it are read too (those of the unit attribute win), so a unit
  that logs in keeps the variant it had as a device; the new assignment is saved under the
  attribute that was hashed.

Routing stays pure: documents come from and go to a :class:`StickyBucketStore` the caller
gives (:class:`InMemoryStickyBuckets` here; a shared store backs it across replicas).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from abflow.routing.experiment import Assignment, CompiledExperiment, compile_experiment, unit_text
from abflow.routing.hashing import in_namespace
from abflow.spec import ExperimentSpec
from abflow.targeting.conditions import SavedGroups, eval_condition

__all__ = [
    "InMemoryStickyBuckets",
    "StickyBucketStore",
    "StickyResult",
    "StickySettings",
    "assign_sticky",
    "sticky_key",
]


@dataclass(frozen=True, slots=True)
class StickySettings:
    """How an experiment uses sticky buckets (GrowthBook's rule fields of the same names)."""

    bucket_version: int = 0
    min_bucket_version: int = 0
    fallback_attribute: str | None = None


@dataclass(frozen=True, slots=True)
class StickyResult:
    """An assignment, the attribute and value that were hashed, and whether a stored
    bucket decided it."""

    assignment: Assignment
    hash_attribute: str | None
    hash_value: str | None
    sticky_bucket_used: bool


class StickyBucketStore(Protocol):
    """Where assignment documents live: ``(attribute, value) -> {experiment key: variant}``."""

    def get_assignments(self, attribute: str, value: str) -> Mapping[str, str]:
        """The stored assignments of one attribute value (empty when there are none)."""
        ...

    def save_assignments(self, attribute: str, value: str, assignments: Mapping[str, str]) -> None:
        """Replace the assignments of one attribute value."""
        ...


class InMemoryStickyBuckets:
    """A :class:`StickyBucketStore` in this process's memory (tests, one replica)."""

    def __init__(self) -> None:
        self.docs: dict[tuple[str, str], dict[str, str]] = {}
        self._lock = threading.Lock()

    def get_assignments(self, attribute: str, value: str) -> Mapping[str, str]:
        with self._lock:
            return dict(self.docs.get((attribute, value), {}))

    def save_assignments(self, attribute: str, value: str, assignments: Mapping[str, str]) -> None:
        with self._lock:
            self.docs[(attribute, value)] = dict(assignments)


def sticky_key(experiment_key: str, bucket_version: int) -> str:
    """The document entry of an experiment's bucket version (GrowthBook's format)."""
    return f"{experiment_key}__{bucket_version}"


def _hash_source(
    attributes: Mapping[str, Any], unit: str, fallback: str | None
) -> tuple[str | None, str | None]:
    unit_id = unit_text(attributes.get(unit))
    if unit_id:
        return unit, unit_id
    if fallback is not None:
        fallback_id = unit_text(attributes.get(fallback))
        if fallback_id:
            return fallback, fallback_id
    return None, None


def _stored(
    store: StickyBucketStore, attributes: Mapping[str, Any], unit: str, fallback: str | None
) -> dict[str, str]:
    """Assignments under the unit attribute, then under the fallback (never overwriting)."""
    merged: dict[str, str] = {}
    for attribute in (unit, fallback):
        if attribute is None:
            continue
        value = unit_text(attributes.get(attribute))
        if value:
            for key, variant in store.get_assignments(attribute, value).items():
                merged.setdefault(key, variant)
    return merged


def assign_sticky(
    experiment: ExperimentSpec | CompiledExperiment,
    attributes: Mapping[str, Any],
    store: StickyBucketStore,
    settings: StickySettings | None = None,
    *,
    saved_groups: SavedGroups | None = None,
) -> StickyResult:
    """Assign one unit, reusing and recording its sticky bucket (see the module docstring).

    Forced units stay forced and are not recorded; units not in the experiment are not
    recorded either.
    """
    compiled = (
        experiment if isinstance(experiment, CompiledExperiment) else compile_experiment(experiment)
    )
    settings = settings or StickySettings()
    attribute, unit_id = _hash_source(attributes, compiled.unit, settings.fallback_attribute)
    forced = compiled.forced.get(unit_id) if unit_id is not None else None
    if forced is not None:
        return StickyResult(forced, attribute, unit_id, False)
    if compiled.inactive is not None:
        return StickyResult(compiled.inactive, attribute, unit_id, False)
    if attribute is None or unit_id is None:
        return StickyResult(compiled.unit_missing, None, None, False)

    stored = _stored(store, attributes, compiled.unit, settings.fallback_attribute)
    blocked = any(
        sticky_key(compiled.key, version) in stored
        for version in range(settings.min_bucket_version)
    )
    current = sticky_key(compiled.key, settings.bucket_version)
    name = None if blocked else stored.get(current)
    index = compiled.variant_names.index(name) if name in compiled.variant_names else -1
    key = compiled.bucket_key(unit_id)
    bucket = key / compiled.scale
    if index >= 0:
        if compiled.force is not None:  # GrowthBook: force comes after the sticky bucket
            everyone = compiled.variant_names[compiled.force]
            forced_all = Assignment(everyone, compiled.force, bucket, True, "force")
            return StickyResult(forced_all, attribute, unit_id, False)
        sticky = Assignment(compiled.variant_names[index], index, bucket, True, "sticky")
        _record(store, attribute, unit_id, current, sticky)
        return StickyResult(sticky, attribute, unit_id, True)

    groups = compiled.saved_groups if saved_groups is None else saved_groups
    if compiled.condition is not None and not eval_condition(
        attributes, compiled.condition, groups
    ):
        return StickyResult(compiled.not_targeted, attribute, unit_id, False)
    if compiled.namespace is not None and not in_namespace(unit_id, compiled.namespace):
        return StickyResult(compiled.outside_namespace, attribute, unit_id, False)
    unit_value = unit_id if attribute == compiled.unit else None  # filters use no fallback
    if compiled.filters and compiled.is_filtered_out(attributes, unit_value):
        return StickyResult(compiled.filtered_out, attribute, unit_id, False)
    if blocked:
        return StickyResult(Assignment(None, -1, None, False, "blocked"), attribute, unit_id, True)
    assignment = compiled.for_bucket(key)
    _record(store, attribute, unit_id, current, assignment)
    return StickyResult(assignment, attribute, unit_id, False)


def _record(
    store: StickyBucketStore, attribute: str, value: str, key: str, assignment: Assignment
) -> None:
    """Save the unit's variant under the attribute that was hashed, when it changed (a bucket
    found under the fallback is thereby copied to the unit attribute once it is known).
    Only a hash or a stored bucket is saved, never a forced variant."""
    if assignment.reason not in ("assigned", "sticky") or assignment.variant is None:
        return
    own = store.get_assignments(attribute, value)
    if own.get(key) != assignment.variant:
        store.save_assignments(attribute, value, {**own, key: assignment.variant})
