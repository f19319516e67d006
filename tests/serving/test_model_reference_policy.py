"""An API caller can never make the gateway run code or call a host the operator did not
configure (issue #10): ``python:``, ``file:`` and ``runs:/`` references come only from the
config file, ``http(s)://`` ones only on an allowed host and port, for every role, and for
specs that reach the gateway through the store too. Each refusal happens before anything is
imported, unpickled or contacted: probes that would leave a trace prove it."""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import gwmodels
import orjson
import pytest
from gateway_support import AppFactory, MemoryEvents, auth, experiment, serve

from abflow.errors import InvalidArgumentError, PermissionDeniedError
from abflow.security.roles import Role
from abflow.security.tokens import InMemoryTokenStore
from abflow.serving.app import create_app
from abflow.serving.backends import BackendOptions
from abflow.serving.model_policy import RULES, ModelPolicy, parse_host_entry
from abflow.serving.settings import GatewayConfig, GatewaySettings, load_config, policy_for
from abflow.store import EventStore

ROW = [0.1] * gwmodels.N_FEATURES
PROBE_MODULE = "abflow_policy_probe"

pytestmark = pytest.mark.anyio


# --- probes: each leaves a trace if the gateway ever loads or contacts it ----------------


class _MkdirOnLoad:
    """Unpickling this creates a directory: the trace of a file: model being loaded."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.mkdir, (self.path,)


@pytest.fixture
def probes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A module that writes a marker when imported and a pickle that does when loaded."""
    imported = tmp_path / "imported.marker"
    unpickled = tmp_path / "unpickled.marker"
    source = f"from pathlib import Path\nPath({str(imported)!r}).write_text('imported')\n"
    source += "class Model:\n    def predict(self, rows):\n        return [0.0] * len(rows)\n"
    (tmp_path / f"{PROBE_MODULE}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, PROBE_MODULE, raising=False)
    pickled = tmp_path / "model.pkl"
    pickled.write_bytes(pickle.dumps(_MkdirOnLoad(str(unpickled))))
    return {"imported": imported, "unpickled": unpickled, "pickle": pickled}


class _CountingModelServer(ThreadingHTTPServer):
    """An ``/invocations`` model server on loopback that counts every connection."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Invocations)
        self.connections = 0
        self._lock = threading.Lock()

    def verify_request(self, request: Any, client_address: Any) -> bool:
        with self._lock:
            self.connections += 1
        return True

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _Invocations(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        rows = orjson.loads(self.rfile.read(int(self.headers["content-length"])))["inputs"]
        body = orjson.dumps({"predictions": [0.25] * len(rows)})
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def model_server() -> Iterator[_CountingModelServer]:
    server = _CountingModelServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(timeout=30)
        server.server_close()


def _spec(key: str, challenger: str) -> dict[str, Any]:
    """A spec whose control is the config's own model and whose challenger is ``challenger``."""
    spec = experiment(
        key=key,
        variants=[
            {"name": "control", "model": "python:gwmodels:control"},
            {"name": "challenger", "model": challenger},
        ],
        weights=[0.0, 1.0],
    )
    return spec.model_dump(mode="json")


def _live_keys(response: Any) -> list[str]:
    return [e["key"] for e in response.json()["experiments"]]


# --- POST /v1/experiments ----------------------------------------------------------------


async def test_code_references_are_refused_for_every_role_before_anything_loads(
    make_client: AppFactory, tokens: dict[Role, str], probes: dict[str, Path]
) -> None:
    client = await make_client(backends={"python:gwmodels:counting": BackendOptions()})
    references = [
        f"python:{PROBE_MODULE}:Model",
        "python:os:getcwd",
        f"file:{probes['pickle']}",
        f"runs:/0123abc/../../{probes['pickle'].parent.name}",
    ]
    refused = 0
    for role in (Role.EXPERIMENTER, Role.ADMIN):
        for index, reference in enumerate(references):
            response = await client.post(
                "/v1/experiments",
                json=_spec(f"code-{role.value}-{index}", reference),
                headers=auth(tokens[role]),
            )
            assert response.status_code == 403, (role, reference, response.text)
            body = response.json()
            assert body["error"] == "forbidden"
            scheme = reference.split(":", 1)[0]
            assert body["detail"] == (
                "variants[1].model: refused by rule code_from_config_only: "
                f"{scheme}: references come only from the operator's config file"
            )
            refused += 1
    for role in (Role.VIEWER, Role.SERVICE):  # refused by role, before the spec is read
        response = await client.post(
            "/v1/experiments", json=_spec("code-low", references[0]), headers=auth(tokens[role])
        )
        assert response.status_code == 403
        assert "experimenter" in response.json()["detail"]
    assert refused == 8
    assert not probes["imported"].exists()
    assert PROBE_MODULE not in sys.modules
    assert not probes["unpickled"].exists()
    listed = await client.get("/v1/experiments", headers=auth(tokens[Role.VIEWER]))
    assert _live_keys(listed) == ["exp"]
    # A reference the operator's config names (here a backends key) loads nothing new.
    reused = await client.post(
        "/v1/experiments",
        json=_spec("reuse", "python:gwmodels:counting"),
        headers=auth(tokens[Role.EXPERIMENTER]),
    )
    assert reused.status_code == 201, reused.text
    models = [v["model"] for v in reused.json()["variants"]]
    assert models == ["python:gwmodels:control", "python:gwmodels:counting"]


async def test_every_refused_variant_is_named_and_shadow_variants_are_checked_too(
    make_client: AppFactory, tokens: dict[Role, str], probes: dict[str, Path]
) -> None:
    client = await make_client()
    spec = experiment(
        key="two-bad",
        variants=[
            {"name": "control", "model": f"file:{probes['pickle']}"},
            {"name": "ok", "model": "python:gwmodels:challenger"},
            {"name": "mirror", "model": f"python:{PROBE_MODULE}:Model"},
        ],
        weights=[0.5, 0.5, 0.0],
    ).model_dump(mode="json")
    response = await client.post(
        "/v1/experiments?shadow=mirror", json=spec, headers=auth(tokens[Role.ADMIN])
    )
    assert response.status_code == 403
    detail = response.json()["detail"]
    assert detail.startswith("variants[0].model: refused by rule code_from_config_only")
    assert detail.count("refused by rule") == 2
    assert "variants[2].model" in detail
    assert "variants[1].model" not in detail
    assert not probes["imported"].exists()
    assert not probes["unpickled"].exists()


async def test_http_references_need_an_allowed_host_and_port_and_are_never_contacted(
    make_client: AppFactory,
    tokens: dict[Role, str],
    model_server: _CountingModelServer,
) -> None:
    port = model_server.port
    endpoint = f"http://127.0.0.1:{port}/invocations"
    client = await make_client(allowed_model_hosts=[f"127.0.0.1:{port + 1}", "127.0.0.1"])
    experimenter = auth(tokens[Role.EXPERIMENTER])
    cases = {
        "other-port": endpoint,  # host listed, but on another port / the default port only
        "localhost-name": f"http://localhost:{port}/invocations",
        "userinfo": f"http://127.0.0.1:{port}@evil.invalid/invocations",
        "https": f"https://127.0.0.1:{port}/invocations",
    }
    details = {}
    for key, reference in cases.items():
        response = await client.post(
            "/v1/experiments", json=_spec(key, reference), headers=experimenter
        )
        assert response.status_code == 403, (key, response.text)
        details[key] = response.json()["detail"]
        assert details[key].startswith("variants[1].model: refused by rule model_host_not_allowed")
    assert details["other-port"].endswith(f": 127.0.0.1:{port} is not in allowed_model_hosts")
    assert details["userinfo"].endswith(": evil.invalid:80 is not in allowed_model_hosts")
    assert f"127.0.0.1:{port}@" not in details["userinfo"]  # host:port named, never userinfo
    shadowed = await client.post(
        "/v1/experiments?shadow=challenger", json=_spec("shadowed", endpoint), headers=experimenter
    )
    assert shadowed.status_code == 403
    for key in ("other-port", "localhost-name", "shadowed"):  # never registered: nothing to call
        predicted = await client.post(
            "/v1/predict",
            json={"experiment": key, "unit_id": "u1", "features": ROW},
            headers=auth(tokens[Role.SERVICE]),
        )
        assert predicted.status_code == 404
    assert model_server.connections == 0
    # With its exact host:port allowed, the same endpoint registers, then serves.
    allowed = await make_client(allowed_model_hosts=[f"127.0.0.1:{port}"])
    created = await allowed.post(
        "/v1/experiments", json=_spec("remote", endpoint), headers=experimenter
    )
    assert created.status_code == 201, created.text
    assert model_server.connections == 1  # the one registration probe, of an allowed host
    body = (
        await allowed.post(
            "/v1/predict",
            json={"experiment": "remote", "unit_id": "u1", "features": ROW},
            headers=auth(tokens[Role.SERVICE]),
        )
    ).json()
    assert (body["variant"], body["prediction"], body["is_fallback"]) == ("challenger", 0.25, False)
    assert model_server.connections in (1, 2)  # the probe's connection kept alive, or a new one


# --- the store follower ------------------------------------------------------------------


async def test_a_spec_registered_in_the_store_passes_the_same_policy(
    tmp_path: Path, probes: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    config = GatewayConfig(experiments=[experiment()])
    settings = GatewaySettings(
        store_url=url, journal_dir=tmp_path / "journal", refresh_seconds=0.05
    )
    app = create_app(settings, config=config, events=MemoryEvents(), tokens=InMemoryTokenStore())
    caplog.set_level(logging.WARNING, logger="abflow.gateway")
    async with serve(app):
        gateway = app.state.abflow.gateway
        assert gateway.experiments["exp"].version == 1
        evil = experiment(
            variants=[
                {"name": "control", "model": "python:gwmodels:control"},
                {"name": "treatment", "model": f"python:{PROBE_MODULE}:Model"},
            ]
        )
        with EventStore.open(url) as store:
            assert store.register_experiment(evil, actor="token:mallory").version == 2
        refusal = "experiment exp: cannot serve version 2: variants[1].model: refused by rule"
        for _ in range(600):  # the follower polls every 0.05 s; up to 60 s on a busy machine
            if any(refusal in r.getMessage() for r in caplog.records):
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the follower never reported refusing version 2")
        assert gateway.experiments["exp"].version == 1
        assert not probes["imported"].exists()
        assert PROBE_MODULE not in sys.modules
        # A version that names only the config's own models is still followed (rollouts).
        reweighted = experiment(weights=[0.9, 0.1])
        with EventStore.open(url) as store:
            assert store.register_experiment(reweighted).version == 3
        for _ in range(600):
            if gateway.experiments["exp"].version == 3:
                break
            await asyncio.sleep(0.1)
        assert gateway.experiments["exp"].spec.weights == [0.9, 0.1]


# --- settings ----------------------------------------------------------------------------


def test_allowed_hosts_come_from_the_environment_and_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ABFLOW_ALLOWED_MODEL_HOSTS", "Models.Internal:8080, [::1]:9000")
    settings = GatewaySettings()
    assert settings.allowed_model_hosts == ["Models.Internal:8080", "[::1]:9000"]
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "allowed_model_hosts: [kserve.models]\n"
        'backends:\n  "file:/srv/models/fraud.joblib": {timeout_ms: 100}\n'
    )
    policy = policy_for(settings, load_config(path))
    assert policy.allowed_hosts == {
        ("models.internal", 8080),
        ("::1", 9000),
        ("kserve.models", None),
    }
    assert policy.operator_references == {"file:/srv/models/fraud.joblib"}
    policy.check("http://MODELS.internal:8080/invocations", "m")
    policy.check("https://kserve.models/v2/models/fraud/infer", "m")
    policy.check("http://[::1]:9000/invocations", "m")
    policy.check("file:/srv/models/fraud.joblib", "m")
    monkeypatch.setenv("ABFLOW_ALLOWED_MODEL_HOSTS", '["a.b:1"]')
    assert GatewaySettings().allowed_model_hosts == ["a.b:1"]
    monkeypatch.setenv("ABFLOW_ALLOWED_MODEL_HOSTS", "http://a.b:1/")
    with pytest.raises(ValueError, match="allowed_model_hosts"):
        GatewaySettings()


@pytest.mark.parametrize("entry", ["", "a b", "h:0", "h:70000", "user@h", "h/path", "[zz]:1"])
def test_bad_host_entries_are_refused(entry: str) -> None:
    with pytest.raises(InvalidArgumentError, match="allowed_model_hosts"):
        parse_host_entry(entry)


def test_the_default_policy_allows_registry_models_only() -> None:
    policy = ModelPolicy()
    policy.check("models:/fraud@champion", "variants[0].model")
    policy.check("models:/fraud/3", "variants[0].model")
    refused = ("python:gwmodels:control", "file:x.pkl", "runs:/1/m", "http://h/x", "?")
    for reference in (*refused, "models://profile@databricks/fraud/1", "models:/a/b/c"):
        with pytest.raises(PermissionDeniedError, match="refused by rule"):
            policy.check(reference, "variants[0].model")


def test_docs_list_every_rule() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "gateway.md").read_text(encoding="utf-8")
    section = docs.split("## Model references and who may register them", 1)[1].split("\n## ", 1)[0]
    assert sorted(RULES) == ["code_from_config_only", "model_host_not_allowed"]
    assert [rule for rule in RULES if f"| `{rule}` |" not in section] == []
