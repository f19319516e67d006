"""Why a model call failed, in words an operator can act on and a label Prometheus can hold.

Every failure maps to one of a few reasons (the ``reason`` label of ``abflow_fallbacks``),
and its message, capped, goes into the prediction event's ``error`` column and a log line
that is rate-limited per variant, so a dead challenger cannot flood the log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Literal

from abflow.errors import BackendError, BackendTimeoutError, CircuitOpenError

__all__ = [
    "MAX_ERROR_BODY",
    "FailureLog",
    "FailureReason",
    "RemoteModelError",
    "failure_reason",
]

FailureReason = Literal[
    "timeout", "connect", "status_4xx", "status_5xx", "bad_output", "circuit_open", "error"
]
MAX_ERROR_BODY = 500
"""Characters of a model server's error body kept in the event and the log."""
MAX_ERROR_TEXT = 1000


class RemoteModelError(BackendError):
    """A remote model server failed; ``reason`` says how (connect, status_4xx, …)."""

    def __init__(self, message: str, reason: FailureReason) -> None:
        super().__init__(message)
        self.reason: FailureReason = reason


def failure_reason(exc: BaseException) -> FailureReason:
    """The bounded label for ``exc``."""
    if isinstance(exc, RemoteModelError):
        return exc.reason
    if isinstance(exc, BackendTimeoutError):
        return "timeout"
    if isinstance(exc, CircuitOpenError):
        return "circuit_open"
    return "error"


def error_text(exc: BaseException) -> str:
    """What the prediction event's ``error`` column holds: the reason and the message."""
    return f"{failure_reason(exc)}: {exc}"[:MAX_ERROR_TEXT]


class FailureLog:
    """Logs a variant's failures at most once per ``interval_seconds``, with a count of
    the ones it held back since the last line."""

    def __init__(
        self,
        logger: logging.Logger,
        interval_seconds: float = 10.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval_seconds
        self._clock = clock
        self._last: dict[tuple[str, str], tuple[float, int]] = {}

    def failed(self, experiment: str, variant: str, exc: BaseException) -> bool:
        """Record one failure; True when it was logged."""
        key = (experiment, variant)
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last[0] < self._interval:
            self._last[key] = (last[0], last[1] + 1)
            return False
        held = last[1] if last is not None else 0
        self._last[key] = (now, 0)
        self._logger.warning(
            "experiment %s variant %s fell back to control (%s, %d more since last line): %s",
            experiment,
            variant,
            failure_reason(exc),
            held,
            str(exc)[:MAX_ERROR_TEXT],
        )
        return True
