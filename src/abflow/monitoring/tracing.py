"""OpenTelemetry spans for the gateway, exported where the standard ``OTEL_*`` variables say.

With ``ABFLOW_TRACING_ENABLED=true`` the gateway builds its own SDK tracer provider from the
environment, as every OpenTelemetry SDK does: ``OTEL_TRACES_EXPORTER`` (``otlp``, the
default, or ``console``), ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``…_TRACES_ENDPOINT``,
``…_HEADERS``, ``…_TIMEOUT``, ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_TRACES_SAMPLER`` and ``OTEL_PROPAGATORS``. The OTLP/HTTP exporter comes with the
``tracing`` extra (``pip install 'abflow[tracing]'``). When a provider is already installed
globally (``opentelemetry-instrument``), the gateway uses that one and adds nothing.

Tracing that is on but cannot export (the exporter is not installed, ``none`` was asked,
the SDK is disabled) is a warning at start, and the gateway then creates no spans: even a
no-op span costs microseconds on a path measured in tens of them.

A caller's W3C ``traceparent`` (and ``tracestate``) joins the prediction span to the
caller's trace (:meth:`Tracer.joined`), and calls to HTTP model servers carry the
prediction span on (:meth:`Tracer.outgoing_headers`), so a traced model server's spans
are its children.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from opentelemetry import context, propagate, trace

__all__ = ["TRACE_HEADERS", "Tracer"]

logger = logging.getLogger(__name__)

_INSTRUMENTATION = "abflow.serving"
_SERVICE_NAME = "abflow-gateway"
_OTLP_HTTP = "opentelemetry.exporter.otlp.proto.http.trace_exporter"
_OTLP_GRPC = "opentelemetry.exporter.otlp.proto.grpc.trace_exporter"
_DEFAULT_ENDPOINT = "http://localhost:4318"

TRACE_HEADERS = frozenset({"traceparent", "tracestate", "baggage"})
"""Request headers that carry a caller's trace context (W3C Trace Context and Baggage)."""


class Tracer:
    """Starts spans when enabled; a do-nothing context manager otherwise.

    ``provider`` is used as given (tests, embedding); :meth:`from_environment` builds one
    from ``OTEL_*`` and owns it, so :meth:`shutdown` flushes its spans at gateway stop.
    """

    def __init__(
        self,
        *,
        enabled: bool,
        provider: trace.TracerProvider | None = None,
        owns_provider: bool = False,
    ) -> None:
        self.enabled = enabled
        self._provider = provider
        self._owns_provider = owns_provider
        self._tracer = (
            trace.get_tracer(_INSTRUMENTATION, tracer_provider=provider) if enabled else None
        )

    @classmethod
    def from_environment(
        cls, *, enabled: bool, provider: trace.TracerProvider | None = None
    ) -> Tracer:
        """The gateway's tracer: ``provider`` if given, else the global SDK provider if one
        is installed, else one built from the ``OTEL_*`` variables (or none, with a warning,
        when nothing would export)."""
        if not enabled:
            return cls(enabled=False)
        if provider is not None:
            return cls(enabled=True, provider=provider)
        if _has_global_sdk_provider():
            logger.info("tracing: using the globally installed tracer provider")
            return cls(enabled=True)
        built = _provider_from_environment()
        if built is None:
            return cls(enabled=False)
        return cls(enabled=True, provider=built, owns_provider=True)

    def span(
        self, name: str, attributes: Mapping[str, Any] | None = None
    ) -> AbstractContextManager[Any]:
        """A span named ``name`` with ``attributes`` (yielded, to add more), or a null
        context yielding None when disabled."""
        if self._tracer is None:
            return nullcontext()
        return self._span(name, attributes or {})

    @contextmanager
    def _span(self, name: str, attributes: Mapping[str, Any]) -> Iterator[Any]:
        assert self._tracer is not None
        with self._tracer.start_as_current_span(name, attributes=dict(attributes)) as span:
            yield span

    def joined(self, carrier: Mapping[str, str] | None) -> AbstractContextManager[None]:
        """Within this block, spans are children of the caller's span named in ``carrier``
        (``traceparent`` and friends, lower-case names); a null context when there is none."""
        if self._tracer is None or not carrier:
            return nullcontext()
        return self._joined(carrier)

    @contextmanager
    def _joined(self, carrier: Mapping[str, str]) -> Iterator[None]:
        token = context.attach(propagate.extract(carrier))
        try:
            yield
        finally:
            context.detach(token)

    def outgoing_headers(self) -> dict[str, str]:
        """The headers that pass the current trace context on to a call this span makes
        (``traceparent``, and ``tracestate``/``baggage`` when there are any), by the
        configured propagators (``OTEL_PROPAGATORS``); empty outside any span."""
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        return carrier

    def shutdown(self) -> None:
        """Flush and stop the provider this tracer built (a given one is the caller's)."""
        if self._owns_provider and self._provider is not None:
            shutdown = getattr(self._provider, "shutdown", None)
            if shutdown is not None:
                shutdown()


