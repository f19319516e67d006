"""The prediction service behind ``POST /v1/predict``, free of HTTP.

Per request: assign the unit (precompiled routing), check the features, answer from the
cache or the chosen variant's backend, fall back to the control model if that backend fails
or its circuit is open, append the exposure and prediction events and any monitoring sample
(durable before the answer leaves), and mirror the request to shadow variants in the
background. Everything that depends only on the spec (routing tables, backends, metric
label children) is built once, when an experiment is added.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import orjson

from abflow.errors import (
    AbflowError,
    ArtifactChecksumError,
    BackendError,
    ConfigError,
    ExperimentNotFoundError,
    InvalidArgumentError,
    RegistryError,
)
from abflow.events.sampling import FeatureSampler
from abflow.events.sink import (
    DEFAULT_VARIANT,
    EventKind,
    EventSink,
    PredictionEvent,
    append_events,
    exposure_row,
    new_id,
)
from abflow.monitoring.metrics import GatewayMetrics
from abflow.monitoring.tracing import Tracer
from abflow.routing.experiment import Assignment, compile_experiment, unit_text
from abflow.routing.sticky import (
    InMemoryStickyBuckets,
    StickyBucketStore,
    StickySettings,
    assign_sticky,
)
from abflow.serving.backends import (
    BackendOptions,
    CircuitBreaker,
    GuardedBackend,
    RefusedBackend,
    build_backend,
)
from abflow.serving.backends.failure import FailureLog, error_text, failure_reason
from abflow.serving.cache import MISSING, PredictionCache, row_key
from abflow.serving.catalog import ExperimentCatalog
from abflow.serving.features import GatewayFeatures
from abflow.serving.inputs import (
    MAX_REQUEST_ID,
    MAX_UNIT_ID,
    PredictIn,
    check_attributes,
    check_text,
)
from abflow.serving.live import LiveExperiment
from abflow.serving.recent import RecentRequests
from abflow.serving.settings import GatewaySettings
from abflow.serving.shadow import ShadowMirror, mirrored_variants
from abflow.spec import ExperimentSpec, shown_reference

__all__ = ["Gateway"]

logger = logging.getLogger(__name__)

BackendFactory = Callable[[str, BackendOptions | None], GuardedBackend]
BackendCheck = Callable[[tuple[GuardedBackend, ...], frozenset[int]], None]
"""Run on a spec's backends and the indices of those it brought in, before it registers."""


