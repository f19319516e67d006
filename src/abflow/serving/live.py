"""An experiment as a gateway serves it: the spec compiled once, with its backends.

Its own module so that the gateway and the shadow mirror both read it without importing
each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from abflow.routing.experiment import CompiledExperiment
from abflow.serving.backends import GuardedBackend
from abflow.spec import ExperimentSpec

__all__ = ["LiveExperiment"]


@dataclass(slots=True)
class LiveExperiment:
    """An experiment being served: routing, one backend per variant, and its phase."""

    spec: ExperimentSpec
    compiled: CompiledExperiment
    version: int
    phase: int
    backends: tuple[GuardedBackend, ...]
    shadow: frozenset[int]
    """Variants mirrored: the config's and the spec's ``shadow.variants``."""
    n_features: int | None
    latency_children: dict[tuple[str, str], Any] = field(default_factory=dict)
    configured_shadow: tuple[str, ...] = ()
    """Variants the gateway config mirrors (kept when a newer spec version is swapped in)."""

    @property
    def key(self) -> str:
        return self.spec.key
