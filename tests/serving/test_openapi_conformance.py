"""The OpenAPI document tells the truth: every status an operation answers is declared for
that operation, with the body and headers the gateway really sends.

Each operation of ``/openapi.json`` is driven with the requests a client gets wrong: no
token, a token of every role too weak for it, an oversized body, a malformed body, an
unknown experiment, a bad query parameter; then with the outages behind it (a model that
fails, one whose circuit is open, one too slow, an event log that cannot keep events, an
unreachable store). Every answer must have the status the test expects, that status must be
declared for the operation, and the body must validate against the declared schema.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import orjson
import pytest
from fastapi import FastAPI
from gateway_support import MemoryEvents, auth, experiment, serve

from abflow.errors import JournalError, StoreError, StoreUnavailableError
from abflow.security.roles import Role, role_allows
from abflow.security.tokens import InMemoryTokenStore, TokenRecord, create_token
from abflow.serving.app import create_app
from abflow.serving.catalog import InMemoryCatalog, Registration
from abflow.serving.http_errors import _STATUS
from abflow.serving.openapi import ERRORS, USES, install_openapi
from abflow.serving.settings import GatewayConfig, GatewaySettings
from abflow.spec import ExperimentSpec
from abflow.store import EventStore

pytestmark = pytest.mark.anyio

MAX_BODY = 1024
ROW = [0.1, 0.2, 0.3, 0.4]
UNREACHABLE_STORE = "postgresql+psycopg://postgres@127.0.0.1:1/x"  # port 1: refused at once

# The role each operation needs, written here rather than read from the code under test.
REQUIRED_ROLE = {
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
# A request each operation accepts, to which one fault at a time is applied.
VALID_BODY: dict[tuple[str, str], bytes] = {
    ("POST", "/v1/predict"): orjson.dumps({"unit_id": "u1", "features": ROW}),
    ("POST", "/v1/outcomes"): orjson.dumps({"outcomes": [{"unit_id": "u1", "name": "c"}]}),
    ("POST", "/v1/experiments"): orjson.dumps(experiment(key="exp2").model_dump(mode="json")),
}

# Query parameters that are not free text, so that "not-a-value" is refused.
TYPED_QUERY = {
    ("GET", "/v1/experiments/{key}/results"): ("phase", "format"),
    ("POST", "/v1/experiments"): ("default",),
}


class RefusingEvents(MemoryEvents):
    """An event log that cannot keep anything: its store is gone, or its disk is full."""

    def __init__(self, error: type[StoreError]) -> None:
        super().__init__()
        self.error = error

    def append(self, kind: str, row: dict[str, Any]) -> None:
        msg = "the event log cannot keep events"
        raise self.error(msg)


class UnreachableTokenStore(InMemoryTokenStore):
    """A token store that cannot be reached: no token can be verified for the first time."""

    def find_token_by_hash(self, token_hash: str) -> TokenRecord | None:
        msg = "the token store cannot be reached"
        raise StoreUnavailableError(msg)


class FailingCatalog(InMemoryCatalog):
    """Registers the config's experiments at start, then finds the store gone."""

    is_down = False

    def register(self, spec: ExperimentSpec, actor: str = "system") -> Registration:
        if self.is_down:
            msg = "the store cannot be reached"
            raise StoreUnavailableError(msg)
        return super().register(spec, actor)


class Gateway:
    """Gateways started for one test, their tokens, and the probes sent to them."""

    def __init__(self, stack: AsyncExitStack, tmp_path: Path) -> None:
        self.stack = stack
        self.tmp_path = tmp_path
        self.token_store = InMemoryTokenStore()
        self.tokens = {
            role: create_token(self.token_store, f"t-{role.value}", role)[0] for role in Role
        }
        self.store_url = f"sqlite:///{tmp_path / 'store.db'}"
        store = EventStore.open(self.store_url)
        store.register_experiment(experiment(), actor="test")
        store.close()
        self.seen: Counter[tuple[str, str, int]] = Counter()

    async def start(
        self,
        *specs: ExperimentSpec,
        events: MemoryEvents | None = None,
        tokens: InMemoryTokenStore | None = None,
        catalog: InMemoryCatalog | None = None,
        lifespan: bool = True,
        **settings: Any,
    ) -> httpx.AsyncClient:
        options = {
            "journal_dir": self.tmp_path / "journal",
            "store_url": self.store_url,
            "max_body_bytes": MAX_BODY,
            **settings,
        }
        app = create_app(
            GatewaySettings(**options),
            config=GatewayConfig(experiments=list(specs or (experiment(),))),
            events=events or MemoryEvents(),
            tokens=tokens or self.token_store,
            catalog=catalog or InMemoryCatalog(),
        )
        if lifespan:
            return await self.stack.enter_async_context(serve(app))
        transport = httpx.ASGITransport(app=app)
        client = httpx.AsyncClient(transport=transport, base_url="http://gateway")
        return await self.stack.enter_async_context(client)

    def token_for(self, method: str, path: str) -> dict[str, str]:
        role = REQUIRED_ROLE[(method, path)]
        return auth(self.tokens[role]) if role is not None else {}


