"""Values as GrowthBook's JavaScript SDK sees them: JavaScript's conversions and comparisons.

Targeting conditions are evaluated with JavaScript's coercions (``String(x)``, ``Number(x)``,
``===``, ``<`` on text or numbers), on decoded JSON values, so that a browser and the gateway
agree on who is targeted; and versions compare as GrowthBook pads them. Pure functions.
"""

from __future__ import annotations

import functools
import math
import numbers
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

__all__ = [
    "is_number",
    "js_order",
    "js_string_order",
    "padded_version",
    "same_json",
    "strict_equal",
    "to_number",
    "to_text",
    "truthy",
    "value_type",
]

_NUMBER = re.compile(r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$")
_RADIX = {"0x": 16, "0o": 8, "0b": 2}
_RADIX_DIGITS = re.compile(r"^0(?:[xX][0-9a-fA-F]+|[oO][0-7]+|[bB][01]+)$")
_VERSION_STRIP = re.compile(r"^v|\+.*$")
_VERSION_SPLIT = re.compile(r"[-.]")
_DIGITS = re.compile(r"^[0-9]+\Z")
_JS_SPACE = " \t\n\v\f\r\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"


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
    if is_number(value):
        value = _number_text(float(value))
    if not isinstance(value, str) or not value:
        value = "0"
    return _padded(value)


@functools.lru_cache(maxsize=1024)
def _padded(text: str) -> str:
    parts = _VERSION_SPLIT.split(_VERSION_STRIP.sub("", text))
    if len(parts) == 3:
        parts.append("~")
    return "-".join(part.rjust(5) if _DIGITS.match(part) else part for part in parts)


def is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _number_text(value: float) -> str:
    """``String(number)`` in JavaScript: shortest round-trip digits, exponent past 1e21."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    exact = Decimal(repr(abs(value))).normalize()  # shortest round-trip digits, no zeros
    _, digit_tuple, exponent = exact.as_tuple()
    digits = "".join(map(str, digit_tuple))
    k = len(digits)
    point = k + int(exponent)  # where the decimal point falls after the first digit
    if k <= point <= 21:
        text = digits + "0" * (point - k)
    elif 0 < point <= 21:
        text = digits[:point] + "." + digits[point:]
    elif -6 < point <= 0:
        text = "0." + "0" * (-point) + digits
    else:
        mantissa = digits[0] + ("." + digits[1:] if k > 1 else "")
        text = f"{mantissa}e{point - 1:+d}"
    return sign + text


def to_text(value: Any, *, nested: bool = False) -> str:
    """``String(value)``; inside an array, ``null`` becomes the empty string (``join``)."""
    if value is None:
        return "" if nested else "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if is_number(value):
        return _number_text(float(value))
    if isinstance(value, list | tuple):
        return ",".join(to_text(item, nested=True) for item in value)
    return "[object Object]"


def _primitive(value: Any) -> Any:
    """``ToPrimitive``: arrays and objects become their text, everything else stays."""
    return to_text(value) if isinstance(value, list | tuple | Mapping) else value


def to_number(value: Any) -> float:
    """``Number(value)`` (what ``value * 1`` gives); NaN when there is no number."""
    value = _primitive(value)
    if value is None or value is False:
        return 0.0
    if value is True:
        return 1.0
    if is_number(value):
        return float(value)
    if isinstance(value, str):
        text = value.strip(_JS_SPACE)
        if not text:
            return 0.0
        if _NUMBER.match(text):
            return float(text)
        if _RADIX_DIGITS.match(text):
            return float(int(text[2:], _RADIX[text[:2].lower()]))
        if text.lstrip("+-") == "Infinity":
            return -math.inf if text.startswith("-") else math.inf
    return math.nan


def truthy(value: Any) -> bool:
    if value is None or value is False or value == "":
        return False
    if is_number(value):
        return not (value == 0 or math.isnan(value))
    return True  # non-empty strings, true, and every array or object, empty or not


def same_json(a: Any, b: Any) -> bool:
    """``JSON.stringify(a) === JSON.stringify(b)``: same structure, key order included."""
    a, b = _json_number(a), _json_number(b)
    kind = value_type(a)
    if kind != value_type(b):
        return False
    if kind == "array":
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    if kind == "object":
        return list(a) == list(b) and all(same_json(a[key], b[key]) for key in a)
    return bool(a == b)


def _json_number(value: Any) -> Any:
    """Numbers as JSON prints them: one float type, and NaN or an infinity as ``null``."""
    if not is_number(value):
        return value
    number = float(value)
    return number if math.isfinite(number) else None


def strict_equal(a: Any, b: Any) -> bool:
    """``a === b`` on decoded JSON: same type and value; arrays and objects never equal."""
    if is_number(a) and is_number(b):
        return float(a) == float(b)
    kind = value_type(a)
    if kind != value_type(b) or kind in ("array", "object", "unknown"):
        return False
    return bool(a == b)


def js_string_order(left: str, right: str) -> int:
    """-1, 0 or 1 as JavaScript orders two strings: by UTF-16 code unit, not code point."""
    if left.isascii() and right.isascii():
        return (left > right) - (left < right)
    units = [text.encode("utf-16-be", "surrogatepass") for text in (left, right)]
    return (units[0] > units[1]) - (units[0] < units[1])


def js_order(actual: Any, expected: Any) -> int | None:
    """-1, 0 or 1 as JavaScript's ``<`` and ``>`` see it; None when unordered (NaN)."""
    left, right = _primitive(actual), _primitive(expected)
    if isinstance(left, str) and isinstance(right, str):
        return js_string_order(left, right)
    a, b = to_number(left), to_number(right)
    if math.isnan(a) or math.isnan(b):
        return None
    return (a > b) - (a < b)
