"""The gateway's side of event logging: the sink it writes to and the rows it writes.

The sink is :class:`abflow.events.eventlog.EventLog` in production (durable: ``append``
returns once the event is in a local journal that survives a process kill); anything with
the same methods works, which is how tests use an in-memory sink. Rows are dicts keyed by
the columns of :mod:`abflow.store.schema`.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import orjson

from abflow.store.schema import UNRESOLVED_UNIT

__all__ = [
    "DEFAULT_VARIANT",
    "UNRESOLVED_UNIT",
    "EventKind",
    "EventSink",
    "PredictionEvent",
    "append_events",
    "exposure_row",
    "new_id",
    "outcome_row",
    "prediction_row",
]

EventKind = Literal["exposure", "prediction", "outcome", "sample"]

DEFAULT_VARIANT = "_default"
"""``variant`` of predictions for units outside the experiment (served by the control model,
but not part of any group: analysis must not count them)."""


class EventSink(Protocol):
    """Where events go; ``append`` must make the event durable before it returns."""

    def start(self) -> None: ...

    def append(self, kind: EventKind, row: dict[str, Any]) -> None: ...

    def close(self, timeout_seconds: float = 10.0) -> None: ...

    @property
    def queue_depth(self) -> int: ...

    @property
    def spool_bytes(self) -> int: ...


def append_events(sink: EventSink, events: list[tuple[EventKind, dict[str, Any]]]) -> None:
    """Append ``events`` in one call where the sink offers ``append_many`` (the event log
    then writes them to its journal with one system call), else one by one."""
    append_many = getattr(sink, "append_many", None)
    if append_many is not None:
        append_many(events)
        return
    for kind, row in events:
        sink.append(kind, row)


_id_prefix = os.urandom(8).hex()
_id_counter = itertools.count()


def _new_id_space() -> None:
    global _id_prefix, _id_counter
    _id_prefix = os.urandom(8).hex()
    _id_counter = itertools.count()


os.register_at_fork(after_in_child=_new_id_space)


def new_id() -> str:
    """A unique event or request id: 32 hex characters.

    A random 64-bit prefix per process (drawn again in a forked child) and a counter:
    unique across processes and restarts like a uuid4, without a system call per id (the
    gateway makes three per request).
    """
    return f"{_id_prefix}{next(_id_counter):016x}"


def exposure_row(
    *,
    experiment_key: str,
    phase: int,
    unit_id: str,
    variant: str,
    attributes: dict[str, Any] | None,
    ts: float | None = None,
) -> dict[str, Any]:
    """A unit saw a variant (logged once per served request, before the answer leaves)."""
    return {
        "event_id": new_id(),
        "ts": time.time() if ts is None else ts,
        "experiment_key": experiment_key,
        "phase": phase,
        "unit_id": unit_id,
        "variant": variant,
        "attributes_json": orjson.dumps(attributes).decode() if attributes else None,
    }


@dataclass(frozen=True, slots=True)
class PredictionEvent:
    """One model call for one request: the served answer, or a shadow copy of it.

    The gateway builds the served one; a shadow copy is the same request with its own
    variant, model, answer and latency (``dataclasses.replace``), so the two always agree on
    the request, unit, phase and features they pair on.
    """

    request_id: str
    experiment_key: str
    phase: int
    unit_id: str
    variant: str
    model_version: str
    latency_ms: float
    outputs: list[Any] | None
    features_hash: str | None
    is_fallback: bool = False
    is_shadow: bool = False
    error: str | None = None
    ts: float | None = None

    @property
    def score(self) -> float | None:
        """The answer as one number, when it is a single number (else None)."""
        if self.outputs is not None and len(self.outputs) == 1:
            value = self.outputs[0]
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
        return None

    def row(self) -> dict[str, Any]:
        """The ``predictions`` table row, with a fresh event id."""
        return {
            "event_id": new_id(),
            "ts": time.time() if self.ts is None else self.ts,
            "request_id": self.request_id,
            "experiment_key": self.experiment_key,
            "phase": self.phase,
            "unit_id": self.unit_id,
            "variant": self.variant,
            "model_version": self.model_version,
            "latency_ms": self.latency_ms,
            "is_fallback": self.is_fallback,
            "is_shadow": self.is_shadow,
            "score": self.score,
            "output_json": orjson.dumps(self.outputs).decode()
            if self.outputs is not None
            else None,
            "features_hash": self.features_hash,
            "error": self.error,
        }


def prediction_row(**fields: Any) -> dict[str, Any]:
    """``PredictionEvent(**fields).row()``: a prediction row in one call, for scripts and tests."""
    return PredictionEvent(**fields).row()


def outcome_row(
    *,
    unit_id: str,
    name: str,
    value: float,
    request_id: str | None,
    experiment_key: str | None,
    ts: float | None = None,
) -> dict[str, Any]:
    """Something that happened after a prediction: a label, a conversion, revenue.

    ``unit_id`` is :data:`UNRESOLVED_UNIT` when only ``request_id`` identifies it."""
    return {
        "event_id": new_id(),
        "ts": time.time() if ts is None else ts,
        "unit_id": unit_id,
        "name": name,
        "value": value,
        "request_id": request_id,
        "experiment_key": experiment_key,
    }
