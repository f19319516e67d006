"""Assign one unit to a variant of an experiment: the gateway's per-request hot path.

The work that depends only on the spec (bucket ranges, seed, forced overrides, namespace) is
done once by :func:`compile_experiment` and cached per spec object, so :func:`assign` costs a
dictionary lookup, one or two hashes and a table lookup. Assignments are memoised per bucket
(at most 10 000 per experiment), so the common outcome allocates nothing.

A targeting condition may name saved groups (``{"id": {"$inGroup": "beta-testers"}}``):
their members are given as ``saved_groups`` (group id -> list of values), either once when
the experiment is compiled (the gateway passes its config's ``saved_groups:``) or per call.

Decision order (GrowthBook's ``run``), and the ``reason`` each outcome carries:

====================  ==========================================================
``"forced"``          the unit id is listed in ``spec.forced``
``"inactive"``        the spec says ``active: false``: nobody else is in
``"no_unit"``         the unit attribute is missing, empty, or not a string/number
``"condition"``       the targeting condition does not hold for the attributes
``"namespace"``       the unit falls outside the experiment's namespace slice
``"filters"``         the unit falls outside a filter's ranges (or lacks its attribute)
``"coverage"``        the unit's bucket is outside every variant's range
``"force"``           the spec's ``force`` variant, for every unit that got this far
``"assigned"``        the unit's bucket falls in a variant's range
====================  ==========================================================

A unit failing several checks is not in the experiment whichever is named: GrowthBook
checks the namespace or filters before the condition, abflow the condition first (the
reasons of existing assignments stay as they were). A spec has a namespace or filters,
never both. An active spec without filters pays two attribute tests for them, and
``force`` costs nothing per call: it is part of the memoised per-bucket assignments.

With sticky bucketing (:func:`abflow.routing.assign_sticky`) two more: ``"sticky"`` (a
stored bucket decided, before the condition) and ``"blocked"`` (the unit holds a bucket of
a version below the experiment's minimum).
"""

from __future__ import annotations

import functools
import math
import numbers
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from fnv_hash_fast import fnv1a_32 as _fnv_bytes

from abflow.errors import InvalidArgumentError
from abflow.routing.filters import CompiledFilter, compile_filters
from abflow.routing.hashing import Range, _fnv1a32_python, bucket_ranges, in_namespace
from abflow.spec import ExperimentSpec
from abflow.targeting.conditions import SavedGroups, eval_condition
from abflow.targeting.js_values import to_text

__all__ = [
    "REASONS",
    "Assignment",
    "CompiledExperiment",
    "assign",
    "compile_experiment",
    "unit_text",
]

REASONS: Final = (
    "forced",
    "no_unit",
    "condition",
    "namespace",
    "coverage",
    "assigned",
    "sticky",
    "blocked",
    "inactive",
    "filters",
    "force",
)
"""Every ``Assignment.reason``; batch results store their index, so a new reason is appended
and the codes of the others never change."""


@dataclass(frozen=True, slots=True)
class Assignment:
    """Which variant a unit sees, and why.

    ``index`` is the variant's position in the spec (-1 when the unit is not in the
    experiment) and ``bucket`` the unit's hash in ``[0, 1)`` (None when it was not hashed:
    forced, inactive, no unit, not targeted, outside the namespace or a filter).
    """

    variant: str | None
    index: int
    bucket: float | None
    in_experiment: bool
    reason: str


def unit_text(value: Any) -> str | None:
    """The string a unit attribute is hashed as, or None when it cannot identify a unit.

    Strings hash as themselves; finite non-zero numbers as JavaScript's ``String(number)``
    prints them (``7``, ``2.5``, ``1.5e-7``, ``1e+21``; an integer past 2**53 as the double
    it becomes), as GrowthBook's SDKs do; empty strings, zero, booleans, numbers beyond a
    double's range (JavaScript's Infinity) and anything else count as missing.
    """
    if isinstance(value, str):
        return value or None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a double
        return None
    if number == 0 or not math.isfinite(number):
        return None
    if number.is_integer() and abs(number) <= 2**53:  # exact: the shortest digits are all
        return str(int(number))
    return to_text(number)  # shortest round-trip digits (4.2280942458412416e16 → …420)


