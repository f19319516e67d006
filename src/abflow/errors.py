"""The one exception hierarchy of abflow.

Every error abflow raises on purpose is an :class:`AbflowError`; each also subclasses the
builtin it refines, so ``except ValueError`` keeps working for callers who know nothing of
abflow. Foreign errors (SQLAlchemy, HTTP clients, MLflow) are translated once, at the
boundary that meets them, with ``raise ... from exc``.

::

    AbflowError
    ├── InvalidArgumentError (ValueError)      a function was called with an impossible value
    ├── InvalidSpecError (ValueError)          a spec file or object breaks the rules; .problems
    ├── ConfigError (ValueError)               settings or a config file cannot be used
    │   └── DocumentError                      a YAML/JSON file cannot be read; .problem
    ├── ExperimentNotFoundError (LookupError)  no experiment with that key
    ├── StoreError (RuntimeError)              the event store failed
    │   ├── StoreUnavailableError              it cannot be reached now (spool and retry)
    │   └── JournalError                       the local event journal cannot be written
    ├── RegistryError (RuntimeError)           the model registry failed
    │   ├── ModelNotFoundError (LookupError)   no such model, version or alias
    │   └── ArtifactChecksumError              artifacts no longer match their recorded hash
    ├── FeatureError (ValueError)              features missing or of the wrong shape
    ├── BackendError (RuntimeError)            a model backend failed to predict
    │   ├── BackendTimeoutError (TimeoutError) it did not answer in time
    │   └── CircuitOpenError                   it failed too often and is resting
    └── AuthError                              a request is not allowed
        ├── AuthenticationError                no valid token (HTTP 401)
        └── PermissionDeniedError              valid token, wrong role (HTTP 403)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "AbflowError",
    "ArtifactChecksumError",
    "AuthError",
    "AuthenticationError",
    "BackendError",
    "BackendTimeoutError",
    "CircuitOpenError",
    "ConfigError",
    "DocumentError",
    "ExperimentNotFoundError",
    "FeatureError",
    "InvalidArgumentError",
    "InvalidSpecError",
    "JournalError",
    "ModelNotFoundError",
    "PermissionDeniedError",
    "RegistryError",
    "StoreError",
    "StoreUnavailableError",
]


class AbflowError(Exception):
    """Base of every error abflow raises on purpose."""


class InvalidArgumentError(AbflowError, ValueError):
    """A function was called with a value it can never accept (alpha = 2, n < 0)."""


class InvalidSpecError(AbflowError, ValueError):
    """A spec breaks the rules. ``problems`` lists every one as ``"path: message"``."""

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        where = f"{source}: " if source else ""
        count = len(self.problems)
        head = f"{where}{count} problem{'s' if count != 1 else ''} in spec"
        super().__init__(head + "".join(f"\n  {p}" for p in self.problems))


class ConfigError(AbflowError, ValueError):
    """Settings or a config file cannot be used as given."""


class DocumentError(ConfigError):
    """A YAML or JSON file cannot be read or decoded; ``problem`` says where and why."""

    def __init__(self, problem: str, path: Path | str) -> None:
        self.problem = problem
        self.path = str(path)
        super().__init__(f"{self.path}: {problem}")


class ExperimentNotFoundError(AbflowError, LookupError):
    """No experiment with that key exists."""


class StoreError(AbflowError, RuntimeError):
    """The event store failed."""


class StoreUnavailableError(StoreError):
    """The event store cannot be reached now; writers spool and retry."""


class JournalError(StoreError):
    """The local event journal cannot be written (disk full, closed log): the event is not kept."""


class RegistryError(AbflowError, RuntimeError):
    """The model registry failed."""


class ModelNotFoundError(RegistryError, LookupError):
    """No such model, version or alias in the registry."""


class ArtifactChecksumError(RegistryError):
    """A model's artifacts no longer match the SHA-256 recorded when it entered an experiment."""


class FeatureError(AbflowError, ValueError):
    """Features are missing, or of the wrong count or type."""


class BackendError(AbflowError, RuntimeError):
    """A model backend failed to predict."""


class BackendTimeoutError(BackendError, TimeoutError):
    """A model backend did not answer within its timeout."""


class CircuitOpenError(BackendError):
    """A model backend failed too often and is not called until its circuit closes."""


class AuthError(AbflowError):
    """A request is not allowed."""


class AuthenticationError(AuthError):
    """No valid token was presented (HTTP 401)."""


class PermissionDeniedError(AuthError):
    """The token is valid but its role does not allow this (HTTP 403)."""
