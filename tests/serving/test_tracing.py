"""OpenTelemetry spans around predictions, when a tracer provider is configured."""

from __future__ import annotations

from pathlib import Path

import pytest
from gateway_support import MemoryEvents, auth, experiment, serve
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from abflow.security.roles import Role
from abflow.security.tokens import InMemoryTokenStore
from abflow.serving.app import create_app
from abflow.serving.catalog import InMemoryCatalog
from abflow.serving.settings import GatewayConfig, GatewaySettings

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("enabled", [True, False])
async def test_predict_spans_carry_experiment_and_variant(
    tmp_path: Path,
    events: MemoryEvents,
    token_store: InMemoryTokenStore,
    tokens: dict[Role, str],
    enabled: bool,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = create_app(
        GatewaySettings(journal_dir=tmp_path, tracing_enabled=enabled),
        config=GatewayConfig(experiments=[experiment()]),
        events=events,
        tokens=token_store,
        catalog=InMemoryCatalog(),
        tracer_provider=provider,
    )
    async with serve(app) as client:
        body = (
            await client.post(
                "/v1/predict",
                json={"unit_id": "u1", "features": [0.0] * 4},
                headers=auth(tokens[Role.SERVICE]),
            )
        ).json()
    spans = exporter.get_finished_spans()
    if not enabled:
        assert spans == ()
        return
    [span] = spans
    assert span.name == "abflow.predict"
    assert span.attributes is not None
    assert span.attributes["abflow.experiment"] == "exp"
    assert span.attributes["abflow.variant"] == body["variant"]
    provider.shutdown()
