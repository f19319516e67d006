"""Request bodies: size bounds, schemas, and feature rows checked down to the cell.

Bodies are parsed from bytes by pydantic-core in one pass (no intermediate ``json.loads``),
after the size check, so that an oversized body is refused before any parsing. Every
rejection names the offending field (``features[2][1]: expected a number, got 'abc'``).

A 2xx promises that the store will accept the event, so every string that reaches an event
row is checked here against what the store can hold: no NUL character (PostgreSQL text
cannot contain U+0000), no lone surrogate (not UTF-8), at most the column's width in
characters, and no control character in a request id (it is echoed in a header); numbers
are finite, timestamps lie in years 1970-9999, and attribute integers fit the 64 bits the
event journal can serialize.
"""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any, TypeVar

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from abflow.errors import FeatureError, InvalidArgumentError
from abflow.spec import text_problem
from abflow.store.schema import MAX_OUTCOME_VALUE

__all__ = [
    "MAX_ATTRIBUTE_ITEMS",
    "MAX_ATTRIBUTE_KEY",
    "MAX_ATTRIBUTE_TEXT",
    "MAX_KEY",
    "MAX_OUTCOME_VALUE",
    "MAX_REQUEST_ID",
    "MAX_TS",
    "MAX_UNIT_ID",
    "OutcomeIn",
    "OutcomesIn",
    "PredictIn",
    "attribute_path",
    "check_attributes",
    "check_text",
    "feature_matrix",
    "parse_body",
    "request_id_problem",
]

_Model = TypeVar("_Model", bound=BaseModel)
_NUMBER_TYPES = (int, float)

MAX_UNIT_ID = 256
"""Longest unit id: the width of the events' ``unit_id`` columns."""
MAX_REQUEST_ID = 64
"""Longest request id: the width of the events' ``request_id`` columns."""
MAX_KEY = 128
"""Longest experiment key or outcome name: the width of the events' key columns."""
MAX_TS = 253_402_300_800.0
"""First second of the year 10000: timestamps are epoch seconds in years 1970-9999."""
_MIN_INT = -(2**63)
_MAX_INT = 2**64 - 1  # orjson writes the journal; it refuses integers outside these bounds


_CONTROL = re.compile("[\x00-\x1f\x7f]")


def request_id_problem(value: str) -> str | None:
    """Why ``value`` cannot be a request id, or None: besides what the store cannot hold, a
    control character, which the ``x-request-id`` response header cannot carry (the server
    would fail the answer after the events were logged)."""
    control = _CONTROL.search(value)
    if control is not None and control.group() != "\x00":
        code = ord(control.group())
        return f"contains a control character (U+{code:04X}), which an HTTP header cannot carry"
    return text_problem(value)


def check_text(value: str, where: str, *, is_request_id: bool = False) -> str:
    """``value`` unchanged, or InvalidArgumentError naming ``where`` if the store cannot hold it
    (or, for a request id, a response header cannot carry it)."""
    problem = request_id_problem(value) if is_request_id else text_problem(value)
    if problem is not None:
        msg = f"{where}: {problem}"
        raise InvalidArgumentError(msg)
    return value


