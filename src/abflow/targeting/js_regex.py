"""JavaScript regular expressions (``new RegExp(pattern)``, no ``u`` flag) as Python ones.

``$regex`` conditions are written for GrowthBook's SDKs, which hand the pattern to
JavaScript. Python's ``re`` reads the same text differently in places a spec can reach:
``\\w``, ``\\d`` and ``\\b`` are ASCII in JavaScript and Unicode in Python, ``$`` also
matches before a final newline in Python, ``.`` skips ``\\r`` and line separators in
JavaScript, named groups are ``(?<n>…)``/``\\k<n>`` there, ``[^]`` is any character,
``a{,2}`` is literal text, and ``\\A``, ``\\Z``, ``(?i)`` or possessive ``a*+`` are
Python-only (JavaScript reads ``\\Z`` as ``Z`` and rejects the others). :func:`translate`
rewrites a pattern token by token so that Python matches what JavaScript matches.
"""

from __future__ import annotations

import re

__all__ = ["isolate_case", "translate"]

_WORD = "A-Za-z0-9_"
_SPACE = " \\t\\n\\v\\f\\r\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff"
_CLASS_ESCAPES = {"d": "0-9", "w": _WORD, "s": _SPACE}
"""JavaScript's class escapes, as the contents of a Python character class."""
_OUTSIDE_ESCAPES = {
    "d": "[0-9]",
    "D": "[^0-9]",
    "w": f"[{_WORD}]",
    "W": f"[^{_WORD}]",
    "s": f"[{_SPACE}]",
    "S": f"[^{_SPACE}]",
    "b": f"(?:(?<=[{_WORD}])(?![{_WORD}])|(?<![{_WORD}])(?=[{_WORD}]))",
    "B": f"(?:(?<=[{_WORD}])(?=[{_WORD}])|(?<![{_WORD}])(?![{_WORD}]))",
}
_SAME_ESCAPES = set("fnrtv0")
"""Escapes both languages read alike (``\\0`` is NUL when no digit follows)."""
_QUANTIFIER = re.compile(r"\{[0-9]+(?:,[0-9]*)?\}")
_GROUP_OPENERS = ("(?:", "(?=", "(?!", "(?<=", "(?<!")
_GROUP_NAME = re.compile(r"\(\?<([A-Za-z_$][A-Za-z0-9_$]*)>")
_HEX = re.compile(r"x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4}")


_CASE_ISOLATED = str.maketrans(
    {"\u017f": "\ue000", "\u212a": "\ue001", "\u0130": "\ue002", "\u0131": "\ue003"}
)


def isolate_case(text: str) -> str:
    """Text (pattern or subject) for an ignore-case match, as JavaScript folds case.

    JavaScript never folds a non-ASCII character into an ASCII one; Python's ``IGNORECASE``
    folds long s, the Kelvin sign and the dotted and dotless i into s, k and i. Private-use
    stand-ins, which have no case, keep those four apart (apply to pattern and text alike).
    """
    return text.translate(_CASE_ISOLATED)


class _Rejected(Exception):
    """JavaScript would throw a SyntaxError for this pattern."""


def translate(pattern: str) -> str | None:
    """The Python pattern that matches what JavaScript's ``RegExp(pattern)`` matches.

    None when JavaScript rejects the pattern (the condition is then false, as in the SDK).
    """
    try:
        return "".join(_tokens(pattern))
    except _Rejected:
        return None


