"""Model backends for real: in-process files and factories, and a real HTTP model server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import gwmodels
import httpx
import joblib
import numpy as np
import pytest
from gateway_support import AppFactory, MemoryEvents, auth, experiment
from model_server import model_app, running, signature
from numpy.testing import assert_allclose

from abflow.errors import BackendError, ConfigError
from abflow.security.roles import Role
from abflow.serving.backends import BackendOptions, HeaderAuth, HttpBackend, build_backend
from abflow.serving.backends.local import load_model

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    with running(model_app(gwmodels.challenger(), "fraud")) as url:
        yield url


def _rows(rng: np.random.Generator, n: int = 5) -> np.ndarray:
    return rng.normal(size=(n, gwmodels.N_FEATURES))


async def test_file_model_predicts_like_the_estimator(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    path = tmp_path / "model.joblib"
    joblib.dump(gwmodels.control(), path)
    backend = build_backend(f"file:{path}")
    try:
        rows = _rows(rng)
        outputs = await backend.predict(rows)
        assert_allclose(outputs, gwmodels.control().predict_proba(rows)[:, 1])
        assert backend.n_features == gwmodels.N_FEATURES
        assert backend.version.startswith("model@")
    finally:
        await backend.aclose()


async def test_predict_output_mode_returns_labels(rng: np.random.Generator) -> None:
    backend = build_backend("python:gwmodels:control", BackendOptions(output="predict"))
    try:
        rows = _rows(rng, 20)
        assert await backend.predict(rows) == gwmodels.control().predict(rows).tolist()
    finally:
        await backend.aclose()


def test_bad_references_are_config_errors(tmp_path: Path) -> None:
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle")
    for reference, message in [
        (f"file:{tmp_path / 'missing.pkl'}", "cannot read model file"),
        (f"file:{tmp_path / 'junk.pkl'}", "cannot load model file"),
        ("python:no_such_module_xyz:model", "cannot import module"),
        ("python:gwmodels:nothing", "has no attribute"),
        ("python:gwmodels:N_FEATURES", "has no predict method"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_model(reference)


@pytest.mark.parametrize("protocol", ["invocations", "v2"])
async def test_http_backend_against_a_real_model_server(
    server_url: str, protocol: str, rng: np.random.Generator
) -> None:
    url = (
        f"{server_url}/invocations"
        if protocol == "invocations"
        else f"{server_url}/v2/models/fraud/infer"
    )
    backend = build_backend(url, BackendOptions(version="fraud/3", n_features=4))
    try:
        rows = _rows(rng, 9)
        outputs = await backend.predict(rows)
        assert_allclose(outputs, gwmodels.challenger().predict_proba(rows)[:, 1])
        assert backend.version == "fraud/3"
        # Connections are pooled: concurrent calls all succeed on the same client.
        many = await asyncio.gather(*(backend.predict(rows[i : i + 1]) for i in range(9)))
        assert_allclose([m[0] for m in many], outputs)
    finally:
        await backend.aclose()


async def test_signing_hook_adds_headers_computed_from_the_body(
    server_url: str, rng: np.random.Generator
) -> None:
    rows = _rows(rng, 3)
    unsigned = HttpBackend(f"{server_url}/signed/invocations")
    with pytest.raises(BackendError, match="answered 401"):
        await unsigned.predict(rows)
    await unsigned.aclose()

    def sign(request: httpx.Request) -> dict[str, str]:
        return {"x-signature": signature(request.content)}

    signed = HttpBackend(f"{server_url}/signed/invocations", auth=HeaderAuth(sign))
    try:
        assert_allclose(await signed.predict(rows), gwmodels.challenger().predict_proba(rows)[:, 1])
    finally:
        await signed.aclose()


async def test_unreachable_server_is_a_backend_error(rng: np.random.Generator) -> None:
    from model_server import free_port

    backend = HttpBackend(f"http://127.0.0.1:{free_port()}/invocations")
    try:
        with pytest.raises(BackendError, match="cannot reach"):
            await backend.predict(_rows(rng, 1))
    finally:
        await backend.aclose()


async def test_gateway_serves_an_http_variant_end_to_end(
    make_client: AppFactory,
    tokens: dict[Role, str],
    events: MemoryEvents,
    server_url: str,
    rng: np.random.Generator,
) -> None:
    spec = experiment(
        variants=[
            {"name": "control", "model": "python:gwmodels:control"},
            {"name": "remote", "model": f"{server_url}/v2/models/fraud/infer"},
        ],
        weights=[0.0, 1.0],
    )
    client = await make_client(spec)
    row = _rows(rng, 1)[0].tolist()
    response = await client.post(
        "/v1/predict", json={"unit_id": "u1", "features": row}, headers=auth(tokens[Role.SERVICE])
    )
    body = response.json()
    assert body["variant"] == "remote"
    assert_allclose(body["prediction"], gwmodels.challenger().predict_proba([row])[0, 1])
    assert events.rows["prediction"][0]["model_version"] == body["model_version"]


async def test_a_challenger_whose_artifacts_changed_never_serves(
    make_client: AppFactory, tokens: dict[Role, str], events: MemoryEvents, tmp_path: Path
) -> None:
    import hashlib

    path = tmp_path / "challenger.joblib"
    joblib.dump(gwmodels.challenger(), path)
    recorded = hashlib.sha256(path.read_bytes()).hexdigest()
    joblib.dump(gwmodels.control(), path)  # replaced after its checksum was recorded
    reference = f"file:{path}"
    spec = experiment(
        variants=[
            {"name": "control", "model": "python:gwmodels:control"},
            {"name": "challenger", "model": reference},
        ],
        weights=[0.0, 1.0],
    )
    client = await make_client(spec, backends={reference: BackendOptions(checksum=recorded)})
    body = (
        await client.post(
            "/v1/predict",
            json={"unit_id": "u1", "features": [0.0] * 4},
            headers=auth(tokens[Role.SERVICE]),
        )
    ).json()
    assert body["variant"] == "challenger"
    assert body["is_fallback"] is True
    assert body["model_version"] == "gwmodels:control"
    assert events.rows["prediction"][0]["is_fallback"] is True


def test_checksums_are_verified_before_loading(tmp_path: Path) -> None:
    import hashlib

    from abflow.errors import ArtifactChecksumError

    path = tmp_path / "model.joblib"
    joblib.dump(gwmodels.control(), path)
    good = hashlib.sha256(path.read_bytes()).hexdigest()
    assert load_model(f"file:{path}", expected_checksum=good).checksum == good
    with pytest.raises(ArtifactChecksumError, match="refusing to serve"):
        load_model(f"file:{path}", expected_checksum="0" * 64)
