"""The app factory: ``create_app(settings)`` builds a ready-to-run FastAPI gateway.

Settings are read once (from the environment when not given). Everything stateful is built
here and started by the lifespan: the event log first (so that nothing is answered before
events can be kept), then the experiments' models, then, when configured, the live
monitor's task. On shutdown uvicorn first stops accepting and lets in-flight requests
finish; the lifespan then stops the monitor, waits for shadow work, closes the backends and
flushes the event log into the store.

Parts can be injected (an in-memory event sink, token store, catalog or backend factory)
for tests and embedding; anything not given is built from the settings and config.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from fastapi import FastAPI
from opentelemetry.trace import TracerProvider
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from abflow import __version__, dashboard
from abflow.errors import AbflowError
from abflow.events.sink import EventSink
from abflow.monitoring.metrics import GatewayMetrics
from abflow.monitoring.tracing import Tracer
from abflow.routing.sticky import StickyBucketStore
from abflow.security.tokens import TokenAuthenticator, TokenStore
from abflow.serving import (
    routes_experiments,
    routes_health,
    routes_metrics,
    routes_outcomes,
    routes_predict,
)
from abflow.serving.catalog import ExperimentCatalog, InMemoryCatalog
from abflow.serving.fastpath import PREDICT_PATH, serve_predict
from abflow.serving.features import GatewayFeatures
from abflow.serving.gateway import BackendFactory, Gateway
from abflow.serving.http_errors import install_error_handlers
from abflow.serving.openapi import install_openapi
from abflow.serving.refresh import StoreFollower, with_rollout_weights
from abflow.serving.services import Services
from abflow.serving.settings import (
    GatewayConfig,
    GatewaySettings,
    demo_config,
    load_config,
    monitor_interval,
    policy_for,
)

if TYPE_CHECKING:
    from abflow.monitoring.monitor_metrics import MonitorMetrics
    from abflow.serving.wiring import GatewayMonitor

__all__ = ["create_app"]

logger = logging.getLogger(__name__)


class GatewayApp(FastAPI):
    """FastAPI with the prediction fast path in front (see :mod:`abflow.serving.fastpath`)."""

    fast_predict: bool = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.fast_predict
            and scope["type"] == "http"
            and scope["path"] == PREDICT_PATH
            and scope["method"] == "POST"
        ):
            await serve_predict(self.state.abflow, scope, receive, send)
            return
        if scope["type"] == "lifespan":
            await super().__call__(scope, receive, self._startup_reporter(send))
            return
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        send = _relative_redirects(send)
        if scope["method"] == "HEAD":
            # HEAD is GET without the body (RFC 9110 9.3.2): same status, headers and checks.
            await super().__call__({**scope, "method": "GET"}, receive, _without_body(send))
            return
        await super().__call__(scope, receive, send)

    def _startup_reporter(self, send: Send) -> Send:
        """Report an abflow error that stops startup as its sentence, not a traceback."""

        async def reporting(message: Message) -> None:
            error = self.state.abflow.startup_error
            if message["type"] == "lifespan.startup.failed" and error is not None:
                message = {**message, "message": f"cannot start the gateway: {error}"}
            await send(message)

        return reporting


def _relative_redirects(send: Send) -> Send:
    """``send`` that keeps a redirect on this server: the router's redirect of a path with
    a trailing slash names scheme and host from the request's ``Host`` header, which a
    client (or a cache in front) could be steered with; the path and query alone are enough
    (RFC 9110 10.2.2)."""

    async def relative(message: Message) -> None:
        if message["type"] == "http.response.start" and 300 <= message["status"] < 400:
            headers = [
                (name, _path_and_query(value) if name == b"location" else value)
                for name, value in message.get("headers", [])
            ]
            message = {**message, "headers": headers}
        await send(message)

    return relative


def _path_and_query(location: bytes) -> bytes:
    """One leading slash: ``//host/x`` (or ``/\\host/x`` to a browser) would name another
    server, a network-path reference."""
    parts = urlsplit(location)
    target = b"/" + parts.path.lstrip(b"/\\")
    return target + b"?" + parts.query if parts.query else target


def _without_body(send: Send) -> Send:
    """``send`` that passes a response's head and drops its body bytes."""

    async def head_only(message: Message) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            message = {**message, "body": b""}
        await send(message)

    return head_only


