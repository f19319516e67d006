"""Structural check of targeting conditions, against the one operator table.

Validation and evaluation (:mod:`abflow.targeting.conditions`) read the same
:data:`~abflow.targeting.conditions.OPERATORS`, so an operator the evaluator knows is never
rejected here and one it does not know never passes.
"""

from __future__ import annotations

import re
from typing import Any

from abflow.targeting.conditions import OPERATORS
from abflow.targeting.js_regex import translate

__all__ = ["JSON_TYPES", "MAX_CONDITION_DEPTH", "validate_condition"]

MAX_CONDITION_DEPTH = 32
"""Objects and lists nested in a condition. Deeper ones mean nothing a person writes, and a
spec nested a few hundred deep can be stored but not serialised or read back."""

JSON_TYPES = frozenset({"string", "number", "boolean", "array", "object", "null", "undefined"})
"""What ``$type`` may name."""


def validate_condition(condition: Any, path: str = "") -> list[tuple[str, str]]:
    """Structural check of a GrowthBook/MongoDB-style condition: ``[(path, message), ...]``.

    This only rejects what could never be meant, so that a typo (``$gte`` spelled ``$ge``)
    fails at validation, not silently at run time.
    """
    if not isinstance(condition, dict):
        return [(path or ".", "a condition must be an object")]
    if not path and _depth(condition) > MAX_CONDITION_DEPTH:
        return [("", f"a condition may nest objects and lists {MAX_CONDITION_DEPTH} deep at most")]
    problems: list[tuple[str, str]] = []
    for key, value in condition.items():
        where = f"{path}.{key}"
        if key in ("$and", "$or", "$nor"):
            if not isinstance(value, list):
                problems.append((where, f"{key} takes a list of conditions"))
                continue
            for index, item in enumerate(value):
                problems.extend(validate_condition(item, f"{where}[{index}]"))
        elif key == "$not":
            problems.extend(validate_condition(value, where))
        elif key == "$savedGroup":
            if not isinstance(value, dict) or not isinstance(value.get("id"), str):
                problems.append((where, '$savedGroup takes {"id": GROUP_ID}'))
        elif key.startswith("$"):
            problems.append((where, f"unknown operator {key!r} at the top of a condition"))
        else:
            problems.extend(_validate_attribute_condition(value, where))
    return problems


def _depth(value: Any) -> int:
    """How many objects and lists nest in ``value``, without recursion (it may be very deep);
    counting stops past :data:`MAX_CONDITION_DEPTH`."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_CONDITION_DEPTH:
            break
        stack.extend((child, level + 1) for child in children)
    return deepest


def _js_regex_is_valid(pattern: str) -> bool:
    """Whether JavaScript accepts ``pattern`` (targeting SDKs evaluate ``$regex`` there)."""
    translated = translate(pattern)
    if translated is None:
        return False
    try:
        re.compile(translated)
    except re.error:  # unbalanced groups and the like, which JavaScript rejects too
        return False
    return True


def _validate_attribute_condition(value: Any, path: str) -> list[tuple[str, str]]:
    if not isinstance(value, dict) or not any(str(k).startswith("$") for k in value):
        return []  # a literal to compare with, or a nested object compared whole
    problems: list[tuple[str, str]] = []
    for operator, argument in value.items():
        where = f"{path}.{operator}"
        entry = OPERATORS.get(operator)
        if entry is None:
            problems.append((where, f"unknown operator {operator!r}"))
        else:
            problems.extend(_validate_argument(entry.argument, operator, argument, where))
    return problems


def _validate_argument(
    kind: str, operator: str, argument: Any, where: str
) -> list[tuple[str, str]]:
    if kind == "list" and not isinstance(argument, list):
        return [(where, f"{operator} takes a list")]
    if kind == "size" and not isinstance(argument, int | dict):
        return [(where, "$size takes a number or a condition")]
    if kind == "flag" and not isinstance(argument, bool | int):
        return [(where, "$exists takes true or false")]
    if kind == "type" and argument not in JSON_TYPES:
        return [(where, f"$type must be one of {sorted(JSON_TYPES)}")]
    if kind == "regex":
        if not isinstance(argument, str):
            return [(where, f"{operator} takes a string")]
        if not _js_regex_is_valid(argument):
            return [(where, "invalid regular expression (read as JavaScript, as SDKs do)")]
    if kind in ("not", "elem_match"):
        if not isinstance(argument, dict):
            return [(where, f"{operator} takes a condition object")]
        if kind == "not" or any(str(k).startswith("$") for k in argument):
            return _validate_attribute_condition(argument, where)
        return validate_condition(argument, where)
    return []