def _has_global_sdk_provider() -> bool:
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider

    return isinstance(trace.get_tracer_provider(), SdkTracerProvider)


def _nothing_exports(reason: str) -> None:
    logger.warning(
        "tracing is enabled (ABFLOW_TRACING_ENABLED) but no span will be exported: %s; "
        "the gateway creates no spans",
        reason,
    )


def _provider_from_environment() -> trace.TracerProvider | None:
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        _nothing_exports("OTEL_SDK_DISABLED=true")
        return None
    names = [
        n.strip().lower()
        for n in os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")
        if n.strip()
    ]
    exporters: list[SpanExporter] = []
    for name in names:
        if name == "none":
            continue
        exporter = _exporter(name)
        if exporter is not None:
            exporters.append(exporter)
    if not exporters:
        _nothing_exports(f"OTEL_TRACES_EXPORTER={','.join(names) or 'none'} exports nothing")
        return None
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: _SERVICE_NAME}))
    provider = SdkTracerProvider(resource=resource)  # reads OTEL_TRACES_SAMPLER itself
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))  # reads OTEL_BSP_*
    return provider


def _exporter(name: str) -> Any:
    """The span exporter ``name`` names (it reads its own ``OTEL_EXPORTER_*`` variables),
    or None with a warning."""
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name != "otlp":
        logger.warning(
            "OTEL_TRACES_EXPORTER: %r is not supported by abflow (otlp, console, none)", name
        )
        return None
    protocol = _setting("PROTOCOL") or "http/protobuf"
    module = _OTLP_GRPC if protocol == "grpc" else _OTLP_HTTP
    if protocol not in ("grpc", "http/protobuf"):
        logger.warning(
            "OTEL_EXPORTER_OTLP_PROTOCOL=%s is not supported; using http/protobuf", protocol
        )
    if importlib.util.find_spec(module.rsplit(".", 1)[0]) is None:
        package = "opentelemetry-exporter-otlp-proto-" + ("grpc" if protocol == "grpc" else "http")
        _nothing_exports(
            f"the OTLP exporter is not installed (pip install 'abflow[tracing]' or {package})"
        )
        return None
    exporter_module = importlib.import_module(module)
    logger.info("tracing: exporting spans over OTLP (%s) to %s", protocol, _endpoint(protocol))
    return exporter_module.OTLPSpanExporter()


def _setting(suffix: str) -> str | None:
    """``OTEL_EXPORTER_OTLP_TRACES_<suffix>``, else ``OTEL_EXPORTER_OTLP_<suffix>``."""
    for name in (f"OTEL_EXPORTER_OTLP_TRACES_{suffix}", f"OTEL_EXPORTER_OTLP_{suffix}"):
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def _endpoint(protocol: str) -> str:
    """Where the exporter sends spans, for the start-up log line (the exporter's own rule)."""
    specific = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if specific:
        return specific
    base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if protocol == "grpc":
        return base or "http://localhost:4317"
    if not base:
        return f"{_DEFAULT_ENDPOINT}/v1/traces (default: set OTEL_EXPORTER_OTLP_ENDPOINT)"
    return base.rstrip("/") + "/v1/traces"