@pytest.fixture
async def gateways(tmp_path: Path) -> AsyncIterator[Gateway]:
    async with AsyncExitStack() as stack:
        yield Gateway(stack, tmp_path)


async def document_of(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    ]


def assert_declared(
    document: dict[str, Any],
    method: str,
    path: str,
    response: httpx.Response,
    expected: int,
) -> None:
    """The status is the expected one, declared for the operation, and the body, content type
    and headers are the declared ones."""
    status = response.status_code
    assert status == expected, (method, path, response.text[:300])
    operation = document["paths"][path][method.lower()]
    declared = operation["responses"]
    assert str(status) in declared, (method, path, status, sorted(declared))
    entry = declared[str(status)]
    media = response.headers["content-type"].split(";")[0].strip()
    assert media in entry.get("content", {}), (method, path, status, media)
    schema = copy.deepcopy(entry["content"][media]["schema"])
    schema["components"] = document["components"]
    body = response.json() if media == "application/json" else response.text
    jsonschema.Draft202012Validator(schema).validate(body)
    for name, header in entry.get("headers", {}).items():
        if header.get("required"):
            assert name.lower() in response.headers, (method, path, status, name)


def concrete(path: str, key: str = "exp") -> str:
    return path.replace("{key}", key)


# What each operation answers to VALID_BODY (or no body) with the right token.
SUCCESS = {
    ("POST", "/v1/predict"): 200,
    ("POST", "/v1/outcomes"): 202,
    ("GET", "/v1/experiments"): 200,
    ("POST", "/v1/experiments"): 201,
    ("GET", "/v1/experiments/{key}"): 200,
    ("GET", "/v1/experiments/{key}/results"): 200,
    ("GET", "/metrics"): 200,
    ("GET", "/healthz"): 200,
    ("GET", "/readyz"): 200,
}


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "framework"])
async def test_valid_requests_get_declared_answers(gateways: Gateway, fast_path: bool) -> None:
    """Success bodies and headers match their declared schemas too."""
    client = await gateways.start(predict_fast_path=fast_path)
    document = await document_of(client)
    for method, path, _ in operations(document):
        headers = {**gateways.token_for(method, path), "content-type": "application/json"}
        body = VALID_BODY.get((method, path))
        response = await client.request(method, concrete(path), content=body, headers=headers)
        assert_declared(document, method, path, response, SUCCESS[(method, path)])
    batch = await client.post(
        "/v1/predict",
        json={"unit_id": "u1", "features": [ROW, ROW]},
        headers=auth(gateways.tokens[Role.SERVICE]),
    )
    assert_declared(document, "POST", "/v1/predict", batch, 200)
    assert batch.headers["x-request-id"] == batch.json()["request_id"]
    assert len(batch.json()["prediction"]) == 2


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "framework"])
async def test_client_mistakes_get_declared_answers(gateways: Gateway, fast_path: bool) -> None:
    client = await gateways.start(predict_fast_path=fast_path)
    document = await document_of(client)
    assert {(method, path) for method, path, _ in operations(document)} == set(REQUIRED_ROLE)
    assert set(USES) <= set(REQUIRED_ROLE), "USES names an operation that does not exist"
    probes = 0
    for method, path, _ in operations(document):
        url = concrete(path)
        body = VALID_BODY.get((method, path))
        right = gateways.token_for(method, path)
        json_headers = {**right, "content-type": "application/json"}
        required = REQUIRED_ROLE[(method, path)]
        if required is not None:
            missing = await client.request(method, url, content=body)
            assert_declared(document, method, path, missing, 401)
            assert missing.headers["www-authenticate"] == "Bearer"
            weaker = [role for role in Role if not role_allows(role, required)]
            assert weaker, (method, path)
            for role in weaker:
                wrong = await client.request(
                    method, url, content=body, headers=auth(gateways.tokens[role])
                )
                assert_declared(document, method, path, wrong, 403)
            probes += 1 + len(weaker)
        if body is not None:
            oversized = await client.request(
                method, url, content=b" " * (MAX_BODY + 1), headers=json_headers
            )
            assert_declared(document, method, path, oversized, 413)
            malformed = await client.request(method, url, content=b'{"', headers=json_headers)
            assert_declared(document, method, path, malformed, 422)
            probes += 2
        if "{key}" in path:
            unknown = await client.request(method, concrete(path, "nope"), headers=right)
            assert_declared(document, method, path, unknown, 404)
            probes += 1
        for name in TYPED_QUERY.get((method, path), ()):
            bad = await client.request(method, url, params={name: "not-a-value"}, headers=right)
            assert_declared(document, method, path, bad, 422)
            probes += 1
    unknown = await client.post(
        "/v1/predict",
        json={"experiment": "nope", "unit_id": "u1", "features": ROW},
        headers=auth(gateways.tokens[Role.SERVICE]),
    )
    assert_declared(document, "POST", "/v1/predict", unknown, 404)
    integer_unit = await client.post(
        "/v1/predict",
        json={"unit_id": 42, "features": ROW},
        headers=auth(gateways.tokens[Role.SERVICE]),
    )
    assert_declared(document, "POST", "/v1/predict", integer_unit, 422)
    assert integer_unit.json()["detail"].startswith("unit_id")
    for model in ("PredictIn", "OutcomeIn"):  # and the document says so
        field = document["components"]["schemas"][model]["properties"]["unit_id"]
        assert {option.get("type") for option in field["anyOf"]} == {"string", "null"}
    # 7 protected operations: 7 x 401, and 403 for each weaker role: service for the 4 viewer
    # operations, viewer and experimenter for the 2 service ones, service and viewer for
    # registration (10); 3 bodies x (413, 422); 2 keyed paths x 404; results' phase and
    # format and registration's default x 422.
    assert probes == 7 + 10 + 6 + 2 + 3, probes


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "framework"])
async def test_outages_get_declared_answers(gateways: Gateway, fast_path: bool) -> None:
    service = auth(gateways.tokens[Role.SERVICE])
    payload = {"unit_id": "u1", "features": ROW}
    broken = experiment(
        key="exp",
        variants=[
            {"name": "control", "model": "python:gwmodels:broken"},
            {"name": "treatment", "model": "python:gwmodels:broken"},
        ],
    )
    client = await gateways.start(broken, breaker_failure_threshold=1, predict_fast_path=fast_path)
    document = await document_of(client)
    failed = await client.post("/v1/predict", json=payload, headers=service)
    assert_declared(document, "POST", "/v1/predict", failed, 502)
    opened = await client.post("/v1/predict", json=payload, headers=service)
    assert_declared(document, "POST", "/v1/predict", opened, 503)
    assert opened.json()["error"] == "model_unavailable"

    slow = experiment(
        variants=[
            {"name": "control", "model": "python:gwmodels:slow"},
            {"name": "treatment", "model": "python:gwmodels:slow"},
        ]
    )
    client = await gateways.start(slow, backend_timeout_ms=50, predict_fast_path=fast_path)
    late = await client.post("/v1/predict", json=payload, headers=service)
    assert_declared(document, "POST", "/v1/predict", late, 504)

    outcomes = {"outcomes": [{"unit_id": "u1", "name": "c"}]}
    for error, status in [(StoreUnavailableError, 503), (JournalError, 500)]:
        events = RefusingEvents(error)
        client = await gateways.start(events=events, predict_fast_path=fast_path)
        not_kept = await client.post("/v1/predict", json=payload, headers=service)
        assert_declared(document, "POST", "/v1/predict", not_kept, status)
        outcome = await client.post("/v1/outcomes", json=outcomes, headers=service)
        assert_declared(document, "POST", "/v1/outcomes", outcome, status)

    client = await gateways.start(store_url=UNREACHABLE_STORE)
    results = await client.get(
        "/v1/experiments/exp/results", headers=auth(gateways.tokens[Role.VIEWER])
    )
    assert_declared(document, "GET", "/v1/experiments/{key}/results", results, 503)

    client = await gateways.start(tokens=UnreachableTokenStore(), predict_fast_path=fast_path)
    unverifiable = 0
    for (method, path), role in REQUIRED_ROLE.items():
        if role is not None:
            body = VALID_BODY.get((method, path))
            headers = auth(gateways.tokens[role])
            response = await client.request(method, concrete(path), content=body, headers=headers)
            assert_declared(document, method, path, response, 503)
            assert response.json()["error"] == "store_unavailable"
            unverifiable += 1
    assert unverifiable == 7

    catalog = FailingCatalog()
    client = await gateways.start(catalog=catalog)
    catalog.is_down = True
    register = await client.post(
        "/v1/experiments",
        content=VALID_BODY[("POST", "/v1/experiments")],
        headers=auth(gateways.tokens[Role.EXPERIMENTER]),
    )
    assert_declared(document, "POST", "/v1/experiments", register, 503)

    not_started = await gateways.start(lifespan=False)
    starting = await not_started.get("/readyz")
    assert_declared(document, "GET", "/readyz", starting, 503)
    assert starting.json()["status"] == "starting"


