"""Registering a spec probes each new remote backend; ``/readyz`` lists the ones that fail.

The servers are real HTTP servers (uvicorn, in a thread) that refuse what their model cannot
take, as strict model servers do; the expected error text is what the server itself answers
when sent the same payload directly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gwmodels
import httpx
import orjson
import pytest
from gateway_support import AppFactory, MemoryEvents, auth, experiment, remote_experiment, serve
from model_server import free_port, running
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from strict_servers import strict_app

from abflow.security.roles import Role
from abflow.security.tokens import InMemoryTokenStore
from abflow.serving.app import create_app
from abflow.serving.backends import BackendOptions
from abflow.serving.catalog import InMemoryCatalog
from abflow.serving.settings import GatewayConfig, GatewaySettings

pytestmark = pytest.mark.anyio

WIDTH = 4  # the control model's row width (gwmodels)
VERTEX = "/v1/endpoints/fraud:predict"


@pytest.fixture(scope="module")
def narrow_server() -> Iterator[str]:
    """A Vertex-style endpoint whose model takes rows of 3 features (the control takes 4)."""
    with running(
        strict_app(gwmodels.challenger(), input_name="x", datatype="FP64", width=3)
    ) as url:
        yield url


@pytest.fixture(scope="module")
def fitting_server() -> Iterator[str]:
    """The same endpoint for rows of 4 features."""
    app = strict_app(gwmodels.challenger(), input_name="x", datatype="FP64", width=WIDTH)
    with running(app) as url:
        yield url


def _spec(url: str, key: str = "probed") -> dict[str, Any]:
    return {
        "key": key,
        "unit": "user_id",
        "variants": [
            {"name": "control", "model": "python:gwmodels:control"},
            {"name": "remote", "model": url},
        ],
        "weights": [0.5, 0.5],
    }


async def _failing(
    client: httpx.AsyncClient, want: int, viewer: str, timeout_seconds: float = 60.0
) -> Any:
    """``failing_backends`` of /readyz, as ``viewer``'s token sees it, once it lists ``want``
    entries (probes run in the background of earlier calls)."""
    deadline = asyncio.get_running_loop().time() + timeout_seconds
    while True:
        document = (await client.get("/readyz", headers=auth(viewer))).json()
        if len(document["failing_backends"]) >= want:
            return document["failing_backends"]
        assert asyncio.get_running_loop().time() < deadline, document
        await asyncio.sleep(0.05)


async def test_a_server_that_refuses_the_probe_row_is_a_422_naming_the_variant(
    narrow_server: str, make_client: AppFactory, tokens: dict[Role, str]
) -> None:
    url = narrow_server + VERTEX
    client = await make_client(backends={url: BackendOptions(protocol="vertex")})
    expected = httpx.post(url, json={"instances": [[0.0] * WIDTH]}).text  # the server's own words
    for _ in range(2):  # refused backends are forgotten: the second attempt probes again
        response = await client.post(
            "/v1/experiments", json=_spec(url), headers=auth(tokens[Role.EXPERIMENTER])
        )
        assert response.status_code == 422, response.text
        body = response.json()
        assert body["error"] == "invalid_spec"
        [problem] = body["problems"]
        assert problem.startswith(
            f"variants[1].model: the probe row (a row of {WIDTH} zeros) was refused: "
            f"model server {url} answered 400: "
        )
        assert problem.endswith(expected)
    listed = await client.get("/v1/experiments", headers=auth(tokens[Role.VIEWER]))
    assert [e["key"] for e in listed.json()["experiments"]] == ["exp"]  # nothing registered


async def test_the_configured_example_is_the_probe_row(
    fitting_server: str, make_client: AppFactory, tokens: dict[Role, str]
) -> None:
    url = fitting_server + VERTEX
    # Three values for a model of four: the server refuses, where zeros would have passed.
    client = await make_client(
        backends={url: BackendOptions(protocol="vertex", example=[1.0, 2.0, 3.0])}
    )
    response = await client.post(
        "/v1/experiments", json=_spec(url), headers=auth(tokens[Role.EXPERIMENTER])
    )
    assert response.status_code == 422
    [problem] = response.json()["problems"]
    expected = httpx.post(url, json={"instances": [[1.0, 2.0, 3.0]]}).text
    assert "(the configured example)" in problem
    assert problem.endswith(expected)


async def test_an_answer_without_predictions_is_refused(
    fitting_server: str, make_client: AppFactory, tokens: dict[Role, str]
) -> None:
    url = fitting_server + "/broken/invocations"  # answers {"status": "ok"}
    client = await make_client(backends={url: BackendOptions()})
    response = await client.post(
        "/v1/experiments", json=_spec(url), headers=auth(tokens[Role.EXPERIMENTER])
    )
    assert response.status_code == 422
    [problem] = response.json()["problems"]
    assert problem.startswith("variants[1].model: the probe row (a row of 4 zeros) was refused:")
    assert "no list of predictions" in problem


async def test_a_server_that_takes_the_row_registers_and_is_not_failing(
    fitting_server: str, make_client: AppFactory, tokens: dict[Role, str]
) -> None:
    url = fitting_server + VERTEX
    client = await make_client(backends={url: BackendOptions(protocol="vertex")})
    response = await client.post(
        "/v1/experiments", json=_spec(url), headers=auth(tokens[Role.EXPERIMENTER])
    )
    assert response.status_code == 201, response.text
    ready = (await client.get("/readyz")).json()
    assert ready["failing_backends"] == []
    prediction = await client.post(
        "/v1/predict",
        json={"experiment": "probed", "unit_id": "u1", "features": [0.1] * WIDTH},
        headers=auth(tokens[Role.SERVICE]),
    )
    assert prediction.json()["is_fallback"] is False


async def test_an_unreachable_server_registers_with_a_warning_and_readyz_lists_it(
    make_client: AppFactory, tokens: dict[Role, str], caplog: pytest.LogCaptureFixture
) -> None:
    url = f"http://127.0.0.1:{free_port()}/invocations"  # nothing listens there
    client = await make_client(backends={url: BackendOptions()})
    with caplog.at_level(logging.WARNING, logger="abflow.serving.remote_health"):
        response = await client.post(
            "/v1/experiments", json=_spec(url), headers=auth(tokens[Role.EXPERIMENTER])
        )
    assert response.status_code == 201, response.text  # availability is not the payload's fault
    [line] = [r.getMessage() for r in caplog.records if "failed the probe" in r.getMessage()]
    assert "variant remote" in line
    assert "(connect)" in line
    [anonymous] = (await client.get("/readyz")).json()["failing_backends"]
    [failing] = (await client.get("/readyz", headers=auth(tokens[Role.VIEWER]))).json()[
        "failing_backends"
    ]
    # A probe without a token learns which variants fail and why, not the server's URL or
    # what it said (a model server may echo a request's features or a header).
    assert anonymous == {k: v for k, v in failing.items() if k not in ("backend", "error")}
    assert "backend" in failing
    service = await client.get("/readyz", headers=auth(tokens[Role.SERVICE]))
    assert "backend" not in service.json()["failing_backends"][0]  # below viewer: the same
    assert failing["backend"] == url
    assert failing["variants"] == ["probed/remote"]
    assert failing["reason"] == "connect"
    assert failing["consecutive_failures"] == 1
    assert failing["circuit"] == "closed"


async def test_readyz_probes_configured_backends_in_the_background(
    narrow_server: str, fitting_server: str, make_client: AppFactory, tokens: dict[Role, str]
) -> None:
    narrow, fitting = narrow_server + VERTEX, fitting_server + VERTEX
    client = await make_client(
        remote_experiment(narrow),
        experiment(key="fine", variants=_spec(fitting)["variants"]),
        backends={
            narrow: BackendOptions(protocol="vertex"),
            fitting: BackendOptions(protocol="vertex"),
        },
    )
    first = (await client.get("/readyz")).json()
    assert first["status"] == "ready"
    assert first["failing_backends"] == []  # nothing called or probed yet: nothing known
    [failing] = await _failing(client, 1, tokens[Role.VIEWER])
    expected = httpx.post(narrow, json={"instances": [[0.0] * WIDTH]}).text
    assert failing["backend"] == narrow
    assert failing["variants"] == ["exp/remote"]
    assert failing["reason"] == "status_4xx"
    assert failing["error"].endswith(expected)


def _register(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from abflow.cli.main import main

    with pytest.raises(SystemExit) as exited:
        main(["experiments", "register", *argv])
    captured = capsys.readouterr()
    assert isinstance(exited.value.code, int)
    return exited.value.code, captured.out, " ".join(captured.err.split())


def test_the_command_line_probes_before_it_registers(
    narrow_server: str,
    fitting_server: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "400")
    monkeypatch.delenv("ABFLOW_CONFIG", raising=False)
    narrow, fitting = narrow_server + VERTEX, fitting_server + VERTEX
    config = tmp_path / "gateway.yaml"
    vertex = {"protocol": "vertex", "n_features": WIDTH}
    config.write_text(orjson.dumps({"backends": {narrow: vertex, fitting: vertex}}).decode())
    store = f"sqlite:///{tmp_path / 'store.db'}"
    spec = tmp_path / "spec.json"
    spec.write_bytes(orjson.dumps(_spec(narrow)))

    code, out, err = _register([str(spec), "--store", store, "--config", str(config)], capsys)
    expected = httpx.post(narrow, json={"instances": [[0.0] * WIDTH]}).text
    assert code == 2
    assert "variants[1].model: the probe row (a row of 4 zeros) was refused:" in err
    assert f"model server {narrow} answered 400: {expected}" in err
    assert "Traceback" not in err
    assert not (tmp_path / "store.db").exists()  # the probe came first: nothing was written

    spec.write_bytes(orjson.dumps(_spec(fitting)))
    code, out, err = _register([str(spec), "--store", store, "--config", str(config)], capsys)
    assert code == 0, err
    assert "probed: registered version 1" in out
    assert [e["key"] for e in _register_list(store, capsys)] == ["probed"]

    # No row width known for this server: a warning, and the spec registers unprobed.
    spec.write_bytes(orjson.dumps(_spec(f"http://127.0.0.1:{free_port()}/invocations")))
    code, out, err = _register([str(spec), "--store", store, "--config", str(config)], capsys)
    assert code == 0, err
    assert "not probed: the row width is unknown" in err


def _register_list(store: str, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    from abflow.cli.main import main

    with pytest.raises(SystemExit) as exited:
        main(["experiments", "list", "--store", store, "--format", "json"])
    assert exited.value.code == 0
    document = orjson.loads(capsys.readouterr().out)
    return list(document["experiments"] if isinstance(document, dict) else document)


async def test_a_backend_that_recovers_leaves_the_list(
    tmp_path: Path, events: MemoryEvents, token_store: InMemoryTokenStore, tokens: dict[Role, str]
) -> None:
    refusing = {"now": True}

    async def invocations(request: Request) -> JSONResponse:
        rows = orjson.loads(await request.body())["inputs"]
        if refusing["now"]:
            return JSONResponse({"message": "model not loaded yet"}, status_code=400)
        return JSONResponse({"predictions": [0.5 for _ in rows]})

    server = Starlette(routes=[Route("/invocations", invocations, methods=["POST"])])
    with running(server) as base:
        url = base + "/invocations"
        app = create_app(
            GatewaySettings(journal_dir=tmp_path, store_url=None),
            config=GatewayConfig(
                experiments=[remote_experiment(url)], backends={url: BackendOptions()}
            ),
            events=events,
            tokens=token_store,
            catalog=InMemoryCatalog(),
        )
        app.state.abflow.remote_health.interval_seconds = 0.05  # re-probe at once
        async with serve(app) as client:
            [failing] = await _failing(client, 1, tokens[Role.VIEWER])
            assert failing["reason"] == "status_4xx"
            assert "model not loaded yet" in failing["error"]
            refusing["now"] = False
            deadline = asyncio.get_running_loop().time() + 60
            while (await client.get("/readyz")).json()["failing_backends"]:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.05)