class CompiledExperiment:
    """A spec with everything routing needs precomputed; build it with compile_experiment."""

    __slots__ = (
        "_lock",
        "_memo",
        "_table",
        "condition",
        "filtered_out",
        "filters",
        "force",
        "forced",
        "hash_version",
        "inactive",
        "key",
        "namespace",
        "not_targeted",
        "outside_namespace",
        "ranges",
        "saved_groups",
        "scale",
        "seed",
        "seed_is_ascii",
        "unit",
        "unit_missing",
        "variant_names",
    )

    def __init__(
        self,
        spec: ExperimentSpec,
        ranges: Sequence[Range] | None = None,
        saved_groups: SavedGroups | None = None,
    ) -> None:
        names = tuple(spec.variant_names)
        if ranges is None:
            ranges = bucket_ranges(len(names), spec.coverage, spec.effective_weights)
        elif len(ranges) != len(names):
            msg = f"{len(ranges)} bucket ranges for {len(names)} variants; give one per variant"
            raise InvalidArgumentError(msg)
        self.key = spec.key  # not the spec itself: the cache must not keep specs alive
        self.unit = spec.unit
        self.variant_names = names
        self.ranges: tuple[Range, ...] = tuple((float(s), float(e)) for s, e in ranges)
        self.seed = spec.hash_seed
        self.seed_is_ascii = self.seed.isascii()
        self.hash_version = spec.hash_version
        self.scale = 10000 if spec.hash_version == 2 else 1000
        self.condition = spec.condition
        self.saved_groups = saved_groups
        self.namespace = spec.namespace.as_tuple() if spec.namespace is not None else None
        self.filters: tuple[CompiledFilter, ...] = compile_filters(spec)
        self.forced = {
            unit_id: Assignment(name, names.index(name), None, True, "forced")
            for unit_id, name in spec.forced.items()
        }
        self.force = None if spec.force is None else names.index(spec.force)
        self.inactive = None if spec.active else Assignment(None, -1, None, False, "inactive")
        self.unit_missing = Assignment(None, -1, None, False, "no_unit")
        self.not_targeted = Assignment(None, -1, None, False, "condition")
        self.outside_namespace = Assignment(None, -1, None, False, "namespace")
        self.filtered_out = Assignment(None, -1, None, False, "filters")
        self._table: dict[int, Assignment] = {}
        self._lock = threading.Lock()
        self._memo: dict[str, Any] = {}

    def memo(self, name: str, build: Callable[[], Any]) -> Any:
        """Derived data computed once per compiled experiment (e.g. the batch lookup tables)."""
        value = self._memo.get(name)
        if value is None:
            value = self._memo.setdefault(name, build())
        return value

    def bucket_key(self, unit_id: str) -> int:
        """The unit's bucket as an integer: ``bucket_hash(seed, unit_id) * scale``."""
        if self.hash_version == 2:
            text = self.seed + unit_id
            if self.seed_is_ascii and unit_id.isascii():
                inner = _fnv_bytes(text.encode())
            else:
                inner = _fnv1a32_python(text)
            return int(_fnv_bytes(str(inner).encode())) % 10000
        text = unit_id + self.seed
        if self.seed_is_ascii and unit_id.isascii():
            return int(_fnv_bytes(text.encode())) % 1000
        return _fnv1a32_python(text) % 1000

    def for_bucket(self, key: int) -> Assignment:
        """The (memoised) assignment of every unit whose bucket key is ``key``."""
        hit = self._table.get(key)
        if hit is not None:
            return hit
        bucket = key / self.scale
        index = -1
        for position, (start, end) in enumerate(self.ranges):
            if start <= bucket < end:
                index = position
                break
        if index < 0:
            made = Assignment(None, -1, bucket, False, "coverage")
        elif self.force is not None:
            made = Assignment(self.variant_names[self.force], self.force, bucket, True, "force")
        else:
            made = Assignment(self.variant_names[index], index, bucket, True, "assigned")
        with self._lock:
            return self._table.setdefault(key, made)

    def assign(
        self, attributes: Mapping[str, Any], saved_groups: SavedGroups | None = None
    ) -> Assignment:
        """Assign the unit described by ``attributes`` (see the module docstring for order).

        ``saved_groups``, when given, replaces the groups the experiment was compiled with.
        """
        value = attributes.get(self.unit)
        unit_id = value if type(value) is str else unit_text(value)
        if not unit_id:
            return self.unit_missing if self.inactive is None else self.inactive
        if self.forced:
            forced = self.forced.get(unit_id)
            if forced is not None:
                return forced
        if self.inactive is not None:
            return self.inactive
        if self.condition is not None and not eval_condition(
            attributes,
            self.condition,
            self.saved_groups if saved_groups is None else saved_groups,
        ):
            return self.not_targeted
        if self.namespace is not None and not in_namespace(unit_id, self.namespace):
            return self.outside_namespace
        if self.filters and self.is_filtered_out(attributes, unit_id):
            return self.filtered_out
        return self.for_bucket(self.bucket_key(unit_id))

    def is_filtered_out(self, attributes: Mapping[str, Any], unit_id: str | None) -> bool:
        """Whether a filter leaves the unit out: its attribute is missing (not hashable) or
        its bucket is outside the filter's ranges. ``unit_id`` is the unit attribute's text
        (None when it is missing)."""
        for spec_filter in self.filters:
            if spec_filter.attribute == self.unit:
                text = unit_id
            else:
                text = unit_text(attributes.get(spec_filter.attribute))
            if not text or not spec_filter.keeps(text):
                return True
        return False

    def __repr__(self) -> str:
        return f"CompiledExperiment(key={self.key!r}, ranges={list(self.ranges)!r})"


