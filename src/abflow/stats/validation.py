"""Argument conversion shared by the statistics functions: numbers in, clear errors out.

Callers pass Python numbers, numpy scalars (``np.int64`` counts from an array, ``np.float64``
sums) or, by mistake, strings and None. Every public function converts through here so a
wrong type raises ``InvalidArgumentError`` naming the argument, never a ``TypeError`` from a
comparison deep inside.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from typing import Any

from abflow.errors import InvalidArgumentError

__all__ = ["real_number", "real_numbers"]


def real_number(name: str, value: Any) -> float:
    """``value`` as a float when it is a real number (bools are not); else a clear error."""
    if type(value) is float or type(value) is int:  # the common case, without the ABC check
        return float(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        msg = f"{name} must be a number, got {value!r}"
        raise InvalidArgumentError(msg)
    return float(value)


def real_numbers(name: str, values: Any) -> tuple[float, ...]:
    """A sequence of real numbers as floats (a numpy array or any iterable of numbers)."""
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        msg = f"{name} must be a sequence of numbers, got {values!r}"
        raise InvalidArgumentError(msg)
    return tuple(real_number(f"{name}[{i}]", v) for i, v in enumerate(values))
