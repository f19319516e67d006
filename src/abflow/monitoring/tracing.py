"""OpenTelemetry spans for the gateway, only when a tracer provider is configured.

The OpenTelemetry API hands out a no-op tracer until an SDK provider is installed; the
gateway still skips span creation entirely unless tracing is enabled, since even a no-op
span costs microseconds on a path measured in tens of them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from opentelemetry import trace

__all__ = ["Tracer"]

_INSTRUMENTATION = "abflow.serving"


class Tracer:
    """Starts spans when enabled; a do-nothing context manager otherwise."""

    def __init__(self, *, enabled: bool, provider: trace.TracerProvider | None = None) -> None:
        self.enabled = enabled
        self._tracer = (
            trace.get_tracer(_INSTRUMENTATION, tracer_provider=provider) if enabled else None
        )

    def span(
        self, name: str, attributes: Mapping[str, Any] | None = None
    ) -> AbstractContextManager[Any]:
        """A span named ``name`` with ``attributes``, or a null context when disabled."""
        if self._tracer is None:
            return nullcontext()
        return self._span(name, attributes or {})

    @contextmanager
    def _span(self, name: str, attributes: Mapping[str, Any]) -> Iterator[Any]:
        assert self._tracer is not None
        with self._tracer.start_as_current_span(name, attributes=dict(attributes)) as span:
            yield span