class Gateway:
    """Serves predictions for the experiments it holds; one per app (per worker process)."""

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        events: EventSink,
        catalog: ExperimentCatalog,
        metrics: GatewayMetrics,
        tracer: Tracer | None = None,
        backend_options: Mapping[str, BackendOptions] | None = None,
        backend_factory: BackendFactory | None = None,
        saved_groups: Mapping[str, list[Any]] | None = None,
        sticky_buckets: StickyBucketStore | None = None,
    ) -> None:
        self.settings = settings
        # for specs with 'sticky' (the store's table in production; memory: one replica)
        self.sticky_buckets = sticky_buckets or InMemoryStickyBuckets()
        self._sticky_warned_at = -math.inf
        self.saved_groups = dict(saved_groups or {})  # the config's, for $inGroup conditions
        self.events = events
        self.catalog = catalog
        self.metrics = metrics
        self.tracer = tracer or Tracer(enabled=False)
        self._options = dict(backend_options or {})
        self._factory = backend_factory or self._default_factory
        self.experiments: dict[str, LiveExperiment] = {}
        self.default_key: str | None = None
        self._backends: dict[str, GuardedBackend] = {}
        self.cache = (
            PredictionCache(settings.cache_max_entries, settings.cache_ttl_seconds)
            if settings.cache_enabled
            else None
        )
        self.shadow = ShadowMirror(self, max_in_flight=settings.shadow_max_in_flight)
        self._failure_log = FailureLog(logger)
        self.sampler = FeatureSampler()
        self.features = GatewayFeatures()  # the config's sources, set when the app starts
        self._unscored: set[tuple[str, str]] = set()  # (experiment, variant) already flagged
        self._recent = (
            RecentRequests(settings.recent_requests) if settings.recent_requests > 0 else None
        )

    # --- experiments -------------------------------------------------------------------

    def _default_factory(self, reference: str, options: BackendOptions | None) -> GuardedBackend:
        s = self.settings
        child = self.metrics.batch_size.labels(shown_reference(reference))
        return build_backend(
            reference,
            options,
            timeout_seconds=s.backend_timeout_ms / 1000.0,
            failure_threshold=s.breaker_failure_threshold,
            reset_seconds=s.breaker_reset_seconds,
            max_batch_rows=s.batch_max_rows,
            max_batch_wait_seconds=s.batch_max_wait_ms / 1000.0,
            execution=s.model_execution,
            on_batch=child.observe,
            trace_headers=self.tracer.outgoing_headers if self.tracer.enabled else None,
        )

    def _backend(self, reference: str, *, is_control: bool) -> GuardedBackend:
        backend = self._backends.get(reference)
        if backend is None:
            try:
                backend = self._factory(reference, self._options.get(reference))
            except ArtifactChecksumError as exc:
                if is_control:
                    raise
                # A challenger that fails verification never serves; control answers for it.
                logger.error("refusing model %s: %s", shown_reference(reference), exc)
                self.metrics.errors.labels(
                    "", shown_reference(reference), "ArtifactChecksumError"
                ).inc()
                breaker = CircuitBreaker(failure_threshold=1, reset_seconds=float("inf"))
                self.metrics.circuit_open.labels(shown_reference(reference)).set(1)
                return GuardedBackend(RefusedBackend(reference, exc), breaker=breaker)
            gauge = self.metrics.circuit_open.labels(shown_reference(reference))
            gauge.set(0)
            backend.breaker.on_change = gauge.set
            self._backends[reference] = backend
        return backend

    def _variant_backend(self, index: int, reference: str) -> GuardedBackend:
        try:
            return self._backend(reference, is_control=index == 0)
        except (ConfigError, RegistryError) as exc:
            # Name the spec field at fault: the message then reads like a spec problem.
            msg = f"variants[{index}].model: {exc}"
            raise type(exc)(msg) from exc

    def add_experiment(
        self,
        spec: ExperimentSpec,
        *,
        shadow: tuple[str, ...] = (),
        default: bool = False,
        actor: str = "system",
        check: BackendCheck | None = None,
    ) -> LiveExperiment:
        """Load the spec's models (blocking: call from a thread when the loop is running),
        register it, and start serving it; replaces a live experiment with the same key.
        ``check`` may refuse the backends new to this gateway (the registration probe):
        they are then forgotten and nothing is registered."""
        known = set(self._backends)
        backends = tuple(
            self._variant_backend(index, variant.model)
            for index, variant in enumerate(spec.variants)
        )
        names = spec.variant_names
        unknown = [n for n in shadow if n not in names[1:]]
        if unknown:
            msg = f"shadow variants {unknown} are not challengers of {spec.key!r}"
            raise InvalidArgumentError(msg)
        try:
            _check_widths(spec, backends)
        except InvalidArgumentError:
            for variant in spec.variants:
                if variant.model not in known:
                    self._backends.pop(variant.model, None)
            raise
        if check is not None:
            self._check_new(spec, backends, known, check)
        registration = self.catalog.register(spec, actor)
        spec = registration.spec or spec  # a rollout's weights, kept by the catalog
        live = LiveExperiment(
            spec=spec,
            compiled=compile_experiment(spec, saved_groups=self.saved_groups or None),
            version=registration.version,
            phase=registration.phase,
            backends=backends,
            shadow=mirrored_variants(spec, shadow),
            n_features=next((b.n_features for b in backends if b.n_features), None),
            configured_shadow=shadow,
        )
        self.experiments[spec.key] = live
        if default or self.default_key is None:
            self.default_key = spec.key
        return live

    def _check_new(
        self,
        spec: ExperimentSpec,
        backends: tuple[GuardedBackend, ...],
        known: set[str],
        check: BackendCheck,
    ) -> None:
        new = frozenset(
            i
            for i, variant in enumerate(spec.variants)
            if variant.model not in known and variant.model in self._backends
        )
        if not new:
            return
        try:
            check(backends, new)
        except BaseException:
            for i in new:
                self._backends.pop(spec.variants[i].model, None)
            raise

    def get(self, key: str | None) -> LiveExperiment:
        """The live experiment ``key`` (or the default one); ExperimentNotFoundError if none."""
        if key is None:
            key = self.default_key
            if key is None:
                msg = "experiment: no experiment given and no default experiment is configured"
                raise InvalidArgumentError(msg)
        live = self.experiments.get(key)
        if live is None:
            # Not the live keys: a service token, which cannot list experiments, would read them.
            msg = (
                f"experiment: no experiment {key!r} is served here (GET /v1/experiments lists them)"
            )
            raise ExperimentNotFoundError(msg)
        return live

    # --- predict -----------------------------------------------------------------------

    async def predict(self, body: PredictIn, request_id: str | None = None) -> dict[str, Any]:
        """Route, predict, log; return the response document."""
        live = self.get(body.experiment)
        spec = live.spec
        attributes = body.attributes
        check_attributes(attributes)  # they are stored with the exposure: refuse what cannot be
        unit_id = body.unit_id
        if unit_id is not None:
            attributes = {**attributes, spec.unit: unit_id}
        else:
            raw = attributes.get(spec.unit)
            if raw is None or raw == "":
                msg = f"unit_id: missing; send unit_id or attributes.{spec.unit}"
                raise InvalidArgumentError(msg)
            # Logged as the text routing hashes (7.0 is unit "7"), so that a unit's events
            # carry the id its variant was chosen by.
            text = unit_text(raw)
            if text is None:
                msg = (
                    f"attributes.{spec.unit}: expected a non-empty string or a non-zero "
                    f"finite number, got {_shown_value(raw)}"
                )
                raise InvalidArgumentError(msg)
            unit_id = text
            if len(unit_id) > MAX_UNIT_ID:
                msg = f"attributes.{spec.unit}: at most {MAX_UNIT_ID} characters"
                raise InvalidArgumentError(msg)
        prepared = await self.features.prepare(
            spec.key,
            body.features,
            attributes,
            n_features=live.n_features,
            max_rows=self.settings.max_rows,
        )
        rows = prepared.rows  # one vector for every variant: served, fallback and shadow
        if request_id is not None:
            if not 0 < len(request_id) <= MAX_REQUEST_ID:
                msg = (
                    f"x-request-id: must be 1 to {MAX_REQUEST_ID} characters, got {len(request_id)}"
                )
                raise InvalidArgumentError(msg)
            check_text(request_id, "x-request-id", is_request_id=True)
        request_id = body.request_id or request_id or new_id()
        assignment = await self._assign(live, attributes)
        index = assignment.index
        in_experiment = assignment.in_experiment and index not in live.shadow
        served = index if in_experiment else 0
        variant = spec.variants[served].name if in_experiment else DEFAULT_VARIANT

        with self.tracer.span(
            "abflow.predict",
            {
                "abflow.request_id": request_id,
                "abflow.experiment": spec.key,
                "abflow.variant": variant,
            },
        ) as span:
            backend = live.backends[served]
            is_fallback = False
            error: str | None = None
            reason: str | None = None
            started = time.perf_counter()
            try:
                outputs, _, hits = await self._predict(backend, rows)
            except BackendError as exc:
                self.metrics.errors.labels(spec.key, variant, type(exc).__name__).inc()
                if served == 0:
                    raise
                reason = failure_reason(exc)
                self.metrics.fallbacks.labels(spec.key, variant, reason).inc()
                self._failure_log.failed(spec.key, variant, exc)
                error = error_text(exc)
                backend = live.backends[0]
                is_fallback = True
                outputs, _, hits = await self._predict(backend, rows)
            latency = time.perf_counter() - started
            if span is not None:
                span.set_attributes(
                    {
                        "abflow.model_version": backend.version,
                        "abflow.is_fallback": is_fallback,
                        "abflow.cache_hit": hits == rows.shape[0],
                    }
                )
                if reason is not None:
                    span.set_attribute("abflow.fallback_reason", reason)

        self._observe(live, variant, backend.version, latency, rows.shape[0])
        features_hash = prepared.features_hash  # of the vector alone, not of the model
        events: list[tuple[EventKind, dict[str, Any]]] = []
        if in_experiment:
            events.append(
                (
                    "exposure",
                    exposure_row(
                        experiment_key=spec.key,
                        phase=live.phase,
                        unit_id=unit_id,
                        variant=variant,
                        attributes=body.attributes or None,
                    ),
                )
            )
        prediction = PredictionEvent(
            request_id=request_id,
            experiment_key=spec.key,
            phase=live.phase,
            unit_id=unit_id,
            variant=variant,
            model_version=backend.version,
            latency_ms=latency * 1000.0,
            outputs=outputs,
            features_hash=features_hash,
            is_fallback=is_fallback,
            error=error,
        )
        events.append(("prediction", prediction.row()))
        if len(outputs) == 1 and prediction.score is None:
            self._flag_unscored(spec.key, variant, backend.version, outputs[0])
        if in_experiment and not is_fallback:  # the variant's own model answered
            samples = self.sampler.offer(
                config=spec.monitoring,
                experiment_key=spec.key,
                phase=live.phase,
                variant=variant,
                model_version=backend.version,
                request_id=request_id,
                rows=rows,
                outputs=outputs,
            )
            events.extend(("sample", row) for row in samples)
        append_events(self.events, events)  # one journal write: durable before the answer
        self._remember(request_id, unit_id, spec.key)
        self.shadow.mirror_request(live, rows, prediction)
        single = prepared.single
        return {
            "request_id": request_id,
            "experiment": spec.key,
            "variant": variant if in_experiment else None,
            "in_experiment": in_experiment,
            "reason": assignment.reason if in_experiment or index < 0 else "shadow",
            "model_version": backend.version,
            "is_fallback": is_fallback,
            "prediction": outputs[0] if single else outputs,
        }

    async def _assign(self, live: LiveExperiment, attributes: Mapping[str, Any]) -> Assignment:
        """Route by hash, or by sticky bucket when the spec has ``sticky``. A bucket store
        that fails or takes longer than ``store_timeout_seconds`` costs no prediction: the
        unit is routed by hash (its stored variant, if any, is then not used) and a warning
        is logged at most every 10 s."""
        sticky = live.spec.sticky
        if sticky is None:
            return live.compiled.assign(attributes)
        settings = StickySettings(
            sticky.bucket_version, sticky.min_bucket_version, sticky.fallback_attribute
        )
        store = self.sticky_buckets
        if isinstance(store, InMemoryStickyBuckets):
            return assign_sticky(live.compiled, attributes, store, settings).assignment
        try:
            result = await asyncio.wait_for(
                asyncio.to_thread(assign_sticky, live.compiled, attributes, store, settings),
                timeout=self.settings.store_timeout_seconds,
            )
        except (AbflowError, TimeoutError) as exc:
            now = time.monotonic()
            if now - self._sticky_warned_at >= 10.0:
                self._sticky_warned_at = now
                reason = str(exc) or type(exc).__name__
                logger.warning(
                    "sticky buckets of %r unavailable, routing by hash: %s", live.spec.key, reason
                )
            return live.compiled.assign(attributes)
        return result.assignment

    def _flag_unscored(self, experiment: str, variant: str, version: str, output: Any) -> None:
        """Count an answer that gave no score; warn once per variant, since its quality
        metrics (recall, FPR, …) will stay empty until its output option is fixed."""
        self.metrics.unscored.labels(experiment, variant).inc()
        if (experiment, variant) in self._unscored:
            return
        self._unscored.add((experiment, variant))
        logger.warning(
            "experiment %s variant %s (model %s) answered %s, which is not a score: set the "
            "backend's output option (output: proba with class_index, or output_path)",
            experiment,
            variant,
            version,
            str(output)[:200],
        )

    async def _predict(
        self, backend: GuardedBackend, rows: np.ndarray
    ) -> tuple[list[Any], list[bytes] | None, int]:
        """Outputs for ``rows``, reading and filling the cache when it is on (with the
        keys, and how many rows the cache answered)."""
        cache = self.cache
        if cache is None:
            return await backend.predict(rows), None, 0
        version = backend.version
        keys = [row_key(version, row) for row in rows]
        outputs = [cache.get(key) for key in keys]
        missing = [i for i, value in enumerate(outputs) if value is MISSING]
        hits = len(keys) - len(missing)
        if hits:
            self.metrics.cache_hits.inc(hits)
        if missing:
            self.metrics.cache_misses.inc(len(missing))
            fresh = await backend.predict(rows if not hits else rows[missing])
            for i, value in zip(missing, fresh, strict=True):
                outputs[i] = value
                cache.put(keys[i], value)
        return outputs, keys, hits

    def _observe(
        self, live: LiveExperiment, variant: str, version: str, latency: float, n_rows: int
    ) -> None:
        children = live.latency_children.get((variant, version))
        if children is None:
            children = (
                self.metrics.prediction_latency.labels(live.key, variant, version),
                self.metrics.predictions.labels(live.key, variant, version),
            )
            live.latency_children[(variant, version)] = children
        children[0].observe(latency)
        children[1].inc(n_rows)

    def _remember(self, request_id: str, unit_id: str, experiment_key: str) -> None:
        if self._recent is not None:
            self._recent.remember(request_id, unit_id, experiment_key)

    def recall(self, request_id: str) -> tuple[str, str] | None:
        """(unit id, experiment key) of a recent request, for joining outcomes."""
        return self._recent.recall(request_id) if self._recent is not None else None

    async def aclose(self) -> None:
        """Wait for shadow work, then close every backend (model threads, HTTP pools)."""
        await self.shadow.drain(self.settings.drain_timeout_seconds)
        for backend in self._backends.values():
            await backend.aclose()
        self._backends.clear()


def _check_widths(spec: ExperimentSpec, backends: tuple[GuardedBackend, ...]) -> None:
    """Every variant gets the same feature vector: models that declare different widths
    cannot all answer, and the odd one would fall back on every request."""
    widths = {
        variant.name: backend.n_features
        for variant, backend in zip(spec.variants, backends, strict=True)
        if backend.n_features
    }
    if len(set(widths.values())) > 1:
        shown = ", ".join(f"{name} {width}" for name, width in widths.items())
        msg = (
            f"variants: the models expect different numbers of features ({shown}); every "
            "variant is sent the same feature vector"
        )
        raise InvalidArgumentError(msg)


def _shown_value(value: Any) -> str:
    """A refused value as an error message quotes it: as JSON, at most 60 characters."""
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
