"""A token store that refuses or never answers costs the gateway no request with a known token.

The store is an in-memory one that fails on demand (refuses at once, or hangs until the
test releases it), behind a real app: predictions, ``/metrics`` and ``/readyz`` keep
answering, unknown tokens get a clear 503, and ``/readyz`` says what is degraded.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from gateway_support import AppFactory, auth

from abflow.errors import StoreUnavailableError
from abflow.security.roles import Role
from abflow.security.tokens import InMemoryTokenStore, TokenRecord, create_token

pytestmark = pytest.mark.anyio

ROW = [0.1, 0.2, 0.3, 0.4]


class OutageStore(InMemoryTokenStore):
    """Fails like a real store on demand: ``refuse`` at once, or ``silent`` (never answers)."""

    def __init__(self) -> None:
        super().__init__()
        self.mode = "up"
        self.calls = 0
        self.release = threading.Event()

    def find_token_by_hash(self, token_hash: str) -> TokenRecord | None:
        self.calls += 1
        if self.mode == "refuse":
            msg = "cannot look up a token: the store is unavailable (connection refused)"
            raise StoreUnavailableError(msg)
        if self.mode == "silent":
            self.release.wait(timeout=60)  # bounded: the test releases it
        return super().find_token_by_hash(token_hash)


@pytest.fixture
def token_store() -> Iterator[OutageStore]:
    store = OutageStore()
    yield store
    store.release.set()


@pytest.mark.timeout(120)  # a loop blocked by a silent store would hang here, not fail
@pytest.mark.parametrize("mode", ["refuse", "silent"])
async def test_known_tokens_keep_serving_through_a_store_outage(
    make_client: AppFactory, token_store: OutageStore, tokens: dict[Role, str], mode: str
) -> None:
    client = await make_client(token_cache_seconds=0, token_lookup_timeout_seconds=0.2)
    service, viewer = auth(tokens[Role.SERVICE]), auth(tokens[Role.VIEWER])
    payload = {"unit_id": "u1", "features": ROW}
    assert (await client.post("/v1/predict", json=payload, headers=service)).status_code == 200
    assert (await client.get("/metrics", headers=viewer)).status_code == 200
    stranger, _ = create_token(token_store, "never-seen", Role.SERVICE)

    token_store.mode = mode
    statuses = [
        (await client.post("/v1/predict", json=payload, headers=service)).status_code
        for _ in range(200)
    ]
    metrics = await client.get("/metrics", headers=viewer)
    refused = await client.post("/v1/predict", json=payload, headers=auth(stranger))
    ready = await client.get("/readyz")

    assert statuses.count(200) == 200
    assert metrics.status_code == 200
    assert refused.status_code == 503
    assert refused.json()["error"] == "store_unavailable"
    assert "tokens verified before still work" in refused.json()["detail"]
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    [problem] = ready.json()["degraded"]
    assert problem.startswith("store unreachable since ")
    # 2 verifications before the outage, then at most one probe a second (this loop is fast).
    assert token_store.calls <= 2 + 3

    token_store.mode = "up"
    token_store.release.set()
    for _ in range(300):  # bounded: probes go out once a second, on look-up threads
        await client.post("/v1/predict", json=payload, headers=service)
        if not (await client.get("/readyz")).json()["degraded"]:
            break
        await asyncio.sleep(0.02)
    assert (await client.get("/readyz")).json()["degraded"] == []
    assert (
        await client.post("/v1/predict", json=payload, headers=auth(stranger))
    ).status_code == 200
