"""abflow: A/B testing and progressive delivery for ML models.

Public names are loaded on first use, so ``import abflow`` stays cheap (a gateway worker or
a CLI call pays only for what it touches).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "AbflowError",
    "Assignment",
    "ExperimentSpec",
    "InvalidArgumentError",
    "InvalidSpecError",
    "__version__",
    "assign",
    "assign_batch",
    "load_experiment",
    "parse_experiment",
]

_LAZY = {
    "AbflowError": "abflow.errors",
    "InvalidArgumentError": "abflow.errors",
    "InvalidSpecError": "abflow.errors",
    "ExperimentSpec": "abflow.spec",
    "load_experiment": "abflow.spec",
    "parse_experiment": "abflow.spec",
    "Assignment": "abflow.routing",
    "assign": "abflow.routing",
    "assign_batch": "abflow.routing",
}

if TYPE_CHECKING:
    from abflow.errors import AbflowError, InvalidArgumentError, InvalidSpecError
    from abflow.routing import Assignment, assign, assign_batch
    from abflow.spec import ExperimentSpec, load_experiment, parse_experiment


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        msg = f"module 'abflow' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
