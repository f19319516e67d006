"""Deterministic bucketing, compatible with GrowthBook's SDKs.

Every function here is pure: the same inputs give the same bucket on any replica, in any
process and under any ``PYTHONHASHSEED``, so that gateways need no shared state and client
SDKs in other languages can compute the server's assignment themselves.

The hash is FNV-1a (32 bit) over the string's UTF-16 code units: the ``charCodeAt`` loop of
GrowthBook's JavaScript SDK, which its other SDKs (Python 4.x included) reproduce. Inside the
Basic Multilingual Plane a code unit is the character's code point; a character above U+FFFF
(emoji, rare CJK) is hashed as its surrogate pair, so ``user-😀`` lands in the same bucket as
in every GrowthBook client.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence

from fnv_hash_fast import fnv1a_32 as _fnv1a_32_bytes

__all__ = [
    "FNV_OFFSET",
    "FNV_PRIME",
    "WEIGHT_SUM_TOLERANCE",
    "bucket_hash",
    "bucket_key",
    "bucket_ranges",
    "bucket_scale",
    "choose_variation",
    "fnv1a32",
    "get_equal_weights",
    "in_namespace",
    "in_range",
    "utf16_units",
]

FNV_OFFSET = 0x811C9DC5
FNV_PRIME = 0x01000193
_MASK = 0xFFFFFFFF

WEIGHT_SUM_TOLERANCE = 0.01
"""Weights whose sum is further than this from 1 fall back to equal weights (as in GrowthBook)."""

Range = tuple[float, float]

_UTF16_NATIVE = "utf-16-le" if sys.byteorder == "little" else "utf-16-be"


def utf16_units(text: str) -> Sequence[int]:
    """The UTF-16 code units of ``text`` (JavaScript's ``charCodeAt`` of each position).

    A character above U+FFFF gives its surrogate pair; a lone surrogate, which a Python
    string may hold, gives itself, as in JavaScript.
    """
    return memoryview(text.encode(_UTF16_NATIVE, "surrogatepass")).cast("H")


def _fnv1a32_python(text: str, state: int = FNV_OFFSET) -> int:
    for unit in utf16_units(text):
        state = ((state ^ unit) * FNV_PRIME) & _MASK
    return state


def fnv1a32(s: str) -> int:
    """FNV-1a 32-bit hash over the UTF-16 code units of ``s``.

    ASCII strings go through a C implementation (their UTF-8 bytes are their code units);
    anything else takes the exact pure-Python loop.
    """
    if s.isascii():
        return int(_fnv1a_32_bytes(s.encode()))
    return _fnv1a32_python(s)


def bucket_hash(seed: str, value: str, version: int = 2) -> float | None:
    """Map ``value`` to a bucket in ``[0, 1)``; ``None`` for an unknown hash version.

    Version 1 has 1000 buckets and is kept for namespaces and old experiments; version 2
    (the default) hashes twice, which spreads similar seeds and ids much better.
    """
    if version == 2:
        inner = fnv1a32(seed + value)
        return (fnv1a32(str(inner)) % 10000) / 10000
    if version == 1:
        return (fnv1a32(value + seed) % 1000) / 1000
    return None


def bucket_scale(hash_version: int) -> int:
    """Buckets of a hash version: ``bucket_hash`` is ``bucket_key / scale``."""
    return 10000 if hash_version == 2 else 1000


def bucket_key(seed: str, value: str, hash_version: int) -> int:
    """``bucket_hash(seed, value, hash_version) * bucket_scale(hash_version)`` as an integer.

    ASCII text takes the C hash (its UTF-8 bytes are its UTF-16 code units); anything else
    the exact code-unit loop.
    """
    if hash_version == 2:
        text = seed + value
        inner = _fnv1a_32_bytes(text.encode()) if text.isascii() else _fnv1a32_python(text)
        return int(_fnv1a_32_bytes(str(inner).encode())) % 10000
    text = value + seed
    if text.isascii():
        return int(_fnv1a_32_bytes(text.encode())) % 1000
    return _fnv1a32_python(text) % 1000


def get_equal_weights(n: int) -> list[float]:
    """``n`` equal weights summing to 1 (an empty list when ``n < 1``)."""
    if n < 1:
        return []
    return [1.0 / n] * n


def _usable_weights(n: int, weights: Sequence[float] | None) -> list[float]:
    if weights is None or len(weights) != n:
        return get_equal_weights(n)
    values = [float(w) for w in weights]
    if not all(math.isfinite(w) and w >= 0 for w in values):
        return get_equal_weights(n)
    if not 1.0 - WEIGHT_SUM_TOLERANCE <= math.fsum(values) <= 1.0 + WEIGHT_SUM_TOLERANCE:
        return get_equal_weights(n)
    return values


def bucket_ranges(
    n: int, coverage: float = 1.0, weights: Sequence[float] | None = None
) -> list[Range]:
    """Half-open bucket ranges ``[start, start + coverage * weight)`` for ``n`` variants.

    Each range starts at the cumulative weight of the variants before it, so lowering the
    coverage shrinks every range from its top and never moves a unit between variants.
    Coverage is clamped to ``[0, 1]``; weights that do not match ``n``, are negative, or do
    not sum to 1 (within ``WEIGHT_SUM_TOLERANCE``) fall back to equal weights, as GrowthBook's
    SDKs do (the spec validator rejects such weights before they get here).
    """
    coverage = min(max(float(coverage), 0.0), 1.0)
    ranges: list[Range] = []
    cumulative = 0.0
    for weight in _usable_weights(n, weights):
        start = cumulative
        cumulative += weight
        ranges.append((start, start + coverage * weight))
    return ranges


def in_range(h: float, bucket_range: Range) -> bool:
    """Whether bucket ``h`` falls in the half-open range ``[start, end)``."""
    return bucket_range[0] <= h < bucket_range[1]


def choose_variation(h: float, ranges: Sequence[Range]) -> int:
    """Index of the first range holding bucket ``h``, or -1 (not in the experiment)."""
    for index, (start, end) in enumerate(ranges):
        if start <= h < end:
            return index
    return -1


def in_namespace(unit_id: str, namespace: tuple[str, float, float]) -> bool:
    """Whether a unit falls in the namespace slice ``(name, start, end)``.

    Experiments on disjoint slices of one namespace never share a unit: the namespace hash
    does not depend on the experiment.
    """
    name, start, end = namespace
    h = bucket_hash("__" + name, unit_id, 1)
    return h is not None and start <= h < end
