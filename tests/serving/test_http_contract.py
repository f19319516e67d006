"""Auth (401/403), bad input (4xx naming the field, never a 500), health and metrics."""

from __future__ import annotations

import httpx
import pytest
from gateway_support import AppFactory, MemoryEvents, auth, experiment
from prometheus_client.parser import text_string_to_metric_families

from abflow.security.roles import Role

pytestmark = pytest.mark.anyio

ROW = [0.1, 0.2, 0.3, 0.4]


async def test_predict_needs_a_service_token(
    make_client: AppFactory, tokens: dict[Role, str]
) -> None:
    client = await make_client()
    payload = {"unit_id": "u1", "features": ROW}
    missing = await client.post("/v1/predict", json=payload)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = await client.post("/v1/predict", json=payload, headers=auth("abf_not-a-token"))
    assert wrong.status_code == 401
    malformed = await client.post(
        "/v1/predict", json=payload, headers={"authorization": tokens[Role.SERVICE]}
    )
    assert malformed.status_code == 401
    for role, status in [
        (Role.VIEWER, 403),
        (Role.EXPERIMENTER, 403),
        (Role.SERVICE, 200),
        (Role.ADMIN, 200),
    ]:
        response = await client.post("/v1/predict", json=payload, headers=auth(tokens[role]))
        assert response.status_code == status, (role, response.text)


async def test_experiment_endpoints_need_people_roles(
    make_client: AppFactory, tokens: dict[Role, str]
) -> None:
    client = await make_client()
    assert (await client.get("/v1/experiments")).status_code == 401
    for role, status in [
        (Role.SERVICE, 403),
        (Role.VIEWER, 200),
        (Role.EXPERIMENTER, 200),
        (Role.ADMIN, 200),
    ]:
        response = await client.get("/v1/experiments/exp", headers=auth(tokens[role]))
        assert response.status_code == status, role
    spec = experiment(key="exp2").model_dump(mode="json")
    viewer = await client.post("/v1/experiments", json=spec, headers=auth(tokens[Role.VIEWER]))
    assert viewer.status_code == 403
    assert "experimenter" in viewer.json()["detail"]


async def test_revoked_tokens_stop_working(
    make_client: AppFactory, tokens: dict[Role, str], token_store: object
) -> None:
    from abflow.security.tokens import InMemoryTokenStore, hash_token

    assert isinstance(token_store, InMemoryTokenStore)
    client = await make_client(token_cache_seconds=0)
    token = tokens[Role.SERVICE]
    payload = {"unit_id": "u1", "features": ROW}
    assert (await client.post("/v1/predict", json=payload, headers=auth(token))).status_code == 200
    record = token_store.find_token_by_hash(hash_token(token))
    assert record is not None
    token_store.revoke_token(record.token_id)
    assert (await client.post("/v1/predict", json=payload, headers=auth(token))).status_code == 401


