"""Remote backends: micro-batched calls and the lean keep-alive client, against real
uvicorn servers on 127.0.0.1 (a scikit-learn model, and small apps that misbehave on
purpose). Answers are checked against the model computing each row on its own and against
httpx reading the same endpoints."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import gwmodels
import httpx
import numpy as np
import orjson
import pytest
import yaml
from model_server import free_port, model_app, running
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from strict_servers import strict_app

from abflow.errors import BackendTimeoutError
from abflow.serving.backends import BackendOptions
from abflow.serving.backends.failure import RemoteModelError
from abflow.serving.backends.h1client import H1Pool
from abflow.serving.backends.http import HeaderAuth, HttpBackend

pytestmark = pytest.mark.anyio

N_CONCURRENT = 40
LOADED_MACHINE_S = 60.0  # a timeout that only a hung server reaches


class Seen:
    """What the test server saw: the rows of each call, and each call's client port."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.ports: list[int] = []
        self.headers: list[dict[str, str]] = []


def misbehaving_app(seen: Seen) -> Starlette:
    """``/invocations`` scores rows by their sum, refuses (400) a batch holding a row whose
    first value is negative; ``/fail`` always answers 503; ``/chunked`` streams its answer;
    ``/close`` answers with ``connection: close``; ``/slow`` takes 2 s."""

    async def invocations(request: Request) -> Response:
        rows = orjson.loads(await request.body())["inputs"]
        seen.calls.append(len(rows))
        assert request.client is not None
        seen.ports.append(request.client.port)
        seen.headers.append(dict(request.headers))
        if any(row[0] < 0 for row in rows):
            return Response(b'{"error": "negative first feature"}', status_code=400)
        await asyncio.sleep(0.01)  # long enough for concurrent callers to queue up
        return Response(orjson.dumps({"predictions": [sum(row) for row in rows]}))

    async def fail(request: Request) -> Response:
        seen.calls.append(len(orjson.loads(await request.body())["inputs"]))
        return Response(b"model crashed", status_code=503)

    async def chunked(request: Request) -> StreamingResponse:
        rows = orjson.loads(await request.body())["inputs"]
        text = orjson.dumps({"predictions": [sum(row) for row in rows]})

        async def parts() -> AsyncIterator[bytes]:
            for i in range(0, len(text), 7):
                yield text[i : i + 7]

        return StreamingResponse(parts(), media_type="application/json")

    async def close(request: Request) -> Response:
        assert request.client is not None
        seen.ports.append(request.client.port)
        return Response(b'{"predictions": [1.0]}', headers={"connection": "close"})

    async def slow(request: Request) -> Response:
        await asyncio.sleep(2)
        return Response(b'{"predictions": [1.0]}')

    return Starlette(
        routes=[
            Route("/invocations", invocations, methods=["POST"]),
            Route("/fail", fail, methods=["POST"]),
            Route("/chunked", chunked, methods=["POST"]),
            Route("/close", close, methods=["POST"]),
            Route("/slow", slow, methods=["POST"]),
        ]
    )


@pytest.fixture(scope="module")
def seen() -> Seen:
    return Seen()


@pytest.fixture(scope="module")
def odd_url(seen: Seen) -> Iterator[str]:
    with running(misbehaving_app(seen), timeout_keep_alive=1) as url:
        yield url


@pytest.fixture(scope="module")
def model_url() -> Iterator[str]:
    with running(model_app(gwmodels.challenger(), "fraud")) as url:
        yield url


def _reset(seen: Seen) -> None:
    seen.calls.clear()
    seen.ports.clear()
    seen.headers.clear()


async def test_concurrent_calls_become_few_requests_with_each_callers_answers(
    model_url: str, rng: np.random.Generator
) -> None:
    backend = HttpBackend(f"{model_url}/invocations", timeout_seconds=LOADED_MACHINE_S)
    assert backend.client_name == "lean"
    sizes = rng.integers(1, 4, size=N_CONCURRENT)
    requests = [rng.normal(size=(int(n), gwmodels.N_FEATURES)) for n in sizes]
    try:
        answers = await asyncio.gather(*(backend.predict(rows) for rows in requests))
    finally:
        await backend.aclose()
    assert backend.batches < N_CONCURRENT / 2  # coalesced
    expected = gwmodels.challenger()
    for rows, answer in zip(requests, answers, strict=True):
        assert answer == expected.predict_proba(rows)[:, 1].tolist()  # a tree: exact


