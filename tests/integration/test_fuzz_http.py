"""The gateway's promise on bad input: a 4xx whose JSON body names the field, never a 5xx,
and nothing logged for a refused request.

Two layers: schemathesis generates requests (valid and invalid) from the app's own OpenAPI
document, sends them in memory (httpx's ASGI transport, no sockets) with a token of the role
each operation needs, and checks that every answer conforms to the document (status, content
type, body schema, headers); hand-written cases pin the refusals a client is most likely to
hit. Generation is derandomized and bounded, so the run is the same every time and takes
seconds.
"""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import schemathesis
from anyio.from_thread import BlockingPortal, start_blocking_portal
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from abflow.security.roles import Role
from abflow.security.tokens import InMemoryTokenStore, create_token
from abflow.serving.app import create_app
from abflow.serving.catalog import InMemoryCatalog
from abflow.serving.settings import GatewayConfig, GatewaySettings
from abflow.store import EventStore
from specs import two_arm_spec

MAX_ROWS = 5
MAX_BODY = 4096
N_FEATURES = 8  # abflow.serving.demo_models
ROW = [0.25] * N_FEATURES

# A 4xx detail starts with the place at fault: "features[0][1]: ...", "query.phase: ...",
# "0: ..." (a key of the body), "attributes key '\x00': ..." (a key that cannot be stored),
# "attributes[' '] key '\x00': ..." (such a key in a nested object), "['']: ..." and
# "analysis[' ']: ..." (a key that is no plain name). "." is the document itself (a body that
# is not JSON, or not an object).
FIELD_FIRST = re.compile(r"^(\.|(?:\w|\[.*?\])(?:\[.*?\]|\S)*?|\w.*? key '.*?'): \S")


class MemoryEvents:
    """An event sink that keeps every appended row, so a test can see what was logged."""

    queue_depth = 0
    spool_bytes = 0

    def __init__(self) -> None:
        self.rows: list[tuple[str, dict[str, Any]]] = []

    def start(self) -> None:
        """Nothing to start."""

    def append(self, kind: str, row: dict[str, Any]) -> None:
        self.rows.append((kind, dict(row)))

    def close(self, timeout_seconds: float = 10.0) -> None:
        """Nothing to close."""


@dataclass
class Gateway:
    """A started in-memory gateway and a synchronous way to call it."""

    app: FastAPI
    portal: BlockingPortal
    client: httpx.AsyncClient
    tokens: dict[Role, str]
    events: MemoryEvents

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        call = functools.partial(self.client.request, method, url, **kwargs)
        return self.portal.call(call)

    def auth(self, role: Role) -> dict[str, str]:
        return {"authorization": f"Bearer {self.tokens[role]}"}


def _spec() -> Any:
    return two_arm_spec(key="exp")


@asynccontextmanager
async def _serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield client


def _start(tmp: Path, *, fast_path: bool, store_url: str | None = None) -> Iterator[Gateway]:
    url = store_url or f"sqlite:///{tmp / 'store.db'}"
    if store_url is None:  # the experiment registered in the store, for the results route
        store = EventStore.open(url)
        store.register_experiment(_spec(), actor="test")
        store.close()
    token_store = InMemoryTokenStore()
    tokens = {role: create_token(token_store, f"qa-{role.value}", role)[0] for role in Role}
    events = MemoryEvents()
    app = create_app(
        GatewaySettings(
            journal_dir=tmp / "journal",
            store_url=url,
            max_rows=MAX_ROWS,
            max_body_bytes=MAX_BODY,
            predict_fast_path=fast_path,
        ),
        config=GatewayConfig(experiments=[_spec()]),
        events=events,
        tokens=token_store,
        catalog=InMemoryCatalog(),
    )
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(_serve(app)) as client,
    ):
        yield Gateway(app, portal, client, tokens, events)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """The gateway with the prediction fast path (the default)."""
    yield from _start(tmp_path_factory.mktemp("fast"), fast_path=True)


@pytest.fixture(scope="module")
def framework_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """The same gateway answering /v1/predict through FastAPI's route instead."""
    yield from _start(tmp_path_factory.mktemp("framework"), fast_path=False)


