"""One sample of one feature, read once: its kind, its missing values, its numbers or counts.

Every value of every compared column passes through here (25 columns of a million rows are
50 million values), so nothing loops over values in Python: a numpy array is read by its
dtype, a list by one pass of ``type`` over it (``set(map(type, values))`` runs in C) and one
conversion to an array or one count of its categories.

Missing values are ``None``, NaN (of any float width) and the empty string. A sample holding
text or booleans is categorical; a numpy array of numbers (booleans included: ``numpy.bool_``
is a number to Python) is numeric.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from abflow.errors import InvalidArgumentError

__all__ = ["Column", "categorical_counts", "is_missing", "scan", "sorted_numbers"]

_NUMBER_DTYPES = frozenset("fiub")
"""numpy dtype kinds read as numbers without looking at the values."""


@dataclass(frozen=True, slots=True)
class Column:
    """One sample of one feature, with the types found in it."""

    values: np.ndarray | list[Any]
    types: frozenset[type]
    """The Python types of a list's values; empty for a numpy array of numbers."""
    looks_categorical: bool
    """Text (other than the empty string) or booleans in it."""
    text_counts: Counter[Any] | None = None
    """How often each value occurs, when every value is text or None (counted once, here)."""

    @property
    def size(self) -> int:
        return len(self.values)


def is_missing(value: object) -> bool:
    if isinstance(value, float | np.floating):
        return math.isnan(value)
    return value is None or (isinstance(value, str) and value == "")


def scan(values: Sequence[Any] | np.ndarray) -> Column:
    """Read a sample's types once (the kind decision and the conversions reuse them)."""
    if not isinstance(values, list | np.ndarray) and hasattr(values, "__array__"):
        values = np.asarray(values)  # a pandas Series or an Arrow array: numbers stay an array
    if isinstance(values, np.ndarray) and values.ndim == 1:
        if values.dtype.kind in _NUMBER_DTYPES:
            return Column(values, frozenset(), looks_categorical=False)
        # Text and objects as Python objects (faster to count); other dtypes (dates, bytes)
        # as numpy scalars, which keep their own conversions to float and to text.
        items: list[Any] = values.tolist() if values.dtype.kind in "OU" else list(values)
    elif isinstance(values, np.ndarray):
        items = list(values)
    else:
        items = values if isinstance(values, list) else list(values)
    first = next((v for v in items if not (v is None or (isinstance(v, str) and v == ""))), None)
    if isinstance(first, str):
        counts = Counter(items)
        # A value equal to a text (or None) is a text (or None): if every distinct value is
        # one, so is every value, and the types of the keys are all the types there are.
        if all(key is None or isinstance(key, str) for key in counts):
            return Column(items, frozenset(map(type, counts)), True, counts)
    types = frozenset(map(type, items))
    has_bool = any(issubclass(kind, bool) for kind in types)
    has_text = any(issubclass(kind, str) for kind in types)
    text = has_text and any(isinstance(v, str) and v != "" for v in items)
    return Column(items, types, looks_categorical=has_bool or text)


def _not_numbers(name: str, role: str) -> InvalidArgumentError:
    msg = (
        f"feature {name!r} in the {role} sample holds values that are not numbers; "
        "declare it categorical"
    )
    return InvalidArgumentError(msg)


def sorted_numbers(name: str, column: Column, role: str) -> tuple[np.ndarray, float]:
    """The present values as a sorted float64 array, and the share of missing values."""
    if isinstance(column.values, np.ndarray):
        array = column.values.astype(np.float64, copy=False)
    else:
        values = column.values
        if any(issubclass(kind, str) for kind in column.types):
            values = [None if isinstance(v, str) and v == "" else v for v in values]
        try:
            array = np.asarray(values, dtype=np.float64)  # None becomes NaN: missing
        except (TypeError, ValueError):
            raise _not_numbers(name, role) from None
        if array.ndim != 1:  # lists or objects (JSON arrays) that numpy reads as a matrix
            raise _not_numbers(name, role)
    present = np.isnan(array)
    if present.any():
        array = array[~present]
    elif np.may_share_memory(array, column.values):
        array = array.copy()  # sorted below in place: never the caller's array
    array.sort()
    if array.size and not (np.isfinite(array[0]) and np.isfinite(array[-1])):
        msg = f"feature {name!r} in the {role} sample holds infinite values"
        raise InvalidArgumentError(msg)
    return array, _missing_share(column.size, array.size)


def categorical_counts(column: Column) -> tuple[Counter[str], float]:
    """How often each category (as text) is present, and the share of missing values."""
    if column.text_counts is not None:
        found = column.text_counts
        counts = Counter({str(k): n for k, n in found.items() if k is not None and k != ""})
        return counts, _missing_share(column.size, counts.total())
    values: list[Any]
    if isinstance(column.values, np.ndarray):
        values = list(column.values)  # numpy scalars keep their own str(), as the text is
        types = frozenset(map(type, values))
    else:
        values, types = column.values, column.types
    kinds = types - {type(None)}
    if all(issubclass(kind, str) for kind in kinds) or (len(kinds) == 1 and kinds <= {bool, int}):
        # Equal values of these types have equal text, so counting the values is counting
        # the texts; the missing ones (None and "") are dropped from the few keys after.
        found = Counter(values)
        counts = Counter({str(k): n for k, n in found.items() if k is not None and k != ""})
    else:  # numbers of several types: 1 == 1.0 == True, but "1", "1.0" and "True" differ
        counts = Counter(str(v) for v in values if not is_missing(v))
    return counts, _missing_share(column.size, counts.total())


def _missing_share(total: int, present: int) -> float:
    return (total - present) / total if total else 0.0
