"""Targeting conditions: MongoDB-style JSON, evaluated the way GrowthBook's SDKs do.

A condition maps attribute paths (``"country"``, ``"device.os"``, ``"tags.0"``) to a literal
(compared strictly and deeply) or to an operator object (``{"$gte": 18}``), and combines them
with ``$and``, ``$or``, ``$nor`` and ``$not``. Semantics follow the SDKs, including their
JavaScript heritage, so that a client SDK and the gateway agree on who is targeted:

- a missing attribute reads as ``null``; ``{"$exists": false}`` matches it, and in ordered
  comparisons it counts as 0 (JavaScript's ``null < 10``);
- ordered comparisons of two strings compare them as text, anything else as numbers
  (``"8" > 5`` holds), and a value that is not a number never compares (NaN);
- ``$eq``, ``$in`` and literals never equate different types (``1`` is not ``true``);
- an operator abflow does not know fails the condition, even under ``$not``.

Evaluation is internally three-valued (True, False, or None for "unknown operator"), and only
a definite True passes.
"""

from __future__ import annotations

import functools
import math
import numbers
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["eval_condition", "padded_version", "value_type"]

Result = bool | None
Groups = Mapping[str, Any] | None

_NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
_HEX = re.compile(r"^0[xX][0-9a-fA-F]+$")
_VERSION_STRIP = re.compile(r"^v|\+.*$")
_VERSION_SPLIT = re.compile(r"[-.]")
_DIGITS = re.compile(r"^[0-9]+$")


def eval_condition(
    attributes: Mapping[str, Any], condition: Mapping[str, Any], saved_groups: Groups = None
) -> bool:
    """Whether ``attributes`` satisfy ``condition``; ``saved_groups`` feeds ``$inGroup``.

    ``saved_groups`` maps a group id to its member values: a list, or GrowthBook's
    ``{"type": "list", "values": [...]}``. An unknown group has no members. A condition too
    malformed to evaluate (non-string keys, nesting deeper than the interpreter allows) fails.
    """
    try:
        return _condition(attributes, condition, saved_groups) is True
    except (AttributeError, TypeError, RecursionError):
        return False