async def test_the_document_follows_the_settings(gateways: Gateway) -> None:
    """Without auth nothing declares 401, and 403 only where the model policy refuses a
    reference (which it does for every caller); public metrics declare neither."""
    open_gateway = await gateways.start(auth_enabled=False)
    document = await document_of(open_gateway)
    forbidding = set()
    for method, path, operation in operations(document):
        assert "security" not in operation, (method, path)
        assert "401" not in operation["responses"], (method, path)
        if "403" in operation["responses"]:
            forbidding.add((method, path))
    assert forbidding == {("POST", "/v1/experiments")}
    unlisted = experiment(
        key="exp2",
        variants=[
            {"name": "control", "model": "python:gwmodels:counting"},
            {"name": "treatment", "model": "python:gwmodels:counting"},
        ],
    )
    code = await open_gateway.post("/v1/experiments", json=unlisted.model_dump(mode="json"))
    assert_declared(document, "POST", "/v1/experiments", code, 403)
    assert code.json()["detail"].startswith("variants[0].model")
    public = await document_of(await gateways.start(metrics_public=True))
    assert not {"401", "403"} & set(public["paths"]["/metrics"]["get"]["responses"])
    assert "401" in public["paths"]["/v1/experiments"]["get"]["responses"]
    metrics = await open_gateway.get("/metrics")
    assert metrics.status_code == 200


