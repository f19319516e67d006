"""Features sent in the request, checked against a declared, ordered schema.

A model trained on ``[amount, country, is_new]`` must get exactly that: each feature present
(or filled from its declared default), of its declared type, finite. Anything else is a
FeatureError that names the feature, because a silent NaN or a shifted column scores every
request wrongly and no metric shows why.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from abflow.errors import FeatureError, InvalidArgumentError
from abflow.features.vector import FeatureValue, FeatureVector

__all__ = ["NO_DEFAULT", "FeatureSpec", "FeatureType", "InlineFeatures"]

FeatureType = Literal["float", "int", "bool", "str"]
_TYPES: Final = ("float", "int", "bool", "str")
_EXACT: Final[dict[str, type]] = {"int": int, "bool": bool, "str": str}


class _NoDefault:
    def __repr__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT: Final = _NoDefault()
"""Marks a feature that must be present: there is nothing sensible to fill in."""


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """One declared feature: its name, type and, optionally, the value used when absent."""

    name: str
    type: FeatureType = "float"
    default: FeatureValue | _NoDefault = NO_DEFAULT

    def __post_init__(self) -> None:
        if not self.name:
            msg = "a feature needs a name"
            raise InvalidArgumentError(msg)
        if self.type not in _TYPES:
            msg = f"feature {self.name!r} has type {self.type!r}; use one of {list(_TYPES)}"
            raise InvalidArgumentError(msg)
        if self.has_default:
            try:
                coerce(self, self.default)
            except FeatureError as exc:
                msg = f"default of {exc}"
                raise InvalidArgumentError(msg) from None

    @property
    def has_default(self) -> bool:
        return not isinstance(self.default, _NoDefault)


def coerce(spec: FeatureSpec, value: Any) -> FeatureValue:
    """``value`` as ``spec.type``, or FeatureError naming the feature and what was wrong."""
    kind = spec.type
    exact = type(value)
    # Fast paths for the common, already-right values (this runs per feature per request).
    if kind == "float" and (exact is float or exact is int):
        number = float(value)
        if number - number == 0.0:  # finite: inf - inf and nan - nan are nan
            return number
    elif exact is _EXACT.get(kind):
        same: FeatureValue = value
        return same
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()  # numpy scalar
    if kind == "bool":
        if isinstance(value, bool):
            return value
    elif kind == "str":
        if isinstance(value, str):
            return value
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        number = float(value)
        if not math.isfinite(number):
            msg = f"feature {spec.name!r} is {number}, not a finite number"
            raise FeatureError(msg)
        if kind == "float":
            return number
        if number.is_integer():
            return int(number)
        msg = f"feature {spec.name!r} must be an int, got {value!r}"
        raise FeatureError(msg)
    msg = f"feature {spec.name!r} must be {_article(kind)}, got {value!r} ({type(value).__name__})"
    raise FeatureError(msg)


def _article(kind: str) -> str:
    return {"float": "a float", "int": "an int", "bool": "a bool", "str": "a str"}[kind]


def _as_spec(item: FeatureSpec | str | tuple[Any, ...] | Mapping[str, Any]) -> FeatureSpec:
    if isinstance(item, FeatureSpec):
        return item
    if isinstance(item, str):
        return FeatureSpec(item)
    if isinstance(item, Mapping):
        return FeatureSpec(**item)
    return FeatureSpec(*item)


class InlineFeatures:
    """Features taken from the request, validated against ``schema`` (order = model order).

    ``request`` is a mapping of feature name to value, or a sequence of values in schema
    order. Unknown names are an error unless ``allow_extra`` (a typo in a name would
    otherwise look like a missing feature filled by its default).
    """

    def __init__(
        self,
        schema: Iterable[FeatureSpec | str | tuple[Any, ...] | Mapping[str, Any]],
        *,
        allow_extra: bool = False,
    ) -> None:
        self.schema: tuple[FeatureSpec, ...] = tuple(_as_spec(item) for item in schema)
        self.allow_extra = allow_extra
        if not self.schema:
            msg = "declare at least one feature"
            raise InvalidArgumentError(msg)
        names = [spec.name for spec in self.schema]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            msg = f"features declared twice: {duplicates}"
            raise InvalidArgumentError(msg)
        self._names = tuple(names)

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    def get(self, request: Mapping[str, Any] | Sequence[Any]) -> FeatureVector:
        """Validate one request's features and fill declared defaults."""
        if isinstance(request, Mapping):
            return self._from_mapping(request)
        if isinstance(request, str | bytes) or not isinstance(request, Sequence):
            msg = f"features must be a mapping of name to value or a list, got {type(request).__name__}"
            raise FeatureError(msg)
        if len(request) != len(self.schema):
            msg = f"{len(request)} feature values, expected {len(self.schema)}: {list(self.names)}"
            raise FeatureError(msg)
        return self._from_mapping(dict(zip(self.names, request, strict=True)))

    def get_many(
        self, requests: Sequence[Mapping[str, Any] | Sequence[Any]]
    ) -> list[FeatureVector]:
        """Validate many requests; the first bad one raises, prefixed with its index."""
        vectors = []
        for index, request in enumerate(requests):
            try:
                vectors.append(self.get(request))
            except FeatureError as exc:
                msg = f"request {index}: {exc}"
                raise FeatureError(msg) from None
        return vectors

    def _from_mapping(self, given: Mapping[str, Any]) -> FeatureVector:
        if not self.allow_extra:
            unknown = sorted(set(given) - set(self._names))
            if unknown:
                msg = f"unexpected feature {unknown[0]!r}; declared features are {list(self.names)}"
                raise FeatureError(msg)
        values: list[FeatureValue] = []
        defaulted: list[str] = []
        for spec in self.schema:
            value = given.get(spec.name)
            if value is None:
                if isinstance(spec.default, _NoDefault):
                    msg = f"feature {spec.name!r} is missing and has no default"
                    raise FeatureError(msg)
                values.append(spec.default)
                defaulted.append(spec.name)
                continue
            values.append(coerce(spec, value))
        return FeatureVector(self.names, tuple(values), defaulted=tuple(defaulted))
