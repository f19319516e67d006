"""A condition naming a saved group nobody defined would match nobody, silently: the gateway
refuses it, in its config file and through ``POST /v1/experiments``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from test_routing_saved_groups import _config_file

from abflow.errors import ConfigError
from abflow.security.tokens import InMemoryTokenStore
from abflow.serving.app import create_app
from abflow.serving.catalog import InMemoryCatalog
from abflow.serving.settings import GatewaySettings, load_config
from abflow.targeting.conditions import saved_group_ids
from memory_sink import MemorySink


def test_saved_group_ids_are_found_at_any_depth() -> None:
    condition = {
        "$or": [
            {"user_id": {"$inGroup": "beta"}},
            {"$and": [{"country": "NL"}, {"user_id": {"$not": {"$notInGroup": "staff"}}}]},
        ],
        "plan": {"$in": ["$inGroup"]},  # a value, not an operator
    }
    assert saved_group_ids(condition) == {"beta", "staff"}
    assert saved_group_ids(None) == set()


def test_a_config_naming_an_undefined_group_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="condition names saved group 'beta', which"):
        load_config(_config_file(tmp_path, '  staff: ["u1"]'))
    assert load_config(_config_file(tmp_path, '  beta: ["u1"]')).saved_groups == {"beta": ["u1"]}


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_registration_naming_an_undefined_group_is_a_422(
    tmp_path: Path, anyio_backend: str
) -> None:
    config = load_config(_config_file(tmp_path, '  beta: ["u1"]'))
    settings = GatewaySettings(
        journal_dir=tmp_path / "journal", store_url=None, auth_enabled=False, refresh_seconds=0
    )
    app = create_app(
        settings,
        config=config,
        events=MemorySink(),
        tokens=InMemoryTokenStore(),
        catalog=InMemoryCatalog(),
    )
    spec: dict[str, Any] = {
        "key": "grouped",
        "variants": [
            {"name": "a", "model": "models:/m/1"},
            {"name": "b", "model": "models:/m/2"},
        ],
        "condition": {"user_id": {"$inGroup": "gamma"}},
    }
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            refused = await client.post("/v1/experiments", json=spec)
            listed = await client.get("/v1/experiments")
    assert refused.status_code == 422
    assert refused.json()["problems"] == [
        "condition: saved group 'gamma' is not defined in the gateway config's saved_groups "
        "(it would match nobody)"
    ]
    assert [e["key"] for e in listed.json()["experiments"]] == ["beta-model"]