async def test_a_batch_refused_for_one_request_fails_only_that_request(
    odd_url: str, seen: Seen, rng: np.random.Generator
) -> None:
    _reset(seen)
    backend = HttpBackend(f"{odd_url}/invocations", timeout_seconds=LOADED_MACHINE_S)
    requests = [np.abs(rng.normal(size=(1, 3))) for _ in range(N_CONCURRENT)]
    requests[7] = -requests[7]
    try:
        answers = await asyncio.gather(
            *(backend.predict(rows) for rows in requests), return_exceptions=True
        )
    finally:
        await backend.aclose()
    bad = answers[7]
    assert isinstance(bad, RemoteModelError)
    assert bad.reason == "status_4xx"
    assert "negative first feature" in str(bad)
    for i, (rows, answer) in enumerate(zip(requests, answers, strict=True)):
        if i != 7:
            assert answer == [float(rows.sum())]
    assert max(seen.calls) > 1  # it was batched, then split
    assert sum(seen.calls) >= N_CONCURRENT


async def test_a_failing_server_fails_every_caller_without_a_retry_storm(
    odd_url: str, seen: Seen, rng: np.random.Generator
) -> None:
    _reset(seen)
    backend = HttpBackend(f"{odd_url}/fail", timeout_seconds=LOADED_MACHINE_S)
    requests = [rng.normal(size=(1, 3)) for _ in range(N_CONCURRENT)]
    try:
        answers = await asyncio.gather(
            *(backend.predict(rows) for rows in requests), return_exceptions=True
        )
    finally:
        await backend.aclose()
    assert all(isinstance(a, RemoteModelError) and a.reason == "status_5xx" for a in answers)
    assert all("answered 503: model crashed" in str(a) for a in answers)
    assert sum(seen.calls) == N_CONCURRENT  # every row sent once: no per-request retries
    assert len(seen.calls) < N_CONCURRENT


async def test_a_refused_connection_fails_every_caller_as_connect() -> None:
    backend = HttpBackend(
        f"http://127.0.0.1:{free_port()}/invocations", timeout_seconds=LOADED_MACHINE_S
    )
    try:
        answers = await asyncio.gather(
            *(backend.predict(np.ones((1, 3))) for _ in range(10)), return_exceptions=True
        )
    finally:
        await backend.aclose()
    assert all(isinstance(a, RemoteModelError) and a.reason == "connect" for a in answers)


async def test_lean_client_keeps_one_connection_alive_and_sends_static_headers(
    odd_url: str, seen: Seen
) -> None:
    _reset(seen)
    backend = HttpBackend(
        f"{odd_url}/invocations",
        auth=HeaderAuth({"x-api-key": "k1"}),
        batch=False,
        timeout_seconds=LOADED_MACHINE_S,
    )
    assert backend.client_name == "lean"
    try:
        for i in range(20):
            assert await backend.predict(np.full((1, 2), float(i))) == [2.0 * i]
    finally:
        await backend.aclose()
    assert len(set(seen.ports)) == 1
    assert {h["x-api-key"] for h in seen.headers} == {"k1"}


async def test_what_the_lean_client_cannot_do_goes_through_httpx(
    odd_url: str, seen: Seen, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = HttpBackend(f"{odd_url}/invocations", auth=HeaderAuth(lambda request: {}))
    _reset(seen)
    basic = HttpBackend(
        odd_url.replace("http://", "http://user:pw@") + "/invocations",
        timeout_seconds=LOADED_MACHINE_S,
    )
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "")
    proxied = HttpBackend(f"{odd_url}/invocations")
    try:
        assert [b.client_name for b in (hook, basic, proxied)] == ["httpx"] * 3
        assert await basic.predict(np.ones((1, 2))) == [2.0]
    finally:
        for backend in (hook, basic, proxied):
            await backend.aclose()
    assert seen.headers[0]["authorization"] == "Basic dXNlcjpwdw=="  # user:pw, as httpx sends


async def test_lean_client_reads_chunked_answers_as_httpx_does(
    odd_url: str, rng: np.random.Generator
) -> None:
    rows = rng.normal(size=(25, 3))
    body = orjson.dumps({"inputs": rows.tolist()})
    pool = H1Pool(f"{odd_url}/chunked")
    try:
        answer = await pool.request("POST", "/chunked", body)
    finally:
        await pool.aclose()
    async with httpx.AsyncClient() as client:
        reference = await client.post(f"{odd_url}/chunked", content=body)
    assert answer.status_code == reference.status_code == 200
    assert answer.content == reference.content
    assert orjson.loads(answer.content)["predictions"] == [sum(r) for r in rows.tolist()]


async def test_lean_client_opens_a_new_connection_after_the_server_closed_one(
    odd_url: str, seen: Seen
) -> None:
    _reset(seen)
    pool = H1Pool(odd_url)
    try:
        for _ in range(3):  # each answer says connection: close
            assert (await pool.request("POST", "/close", b"{}")).status_code == 200
        await pool.request("POST", "/invocations", b'{"inputs": [[1, 2]]}')
        await asyncio.sleep(1.5)  # the server drops the idle connection (keep-alive 1 s)
        answer = await pool.request("POST", "/invocations", b'{"inputs": [[1, 2]]}')
    finally:
        await pool.aclose()
    assert orjson.loads(answer.content) == {"predictions": [3]}
    assert len(set(seen.ports)) == 5  # a fresh connection each time


