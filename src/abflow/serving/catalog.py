"""Where the gateway records the experiments it serves, and learns each one's phase.

Every exposure carries the experiment's current phase, so that analysis never mixes traffic
split under different weights. The store is the source of truth in production (its
``register_experiment`` opens a new phase whenever a traffic-relevant field changes); the
in-memory catalog applies the same rule for tests and store-less runs.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol

import orjson

from abflow.spec import ExperimentSpec, rollout_registration, spec_hash, traffic_fields

__all__ = ["ExperimentCatalog", "InMemoryCatalog", "Registration", "traffic_signature"]


@dataclass(frozen=True, slots=True)
class Registration:
    """The stored version of a spec and the phase new exposures belong to."""

    version: int
    phase: int
    spec: ExperimentSpec | None = None
    """The spec as registered, when it differs from the one given: under a rollout plan the
    catalog keeps the rollout's weights (see :func:`abflow.spec.rollout_registration`)."""


class ExperimentCatalog(Protocol):
    def register(self, spec: ExperimentSpec, actor: str = "system") -> Registration: ...


def traffic_signature(spec: ExperimentSpec) -> str:
    """The fields whose change starts a new phase (the store's rule), as comparable text."""
    return orjson.dumps(traffic_fields(spec)).decode()


class InMemoryCatalog:
    """Versions and phases kept in memory (lost on restart: use the store in production)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state: dict[str, tuple[str, str, Registration]] = {}

    def register(self, spec: ExperimentSpec, actor: str = "system") -> Registration:
        del actor  # nothing to audit in memory
        with self._lock:
            previous = self._state.get(spec.key)
            spec = rollout_registration(spec, previous[2].spec if previous else None)
            digest = spec_hash(spec)
            signature = traffic_signature(spec)
            if previous is None:
                registration = Registration(1, 1, spec)
            else:
                old_digest, old_signature, old = previous
                version = old.version if old_digest == digest else old.version + 1
                phase = old.phase if old_signature == signature else old.phase + 1
                registration = Registration(version, phase, spec)
            self._state[spec.key] = (digest, signature, registration)
            return registration