@pytest.mark.parametrize(
    ("payload", "status", "field"),
    [
        ({"experiment": "nope", "unit_id": "u1", "features": ROW}, 404, "experiment"),
        ({"features": ROW}, 422, "unit_id"),
        ({"unit_id": "", "features": ROW}, 422, "unit_id"),
        ({"unit_id": "u1", "features": [1.0, 2.0]}, 422, "features"),
        ({"unit_id": "u1", "features": [1.0, "x", 3.0, 4.0]}, 422, "features[1]"),
        ({"unit_id": "u1", "features": [1.0, True, 3.0, 4.0]}, 422, "features[1]"),
        ({"unit_id": "u1", "features": [ROW, [1.0, 2.0, 3.0]]}, 422, "features[1]"),
        ({"unit_id": "u1", "features": [ROW, [1.0, 2.0, None, 4.0]]}, 422, "features[1][2]"),
        ({"unit_id": "u1", "features": []}, 422, "features"),
        ({"unit_id": "u1"}, 422, "features"),
        ({"unit_id": "u1", "features": ROW, "surprise": 1}, 422, "surprise"),
        ({"unit_id": ["u1"], "features": ROW}, 422, "unit_id"),
        ({"unit_id": "u" * 257, "features": ROW}, 422, "unit_id"),
        ({"attributes": {"user_id": "u" * 257}, "features": ROW}, 422, "attributes.user_id"),
        *(
            ({"attributes": {"user_id": unit}, "features": ROW}, 422, "attributes.user_id")
            for unit in (0, -0.0, True, False, [1], {"a": 1})  # no text a unit is hashed as
        ),
        # attributes are stored with every exposure: bounded in count, key and text length
        (
            {"unit_id": "u1", "features": ROW, "attributes": {f"a{i}": i for i in range(1001)}},
            422,
            "attributes: more than 1000 keys and values",
        ),
        (
            {"unit_id": "u1", "features": ROW, "attributes": {"tags": list(range(1000))}},
            422,
            "attributes: more than 1000 keys and values",
        ),
        (
            {"unit_id": "u1", "features": ROW, "attributes": {"note": "x" * 1025}},
            422,
            "attributes.note: at most 1024 characters, got 1025",
        ),
        (
            {"unit_id": "u1", "features": ROW, "attributes": {"k" * 129: 1}},
            422,
            "attributes key 'kkkk",
        ),
    ],
)
async def test_bad_input_is_a_4xx_naming_the_field(
    make_client: AppFactory,
    tokens: dict[Role, str],
    events: MemoryEvents,
    payload: dict[str, object],
    status: int,
    field: str,
) -> None:
    client = await make_client()
    accepted = await client.post(
        "/v1/predict", json={"unit_id": "ok", "features": ROW}, headers=auth(tokens[Role.SERVICE])
    )
    assert accepted.status_code == 200
    response = await client.post("/v1/predict", json=payload, headers=auth(tokens[Role.SERVICE]))
    assert response.status_code == status, response.text
    assert response.json()["detail"].startswith(field), response.json()
    assert len(events.rows["prediction"]) == 1, "the accepted request's events are kept"


async def test_caller_request_ids_are_kept_when_they_fit(
    make_client: AppFactory, tokens: dict[Role, str]
) -> None:
    client = await make_client()
    headers = auth(tokens[Role.SERVICE])
    mine = await client.post(
        "/v1/predict",
        json={"unit_id": "u1", "features": ROW},
        headers={**headers, "x-request-id": "checkout-123"},
    )
    assert mine.json()["request_id"] == mine.headers["x-request-id"] == "checkout-123"
    too_long = await client.post(
        "/v1/predict",
        json={"unit_id": "u1", "features": ROW},
        headers={**headers, "x-request-id": "x" * 65},
    )
    assert too_long.status_code == 422
    assert too_long.json()["detail"].startswith("x-request-id")


async def test_malformed_json_and_oversized_bodies_are_refused(
    make_client: AppFactory, tokens: dict[Role, str]
) -> None:
    client = await make_client(max_body_bytes=2048, max_rows=10)
    headers = {**auth(tokens[Role.SERVICE]), "content-type": "application/json"}
    broken = await client.post("/v1/predict", content=b'{"unit_id": "u1", "feat', headers=headers)
    assert broken.status_code == 422
    big = {"unit_id": "u1", "features": [ROW] * 200}
    response = await client.post("/v1/predict", json=big, headers=headers)
    assert response.status_code == 413
    assert response.json()["detail"].startswith("body")

    async def chunks() -> httpx.AsyncByteStream:  # type: ignore[misc]
        for _ in range(100):
            yield b" " * 100

    streamed = await client.post("/v1/predict", content=chunks(), headers=headers)
    assert streamed.status_code == 413
    many = {"unit_id": "u1", "features": [ROW] * 11}
    rows = await client.post("/v1/predict", json=many, headers=headers)
    assert rows.status_code == 422
    assert rows.json()["detail"].startswith("features: 11 rows")


async def test_health_and_readiness(make_client: AppFactory, tokens: dict[Role, str]) -> None:
    client = await make_client()
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz", headers=auth(tokens[Role.VIEWER]))
    assert ready.status_code == 200
    assert ready.json()["experiments"] == ["exp"]
    assert ready.json()["experiment_count"] == 1


