"""Gateway fixtures: an in-memory event sink, tokens for every role, and an app builder."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from gateway_support import AppFactory, MemoryEvents, experiment, serve
from mlflow_server import ServedModel, mlflow_scoring_server

from abflow.security.roles import Role
from abflow.security.tokens import InMemoryTokenStore, create_token
from abflow.serving.app import create_app
from abflow.serving.backends import BackendOptions
from abflow.serving.catalog import InMemoryCatalog
from abflow.serving.features import FeatureSourceEntry
from abflow.serving.settings import GatewayConfig, GatewaySettings
from abflow.spec import ExperimentSpec


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedModel]:
    """MLflow's real scoring server on a DataFrame-signature model (mlflow_server.py): one
    per session, since it takes 15-30 s to start and every test only reads from it."""
    with mlflow_scoring_server(tmp_path_factory.mktemp("mlflow")) as model:
        yield model


@pytest.fixture
def events() -> MemoryEvents:
    return MemoryEvents()


@pytest.fixture
def token_store() -> InMemoryTokenStore:
    return InMemoryTokenStore()


@pytest.fixture
def tokens(token_store: InMemoryTokenStore) -> dict[Role, str]:
    """A plaintext token for every role."""
    return {role: create_token(token_store, f"test-{role.value}", role)[0] for role in Role}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def make_client(
    events: MemoryEvents, token_store: InMemoryTokenStore, tmp_path: Any
) -> AsyncIterator[AppFactory]:
    """Build a gateway on the given experiments (with the ``shadow``, ``backends`` and
    ``features`` of its config) and start it; stopped after the test."""
    async with AsyncExitStack() as stack:

        async def build(
            *specs: ExperimentSpec,
            shadow: dict[str, list[str]] | None = None,
            backends: dict[str, BackendOptions] | None = None,
            features: dict[str, FeatureSourceEntry] | None = None,
            **settings: Any,
        ) -> httpx.AsyncClient:
            options = {"journal_dir": tmp_path / "journal", "store_url": None, **settings}
            config = GatewayConfig(
                experiments=list(specs or (experiment(),)),
                shadow=shadow or {},
                backends=backends or {},
                features=features or {},
            )
            app = create_app(
                GatewaySettings(**options),
                config=config,
                events=events,
                tokens=token_store,
                catalog=InMemoryCatalog(),
            )
            return await stack.enter_async_context(serve(app))

        yield build