_CACHE: dict[int, tuple[weakref.ref[ExperimentSpec], CompiledExperiment]] = {}


def _forget(cache: dict[int, Any], key: int, _ref: object) -> None:
    cache.pop(key, None)  # the cache is bound in, so this also works at interpreter exit


def compile_experiment(
    spec: ExperimentSpec,
    *,
    ranges: Sequence[Range] | None = None,
    saved_groups: SavedGroups | None = None,
) -> CompiledExperiment:
    """Precompute routing for ``spec``; cached per spec object unless ``ranges`` or
    ``saved_groups`` are given.

    ``ranges`` replaces the spec's GrowthBook ranges, e.g. with
    :func:`abflow.routing.canary_ranges` during a ramp (or a GrowthBook experiment's own
    ``ranges``); ``saved_groups`` (group id -> members) feeds ``$inGroup`` / ``$notInGroup``
    in the condition of every later ``assign``.
    """
    if ranges is not None or saved_groups is not None:
        return CompiledExperiment(spec, ranges, saved_groups)
    key = id(spec)
    entry = _CACHE.get(key)
    if entry is not None and entry[0]() is spec:
        return entry[1]
    compiled = CompiledExperiment(spec)
    _CACHE[key] = (weakref.ref(spec, functools.partial(_forget, _CACHE, key)), compiled)
    return compiled


def assign(
    experiment: ExperimentSpec | CompiledExperiment,
    attributes: Mapping[str, Any],
    *,
    saved_groups: SavedGroups | None = None,
) -> Assignment:
    """Assign one unit: ``attributes`` must hold ``experiment.unit`` (e.g. ``user_id``).

    ``saved_groups`` (group id -> list of members) is what the condition's ``$inGroup`` and
    ``$notInGroup`` look up; without it, those a compiled experiment was given, else none (a
    group not given is empty, as an unknown group is in GrowthBook). Deterministic: the same
    spec, attributes and groups give the same assignment in every process.
    """
    if saved_groups is None:  # the hot path: one argument fewer to pass on
        entry = _CACHE.get(id(experiment))
        if entry is not None and entry[0]() is experiment:
            return entry[1].assign(attributes)
        if isinstance(experiment, CompiledExperiment):
            return experiment.assign(attributes)
        return compile_experiment(experiment).assign(attributes)
    if isinstance(experiment, CompiledExperiment):
        return experiment.assign(attributes, saved_groups)
    return compile_experiment(experiment).assign(attributes, saved_groups)