def _sticky_buckets(store: Any) -> StickyBucketStore | None:
    """The store's sticky_buckets table, shared by every replica (None: in memory)."""
    if store is None:
        return None
    from abflow.store.sticky_buckets import StoreStickyBuckets

    return StoreStickyBuckets(store)


def create_app(
    settings: GatewaySettings | None = None,
    *,
    config: GatewayConfig | None = None,
    events: EventSink | None = None,
    tokens: TokenStore | None = None,
    catalog: ExperimentCatalog | None = None,
    backend_factory: BackendFactory | None = None,
    tracer_provider: TracerProvider | None = None,
) -> FastAPI:
    """A gateway app. Without arguments: settings from ``ABFLOW_*``, the config file they
    name (else the demo experiment), the store at ``store_url`` (else embedded SQLite)."""
    settings = settings if settings is not None else GatewaySettings()
    if config is None:
        config = load_config(settings.config) if settings.config else demo_config()
    store_url = settings.store_url or config.store_url
    store: Any = None
    if events is None or tokens is None or catalog is None:
        store = _open_store(store_url, settings.store_timeout_seconds)
    if catalog is None:
        from abflow.serving.wiring import StoreCatalog

        catalog = StoreCatalog(store) if store is not None else InMemoryCatalog()
    tokens = tokens if tokens is not None else _default_tokens(store, config)
    metrics = GatewayMetrics()
    monitor_seconds = monitor_interval(settings, config)
    monitor_metrics = _monitor_metrics(metrics) if monitor_seconds > 0 else None
    tracer = Tracer.from_environment(enabled=settings.tracing_enabled, provider=tracer_provider)
    gateway = Gateway(
        settings,
        events=_LazySink(),
        catalog=catalog,
        metrics=metrics,
        tracer=tracer,
        backend_options=config.backends,
        backend_factory=backend_factory,
        saved_groups=config.saved_groups,
        sticky_buckets=_sticky_buckets(store),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services: Services = app.state.abflow
        if events is None:
            from abflow.serving.wiring import claim_event_log

            services.events = await asyncio.to_thread(
                claim_event_log,
                settings.events_url or store_url or _default_url(),
                settings.journal_dir,
                ship_in_subprocess=settings.ship_in_subprocess,
            )
        else:
            await asyncio.to_thread(services.events.start)
        gateway.events = services.events
        metrics.watch_event_pipeline(
            lambda: services.events.queue_depth, lambda: services.events.spool_bytes
        )
        following: asyncio.Task[None] | None = None
        monitor: GatewayMonitor | None = None
        try:
            try:
                if config.features:  # opens Feast repos: slow, and blocking
                    gateway.features = await asyncio.to_thread(
                        GatewayFeatures.from_config, config.features
                    )
                for configured in config.experiments:
                    spec = configured
                    if store is not None:
                        spec = await asyncio.to_thread(with_rollout_weights, configured, store)
                    shadow = tuple(config.shadow.get(spec.key, ()))
                    is_default = config.default_experiment == spec.key
                    await asyncio.to_thread(
                        gateway.add_experiment, spec, shadow=shadow, default=is_default
                    )
            except AbflowError as exc:
                services.startup_error = exc
                raise
            if store is not None:
                policy = policy_for(settings, config)  # the store is written by API callers
                follower = StoreFollower(gateway, store, settings.refresh_seconds, policy)
                try:  # what was registered elsewhere, or here before a restart
                    await asyncio.to_thread(follower.poll)
                except AbflowError as exc:
                    logger.warning("could not read the store's experiments at start: %s", exc)
                if settings.refresh_seconds > 0:
                    following = asyncio.create_task(follower.run())
            services.is_ready = True
            if monitor_metrics is not None:
                monitor = await _start_monitor(
                    store_url or _default_url(), config, monitor_seconds, monitor_metrics
                )
            yield
        finally:
            if following is not None:
                following.cancel()
            if monitor is not None:
                await monitor.stop(settings.drain_timeout_seconds)
            services.is_draining = True
            services.is_ready = False
            await services.remote_health.aclose()
            await gateway.aclose()
            await asyncio.to_thread(services.events.close, settings.drain_timeout_seconds)
            await asyncio.to_thread(tracer.shutdown)  # flushes the spans still batched
            if store is not None:
                store.close()

    app = GatewayApp(
        title="abflow gateway",
        version=__version__,
        summary="A/B testing and progressive delivery for ML models",
        lifespan=lifespan,
    )
    app.state.abflow = Services(
        settings=settings,
        config=config,
        gateway=gateway,
        events=events if events is not None else _LazySink(),
        tokens=tokens,
        authenticator=TokenAuthenticator(
            tokens,
            cache_ttl_seconds=settings.token_cache_seconds,
            lookup_timeout_seconds=settings.token_lookup_timeout_seconds,
            max_stale_seconds=settings.token_max_stale_seconds,
        ),
        metrics=metrics,
    )
    app.fast_predict = settings.predict_fast_path
    install_error_handlers(app)
    install_openapi(app)
    for module in (
        routes_predict,
        routes_outcomes,
        routes_experiments,
        routes_health,
        routes_metrics,
    ):
        app.include_router(module.router)
    if importlib.util.find_spec("abflow.serving.routes_results") is not None:
        results = importlib.import_module("abflow.serving.routes_results")
        app.include_router(results.router)
    app.include_router(dashboard.router)
    app.add_middleware(_RequestMetrics, metrics=metrics)
    return app


def _monitor_metrics(metrics: GatewayMetrics) -> MonitorMetrics:
    from abflow.monitoring.monitor_metrics import gateway_monitor_metrics

    return gateway_monitor_metrics(metrics)


async def _start_monitor(
    url: str, config: GatewayConfig, interval_seconds: float, metrics: MonitorMetrics
) -> GatewayMonitor | None:
    """The monitor's task, started; a store it cannot open leaves the gateway serving
    without it (logged and counted), since serving depends on nothing but the model."""
    from abflow.serving.wiring import open_monitor

    try:
        monitor = await asyncio.to_thread(
            open_monitor, url, config.monitor, interval_seconds, metrics
        )
    except AbflowError as exc:
        metrics.errors.labels("").inc()
        logger.error("the gateway runs without its monitor: %s", exc)
        return None
    monitor.task.start()
    return monitor


def _default_url() -> str:
    from abflow.store import resolve_url

    return resolve_url(None)


def _open_store(url: str | None, timeout_seconds: float) -> Any:
    from abflow.store import EventStore
    from abflow.store.engine import StoreTimeouts

    # Every call the gateway makes is on behalf of a request (or the follower): bounded.
    return EventStore.open(url, timeouts=StoreTimeouts(statement_seconds=timeout_seconds))


def _default_tokens(store: Any, config: GatewayConfig) -> TokenStore:
    from abflow.serving.wiring import CombinedTokenStore, StoreTokenStore, config_token_store

    extra = config_token_store(config.tokens)
    if store is None:
        return extra
    return CombinedTokenStore(StoreTokenStore(store), extra)


class _LazySink:
    """Stands in until the lifespan starts the real event log; refuses events meanwhile."""

    queue_depth = 0
    spool_bytes = 0

    def start(self) -> None:
        """Nothing to start."""

    def append(self, kind: str, row: dict[str, Any]) -> None:
        from abflow.errors import StoreUnavailableError

        msg = "the event log is not running: the gateway is starting or stopping"
        raise StoreUnavailableError(msg)

    def close(self, timeout_seconds: float = 10.0) -> None:
        """Nothing to close."""


class _RequestMetrics:
    """Counts requests and their latency per route template (pure ASGI: no body copies)."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.observe_request(template, status, time.perf_counter() - started)
