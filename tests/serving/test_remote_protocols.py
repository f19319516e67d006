"""v2 (Open Inference Protocol), Vertex-style and custom servers behind the gateway, against
loopback servers that check payloads as strictly as Triton and MLServer do
(strict_servers.py); MLflow's own server is in test_remote_mlflow.py."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import gwmodels
import httpx
import numpy as np
import pytest
from gateway_support import (
    AppFactory,
    MemoryEvents,
    auth,
    metric_samples,
    predict_each,
    remote_experiment,
)
from model_server import running
from strict_servers import strict_app, v2_outputs

from abflow.errors import BackendError
from abflow.security.roles import Role
from abflow.serving.backends import BackendOptions, build_backend

pytestmark = pytest.mark.anyio

N_REQUESTS = 10
WIDTH = gwmodels.N_FEATURES


@pytest.fixture(scope="module")
def fp32_server() -> Iterator[str]:
    app = strict_app(gwmodels.challenger(), input_name="float_input", datatype="FP32", width=WIDTH)
    with running(app) as url:
        yield url


@pytest.fixture(scope="module")
def int64_server() -> Iterator[str]:
    app = strict_app(gwmodels.challenger(), input_name="counts", datatype="INT64", width=WIDTH)
    with running(app) as url:
        yield url


def _samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value for s in metric_samples(text, name)}


async def test_v2_sends_the_declared_fp32_input_and_scores_the_named_output(
    fp32_server: str,
    make_client: AppFactory,
    tokens: dict[Role, str],
    events: MemoryEvents,
    rng: np.random.Generator,
) -> None:
    url = f"{fp32_server}/v2/models/fraud/infer"
    options = BackendOptions(output_name="probabilities", output="proba", class_index=1)
    client = await make_client(remote_experiment(url), backends={url: options})
    rows = rng.normal(size=(N_REQUESTS, WIDTH))
    bodies = await predict_each(client, tokens[Role.SERVICE], rows)

    model = gwmodels.challenger()
    expected = [
        float(v2_outputs(model, row[None, :].astype(np.float32))["probabilities"][1][0, 1])
        for row in rows
    ]
    assert [b["is_fallback"] for b in bodies] == [False] * N_REQUESTS
    assert [b["prediction"] for b in bodies] == expected
    assert [p["score"] for p in events.rows["prediction"]] == expected
    assert [p["error"] for p in events.rows["prediction"]] == [None] * N_REQUESTS


async def test_v2_int64_input_from_metadata_and_the_first_output_by_default(
    int64_server: str, rng: np.random.Generator
) -> None:
    backend = build_backend(f"{int64_server}/v2/models/fraud/infer")
    try:
        # Read when the backend is built (registration), before any call: the gateway then
        # checks a request's row width at the edge.
        assert backend.n_features == WIDTH
        rows = rng.integers(-3, 4, size=(6, WIDTH)).astype(float)
        outputs = await backend.predict(rows)
        # No output named: the server sends all, label first; that is what is read.
        expected = gwmodels.challenger().predict(rows).tolist()
        assert outputs == expected
    finally:
        await backend.aclose()


async def test_v2_config_override_skips_the_metadata(
    fp32_server: str, rng: np.random.Generator
) -> None:
    url = f"{fp32_server}/v2/models/fraud/infer"
    wrong = build_backend(url, BackendOptions(input_name="input-0", datatype="FP64"))
    right = build_backend(
        url, BackendOptions(input_name="float_input", datatype="FP32", output_name="probabilities")
    )
    rows = rng.normal(size=(3, WIDTH))
    try:
        with pytest.raises(BackendError, match=r"answered 400: .*unexpected inference input"):
            await wrong.predict(rows)
        outputs = await right.predict(rows)
        proba = v2_outputs(gwmodels.challenger(), rows.astype(np.float32))["probabilities"][1]
        assert outputs == proba[:, 1].astype(float).tolist()
    finally:
        await wrong.aclose()
        await right.aclose()


async def test_vertex_protocol_and_class_index(fp32_server: str, rng: np.random.Generator) -> None:
    url = f"{fp32_server}/v1/endpoints/fraud:predict"
    backend = build_backend(url, BackendOptions(protocol="vertex", output="proba", class_index=0))
    try:
        rows = rng.normal(size=(7, WIDTH))
        outputs = await backend.predict(rows)
        assert outputs == gwmodels.challenger().predict_proba(rows)[:, 0].tolist()
    finally:
        await backend.aclose()


async def test_custom_server_read_by_json_path(fp32_server: str, rng: np.random.Generator) -> None:
    url = f"{fp32_server}/custom/invocations"
    backend = build_backend(url, BackendOptions(output_path="$.result.scores"))
    try:
        rows = rng.normal(size=(5, WIDTH))
        outputs = await backend.predict(rows)
        assert outputs == gwmodels.challenger().predict_proba(rows)[:, 1].tolist()
    finally:
        await backend.aclose()


async def test_answers_that_are_not_scores_are_flagged_once(
    fp32_server: str,
    make_client: AppFactory,
    tokens: dict[Role, str],
    events: MemoryEvents,
    rng: np.random.Generator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"{fp32_server}/text/invocations"
    client = await make_client(remote_experiment(url))
    with caplog.at_level(logging.WARNING, logger="abflow.serving.gateway"):
        bodies = await predict_each(
            client, tokens[Role.SERVICE], rng.normal(size=(N_REQUESTS, WIDTH))
        )
    assert [b["prediction"] for b in bodies] == ["fraud"] * N_REQUESTS
    assert [p["score"] for p in events.rows["prediction"]] == [None] * N_REQUESTS
    metrics = (await client.get("/metrics", headers=auth(tokens[Role.VIEWER]))).text
    counted = _samples(metrics, "abflow_unscored_predictions_total")
    assert counted == {(("experiment", "exp"), ("variant", "remote")): float(N_REQUESTS)}
    warnings = [r for r in caplog.records if "which is not a score" in r.getMessage()]
    assert len(warnings) == 1


async def test_an_answer_without_predictions_falls_back_as_bad_output(
    fp32_server: str,
    make_client: AppFactory,
    tokens: dict[Role, str],
    events: MemoryEvents,
    rng: np.random.Generator,
) -> None:
    url = f"{fp32_server}/broken/invocations"
    client = await make_client(
        remote_experiment(url), backends={url: BackendOptions(failure_threshold=3)}
    )
    bodies = await predict_each(client, tokens[Role.SERVICE], rng.normal(size=(N_REQUESTS, WIDTH)))
    assert [b["is_fallback"] for b in bodies] == [True] * N_REQUESTS
    errors = [str(p["error"]) for p in events.rows["prediction"]]
    # Three bad answers open the circuit; the other seven never reach the server.
    assert [e.split(":")[0] for e in errors] == ["bad_output"] * 3 + ["circuit_open"] * 7
    assert "answer has no list of predictions" in errors[0]
    metrics = (await client.get("/metrics", headers=auth(tokens[Role.VIEWER]))).text
    counted = _samples(metrics, "abflow_fallbacks_total")
    base = (("experiment", "exp"), ("variant", "remote"))
    assert counted == {
        (*base[:1], ("reason", "bad_output"), base[1]): 3.0,
        (*base[:1], ("reason", "circuit_open"), base[1]): 7.0,
    }


async def test_each_failure_gets_its_reason_and_no_credentials(
    rng: np.random.Generator,
) -> None:
    from model_server import free_port

    from abflow.serving.backends import HttpBackend
    from abflow.serving.backends.failure import error_text, failure_reason

    def answer(status: int, body: bytes) -> httpx.MockTransport:
        return httpx.MockTransport(lambda request: httpx.Response(status, content=body))

    def slow(request: httpx.Request) -> httpx.Response:
        msg = "read timed out"
        raise httpx.ReadTimeout(msg, request=request)

    secret_url = "https://user:hunter2@models.example/invocations?api_key=s3cr3t"
    cases = [
        (HttpBackend(secret_url, transport=answer(503, b"x" * 2000)), "status_5xx"),
        (HttpBackend(secret_url, transport=answer(422, b'{"detail": "bad"}')), "status_4xx"),
        (HttpBackend(secret_url, transport=answer(200, b"<html>")), "bad_output"),
        (HttpBackend(secret_url, transport=answer(200, b'{"predictions": [1, 2]}')), "bad_output"),
        (HttpBackend(secret_url, transport=httpx.MockTransport(slow)), "timeout"),
        (HttpBackend(f"http://u:pw@127.0.0.1:{free_port()}/invocations?k=s3cr3t"), "connect"),
    ]
    seen = []
    for backend, reason in cases:
        try:
            with pytest.raises(BackendError) as caught:
                await backend.predict(rng.normal(size=(1, WIDTH)))
        finally:
            await backend.aclose()
        text = error_text(caught.value)
        seen.append(failure_reason(caught.value))
        assert text.startswith(f"{reason}: ")
        assert "hunter2" not in text
        assert "s3cr3t" not in text
        assert "pw@" not in text
        if reason == "status_5xx":  # status and the first 500 characters of the body
            assert text.endswith("answered 503: " + "x" * 500)
    assert seen == [reason for _, reason in cases]


def test_failure_log_lines_are_rate_limited_per_variant() -> None:
    from abflow.errors import BackendTimeoutError
    from abflow.serving.backends.failure import FailureLog

    now = [0.0]
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    log = logging.getLogger("test.failure_log")
    log.addHandler(handler := Collect())
    try:
        failures = FailureLog(log, interval_seconds=10.0, clock=lambda: now[0])
        error = BackendTimeoutError("model m did not answer within 0.2 s")
        logged = []
        for step in range(25):  # one failure a second on each of two variants
            now[0] = float(step)
            logged.append(failures.failed("exp", "a", error))
            failures.failed("exp", "b", error)
    finally:
        log.removeHandler(handler)
    assert [i for i, was in enumerate(logged) if was] == [0, 10, 20]
    assert len(records) == 6  # three per variant
    assert "(timeout, 9 more since last line)" in records[2]