def header_text(raw: bytes, where: str) -> str:
    """A request header's value as UTF-8 text, so that an id echoed back in a response header
    is byte for byte the one received; InvalidArgumentError naming ``where`` otherwise."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        msg = f"{where}: is not UTF-8 text"
        raise InvalidArgumentError(msg) from None


def _storable(value: str) -> str:
    problem = text_problem(value)
    if problem is not None:
        kind = "storable_text"
        raise PydanticCustomError(kind, problem)
    return value


def _header_safe(value: str) -> str:
    problem = request_id_problem(value)
    if problem is not None:
        kind = "request_id"
        raise PydanticCustomError(kind, problem)
    return value


UnitId = Annotated[str, Field(min_length=1, max_length=MAX_UNIT_ID), AfterValidator(_storable)]
RequestId = Annotated[
    str, Field(min_length=1, max_length=MAX_REQUEST_ID), AfterValidator(_header_safe)
]
Key = Annotated[str, Field(min_length=1, max_length=MAX_KEY), AfterValidator(_storable)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PredictIn(_Body):
    """``POST /v1/predict``: who asks, what we know about them, and the features to score."""

    experiment: Key | None = Field(
        default=None, description="experiment key; defaults to the gateway's default experiment"
    )
    unit_id: UnitId | None = Field(
        default=None,
        description="the unit (a string) hashed for routing, else attributes[spec.unit]",
    )
    attributes: dict[str, Any] = Field(
        default_factory=dict, description="targeting attributes (country, device, ...)"
    )
    features: list[Any] = Field(
        default_factory=list,
        description="one row [x1, x2, ...] or a batch [[...], [...]]; with an inline feature "
        "source also [{name: value}]; none when the experiment's features come from Feast",
    )
    request_id: RequestId | None = None


class OutcomeIn(_Body):
    """One outcome: a label, a conversion (1/0) or an amount, joined by request or unit id."""

    name: Key
    value: float = Field(  # no "2.5", no true
        default=1.0,
        allow_inf_nan=False,
        strict=True,
        ge=-MAX_OUTCOME_VALUE,
        le=MAX_OUTCOME_VALUE,
        description="at most 1e15 in magnitude",
    )
    request_id: RequestId | None = None
    unit_id: UnitId | None = None
    experiment: Key | None = None
    ts: float | None = Field(
        default=None,
        allow_inf_nan=False,
        strict=True,
        ge=0.0,
        lt=MAX_TS,
        description="epoch seconds (years 1970-9999); default now",
    )


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
        raise InvalidArgumentError(_locate(model, body, exc) or _describe(exc)) from None


def _locate(model: type[BaseModel], body: bytes, exc: ValidationError) -> str | None:
    """For JSON the strict parser refuses but the standard library reads (a lone surrogate
    escape such as ``"\\ud800"``), the problem with the parsed document, naming the field;
    None when that does not find the fault (the parser's message stands)."""
    if exc.errors(include_url=False)[0]["type"] != "json_invalid":
        return None
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None
    try:
        parsed = model.model_validate(document)
    except ValidationError as located:
        return _describe(located)
    attributes = getattr(parsed, "attributes", None)
    if isinstance(attributes, dict):
        try:
            check_attributes(attributes)
        except InvalidArgumentError as located:
            return str(located)
    return None


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


def attribute_path(where: str, key: str) -> str:
    """How an error names the value under ``key``: ``attributes.country``, or
    ``attributes['a.b\\n']`` when the key would not read as one plain name on one line."""
    return (
        f"{where}.{key}"
        if key and key.isprintable() and not set(key) & set(".[] ")
        else f"{where}[{key!r}]"
    )


MAX_ATTRIBUTE_ITEMS = 1000
"""Most keys and values (nested ones included) in one request's attributes."""
MAX_ATTRIBUTE_KEY = 128
MAX_ATTRIBUTE_TEXT = 1024
"""Longest attribute key, and longest text value, in characters."""


def check_attributes(attributes: dict[str, Any]) -> None:
    """Check that the attributes can be journaled and stored as JSON text (the exposure's
    ``attributes_json``); InvalidArgumentError naming a key or value that cannot
    (``attributes.tags[2]``). Non-finite numbers are refused rather than stored as null."""
    stack: list[tuple[str, Any]] = [("attributes", attributes)]
    visited = 0
    while stack:
        where, value = stack.pop()
        visited += 1
        if visited > MAX_ATTRIBUTE_ITEMS:  # every one is stored with each exposure
            msg = f"attributes: more than {MAX_ATTRIBUTE_ITEMS} keys and values; send fewer"
            raise InvalidArgumentError(msg)
        if isinstance(value, str):
            check_text(value, where)
            if len(value) > MAX_ATTRIBUTE_TEXT:
                msg = f"{where}: at most {MAX_ATTRIBUTE_TEXT} characters, got {len(value)}"
                raise InvalidArgumentError(msg)
        elif isinstance(value, dict):
            for key, item in value.items():
                check_text(key, f"{where} key {key[:40]!r}")
                if len(key) > MAX_ATTRIBUTE_KEY:
                    msg = f"{where} key {key[:40]!r}…: at most {MAX_ATTRIBUTE_KEY} characters"
                    raise InvalidArgumentError(msg)
                stack.append((attribute_path(where, key), item))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", item) for i, item in enumerate(value))
        elif isinstance(value, float) and not math.isfinite(value):
            msg = f"{where}: expected a finite number, got {value}"
            raise InvalidArgumentError(msg)
        elif isinstance(value, int) and not _MIN_INT <= value <= _MAX_INT:
            msg = f"{where}: integers must lie in [-2**63, 2**64 - 1]"
            raise InvalidArgumentError(msg)


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