async def test_a_slow_answer_is_a_timeout_and_the_next_call_still_works(odd_url: str) -> None:
    slow = HttpBackend(f"{odd_url}/slow", timeout_seconds=0.3, batch=False)
    try:
        with pytest.raises(BackendTimeoutError):
            await slow.predict(np.ones((1, 2)))
    finally:
        await slow.aclose()
    pool = H1Pool(odd_url, max_connections=1)
    try:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await pool.request("POST", "/slow", b"{}")
        # the abandoned connection is not reused: its late answer cannot be taken for this one
        answer = await pool.request("POST", "/invocations", b'{"inputs": [[1, 2]]}')
    finally:
        await pool.aclose()
    assert orjson.loads(answer.content) == {"predictions": [3]}


def test_the_documented_batching_options_parse() -> None:
    text = (Path(__file__).parents[2] / "docs" / "gateway.md").read_text(encoding="utf-8")
    section = text.split("## Micro-batching and caching", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    backends = yaml.safe_load(block.group(1))["backends"]
    mlflow, legacy = (BackendOptions(**value) for value in backends.values())
    assert (mlflow.batch, mlflow.max_batches_in_flight) == (True, 2)
    assert legacy.batch is False
    assert BackendOptions().batch is True  # on unless said otherwise


@pytest.fixture(scope="module")
def strict_url() -> Iterator[str]:
    app = strict_app(
        gwmodels.challenger(), input_name="float_input", datatype="FP32", width=gwmodels.N_FEATURES
    )
    with running(app) as url:
        yield url


@pytest.mark.parametrize(
    ("path", "options"),
    [
        ("/v2/models/fraud/infer", {"output_name": "probabilities"}),
        ("/v1/endpoints/fraud:predict", {"protocol": "vertex"}),
    ],
)
async def test_v2_and_vertex_batches_answer_as_unbatched_calls(
    strict_url: str, path: str, options: dict[str, str], rng: np.random.Generator
) -> None:
    sizes = rng.integers(1, 4, size=N_CONCURRENT)
    requests = [rng.normal(size=(int(n), gwmodels.N_FEATURES)) for n in sizes]
    batched = HttpBackend(f"{strict_url}{path}", timeout_seconds=LOADED_MACHINE_S, **options)
    alone = HttpBackend(
        f"{strict_url}{path}", timeout_seconds=LOADED_MACHINE_S, batch=False, **options
    )
    try:
        answers = await asyncio.gather(*(batched.predict(rows) for rows in requests))
        expected = [await alone.predict(rows) for rows in requests]
    finally:
        await batched.aclose()
        await alone.aclose()
    assert answers == expected  # a tree's probabilities: exact in any batch
    assert (
        answers[0]
        == gwmodels.challenger()
        .predict_proba(requests[0])[:, 1]
        .astype(np.float32 if "v2" in path else np.float64)
        .tolist()
    )
    assert batched.batches < N_CONCURRENT / 2


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (PEM files)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_lean_client_speaks_tls_trusting_what_httpx_trusts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rng: np.random.Generator
) -> None:
    cert, key = _self_signed(tmp_path)
    app = model_app(gwmodels.challenger(), "fraud")
    with running(app, ssl_certfile=str(cert), ssl_keyfile=str(key)) as url:
        https = url.replace("http://", "https://") + "/invocations"
        untrusting = HttpBackend(https, timeout_seconds=LOADED_MACHINE_S, batch=False)
        try:
            with pytest.raises(RemoteModelError) as refused:
                await untrusting.predict(np.ones((1, gwmodels.N_FEATURES)))
        finally:
            await untrusting.aclose()
        assert refused.value.reason == "connect"  # an unknown certificate is not trusted
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # as httpx reads it
        backend = HttpBackend(https, timeout_seconds=LOADED_MACHINE_S)
        assert backend.client_name == "lean"
        rows = rng.normal(size=(3, gwmodels.N_FEATURES))
        try:
            answer = await backend.predict(rows)
        finally:
            await backend.aclose()
    assert answer == gwmodels.challenger().predict_proba(rows)[:, 1].tolist()


async def test_a_request_on_a_connection_closing_under_it_is_sent_again_on_a_fresh_one(
    odd_url: str, seen: Seen
) -> None:
    _reset(seen)
    pool = H1Pool(odd_url)
    body = b'{"inputs": [[1, 2]]}'
    try:
        await pool.request("POST", "/invocations", body)
        (idle,) = pool._idle
        assert idle.transport is not None
        idle.transport.close()  # the race: closed, but not yet reported lost
        answer = await pool.request("POST", "/invocations", body)
    finally:
        await pool.aclose()
    assert orjson.loads(answer.content) == {"predictions": [3]}
    assert len(seen.ports) == 2
    assert len(set(seen.ports)) == 2
