"""Targeting conditions: MongoDB-style JSON, evaluated the way GrowthBook's SDKs do.

A condition maps attribute paths (``"country"``, ``"device.os"``, ``"tags.0"``) to a literal
or to an operator object (``{"$gte": 18}``), and combines them with ``$and``, ``$or``,
``$nor`` and ``$not``. The semantics are those of GrowthBook's JavaScript SDK, the reference
its shared test vectors come from, so that a browser and the gateway agree on who is
targeted, JavaScript's type coercions included:

- a missing attribute reads as ``null``; ``{"$exists": false}`` matches it;
- a literal string condition compares the attribute as text (``{"n": "1"}`` matches ``1``),
  a number compares it as a number (``{"n": 0}`` matches ``null`` and ``"0"``), a boolean
  by truthiness (never ``null``), ``null`` only ``null``; arrays and objects compare as
  their JSON text (key order counts);
- ordered comparisons (``$lt``…) of two strings compare them as text, anything else as
  numbers (``"8" > 5`` holds, ``null`` counts as 0, and what is not a number never compares);
- ``$eq``, ``$ne``, ``$in`` and ``$nin`` are strict (``1`` is not ``true`` nor ``"1"``);
- an operator abflow does not know is false (so ``$not`` of it is true, as in the SDK);
  :func:`abflow.targeting.validate_condition` rejects unknown operators before they get here.

:data:`OPERATORS` is the one table of operators: evaluation dispatches through it and
validation (:mod:`abflow.targeting.validation`) checks arguments by its ``argument`` kinds,
so an operator is added in one place.
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

import regex

from abflow.targeting.js_regex import isolate_case
from abflow.targeting.js_regex import translate as translate_js_regex
from abflow.targeting.js_values import (
    is_number,
    js_order,
    js_string_order,
    padded_version,
    same_json,
    strict_equal,
    to_number,
    to_text,
    truthy,
    value_type,
)

__all__ = [
    "LOGICAL_OPERATORS",
    "OPERATORS",
    "ArgumentKind",
    "Operator",
    "SavedGroups",
    "SlowRegexWarning",
    "eval_condition",
    "saved_group_ids",
]

REGEX_MATCH_SECONDS = 0.01
"""Longest one ``$regex`` match may run. A pattern that backtracks without end on some
values (``(a|aa)+$`` on forty ``a`` and a ``!``) would otherwise hold the gateway's event
loop, and every request behind it, for hours: past this, the whole condition fails."""

SavedGroups = Mapping[str, Any]
"""Saved groups by id: a list of member values, or GrowthBook's typed ``list``/``condition``
entries (``{"type": "list", "values": [...], "attributeKey": ...}``)."""

Groups = SavedGroups | None
Seen = frozenset[str]
Evaluator = Callable[[Any, Any, Mapping[str, Any], Seen], bool]
"""``evaluate(actual, expected, saved_groups, groups_seen) -> bool``."""

_DIGITS = re.compile(r"^[0-9]+\Z")


def saved_group_ids(condition: Any) -> set[str]:
    """The saved group ids that ``$inGroup`` / ``$notInGroup`` name anywhere in ``condition``:
    a group nobody defined would silently match nobody, so callers check these exist."""
    found: set[str] = set()
    if isinstance(condition, Mapping):
        for key, value in condition.items():
            if key in ("$inGroup", "$notInGroup") and isinstance(value, str):
                found.add(value)
            else:
                found |= saved_group_ids(value)
    elif isinstance(condition, list):
        for item in condition:
            found |= saved_group_ids(item)
    return found


def eval_condition(
    attributes: Mapping[str, Any], condition: Mapping[str, Any], saved_groups: Groups = None
) -> bool:
    """Whether ``attributes`` satisfy ``condition``; ``saved_groups`` feeds the group operators.

    ``saved_groups`` maps a group id to a list of member values (``$inGroup``), to
    GrowthBook's ``{"type": "list", "values": [...], "attributeKey": ...}`` or to
    ``{"type": "condition", "condition": {...}}`` (``$savedGroup``). A condition too
    malformed to evaluate (non-string keys, nesting deeper than the interpreter allows) fails.
    """
    try:
        return _condition(attributes, condition, saved_groups or {}, frozenset())
    except (AttributeError, TypeError, RecursionError):
        return False
    except _RegexTooSlow as exc:
        # A warning, not a log line (this part does no I/O): Python shows it once per
        # pattern and process, however many requests hit it.
        message = (
            f"targeting regex {exc.pattern[:200]!r} ran over {REGEX_MATCH_SECONDS * 1000:.0f} "
            "ms; the condition failed (the unit is not targeted). Rewrite the pattern "
            "without nested repetition."
        )
        warnings.warn(SlowRegexWarning(message), stacklevel=2)
        return False


class SlowRegexWarning(RuntimeWarning):
    """A targeting ``$regex`` match stopped at :data:`REGEX_MATCH_SECONDS`."""


class _RegexTooSlow(Exception):
    """A ``$regex`` match ran past :data:`REGEX_MATCH_SECONDS`: neither true nor false, so
    the condition as a whole (``$not`` around it included) fails."""

    def __init__(self, pattern: str) -> None:
        super().__init__(pattern)
        self.pattern = pattern


# --- structure --------------------------------------------------------------------------


def _condition(
    attributes: Any, condition: Any, groups: Mapping[str, Any], seen: frozenset[str]
) -> bool:
    if not isinstance(condition, Mapping):
        return False
    for key, value in condition.items():
        if key == "$or":
            passed = _any(attributes, value, groups, seen)
        elif key == "$nor":
            passed = not _any(attributes, value, groups, seen)
        elif key == "$and":
            passed = isinstance(value, list) and all(
                _condition(attributes, item, groups, seen) for item in value
            )
        elif key == "$not":
            passed = not _condition(attributes, value, groups, seen)
        elif key == "$savedGroup":
            passed = _saved_group(attributes, value, groups, seen)
        else:
            passed = _value(value, _get_path(attributes, key), groups, seen)
        if not passed:
            return False
    return True


def _any(attributes: Any, conditions: Any, groups: Mapping[str, Any], seen: frozenset[str]) -> bool:
    if not isinstance(conditions, list):
        return False
    return not conditions or any(_condition(attributes, item, groups, seen) for item in conditions)


def _saved_group(
    attributes: Any, reference: Any, groups: Mapping[str, Any], seen: frozenset[str]
) -> bool:
    """``{"$savedGroup": {"id": ..., "attributeKey": ...}}``: a list or a condition group."""
    if not isinstance(reference, Mapping):
        return False
    group_id, key = reference.get("id"), reference.get("attributeKey")
    if not isinstance(group_id, str) or group_id in seen or not isinstance(key, str | None):
        return False
    entry = groups.get(group_id)
    if not isinstance(entry, Mapping):
        return False
    if entry.get("type") == "list":
        key = key if key is not None else entry.get("attributeKey")
        values = entry.get("values")
        if not isinstance(key, str) or not isinstance(values, list):
            return False
        return _is_in(_get_path(attributes, key), values)
    if entry.get("type") == "condition":
        return _condition(attributes, entry.get("condition"), groups, seen | {group_id})
    return False


def _get_path(attributes: Any, path: str) -> Any:
    current = attributes
    for part in path.split("."):
        if isinstance(current, Mapping):
            if part not in current:
                return None
            current = current[part]
        elif isinstance(current, list | tuple):
            if part == "length":
                current = len(current)
            elif (
                _DIGITS.match(part) and (part == "0" or part[0] != "0") and int(part) < len(current)
            ):
                current = current[int(part)]
            else:
                return None
        else:
            return None
    return current


def _is_operator_object(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and len(value) > 0
        and all(isinstance(key, str) and key.startswith("$") for key in value)
    )


def _value(
    condition: Any,
    actual: Any,
    groups: Mapping[str, Any],
    seen: frozenset[str],
    *,
    insensitive: bool = False,
) -> bool:
    if isinstance(condition, str):
        if insensitive:
            return to_text(actual).lower() == condition.lower()
        return to_text(actual) == condition
    if isinstance(condition, bool):
        return actual is not None and truthy(actual) == condition
    if is_number(condition):
        return to_number(actual) == float(condition)
    if condition is None:
        return actual is None
    if not _is_operator_object(condition):
        return same_json(actual, condition)
    return all(
        _operator(operator, actual, expected, groups, seen)
        for operator, expected in condition.items()
    )


# --- operators --------------------------------------------------------------------------


def _is_in(actual: Any, expected: Sequence[Any], *, insensitive: bool = False) -> bool:
    candidates = list(actual) if isinstance(actual, list | tuple) else [actual]
    if insensitive:
        candidates = [_fold(c) for c in candidates]
        expected = [_fold(e) for e in expected]
    return any(strict_equal(c, e) for c in candidates for e in expected)


def _fold(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _group_members(groups: Mapping[str, Any], group_id: Any) -> list[Any] | None:
    """Members of a list group; [] for an unknown id, None (matches nobody) if malformed."""
    entry = groups.get(to_text(group_id))
    if entry is None:
        return []
    if isinstance(entry, list):
        return entry
    if isinstance(entry, Mapping) and entry.get("type") == "list":
        values = entry.get("values")
        return values if isinstance(values, list) else None
    return None


@functools.lru_cache(maxsize=512)
def _compiled_regex(pattern: str, insensitive: bool) -> regex.Pattern[str] | None:
    # the SDK hands the pattern to JavaScript's RegExp; ``regex`` reads Python's ``re``
    # syntax (its version 0) and, unlike ``re``, stops a match at a time limit
    translated = translate_js_regex(isolate_case(pattern) if insensitive else pattern)
    if translated is None:
        return None
    try:
        return regex.compile(translated, regex.IGNORECASE if insensitive else 0)
    except regex.error:
        return None


def _regex(expected: Any, actual: Any, *, insensitive: bool) -> bool:
    """``RegExp(expected).test(actual)``: the value is matched as text; bad patterns fail."""
    if not isinstance(expected, str):
        return False
    compiled = _compiled_regex(expected, insensitive)
    if compiled is None:
        return False
    text = to_text(actual)
    try:
        found = compiled.search(
            isolate_case(text) if insensitive else text, timeout=REGEX_MATCH_SECONDS
        )
    except TimeoutError:
        raise _RegexTooSlow(expected) from None
    return found is not None


def _elem_match(
    condition: Any, actual: Any, groups: Mapping[str, Any], seen: frozenset[str]
) -> bool:
    if not isinstance(actual, list | tuple):
        return False
    on_items = _is_operator_object(condition)
    return any(
        item is not None
        and (
            _value(condition, item, groups, seen)
            if on_items
            else _condition(item, condition, groups, seen)
        )
        for item in actual
    )


def _contains_all(
    expected: Any,
    actual: Any,
    groups: Mapping[str, Any],
    seen: frozenset[str],
    *,
    insensitive: bool,
) -> bool:
    if not isinstance(expected, list) or not isinstance(actual, list | tuple):
        return False
    return all(
        any(_value(wanted, item, groups, seen, insensitive=insensitive) for item in actual)
        for wanted in expected
    )


def _ordered(test: Callable[[int], bool]) -> Evaluator:
    def evaluate(actual: Any, expected: Any, _groups: Mapping[str, Any], _seen: Seen) -> bool:
        order = js_order(actual, expected)
        return order is not None and test(order)

    return evaluate


def _versioned(test: Callable[[int], bool]) -> Evaluator:
    """Compare padded versions as JavaScript compares the strings (as ``$lt`` does)."""

    def evaluate(actual: Any, expected: Any, _groups: Mapping[str, Any], _seen: Seen) -> bool:
        return test(js_string_order(padded_version(actual), padded_version(expected)))

    return evaluate


def _membership(*, negated: bool, insensitive: bool = False) -> Evaluator:
    def evaluate(actual: Any, expected: Any, _groups: Mapping[str, Any], _seen: Seen) -> bool:
        if not isinstance(expected, list):
            return False
        return _is_in(actual, expected, insensitive=insensitive) != negated

    return evaluate


def _group(*, negated: bool) -> Evaluator:
    def evaluate(actual: Any, expected: Any, groups: Mapping[str, Any], _seen: Seen) -> bool:
        members = _group_members(groups, expected)
        return members is not None and _is_in(actual, members) != negated

    return evaluate


def _matches(*, negated: bool, insensitive: bool) -> Evaluator:
    def evaluate(actual: Any, expected: Any, _groups: Mapping[str, Any], _seen: Seen) -> bool:
        return _regex(expected, actual, insensitive=insensitive) != negated

    return evaluate


def _all(*, insensitive: bool) -> Evaluator:
    def evaluate(actual: Any, expected: Any, groups: Mapping[str, Any], seen: Seen) -> bool:
        return _contains_all(expected, actual, groups, seen, insensitive=insensitive)

    return evaluate


def _eq(actual: Any, expected: Any, _groups: Mapping[str, Any], _seen: Seen) -> bool:
    return strict_equal(actual, expected)


def _ne(actual: Any, expected: Any, _groups: Mapping[str, Any], _seen: Seen) -> bool:
    return not strict_equal(actual, expected)


def _exists(actual: Any, expected: Any, _groups: Mapping[str, Any], _seen: Seen) -> bool:
    return actual is not None if truthy(expected) else actual is None


def _type(actual: Any, expected: Any, _groups: Mapping[str, Any], _seen: Seen) -> bool:
    return bool(value_type(actual) == expected)


def _not(actual: Any, expected: Any, groups: Mapping[str, Any], seen: Seen) -> bool:
    return not _value(expected, actual, groups, seen)


def _size(actual: Any, expected: Any, groups: Mapping[str, Any], seen: Seen) -> bool:
    return isinstance(actual, list | tuple) and _value(expected, len(actual), groups, seen)


def _elem(actual: Any, expected: Any, groups: Mapping[str, Any], seen: Seen) -> bool:
    return _elem_match(expected, actual, groups, seen)


ArgumentKind = Literal["value", "list", "size", "flag", "type", "regex", "not", "elem_match"]
"""What an operator takes, as validation checks it: any value, a list, a number or condition
(``$size``), true/false (``$exists``), a JSON type name, a JavaScript regex, an operator
object (``$not``), a condition on array items (``$elemMatch``)."""


@dataclass(frozen=True, slots=True)
class Operator:
    """One attribute operator: the argument validation accepts and how it evaluates."""

    argument: ArgumentKind
    evaluate: Evaluator


LOGICAL_OPERATORS = frozenset({"$and", "$or", "$nor", "$not", "$savedGroup"})
"""Operators at the top of a condition (combining conditions), evaluated by ``_condition``."""

OPERATORS: Mapping[str, Operator] = MappingProxyType(
    {
        "$eq": Operator("value", _eq),
        "$ne": Operator("value", _ne),
        "$lt": Operator("value", _ordered(lambda c: c < 0)),
        "$lte": Operator("value", _ordered(lambda c: c <= 0)),
        "$gt": Operator("value", _ordered(lambda c: c > 0)),
        "$gte": Operator("value", _ordered(lambda c: c >= 0)),
        "$veq": Operator("value", _versioned(lambda c: c == 0)),
        "$vne": Operator("value", _versioned(lambda c: c != 0)),
        "$vlt": Operator("value", _versioned(lambda c: c < 0)),
        "$vlte": Operator("value", _versioned(lambda c: c <= 0)),
        "$vgt": Operator("value", _versioned(lambda c: c > 0)),
        "$vgte": Operator("value", _versioned(lambda c: c >= 0)),
        "$in": Operator("list", _membership(negated=False)),
        "$nin": Operator("list", _membership(negated=True)),
        "$ini": Operator("list", _membership(negated=False, insensitive=True)),
        "$nini": Operator("list", _membership(negated=True, insensitive=True)),
        "$all": Operator("list", _all(insensitive=False)),
        "$alli": Operator("list", _all(insensitive=True)),
        "$inGroup": Operator("value", _group(negated=False)),
        "$notInGroup": Operator("value", _group(negated=True)),
        "$regex": Operator("regex", _matches(negated=False, insensitive=False)),
        "$regexi": Operator("regex", _matches(negated=False, insensitive=True)),
        "$notRegex": Operator("regex", _matches(negated=True, insensitive=False)),
        "$notRegexi": Operator("regex", _matches(negated=True, insensitive=True)),
        "$exists": Operator("flag", _exists),
        "$type": Operator("type", _type),
        "$not": Operator("not", _not),
        "$size": Operator("size", _size),
        "$elemMatch": Operator("elem_match", _elem),
    }
)
"""Every attribute operator (``{"age": {"$gte": 18}}``), for evaluation and validation."""


def _operator(
    operator: str, actual: Any, expected: Any, groups: Mapping[str, Any], seen: Seen
) -> bool:
    entry = OPERATORS.get(operator)
    return entry is not None and entry.evaluate(actual, expected, groups, seen)
