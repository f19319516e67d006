"""Prediction cache: the same model version on the same features gives the same answer.

Keys are a BLAKE2b digest of the model version and the row's float64 bytes, so a new model
version never reads an old version's answers. Entries expire after ``ttl_seconds`` (features
may carry time-sensitive meaning) and the least recently used are evicted beyond
``max_entries``, which bounds memory: one entry is about 200 bytes for a scalar output.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from abflow.errors import InvalidArgumentError

__all__ = ["MISSING", "PredictionCache", "row_key"]

MISSING: Any = object()
"""Returned by :meth:`PredictionCache.get` on a miss (``None`` is a valid prediction)."""


def row_key(model_version: str, row: np.ndarray) -> bytes:
    """Cache key of one feature row for one model version."""
    digest = hashlib.blake2b(model_version.encode(), digest_size=16)
    digest.update(np.ascontiguousarray(row, dtype=np.float64).tobytes())
    return digest.digest()


class PredictionCache:
    """A bounded LRU map with a time to live; not thread-safe (used on the event loop)."""

    def __init__(
        self,
        max_entries: int = 10_000,
        ttl_seconds: float = 60.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            msg = f"max_entries must be at least 1, got {max_entries}"
            raise InvalidArgumentError(msg)
        if ttl_seconds <= 0:
            msg = f"ttl_seconds must be positive, got {ttl_seconds}"
            raise InvalidArgumentError(msg)
        self.max_entries = max_entries
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._entries: OrderedDict[bytes, tuple[float, Any]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> Any:
        """The cached value, or :data:`MISSING` when absent or expired."""
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return MISSING
        expires_at, value = entry
        if expires_at <= self._clock():
            del self._entries[key]
            self.misses += 1
            return MISSING
        self._entries.move_to_end(key)
        self.hits += 1
        return value

    def put(self, key: bytes, value: Any) -> None:
        """Store ``value``, evicting the least recently used entry when full."""
        self._entries[key] = (self._clock() + self.ttl_seconds, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()