def _tokens(pattern: str) -> list[str]:
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        if char == "\\":
            text, i = _escape(pattern, i + 1, in_class=False)
            out.append(text)
            continue
        if char == "[":
            text, i = _char_class(pattern, i + 1)
            out.append(text)
            continue
        if char == "(" and pattern.startswith("(?", i):
            named = _GROUP_NAME.match(pattern, i)
            if named is not None:
                out.append(f"(?P<{named.group(1)}>")
                i = named.end()
                continue
            if not pattern.startswith(_GROUP_OPENERS, i):
                raise _Rejected
            opener = next(o for o in _GROUP_OPENERS if pattern.startswith(o, i))
            out.append(opener)
            i += len(opener)
            continue
        if char == "{":
            quantifier = _QUANTIFIER.match(pattern, i)
            if quantifier is None:
                out.append("\\{")  # not a quantifier: literal text in JavaScript
                i += 1
                continue
            out.append(quantifier.group())
            i = _after_quantifier(pattern, quantifier.end(), out)
            continue
        if char in "*+?":
            out.append(char)
            i = _after_quantifier(pattern, i + 1, out)
            continue
        if char == "$":
            out.append("(?![\\s\\S])")  # the very end, not before a final newline
        elif char == ".":
            out.append("[^\\n\\r\\u2028\\u2029]")
        elif char == "}":
            out.append("\\}")
        else:
            out.append(char)
        i += 1
    return out


def _after_quantifier(pattern: str, i: int, out: list[str]) -> int:
    """Keep a lazy ``?``; a second quantifier (Python's possessive form) is an error."""
    if pattern.startswith("?", i):
        out.append("?")
        i += 1
    if i < len(pattern) and (pattern[i] in "*+" or _QUANTIFIER.match(pattern, i)):
        raise _Rejected
    return i


def _escape(pattern: str, i: int, *, in_class: bool) -> tuple[str, int]:
    """One escape sequence starting after its backslash: (Python text, next index)."""
    if i >= len(pattern):
        raise _Rejected  # a trailing backslash
    char = pattern[i]
    if in_class and char in _CLASS_ESCAPES:
        return _CLASS_ESCAPES[char], i + 1
    if in_class and char in "DWS":
        return "\\" + char, i + 1  # a negated set inside a set: Python's own (rare)
    if in_class and char == "b":
        return "\\x08", i + 1
    if not in_class and char in _OUTSIDE_ESCAPES:
        return _OUTSIDE_ESCAPES[char], i + 1
    if char in _SAME_ESCAPES and not (char == "0" and pattern[i + 1 : i + 2].isdigit()):
        return "\\" + char, i + 1
    hexa = _HEX.match(pattern, i)
    if hexa is not None:
        return "\\" + hexa.group(), hexa.end()
    if char == "c" and pattern[i + 1 : i + 2].isascii() and pattern[i + 1 : i + 2].isalpha():
        return f"\\x{ord(pattern[i + 1]) % 32:02x}", i + 2
    if not in_class and char == "k" and pattern.startswith("<", i + 1) and "(?<" in pattern:
        end = pattern.find(">", i)
        if end < 0:
            raise _Rejected
        return f"(?P={pattern[i + 2 : end]})", end + 1
    if char.isdigit():
        if in_class:
            raise _Rejected  # octal escapes: too rare to mirror
        digits = re.match(r"[0-9]+", pattern[i:])
        assert digits is not None
        return "\\" + digits.group(), i + len(digits.group())  # a back-reference
    return re.escape(char), i + 1  # an identity escape: \Z is Z, \- is -


def _char_class(pattern: str, i: int) -> tuple[str, int]:
    """A character class starting after its ``[``: (Python text, index after its ``]``)."""
    negated = pattern.startswith("^", i)
    if negated:
        i += 1
    if pattern.startswith("]", i):  # [] matches nothing, [^] any character
        return ("[\\s\\S]" if negated else "(?!)"), i + 1
    parts = ["[^" if negated else "["]
    while i < len(pattern):
        char = pattern[i]
        if char == "]":
            parts.append("]")
            return "".join(parts), i + 1
        if char == "\\":
            text, i = _escape(pattern, i + 1, in_class=True)
            parts.append(text)
            continue
        # Python reads "[", "&&", "~~" and "||" inside a set as future set operations
        parts.append("\\" + char if char in "[&~|" else char)
        i += 1
    raise _Rejected  # an unterminated class