def value_type(value: Any) -> str:
    """The JSON type name ``$type`` compares with: string, number, boolean, array, object, null."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, numbers.Real):  # numpy scalars and other registered numbers
        return "number"
    return "unknown"


def padded_version(value: Any) -> str:
    """A version string that orders correctly as plain text (GrowthBook's version padding).

    A leading ``v`` and ``+build`` metadata are dropped, parts split on ``.`` and ``-``,
    numeric parts left-padded to 5 characters, and a release without a pre-release tag gets
    ``~`` appended so that ``1.0.0`` sorts after ``1.0.0-rc.1``.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = _number_text(value)
    if not isinstance(value, str) or not value:
        value = "0"
    return _padded(value)


@functools.lru_cache(maxsize=1024)
def _padded(text: str) -> str:
    parts = _VERSION_SPLIT.split(_VERSION_STRIP.sub("", text))
    if len(parts) == 3:
        parts.append("~")
    return "-".join(part.rjust(5) if _DIGITS.match(part) else part for part in parts)


def _number_text(value: float) -> str:
    if isinstance(value, int) or (math.isfinite(value) and value.is_integer()):
        return str(int(value))
    return repr(value)


# --- structure --------------------------------------------------------------------------


def _condition(attributes: Any, condition: Any, groups: Groups) -> Result:
    if not isinstance(condition, Mapping):
        return False
    result: Result = True
    for key, value in condition.items():
        if key == "$or":
            outcome = _any(attributes, value, groups)
        elif key == "$nor":
            outcome = _negate(_any(attributes, value, groups))
        elif key == "$and":
            outcome = _all(attributes, value, groups)
        elif key == "$not":
            outcome = _negate(_condition(attributes, value, groups))
        else:
            outcome = _value(value, _get_path(attributes, key), groups)
        if outcome is False:
            return False
        if outcome is None:
            result = None
    return result


def _any(attributes: Any, conditions: Any, groups: Groups) -> Result:
    if not isinstance(conditions, list):
        return False
    if not conditions:
        return True
    result: Result = False
    for condition in conditions:
        outcome = _condition(attributes, condition, groups)
        if outcome is True:
            return True
        if outcome is None:
            result = None
    return result


def _all(attributes: Any, conditions: Any, groups: Groups) -> Result:
    if not isinstance(conditions, list):
        return False
    result: Result = True
    for condition in conditions:
        outcome = _condition(attributes, condition, groups)
        if outcome is False:
            return False
        if outcome is None:
            result = None
    return result


def _negate(result: Result) -> Result:
    return None if result is None else not result


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
    return isinstance(value, Mapping) and all(str(key).startswith("$") for key in value)


def _value(condition: Any, actual: Any, groups: Groups) -> Result:
    if _is_operator_object(condition):
        result: Result = True
        for operator, expected in condition.items():
            outcome = _operator(operator, actual, expected, groups)
            if outcome is False:
                return False
            if outcome is None:
                result = None
        return result
    return _deep_equal(condition, actual)


# --- equality and order -----------------------------------------------------------------


def _strict_equal(a: Any, b: Any) -> bool:
    """JavaScript ``===`` on decoded JSON: same type and value; containers never equal."""
    kind = value_type(a)
    if kind != value_type(b) or kind in ("array", "object", "unknown"):
        return False
    return bool(a == b)


def _deep_equal(a: Any, b: Any) -> bool:
    kind = value_type(a)
    if kind != value_type(b):
        return False
    if kind == "array":
        return len(a) == len(b) and all(_deep_equal(x, y) for x, y in zip(a, b, strict=True))
    if kind == "object":
        return a.keys() == b.keys() and all(_deep_equal(a[key], b[key]) for key in a)
    return bool(a == b)


def _to_number(value: Any) -> float:
    """JavaScript's ``Number(value)`` for decoded JSON values (NaN when it has none)."""
    if value is None or value is False:
        return 0.0
    if value is True:
        return 1.0
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return 0.0
        if _NUMBER.match(text):
            return float(text)
        if _HEX.match(text):
            return float(int(text, 16))
        if text.lstrip("+-") == "Infinity":
            return -math.inf if text.startswith("-") else math.inf
    if isinstance(value, numbers.Real):
        return float(value)
    return math.nan


def _order(actual: Any, expected: Any) -> int | None:
    """-1, 0 or 1 as JavaScript's relational operators see it; None when unordered (NaN)."""
    if isinstance(actual, str) and isinstance(expected, str):
        if actual.isascii() and expected.isascii():
            return (actual > expected) - (actual < expected)
        left_units = actual.encode("utf-16-be", "surrogatepass")
        right_units = expected.encode("utf-16-be", "surrogatepass")
        return (left_units > right_units) - (left_units < right_units)
    left, right = _to_number(actual), _to_number(expected)
    if math.isnan(left) or math.isnan(right):
        return None
    return (left > right) - (left < right)


def _fold(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _is_in(expected: Any, actual: Any, *, insensitive: bool = False) -> bool:
    candidates = list(actual) if isinstance(actual, list | tuple) else [actual]
    if insensitive:
        candidates = [_fold(c) for c in candidates]
        expected = [_fold(e) for e in expected]
    return any(_strict_equal(c, e) for c in candidates for e in expected)


def _group_members(groups: Groups, group_id: Any) -> list[Any]:
    entry = groups.get(group_id) if groups is not None and isinstance(group_id, str) else None
    if isinstance(entry, list):
        return entry
    if isinstance(entry, Mapping) and isinstance(entry.get("values"), list):
        return list(entry["values"])
    return []


@functools.lru_cache(maxsize=512)
def _compiled_regex(pattern: str, insensitive: bool) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern, re.IGNORECASE if insensitive else 0)
    except re.error:
        return None


def _regex(expected: Any, actual: Any, *, insensitive: bool) -> bool | None:
    """Whether ``actual`` matches; None when the pattern or the value cannot be matched."""
    if not isinstance(expected, str):
        return None
    compiled = _compiled_regex(expected, insensitive)
    if compiled is None:
        return None
    if isinstance(actual, int | float) and not isinstance(actual, bool):
        actual = _number_text(actual)
    if not isinstance(actual, str):
        return None
    return compiled.search(actual) is not None


# --- operators --------------------------------------------------------------------------

_ORDERED: dict[str, Callable[[int], bool]] = {
    "$lt": lambda c: c < 0,
    "$lte": lambda c: c <= 0,
    "$gt": lambda c: c > 0,
    "$gte": lambda c: c >= 0,
}
_VERSIONED: dict[str, Callable[[str, str], bool]] = {
    "$veq": lambda a, b: a == b,
    "$vne": lambda a, b: a != b,
    "$vlt": lambda a, b: a < b,
    "$vlte": lambda a, b: a <= b,
    "$vgt": lambda a, b: a > b,
    "$vgte": lambda a, b: a >= b,
}


def _operator(operator: str, actual: Any, expected: Any, groups: Groups) -> Result:
    if operator in _ORDERED:
        order = _order(actual, expected)
        return order is not None and _ORDERED[operator](order)
    if operator in _VERSIONED:
        return _VERSIONED[operator](padded_version(actual), padded_version(expected))
    if operator == "$eq":
        return _strict_equal(actual, expected)
    if operator == "$ne":
        return not _strict_equal(actual, expected)
    if operator in ("$in", "$nin", "$ini", "$nini"):
        if not isinstance(expected, list):
            return False
        found = _is_in(expected, actual, insensitive=operator.endswith("i"))
        return found if operator in ("$in", "$ini") else not found
    if operator in ("$inGroup", "$notInGroup"):
        found = _is_in(_group_members(groups, expected), actual)
        return found if operator == "$inGroup" else not found
    if operator in ("$regex", "$regexi"):
        return _regex(expected, actual, insensitive=operator == "$regexi") is True
    if operator in ("$notRegex", "$notRegexi"):
        return _regex(expected, actual, insensitive=operator == "$notRegexi") is not True
    if operator == "$exists":
        return actual is not None if expected else actual is None
    if operator == "$type":
        return bool(value_type(actual) == expected)
    if operator == "$not":
        return _negate(_value(expected, actual, groups))
    if operator == "$size":
        if not isinstance(actual, list | tuple):
            return False
        return _value(expected, len(actual), groups)
    if operator == "$elemMatch":
        return _elem_match(expected, actual, groups)
    if operator in ("$all", "$alli"):
        if not isinstance(expected, list) or not isinstance(actual, list | tuple):
            return False
        return _contains_all(expected, actual, groups, insensitive=operator == "$alli")
    return None


def _elem_match(condition: Any, actual: Any, groups: Groups) -> Result:
    if not isinstance(actual, list | tuple):
        return False
    on_items = _is_operator_object(condition) and not any(
        key in ("$and", "$or", "$nor") for key in condition
    )
    result: Result = False
    for item in actual:
        outcome = (
            _value(condition, item, groups) if on_items else _condition(item, condition, groups)
        )
        if outcome is True:
            return True
        if outcome is None:
            result = None
    return result


def _contains_all(
    expected: Sequence[Any], actual: Sequence[Any], groups: Groups, *, insensitive: bool
) -> Result:
    items = [_fold(item) for item in actual] if insensitive else list(actual)
    result: Result = True
    for wanted in expected:
        target = _fold(wanted) if insensitive else wanted
        found: Result = False
        for item in items:
            outcome = _value(target, item, groups)
            if outcome is True:
                found = True
                break
            if outcome is None:
                found = None
        if found is False:
            return False
        if found is None:
            result = None
    return result