def assert_clear_refusal(response: httpx.Response, *, where: str = "") -> None:
    """A 4xx with ``{"error", "detail"}``; a 422 detail (or each problem) names a field."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json"), response.text[:300]
    body = orjson.loads(response.content)
    assert isinstance(body.get("error"), str), body
    assert isinstance(body.get("detail"), str), body
    assert body["detail"].strip(), body
    if response.status_code == 422:
        named = [body["detail"], *body.get("problems", [])]
        assert all(FIELD_FIRST.match(text) for text in named), body
    if where:
        assert where in body["detail"], body


# --- generated requests (schemathesis) ---------------------------------------------------

# Each operation is called with a token of the role it needs (the weakest that may call it),
# so generated requests get past authentication and reach the code under test.
OPERATIONS = {
    ("POST", "/v1/predict"): Role.SERVICE,
    ("POST", "/v1/outcomes"): Role.SERVICE,
    ("GET", "/v1/experiments"): Role.VIEWER,
    ("POST", "/v1/experiments"): Role.EXPERIMENTER,
    ("GET", "/v1/experiments/{key}"): Role.VIEWER,
    ("GET", "/v1/experiments/{key}/results"): Role.VIEWER,
    ("GET", "/metrics"): Role.VIEWER,
    ("GET", "/healthz"): None,
    ("GET", "/readyz"): None,
}
# Operations without parameters or body have no invalid input to generate.
_NO_INPUT = {("GET", "/healthz"), ("GET", "/readyz")}
FUZZ_CASES = [
    pytest.param(method, path, mode, id=f"{method} {path} {mode.value}")
    for method, path in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if not (mode is GenerationMode.NEGATIVE and (method, path) in _NO_INPUT)
]
# The response must match the document: status declared, content type, body schema and
# headers of that status (not only "no 5xx"); a request the document calls invalid is refused.
CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
]
MAX_EXAMPLES = 25
# Schemathesis' list of statuses that refuse invalid data, and 413: the gateway measures a body
# against MAX_BODY before it reads it, so an invalid body that is also too long is refused so.
REFUSALS = [
    "400",
    "401",
    "403",
    "404",
    "405",
    "406",
    "409",
    "413",
    "415",
    "422",
    "428",
    "429",
    "5xx",
]
SCHEMATHESIS_CONFIG = SchemathesisConfig.from_dict(
    {"checks": {"negative_data_rejection": {"expected-statuses": REFUSALS}}}
)
# Generated specs name models that cannot be loaded: registration always refuses them.
_NEVER_VALID = {("POST", "/v1/experiments")}


def _anchor(drawn: tuple[Any, bool]) -> Any:
    """Point a valid generated case at the live experiment with a row the model accepts, so
    that generation explores the success path too (random keys and rows are 404 and 422)."""
    case, is_anchored = drawn
    if not is_anchored:
        return case
    if case.path_parameters and "key" in case.path_parameters:
        case.path_parameters["key"] = "exp"
    body = case.body
    if isinstance(body, dict) and "features" in body:
        body.update(experiment="exp", features=ROW, unit_id=body.get("unit_id") or "u")
    if isinstance(body, dict) and isinstance(body.get("outcomes"), list):
        for outcome in body["outcomes"]:
            outcome["unit_id"] = outcome.get("unit_id") or "u"
    return case


def test_schema_lists_every_fuzzed_operation(gateway: Gateway) -> None:
    """A new route must join OPERATIONS, else it would go unfuzzed."""
    schema = schemathesis.openapi.from_dict(gateway.app.openapi(), config=SCHEMATHESIS_CONFIG)
    found = {(r.ok().method.upper(), r.ok().path) for r in schema.get_all_operations()}
    assert found == set(OPERATIONS)


@pytest.mark.slow  # 210 s for POST /v1/experiments negative at load 10
@pytest.mark.parametrize(("method", "path", "mode"), FUZZ_CASES)
def test_generated_requests_conform_to_the_document(
    gateway: Gateway, method: str, path: str, mode: GenerationMode
) -> None:
    schema = schemathesis.openapi.from_dict(gateway.app.openapi(), config=SCHEMATHESIS_CONFIG)
    operation = schema[path][method]
    strategy = operation.as_strategy(generation_mode=mode)
    if mode is GenerationMode.POSITIVE:  # half the cases reach the live experiment's model
        strategy = st.tuples(strategy, st.booleans()).map(_anchor)
    role = OPERATIONS[(method, path)]
    token = gateway.auth(role) if role is not None else {}
    seen: list[int] = []

    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def check(case: Any) -> None:
        kwargs = case.as_transport_kwargs(base_url="http://gateway", headers=token)
        if "data" in kwargs:  # raw bytes of a deliberately malformed body
            kwargs["content"] = kwargs.pop("data")
        cookies = kwargs.pop("cookies", None)
        if cookies:
            kwargs["headers"]["cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        before = len(gateway.events.rows)
        response = gateway.request(**kwargs)
        seen.append(response.status_code)
        case.validate_response(
            response, checks=CONFORMANCE, headers=kwargs["headers"], transport_kwargs=kwargs
        )
        if response.status_code >= 400:
            assert_clear_refusal(response)
            assert len(gateway.events.rows) == before, "a refused request logged events"

    check()
    assert seen, "no request was generated"
    if mode is GenerationMode.POSITIVE and (method, path) not in _NEVER_VALID:
        assert any(200 <= status < 300 for status in seen), f"never reached the handler: {seen}"


# --- hand-written refusals -----------------------------------------------------------------


def _json(document: Any) -> bytes:
    return orjson.dumps(document)


PREDICT_REFUSALS = [
    pytest.param(b'{"unit_id": "u", "features": [1,', 422, "body", id="invalid-json"),
    pytest.param(b"", 422, "body", id="empty-body"),
    pytest.param(b"[1, 2]", 422, "body", id="array-body"),
    pytest.param(b'{"unit_id": "\xff", "features": [1]}', 422, "body", id="not-utf8"),
    pytest.param(_json({"unit_id": "u"}), 422, "features", id="no-features"),
    pytest.param(_json({"unit_id": "u", "features": []}), 422, "features", id="empty-features"),
    pytest.param(_json({"unit_id": "u", "features": [1, 2]}), 422, "features", id="wrong-count"),
    pytest.param(
        _json({"unit_id": "u", "features": [*ROW[:-1], "x"]}), 422, "features[7]", id="string"
    ),
    pytest.param(
        _json({"unit_id": "u", "features": [True, *ROW[1:]]}), 422, "features[0]", id="boolean"
    ),
    pytest.param(
        _json({"unit_id": "u", "features": [None, *ROW[1:]]}), 422, "features[0]", id="null"
    ),
    pytest.param(_json({"unit_id": "u", "features": {"a": 1}}), 422, "features", id="object"),
    pytest.param(
        _json({"unit_id": "u", "features": [ROW, [1.0]]}), 422, "features[1]", id="ragged"
    ),
    pytest.param(_json({"unit_id": "u", "features": [ROW, 1.0]}), 422, "features[1]", id="mixed"),
    pytest.param(_json({"unit_id": "u", "features": [[ROW]]}), 422, "features[0][0]", id="3d"),
    pytest.param(
        _json({"unit_id": "u", "features": [ROW] * (MAX_ROWS + 1)}),
        422,
        "features",
        id="rows-over-limit",
    ),
    pytest.param(
        _json({"experiment": "nope", "unit_id": "u", "features": ROW}),
        404,
        "experiment",
        id="unknown-experiment",
    ),
    pytest.param(_json({"features": ROW}), 422, "unit_id", id="no-unit-id"),
    pytest.param(_json({"unit_id": "", "features": ROW}), 422, "unit_id", id="empty-unit-id"),
    pytest.param(
        _json({"attributes": {"user_id": ""}, "features": ROW}), 422, "unit_id", id="empty-unit"
    ),
    pytest.param(_json({"unit_id": 1.5, "features": ROW}), 422, "unit_id", id="float-unit-id"),
    pytest.param(_json({"unit_id": "u" * 257, "features": ROW}), 422, "unit_id", id="long-unit"),
    pytest.param(_json({"unit_id": "u", "features": ROW, "x": 1}), 422, "x", id="extra-field"),
    pytest.param(
        _json({"unit_id": "u", "features": ROW, "request_id": "r" * 65}),
        422,
        "request_id",
        id="long-request-id",
    ),
    pytest.param(
        b'{"unit_id": "u", "features": [' + b"0.5," * MAX_BODY + b"0.5]}",
        413,
        "body",
        id="oversized",
    ),
    pytest.param(
        b'{"unit_id": "u", "features": [NaN, 0, 0, 0, 0, 0, 0, 0]}',
        422,
        "features[0]",
        id="nan",
    ),
    pytest.param(
        b'{"unit_id": "u", "features": [Infinity, 0, 0, 0, 0, 0, 0, 0]}',
        422,
        "features[0]",
        id="infinity",
    ),
    pytest.param(
        b'{"unit_id": "u", "features": [1e400, 0, 0, 0, 0, 0, 0, 0]}',
        422,
        "features[0]",
        id="overflowing-float",
    ),
    pytest.param(
        b'{"unit_id": "u", "features": [1' + b"0" * 400 + b", 0, 0, 0, 0, 0, 0, 0]}",
        422,
        "features[0]",
        id="huge-integer",
    ),
    pytest.param(  # found by schemathesis: an empty key once read as "attributes."
        _json({"unit_id": "u", "features": ROW, "attributes": {"": {"\x00": 1}}}),
        422,
        "attributes[''] key '\\x00'",
        id="nul-key-under-empty-key",
    ),
]


@pytest.mark.parametrize("route", ["fast", "framework"])
@pytest.mark.parametrize(("body", "status", "where"), PREDICT_REFUSALS)
def test_predict_refuses_bad_input_clearly(
    request: pytest.FixtureRequest, route: str, body: bytes, status: int, where: str
) -> None:
    gateway: Gateway = request.getfixturevalue(
        "gateway" if route == "fast" else "framework_gateway"
    )
    before = len(gateway.events.rows)
    response = gateway.request(
        "POST", "/v1/predict", content=body, headers=gateway.auth(Role.SERVICE)
    )
    assert response.status_code == status, response.text[:300]
    assert_clear_refusal(response, where=where)
    assert len(gateway.events.rows) == before


def test_bad_features_cannot_open_a_healthy_models_circuit(tmp_path: Path) -> None:
    threshold = GatewaySettings().breaker_failure_threshold
    for gateway in _start(tmp_path, fast_path=True):
        for i in range(threshold + 1):
            gateway.request(
                "POST",
                "/v1/predict",
                content=b'{"unit_id": "u%d", "features": [NaN, 0, 0, 0, 0, 0, 0, 0]}' % i,
                headers=gateway.auth(Role.SERVICE),
            )
        response = gateway.request(
            "POST",
            "/v1/predict",
            json={"unit_id": "someone-else", "features": ROW},
            headers=gateway.auth(Role.SERVICE),
        )
        assert response.status_code == 200, response.text[:300]


@pytest.mark.parametrize("route", ["fast", "framework"])
def test_predict_accepts_a_good_request_and_logs_it(
    request: pytest.FixtureRequest, route: str
) -> None:
    """The control case: the same gateway answers a valid request and logs its events."""
    gateway: Gateway = request.getfixturevalue(
        "gateway" if route == "fast" else "framework_gateway"
    )
    before = len(gateway.events.rows)
    response = gateway.request(
        "POST",
        "/v1/predict",
        json={"unit_id": "user-1", "features": ROW},
        headers=gateway.auth(Role.SERVICE),
    )
    assert response.status_code == 200, response.text
    kinds = [kind for kind, _ in gateway.events.rows[before:]]
    assert "prediction" in kinds


@pytest.mark.parametrize("route", ["fast", "framework"])
@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"]
)
def test_predict_with_a_foreign_content_type_is_never_a_server_error(
    request: pytest.FixtureRequest, route: str, content_type: str
) -> None:
    """A JSON body under another content type is read as JSON; a non-JSON one is a 422."""
    gateway: Gateway = request.getfixturevalue(
        "gateway" if route == "fast" else "framework_gateway"
    )
    headers = {**gateway.auth(Role.SERVICE), "content-type": content_type}
    as_json = _json({"unit_id": "u", "features": ROW})
    accepted = gateway.request("POST", "/v1/predict", content=as_json, headers=headers)
    assert accepted.status_code in (200, 415), accepted.text[:300]
    if accepted.status_code == 415:
        assert_clear_refusal(accepted)
    refused = gateway.request("POST", "/v1/predict", content=b"a=1&b=<x/>", headers=headers)
    assert_clear_refusal(refused)


@pytest.mark.parametrize("route", ["fast", "framework"])
def test_oversized_chunked_body_is_refused_while_streaming(
    request: pytest.FixtureRequest, route: str
) -> None:
    """Without a content-length, the body is counted as it arrives and refused with 413."""
    gateway: Gateway = request.getfixturevalue(
        "gateway" if route == "fast" else "framework_gateway"
    )

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"unit_id": "u", "features": ['
        for _ in range(MAX_BODY // 15 + 1):
            yield b"0.5, 0.5, 0.5, "
        yield b"0.5]}"

    response = gateway.request(
        "POST", "/v1/predict", content=chunks(), headers=gateway.auth(Role.SERVICE)
    )
    assert response.status_code == 413
    assert_clear_refusal(response, where="body")


OUTCOME_REFUSALS = [
    pytest.param(b"nope", 422, "body", id="invalid-json"),
    pytest.param(_json({"outcomes": []}), 422, "outcomes", id="empty"),
    pytest.param(_json({"outcomes": [{"unit_id": "u"}]}), 422, "outcomes[0].name", id="no-name"),
    pytest.param(_json({"outcomes": [{"name": "c"}]}), 422, "outcomes[0].unit_id", id="no-unit"),
    pytest.param(
        _json({"outcomes": [{"unit_id": "u", "name": "c", "value": "high"}]}),
        422,
        "outcomes[0].value",
        id="string-value",
    ),
    pytest.param(
        _json({"outcomes": [{"unit_id": "u", "name": "c"}, {"name": "c"}]}),
        422,
        "outcomes[1].unit_id",
        id="second-bad-first-good",
    ),
    pytest.param(
        _json({"outcomes": [{"unit_id": "u", "name": "c"}] * (MAX_ROWS + 1)}),
        422,
        "outcomes",
        id="over-limit",
    ),
    pytest.param(
        b'{"outcomes": [' + b'{"unit_id": "u", "name": "c"},' * 200 + b"{}]}",
        413,
        "body",
        id="oversized",
    ),
    pytest.param(
        b'{"outcomes": [{"unit_id": "u", "name": "c", "value": NaN}]}',
        422,
        "outcomes[0].value",
        id="nan-value",
    ),
    pytest.param(
        _json({"outcomes": [{"unit_id": "u", "name": "c", "value": 1.5e154}]}),
        422,
        "outcomes[0].value",
        id="value-whose-square-overflows",
    ),
    pytest.param(
        b'{"outcomes": [{"unit_id": "u", "name": "c", "ts": Infinity}]}',
        422,
        "outcomes[0].ts",
        id="infinite-ts",
    ),
]


@pytest.mark.parametrize(("body", "status", "where"), OUTCOME_REFUSALS)
def test_outcomes_refuse_bad_input_and_log_nothing(
    gateway: Gateway, body: bytes, status: int, where: str
) -> None:
    before = len(gateway.events.rows)
    response = gateway.request(
        "POST", "/v1/outcomes", content=body, headers=gateway.auth(Role.SERVICE)
    )
    assert response.status_code == status, response.text[:300]
    assert_clear_refusal(response, where=where)
    assert len(gateway.events.rows) == before, "a refused batch was partly logged"


EXPERIMENT_REFUSALS = [
    pytest.param(b"{", 422, "body", id="invalid-json"),
    pytest.param(b"[1]", 422, "body", id="not-a-mapping"),
    pytest.param(b"{}", 422, "body", id="empty-spec"),
    pytest.param(
        _json(
            {
                "key": "bad-model",
                "unit": "user_id",
                "variants": [
                    {"name": "a", "model": "python:nosuchmodule:x"},
                    {"name": "b", "model": "python:nosuchmodule:y"},
                ],
                "weights": [0.5, 0.5],
            }
        ),
        403,  # python: references come only from the config file (model_policy)
        "variants[0].model",
        id="unimportable-model",
    ),
]


@pytest.mark.parametrize(("body", "status", "where"), EXPERIMENT_REFUSALS)
def test_register_experiment_refuses_bad_specs(
    gateway: Gateway, body: bytes, status: int, where: str
) -> None:
    response = gateway.request(
        "POST", "/v1/experiments", content=body, headers=gateway.auth(Role.EXPERIMENTER)
    )
    assert response.status_code == status, response.text[:300]
    assert_clear_refusal(response, where=where)


@pytest.mark.parametrize(
    ("path", "where"),
    [
        ("/v1/experiments/nope", "experiment"),
        ("/v1/experiments/nope/results", "nope"),
    ],
)
def test_unknown_experiment_is_404(gateway: Gateway, path: str, where: str) -> None:
    response = gateway.request("GET", path, headers=gateway.auth(Role.VIEWER))
    assert response.status_code == 404, response.text[:300]
    assert_clear_refusal(response, where=where)


def test_results_with_the_store_down_is_503(tmp_path: Path) -> None:
    unreachable = "postgresql+psycopg://postgres@127.0.0.1:1/x"
    for gateway in _start(tmp_path, fast_path=True, store_url=unreachable):
        response = gateway.request(
            "GET", "/v1/experiments/exp/results", headers=gateway.auth(Role.VIEWER)
        )
        assert response.status_code == 503, response.text[:300]
        assert "unavailable" in orjson.loads(response.content)["detail"]


@pytest.mark.parametrize(
    ("query", "where"),
    [
        ("format=pdf", "format"),
        ("phase=abc", "phase"),
        ("phase=1.5", "phase"),
        ("phase=7", "phase"),
    ],
)
def test_results_query_errors_name_the_parameter(gateway: Gateway, query: str, where: str) -> None:
    response = gateway.request(
        "GET", f"/v1/experiments/exp/results?{query}", headers=gateway.auth(Role.VIEWER)
    )
    assert response.status_code == 422, response.text[:300]
    assert_clear_refusal(response, where=where)


# --- authentication and roles ----------------------------------------------------------------

PROTECTED = [
    ("POST", "/v1/predict", Role.SERVICE),
    ("POST", "/v1/outcomes", Role.SERVICE),
    ("GET", "/v1/experiments", Role.VIEWER),
    ("GET", "/v1/experiments/exp", Role.VIEWER),
    ("POST", "/v1/experiments", Role.EXPERIMENTER),
    ("GET", "/v1/experiments/exp/results", Role.VIEWER),
    ("GET", "/metrics", Role.VIEWER),
]
BAD_AUTHORIZATION = [
    pytest.param(None, id="missing"),
    pytest.param("Bearer", id="empty-bearer"),
    pytest.param("Bearer not-a-token", id="unknown-token"),
    pytest.param("Basic dXNlcjpwYXNz", id="basic-scheme"),
    pytest.param("bearer\tabf_x y", id="garbled"),
]


@pytest.mark.parametrize("route", ["fast", "framework"])
@pytest.mark.parametrize("authorization", BAD_AUTHORIZATION)
@pytest.mark.parametrize(("method", "path", "role"), PROTECTED)
def test_missing_or_invalid_token_is_401(
    request: pytest.FixtureRequest,
    route: str,
    authorization: str | None,
    method: str,
    path: str,
    role: Role,
) -> None:
    gateway: Gateway = request.getfixturevalue(
        "gateway" if route == "fast" else "framework_gateway"
    )
    headers = {} if authorization is None else {"authorization": authorization}
    before = len(gateway.events.rows)
    response = gateway.request(method, path, content=_json({}), headers=headers)
    assert response.status_code == 401, response.text[:300]
    assert response.headers.get("www-authenticate") == "Bearer"
    assert_clear_refusal(response)
    assert len(gateway.events.rows) == before


def _weaker_roles(required: Role) -> list[Role]:
    order = [Role.SERVICE, Role.VIEWER, Role.EXPERIMENTER, Role.ADMIN]
    from abflow.security.roles import role_allows

    return [role for role in order if not role_allows(role, required)]


@pytest.mark.parametrize(("method", "path", "role"), PROTECTED)
def test_wrong_role_is_403_naming_the_role(
    gateway: Gateway, method: str, path: str, role: Role
) -> None:
    weaker = _weaker_roles(role)
    assert weaker, f"every role may call {method} {path}"
    for holder in weaker:
        response = gateway.request(method, path, content=_json({}), headers=gateway.auth(holder))
        assert response.status_code == 403, (holder, response.text[:300])
        assert_clear_refusal(response, where=role.value)
