"""Request bodies: size bounds, schemas, and feature rows checked down to the cell.

Bodies are parsed from bytes by pydantic-core in one pass (no intermediate ``json.loads``),
after the size check, so that an oversized body is refused before any parsing. Every
rejection names the offending field (``features[2][1]: expected a number, got 'abc'``).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from abflow.errors import FeatureError, InvalidArgumentError

__all__ = [
    "OutcomeIn",
    "OutcomesIn",
    "PredictIn",
    "feature_matrix",
    "parse_body",
]

_Model = TypeVar("_Model", bound=BaseModel)
_NUMBER_TYPES = (int, float)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PredictIn(_Body):
    """``POST /v1/predict``: who asks, what we know about them, and the features to score."""

    experiment: str | None = Field(
        default=None, description="experiment key; defaults to the gateway's default experiment"
    )
    unit_id: Annotated[str, Field(min_length=1, max_length=256)] | None = Field(
        default=None, description="the unit hashed for routing (else attributes[spec.unit])"
    )
    attributes: dict[str, Any] = Field(
        default_factory=dict, description="targeting attributes (country, device, ...)"
    )
    features: list[Any] = Field(
        min_length=1, description="one row [x1, x2, ...] or a batch [[...], [...]]"
    )
    request_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None

    @field_validator("unit_id", mode="before")
    @classmethod
    def _unit_as_text(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value


class OutcomeIn(_Body):
    """One outcome: a label, a conversion (1/0) or an amount, joined by request or unit id."""

    name: Annotated[str, Field(min_length=1, max_length=128)]
    value: float = Field(default=1.0, allow_inf_nan=False)
    request_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    unit_id: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    experiment: str | None = None
    ts: float | None = Field(
        default=None, allow_inf_nan=False, description="epoch seconds; default now"
    )

    @field_validator("unit_id", mode="before")
    @classmethod
    def _unit_as_text(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value


class OutcomesIn(_Body):
    """``POST /v1/outcomes``: one or more outcomes."""

    outcomes: list[OutcomeIn] = Field(min_length=1)


def parse_body(model: type[_Model], body: bytes, *, max_bytes: int) -> _Model:
    """Validate ``body`` as ``model``; InvalidArgumentError naming the first bad field."""
    if len(body) > max_bytes:
        msg = f"body: {len(body)} bytes is over the limit of {max_bytes}"
        raise InvalidArgumentError(msg)
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise InvalidArgumentError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    messages = []
    for error in exc.errors(include_url=False)[:5]:
        location = ""
        for part in error["loc"]:
            location += (
                f"[{part}]" if isinstance(part, int) else (f".{part}" if location else str(part))
            )
        messages.append(f"{location or 'body'}: {error['msg']}")
    return "; ".join(messages)


def feature_matrix(features: list[Any], *, n_features: int | None, max_rows: int) -> np.ndarray:
    """The request's features as a 2-D float64 array, or FeatureError naming the bad cell."""
    first = features[0]
    if isinstance(first, list):
        rows = features
        if len(rows) > max_rows:
            msg = f"features: {len(rows)} rows is over the limit of {max_rows}"
            raise FeatureError(msg)
        width = len(first)
        for i, row in enumerate(rows):
            if not isinstance(row, list):
                msg = f"features[{i}]: expected a list of numbers like features[0]"
                raise FeatureError(msg)
            if len(row) != width:
                msg = f"features[{i}]: {len(row)} values, but features[0] has {width}"
                raise FeatureError(msg)
            _check_numbers(row, f"features[{i}]")
    else:
        rows = [features]
        width = len(features)
        _check_numbers(features, "features")
    if n_features is not None and width != n_features:
        msg = f"features: {width} values per row, the model expects {n_features}"
        raise FeatureError(msg)
    if width == 0:
        msg = "features: a row needs at least one value"
        raise FeatureError(msg)
    try:
        matrix = np.array(rows, dtype=np.float64)
    except OverflowError:  # an integer beyond float range
        matrix = None
    if matrix is None or not np.isfinite(matrix).all():
        _locate_non_finite(rows, single=not isinstance(first, list))
    assert matrix is not None
    return matrix


def _locate_non_finite(rows: list[Any], *, single: bool) -> None:
    """Raise FeatureError naming the first value that is not a finite float."""
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            try:
                finite = math.isfinite(float(value))
            except OverflowError:
                finite = False
            if not finite:
                where = f"features[{j}]" if single else f"features[{i}][{j}]"
                msg = f"{where}: expected a finite number, got {str(value)[:40]}"
                raise FeatureError(msg)


def _check_numbers(row: list[Any], path: str) -> None:
    for j, value in enumerate(row):
        kind = type(value)
        if kind is float or kind is int:
            continue
        if isinstance(value, bool) or not isinstance(value, _NUMBER_TYPES):
            msg = f"{path}[{j}]: expected a number, got {value!r}"
            raise FeatureError(msg)
