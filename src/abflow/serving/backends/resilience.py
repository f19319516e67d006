"""Timeouts and a circuit breaker around any backend.

A backend that keeps failing is not called again until ``reset_seconds`` have passed; then
one trial request goes through (half-open) and its result closes or re-opens the circuit.
Failing fast lets the gateway fall back to the control model at once instead of piling
requests onto a sick server.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from abflow.errors import (
    BackendError,
    BackendTimeoutError,
    CircuitOpenError,
    FeatureError,
    InvalidArgumentError,
)
from abflow.serving.backends.base import ModelBackend
from abflow.serving.backends.deadlines import Deadlines

__all__ = ["CircuitBreaker", "GuardedBackend", "RefusedBackend"]

CircuitState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Counts consecutive failures; opens after ``failure_threshold``, retries after a rest."""

    def __init__(
        self,
        failure_threshold: int = 5,
        reset_seconds: float = 30.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            msg = f"failure_threshold must be at least 1, got {failure_threshold}"
            raise InvalidArgumentError(msg)
        self.failure_threshold = failure_threshold
        self.reset_seconds = reset_seconds
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False
        self.on_change: Callable[[int], None] | None = None
        """Called with 1 when the circuit opens and 0 when it closes (the metrics gauge)."""

    @property
    def state(self) -> CircuitState:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.reset_seconds:
            return "half_open"
        return "open"

    @property
    def consecutive_failures(self) -> int:
        """Failures since the last success: 0 when the last call (or probe) went through."""
        return self._failures

    def allow(self) -> bool:
        """Whether a call may go through now (in half-open state, only one trial at a time)."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._trial_in_flight:
            self._trial_in_flight = True
            return True
        return False

    def record_success(self) -> None:
        was_open = self._opened_at is not None
        self._failures = 0
        self._opened_at = None
        self._trial_in_flight = False
        if was_open and self.on_change is not None:
            self.on_change(0)

    def record_abandoned(self) -> None:
        """The half-open trial ended without a result (cancelled): it decides nothing, so the
        next call becomes the trial instead of the circuit staying open for good."""
        self._trial_in_flight = False

    def record_failure(self) -> None:
        self._failures += 1
        self._trial_in_flight = False
        if self._opened_at is not None or self._failures >= self.failure_threshold:
            opening = self._opened_at is None
            self._opened_at = self._clock()
            if opening and self.on_change is not None:
                self.on_change(1)


class GuardedBackend:
    """A backend with a per-call timeout and a circuit breaker; errors become BackendError."""

    def __init__(
        self,
        backend: ModelBackend,
        *,
        timeout_seconds: float = 1.0,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.inner = backend
        self.timeout_seconds = timeout_seconds
        self.breaker = breaker if breaker is not None else CircuitBreaker()
        self._deadlines = Deadlines()

    @property
    def reference(self) -> str:
        return self.inner.reference

    @property
    def version(self) -> str:
        return self.inner.version

    @property
    def n_features(self) -> int | None:
        return self.inner.n_features

    async def predict(self, rows: np.ndarray) -> list[Any]:
        is_trial = self.breaker.state == "half_open"  # no await before allow(): no race
        if not self.breaker.allow():
            msg = f"model {self.version} is failing; its circuit is open"
            raise CircuitOpenError(msg)
        try:
            with self._deadlines.within(self.timeout_seconds):
                outputs = await self.inner.predict(rows)
        except TimeoutError as exc:
            self.breaker.record_failure()
            msg = f"model {self.version} did not answer within {self.timeout_seconds:g} s"
            raise BackendTimeoutError(msg) from exc
        except FeatureError:
            self.breaker.record_success()  # the caller's fault, not the model's
            raise
        except BackendError:
            self.breaker.record_failure()
            raise
        except Exception as exc:
            self.breaker.record_failure()
            msg = f"model {self.version} failed: {type(exc).__name__}: {exc}"
            raise BackendError(msg) from exc
        except BaseException:  # cancelled: no verdict on the model
            if is_trial:
                self.breaker.record_abandoned()
            raise
        self.breaker.record_success()
        return outputs

    async def aclose(self) -> None:
        await self.inner.aclose()


class RefusedBackend:
    """Stands in for a model that must not serve (its artifacts failed verification).

    Every call raises the refusal, so the gateway answers that variant's units with the
    control model and logs each answer as a fallback: the problem stays visible in the
    event log and the metrics instead of taking the experiment down.
    """

    def __init__(self, reference: str, error: BackendError | Exception) -> None:
        self._reference = reference
        self.error = error

    @property
    def reference(self) -> str:
        return self._reference

    @property
    def version(self) -> str:
        return "refused"

    @property
    def n_features(self) -> int | None:
        return None

    async def predict(self, rows: np.ndarray) -> list[Any]:
        msg = f"model {self._reference} is refused: {self.error}"
        raise BackendError(msg)

    async def aclose(self) -> None:
        """Nothing to release."""