async def test_an_undeclared_method_is_405_allowing_the_declared_ones(gateways: Gateway) -> None:
    """``Allow`` lists every method the document declares at the path, not only the first
    route's (``OPTIONS /v1/experiments`` answered ``Allow: GET``, hiding POST)."""
    client = await gateways.start()
    document = await document_of(client)
    probes = 0
    for path, methods in document["paths"].items():
        declared = {method.upper() for method in methods}
        for method in sorted({"OPTIONS", "PUT", "DELETE"} - declared):
            response = await client.request(method, concrete(path))
            assert response.status_code == 405, (method, path)
            allowed = {name.strip() for name in response.headers["allow"].split(",")}
            assert allowed - {"HEAD"} == declared, (method, path, allowed)
            assert response.json()["error"] == "http_error"
            probes += 1
    assert probes == 8 * 3, probes


async def test_head_answers_as_get_without_the_body(gateways: Gateway) -> None:
    """``Allow`` names HEAD beside GET, so every GET path answers it: the same status and
    headers (authentication included), no body."""
    client = await gateways.start()
    document = await document_of(client)
    probes = 0
    for path, methods in document["paths"].items():
        if "get" not in methods:
            continue
        for headers in ({}, auth(gateways.tokens[Role.ADMIN])):
            got = await client.get(concrete(path), headers=headers)
            head = await client.head(concrete(path), headers=headers)
            assert head.status_code == got.status_code, (path, headers)
            assert head.content == b"", path
            assert head.headers.get("content-type") == got.headers.get("content-type"), path
            probes += 1
    assert probes == 2 * 6, probes  # six GET paths, without and with a token


def test_every_error_status_has_a_reason_in_the_table() -> None:
    """Every status an abflow error maps to is one some need declares."""
    declared = {refusal.status for refusals in ERRORS.values() for refusal in refusals}
    mapped = {status for _, status, _ in _STATUS}
    assert mapped == declared - {413}, mapped ^ declared


def test_a_status_the_table_does_not_know_is_kept_from_the_route() -> None:
    """A route's own 409 survives; its 422 goes where no need brings one (no parameters)."""
    app = FastAPI()

    @app.get("/thing", responses={409: {"description": "already there"}, 422: {}})
    async def thing() -> None:
        """Nothing."""

    install_openapi(app)
    responses = app.openapi()["paths"]["/thing"]["get"]["responses"]
    assert sorted(responses) == ["200", "401", "403", "409", "503"]
    assert responses["409"]["description"] == "already there"
    error = {"$ref": "#/components/schemas/Error"}
    assert responses["409"]["content"]["application/json"]["schema"] == error
