"""Feature vectors, the FeatureSource protocol, and a hash that proves what a model saw.

Every prediction logs ``feature_vector_hash(names, values)``: if control and treatment
answered the same request, their hashes match, so an analysis can prove that both variants
saw the same features (and find the requests where a cache or a skewed pipeline made them
differ). The hash is stable across processes, machines and Python versions: it is a SHA-256
over a canonical, type-tagged encoding, never over ``repr`` or ``hash()``.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol, runtime_checkable

from abflow.errors import FeatureError, InvalidArgumentError

__all__ = ["FeatureSource", "FeatureValue", "FeatureVector", "feature_vector_hash"]

FeatureValue = float | int | bool | str | None


_PACK_DOUBLE = struct.Struct(">d").pack


def _encode(value: Any) -> bytes:
    """Type-tagged bytes: 1 and 1.0 and True and "1" hash differently, -0.0 equals 0.0."""
    kind = type(value)
    if kind is float:
        if value != value:  # NaN
            return b"fnan"
        packed: bytes = _PACK_DOUBLE(value + 0.0)  # + 0.0 folds -0.0 into 0.0
        return b"f" + packed
    if kind is str:
        data: bytes = value.encode("utf-8")
        return b"s" + len(data).to_bytes(4, "big") + data
    if kind is bool:
        return b"b1" if value else b"b0"
    if kind is int:
        text = str(value).encode()
        return b"i" + len(text).to_bytes(4, "big") + text
    if value is None:
        return b"n"
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        return _encode(value.item())  # numpy scalar -> the Python scalar it holds
    for base in (int, float, str):  # subclasses (IntEnum, StrEnum) hash like their base
        if isinstance(value, base):
            return _encode(base(value))
    msg = f"cannot hash a feature value of type {type(value).__name__}: {value!r}"
    raise InvalidArgumentError(msg)


@lru_cache(maxsize=256)
def _names_prefix(names: tuple[str, ...]) -> tuple[bytes, ...]:
    """Length-prefixed names; the same few schemas recur on every request."""
    return tuple(len(n.encode()).to_bytes(4, "big") + n.encode() for n in names)


def feature_vector_hash(names: Sequence[str], values: Sequence[Any]) -> str:
    """SHA-256 (64 hex characters) of an ordered feature vector, names included.

    Each name is length-prefixed UTF-8, each value type-tagged (None, bool, int, float as
    IEEE-754 big-endian, str); numpy scalars hash like the Python scalars they hold.
    """
    if len(names) != len(values):
        msg = f"{len(names)} feature names but {len(values)} values"
        raise InvalidArgumentError(msg)
    encoded_names = _names_prefix(tuple(names))
    parts = [b"abflow-features-v1", len(names).to_bytes(4, "big")]
    for name, value in zip(encoded_names, values, strict=True):
        parts.append(name)
        parts.append(_encode(value))
    return hashlib.sha256(b"".join(parts)).hexdigest()


@dataclass(frozen=True, slots=True)
class FeatureVector:
    """Ordered features for one request, validated; ``hash`` is what predictions log."""

    names: tuple[str, ...]
    values: tuple[FeatureValue, ...]
    hash: str = field(init=False)
    defaulted: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "hash", feature_vector_hash(self.names, self.values))

    def as_dict(self) -> dict[str, FeatureValue]:
        return dict(zip(self.names, self.values, strict=True))

    def as_floats(self) -> list[float]:
        """The values as one numeric row for a model; FeatureError names a non-numeric one."""
        row: list[float] = []
        for name, value in zip(self.names, self.values, strict=True):
            if isinstance(value, str) or value is None:
                msg = f"feature {name!r} is {value!r}, not a number the model can take"
                raise FeatureError(msg)
            row.append(float(value))
        return row


@runtime_checkable
class FeatureSource(Protocol):
    """Where a variant's features come from: the request itself, or a feature store."""

    @property
    def names(self) -> tuple[str, ...]:
        """Feature names, in the order the model takes them."""
        ...

    def get(self, request: Mapping[str, Any]) -> FeatureVector:
        """Features for one request; FeatureError naming the feature when one is unusable."""
        ...

    def get_many(self, requests: Sequence[Mapping[str, Any]]) -> list[FeatureVector]:
        """Features for many requests at once (one round trip where the source allows)."""
        ...