async def test_experiment_keys_are_shown_only_to_who_may_list_them(
    make_client: AppFactory, tokens: dict[Role, str]
) -> None:
    """A probe without a token, and a service token on a key it guessed wrong, learned every
    live experiment's key; only a viewer may list them (GET /v1/experiments)."""
    client = await make_client(experiment(key="launch-secret"))
    anonymous = (await client.get("/readyz")).json()
    assert anonymous["experiment_count"] == 1
    assert "experiments" not in anonymous
    assert "launch-secret" not in str(anonymous)
    missing = await client.post(
        "/v1/predict",
        json={"experiment": "nope", "unit_id": "u1", "features": ROW},
        headers=auth(tokens[Role.SERVICE]),
    )
    assert missing.status_code == 404
    assert "'nope'" in missing.json()["detail"]
    assert "launch-secret" not in missing.text


async def test_metrics_count_what_was_served(
    make_client: AppFactory, tokens: dict[Role, str]
) -> None:
    client = await make_client(experiment(weights=[1.0, 0.0]))
    for i in range(5):
        await client.post(
            "/v1/predict",
            json={"unit_id": f"u{i}", "features": [ROW, ROW]},
            headers=auth(tokens[Role.SERVICE]),
        )
    await client.post(
        "/v1/predict", json={"unit_id": "u1", "features": [1]}, headers=auth(tokens[Role.SERVICE])
    )
    assert (await client.get("/metrics")).status_code == 401
    response = await client.get("/metrics", headers=auth(tokens[Role.VIEWER]))
    assert response.status_code == 200
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }
    version = "gwmodels:control"
    labels = (("experiment", "exp"), ("model_version", version), ("variant", "control"))
    assert samples[("abflow_predictions_total", labels)] == 10
    assert samples[("abflow_prediction_duration_seconds_count", labels)] == 5
    ok = (("route", "/v1/predict"), ("status", "200"))
    bad = (("route", "/v1/predict"), ("status", "422"))
    assert samples[("abflow_http_requests_total", ok)] == 5
    assert samples[("abflow_http_requests_total", bad)] == 1
    # 5 requests of 2 identical rows: the first misses on both rows (looked up together),
    # the other 4 requests hit on both.
    assert samples[("abflow_cache_hit_ratio", ())] == pytest.approx(8 / 10)
    assert ("abflow_event_queue_depth", ()) in samples


async def test_fast_path_and_framework_route_answer_alike(
    make_client: AppFactory, tokens: dict[Role, str], events: MemoryEvents
) -> None:
    fast = await make_client(max_body_bytes=4096)
    routed = await make_client(max_body_bytes=4096, predict_fast_path=False)
    service = auth(tokens[Role.SERVICE])
    cases: list[tuple[dict[str, object], dict[str, str]]] = [
        ({"unit_id": "u1", "features": ROW}, service),
        ({"unit_id": "u1", "features": [ROW, ROW]}, service),
        ({"unit_id": "u1", "features": [1.0]}, service),
        ({"unit_id": "u1", "features": ROW}, {}),
        ({"unit_id": "u1", "features": ROW}, auth(tokens[Role.VIEWER])),
        ({"experiment": "nope", "unit_id": "u1", "features": ROW}, service),
        ({"unit_id": "u1", "features": [ROW] * 400}, service),
    ]
    for payload, headers in cases:
        a = await fast.post("/v1/predict", json=payload, headers=headers)
        b = await routed.post("/v1/predict", json=payload, headers=headers)
        assert a.status_code == b.status_code, (payload, a.text, b.text)
        one, other = a.json(), b.json()
        if a.status_code == 200:
            assert one.pop("request_id") != other.pop("request_id")
            assert one == other
        else:
            assert one == other
    assert len(events.rows["prediction"]) == 4


