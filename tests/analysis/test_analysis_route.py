"""``GET /v1/experiments/{key}/results`` on a real gateway app over its store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from analysis_support import SPEC, START, register, simulate, write

from abflow.analysis import AnalysisOptions, analyze
from abflow.security.roles import Role
from abflow.security.tokens import InMemoryTokenStore, create_token
from abflow.serving.app import create_app
from abflow.serving.settings import GatewaySettings, demo_config
from abflow.spec import parse_experiment


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _gateway(tmp_path: Path, units: int, seed: int) -> tuple[str, Any, str]:
    """A store of ``units`` simulated units, a gateway app over it and a viewer's token."""
    url = f"sqlite:///{tmp_path / 'events.db'}"
    write(url, simulate(np.random.default_rng(seed), units=units))
    phases = [{"phase": 1, "weights_json": "[0.5, 0.5]", "coverage": 1.0, "started_at": START}]
    register(url, parse_experiment(SPEC), phases)
    tokens = InMemoryTokenStore()
    viewer, _ = create_token(tokens, "viewer", Role.VIEWER)
    app = create_app(
        GatewaySettings(store_url=url, journal_dir=tmp_path / "journal"),
        config=demo_config(),
        tokens=tokens,
    )
    return url, app, viewer


@pytest.mark.anyio
async def test_results_route_serves_json_html_and_requires_a_token(tmp_path: Path) -> None:
    url, app, viewer = _gateway(tmp_path, units=300, seed=4)
    expected: Any = analyze(url, "checkout").to_dict()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            denied = await client.get("/v1/experiments/checkout/results")
            assert denied.status_code == 401
            auth = {"Authorization": f"Bearer {viewer}"}
            response = await client.get("/v1/experiments/checkout/results", headers=auth)
            assert response.status_code == 200, response.text
            data = response.json()
            assert data["schema_version"] == 1
            assert data["variants"] == expected["variants"]
            assert data["metrics"] == expected["metrics"]
            html = await client.get(
                "/v1/experiments/checkout/results", params={"format": "html"}, headers=auth
            )
            assert html.headers["content-type"].startswith("text/html")
            assert "<svg" in html.text
            missing = await client.get("/v1/experiments/nope/results", headers=auth)
            assert missing.status_code == 404


@pytest.mark.anyio
async def test_results_until_is_the_analysis_before_a_cutoff(tmp_path: Path) -> None:
    """``until`` as ``abflow analyze --until`` takes it (epoch seconds); a value that is no
    time in the years events carry is a 422 naming it."""
    url, app, viewer = _gateway(tmp_path, units=400, seed=5)
    full: Any = analyze(url, "checkout").to_dict()
    cut = (full["provenance"]["window_start"] + full["provenance"]["window_end"]) / 2
    expected: Any = analyze(url, "checkout", AnalysisOptions(until=cut)).to_dict()
    assert 0 < expected["provenance"]["rows"]["units"] < full["provenance"]["rows"]["units"]
    auth = {"Authorization": f"Bearer {viewer}"}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            path = "/v1/experiments/checkout/results"
            response = await client.get(path, params={"until": cut}, headers=auth)
            assert response.status_code == 200, response.text
            data = response.json()
            assert data["variants"] == expected["variants"]
            assert data["metrics"] == expected["metrics"]
            assert data["provenance"]["window_end"] == cut
            for bad in ("nan", "inf", "-1", "1e300", "yesterday"):
                refused = await client.get(path, params={"until": bad}, headers=auth)
                assert refused.status_code == 422, (bad, refused.text)
                assert "until" in refused.text
