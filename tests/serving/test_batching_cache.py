"""Micro-batching coalesces concurrent requests; the cache answers repeats within its TTL."""

from __future__ import annotations

import asyncio

import gwmodels
import numpy as np
import pytest
from gateway_support import AppFactory, auth, experiment
from numpy.testing import assert_allclose

from abflow.security.roles import Role
from abflow.serving.batching import MicroBatcher
from abflow.serving.cache import MISSING, PredictionCache, row_key

pytestmark = pytest.mark.anyio


async def test_concurrent_calls_are_coalesced_and_answers_split_back(
    rng: np.random.Generator,
) -> None:
    calls: list[int] = []

    def predict(rows: np.ndarray) -> list[float]:
        calls.append(rows.shape[0])
        return rows.sum(axis=1).tolist()

    batcher = MicroBatcher(predict, max_rows=16, max_wait_seconds=0.05)
    try:
        requests = [rng.normal(size=(int(rng.integers(1, 4)), 3)) for _ in range(40)]
        answers = await asyncio.gather(*(batcher.predict(r) for r in requests))
        for rows, answer in zip(requests, answers, strict=True):
            assert_allclose(answer, rows.sum(axis=1))
        assert sum(calls) == sum(r.shape[0] for r in requests)
        assert len(calls) < len(requests) / 2, calls
        assert max(calls) <= 16
    finally:
        await batcher.aclose()


async def test_one_bad_request_does_not_fail_its_batch_neighbours() -> None:
    def predict(rows: np.ndarray) -> list[float]:
        if np.isnan(rows).any():
            msg = "NaN in input"
            raise ValueError(msg)
        return rows[:, 0].tolist()

    batcher = MicroBatcher(predict, max_rows=64, execution="loop")
    try:
        good = np.ones((2, 2))
        bad = np.full((1, 2), np.nan)
        results = await asyncio.gather(
            batcher.predict(good),
            batcher.predict(bad),
            batcher.predict(good * 2),
            return_exceptions=True,
        )
        assert results[0] == [1.0, 1.0]
        assert isinstance(results[1], ValueError)
        assert results[2] == [2.0, 2.0]
    finally:
        await batcher.aclose()


async def test_gateway_batches_concurrent_requests_into_one_model_call(
    make_client: AppFactory, tokens: dict[Role, str], rng: np.random.Generator
) -> None:
    model = gwmodels.counting
    model.calls.clear()
    spec = experiment(
        variants=[
            {"name": "control", "model": "python:gwmodels:counting"},
            {"name": "other", "model": "python:gwmodels:control"},
        ],
        weights=[1.0, 0.0],
    )
    client = await make_client(spec, batch_max_rows=64, batch_max_wait_ms=20, cache_enabled=False)
    rows = rng.normal(size=(30, gwmodels.N_FEATURES)).tolist()
    responses = await asyncio.gather(
        *(
            client.post(
                "/v1/predict",
                json={"unit_id": f"u{i}", "features": row},
                headers=auth(tokens[Role.SERVICE]),
            )
            for i, row in enumerate(rows)
        )
    )
    for row, response in zip(rows, responses, strict=True):
        assert response.status_code == 200
        assert response.json()["prediction"] == pytest.approx(sum(row))
    assert sum(model.calls) == 30
    assert len(model.calls) < 30, model.calls
    metrics = await client.get("/metrics", headers=auth(tokens[Role.VIEWER]))
    assert (
        f'abflow_batch_rows_count{{model="python:gwmodels:counting"}} {len(model.calls)}.0'
        in metrics.text
    )


@pytest.mark.parametrize(("delay", "inline"), [(0.0, True), (0.005, False)])
async def test_auto_execution_moves_only_fast_models_onto_the_loop(
    delay: float, inline: bool
) -> None:
    import threading
    import time

    threads: list[str] = []

    def predict(rows: np.ndarray) -> list[float]:
        threads.append(threading.current_thread().name)
        if delay:
            time.sleep(delay)
        return [0.0] * rows.shape[0]

    batcher = MicroBatcher(predict, execution="auto", inline_below_seconds=0.002, name="m")
    try:
        for _ in range(40):
            await batcher.predict(np.zeros((1, 2)))
    finally:
        await batcher.aclose()
    main = threading.current_thread().name
    assert all(name != main for name in threads[:32]), "it learns on the model's thread"
    assert all((name == main) is inline for name in threads[32:])


def test_cache_expires_evicts_and_separates_versions() -> None:
    now = [0.0]
    cache = PredictionCache(max_entries=3, ttl_seconds=10, clock=lambda: now[0])
    row = np.array([1.0, 2.0])
    assert row_key("v1", row) != row_key("v2", row)
    assert row_key("v1", row) == row_key("v1", np.array([1, 2]))
    cache.put(row_key("v1", row), 0.25)
    assert cache.get(row_key("v1", row)) == 0.25
    assert cache.get(row_key("v2", row)) is MISSING
    now[0] = 10.0
    assert cache.get(row_key("v1", row)) is MISSING  # expired
    keys = [row_key("v1", np.array([float(i)])) for i in range(4)]
    for i, key in enumerate(keys):
        cache.put(key, i)
    assert len(cache) == 3
    assert cache.get(keys[0]) is MISSING  # least recently used went first
    assert cache.get(keys[3]) == 3
    assert (cache.hits, cache.misses) == (2, 3)


async def test_gateway_cache_answers_repeats_without_calling_the_model(
    make_client: AppFactory, tokens: dict[Role, str]
) -> None:
    model = gwmodels.counting
    model.calls.clear()
    spec = experiment(
        variants=[
            {"name": "control", "model": "python:gwmodels:counting"},
            {"name": "other", "model": "python:gwmodels:control"},
        ],
        weights=[1.0, 0.0],
    )
    client = await make_client(spec, cache_ttl_seconds=60)
    row = [1.0, 2.0, 3.0, 4.0]
    for i in range(5):
        response = await client.post(
            "/v1/predict",
            json={"unit_id": f"u{i}", "features": [row, [0.0, 0.0, 0.0, 1.0]]},
            headers=auth(tokens[Role.SERVICE]),
        )
        assert response.json()["prediction"] == [10.0, 1.0]
    assert model.calls == [2]