async def test_openapi_document_resolves_every_reference(make_client: AppFactory) -> None:
    client = await make_client()
    document = (await client.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    references: list[str] = []

    def collect(node: object) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                references.append(ref)
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(document)
    assert references
    for ref in references:
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.rsplit("/", 1)[1] in schemas, ref
    predict = document["paths"]["/v1/predict"]["post"]
    body = predict["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/PredictIn"}
    assert predict["security"] == [{"bearer": []}]
    assert "security" not in document["paths"]["/healthz"]["get"]
    # Refusals carry the gateway's error body, never FastAPI's validation shape.
    assert "HTTPValidationError" not in schemas
    refusal = predict["responses"]["422"]["content"]["application/json"]["schema"]
    assert refusal["allOf"] == [{"$ref": "#/components/schemas/Error"}]
    assert schemas["Error"]["required"] == ["error", "detail"]
    assert (await client.get("/docs")).status_code == 200


def test_every_abflow_error_maps_to_a_deliberate_status() -> None:
    import abflow.errors as errors
    from abflow.serving.http_errors import status_for

    expected = {
        "AuthenticationError": 401,
        "PermissionDeniedError": 403,
        "ExperimentNotFoundError": 404,
        "InvalidArgumentError": 422,
        "InvalidSpecError": 422,
        "FeatureError": 422,
        "ConfigError": 422,
        "ModelNotFoundError": 422,
        "ArtifactChecksumError": 422,
        "RegistryError": 503,
        "BackendError": 502,
        "CircuitOpenError": 503,
        "BackendTimeoutError": 504,
        "StoreUnavailableError": 503,
        "StoreError": 500,
        "JournalError": 500,
    }
    for name, status in expected.items():
        cls = getattr(errors, name)
        exc = cls(["x"]) if cls is errors.InvalidSpecError else cls("x")
        assert status_for(exc)[0] == status, name


@pytest.mark.parametrize(
    ("features", "field"),
    [
        (b"[NaN, 0, 0, 0]", "features[0]"),
        (b"[0, Infinity, 0, 0]", "features[1]"),
        (b"[[0, 0, 0, 0], [0, 0, 1e400, 0]]", "features[1][2]"),
        (b"[0, 0, 0, 1" + b"0" * 400 + b"]", "features[3]"),
    ],
)
async def test_non_finite_features_are_refused_before_the_model(
    make_client: AppFactory,
    tokens: dict[Role, str],
    events: MemoryEvents,
    features: bytes,
    field: str,
) -> None:
    client = await make_client(breaker_failure_threshold=1)
    headers = {**auth(tokens[Role.SERVICE]), "content-type": "application/json"}
    for _ in range(3):
        response = await client.post(
            "/v1/predict",
            content=b'{"unit_id": "u1", "features": ' + features + b"}",
            headers=headers,
        )
        assert response.status_code == 422, response.text
        assert response.json()["detail"].startswith(f"{field}: expected a finite number")
    healthy = await client.post(
        "/v1/predict", json={"unit_id": "u1", "features": ROW}, headers=headers
    )
    assert healthy.status_code == 200, "bad input never counts against the model's circuit"
    assert len(events.rows["prediction"]) == 1


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_a_trailing_slash_redirect_stays_on_this_server(
    make_client: AppFactory, tokens: dict[Role, str], method: str
) -> None:
    """The router redirects ``/v1/experiments/`` to ``/v1/experiments``; the Location is
    the path alone, never a host taken from the request's Host header."""
    client = await make_client()
    headers = {"host": "attacker.example", **auth(tokens[Role.VIEWER])}
    for path, expected in [
        ("/v1/experiments/?limit=5&x=%2F", "/v1/experiments?limit=5&x=%2F"),
        ("/healthz/", "/healthz"),
        ("/ui", "/ui/"),
    ]:
        response = await client.request(method, path, headers=headers)
        assert response.status_code == 307, path
        assert response.headers["location"] == expected
    followed = await client.get("/v1/experiments/", headers=headers, follow_redirects=True)
    assert followed.status_code == 200
    assert followed.url.path == "/v1/experiments"
