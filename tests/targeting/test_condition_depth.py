"""A condition nested beyond any real use is refused at validation: one a few hundred deep
was stored through ``POST /v1/experiments`` and could not be read back, so every listing of
experiments failed until the row was removed from the store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from abflow.errors import InvalidSpecError
from abflow.security.tokens import InMemoryTokenStore
from abflow.serving.app import create_app
from abflow.serving.catalog import InMemoryCatalog
from abflow.serving.settings import GatewaySettings
from abflow.spec import parse_experiment
from abflow.store import EventStore
from abflow.targeting.validation import MAX_CONDITION_DEPTH


def _nested(depth: int, operator: str) -> dict[str, Any]:
    """A condition of ``depth`` nested objects and lists (the innermost an attribute test)."""
    condition: dict[str, Any] = {"country": "NL"}
    level = 1
    step = 1 if operator == "$not" else 2  # $and: an object holding a list
    while level + step <= depth:
        condition = {"$not": condition} if operator == "$not" else {"$and": [condition]}
        level += step
    return condition


def _spec(condition: dict[str, Any]) -> dict[str, Any]:
    return {
        "key": "deep",
        "variants": [
            {"name": "a", "model": "python:abflow.serving.demo_models:champion"},
            {"name": "b", "model": "python:abflow.serving.demo_models:challenger"},
        ],
        "condition": condition,
    }


@pytest.mark.parametrize("operator", ["$not", "$and"])
def test_the_depth_bound_is_exact_and_holds_far_beyond_it(operator: str) -> None:
    parse_experiment(_spec(_nested(MAX_CONDITION_DEPTH, operator)))  # at the bound: fine
    for depth in (MAX_CONDITION_DEPTH + 2, 900):  # past it, and past Python's recursion limit
        with pytest.raises(InvalidSpecError, match=f"{MAX_CONDITION_DEPTH} deep at most"):
            parse_experiment(_spec(_nested(depth, operator)))


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_registering_a_deep_condition_is_a_422_and_the_store_stays_readable(
    tmp_path: Path, anyio_backend: str
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    settings = GatewaySettings(
        journal_dir=tmp_path / "journal", store_url=url, auth_enabled=False, refresh_seconds=0
    )
    app = create_app(settings, tokens=InMemoryTokenStore(), catalog=InMemoryCatalog())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            refused = [
                await client.post("/v1/experiments", json=_spec(_nested(depth, "$not")))
                for depth in (200, 300)
            ]
            listed = await client.get("/v1/experiments")
    assert [r.status_code for r in refused] == [422, 422]
    assert "condition" in refused[0].json()["problems"][0]
    assert listed.status_code == 200
    with EventStore.open(url) as store:
        assert store.list_experiments() == []
