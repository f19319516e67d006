"""Helpers for gateway tests: an in-memory event sink, specs, and an in-memory client."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import numpy as np
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from abflow.spec import ExperimentSpec, parse_experiment


class MemoryEvents:
    """A real event sink in memory: keeps every appended row, per kind, in order."""

    def __init__(self) -> None:
        self.rows: dict[str, list[dict[str, Any]]] = {
            "exposure": [],
            "prediction": [],
            "outcome": [],
            "sample": [],
        }
        self._lock = threading.Lock()
        self.started = False
        self.closed = False

    def start(self) -> None:
        self.started = True

    def append(self, kind: str, row: dict[str, Any]) -> None:
        if self.closed:
            msg = "closed"
            raise RuntimeError(msg)
        with self._lock:
            self.rows[kind].append(dict(row))

    def close(self, timeout_seconds: float = 10.0) -> None:
        self.closed = True

    @property
    def queue_depth(self) -> int:
        return 0

    @property
    def spool_bytes(self) -> int:
        return 0


def auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def experiment(**overrides: Any) -> ExperimentSpec:
    """A two-variant experiment on the test models (python:gwmodels:...)."""
    data: dict[str, Any] = {
        "key": "exp",
        "unit": "user_id",
        "variants": [
            {"name": "control", "model": "python:gwmodels:control"},
            {"name": "treatment", "model": "python:gwmodels:challenger"},
        ],
        "weights": [0.5, 0.5],
    }
    data.update(overrides)
    return parse_experiment(data)


def remote_experiment(url: str) -> ExperimentSpec:
    """An experiment that sends every unit to the model server at ``url`` (the in-process
    control model answers only as the fallback)."""
    return experiment(
        variants=[
            {"name": "control", "model": "python:gwmodels:control"},
            {"name": "remote", "model": url},
        ],
        weights=[0.0, 1.0],
    )


async def predict_each(
    client: httpx.AsyncClient, token: str, rows: np.ndarray
) -> list[dict[str, Any]]:
    """POST one predict request per row, one after the other (unit ``u<i>``); all must be 200."""
    bodies = []
    for i, row in enumerate(rows):
        response = await client.post(
            "/v1/predict",
            json={"unit_id": f"u{i}", "features": row.tolist()},
            headers=auth(token),
        )
        assert response.status_code == 200, response.text
        bodies.append(response.json())
    return bodies


async def logged_predictions(
    events: MemoryEvents, n: int, timeout_seconds: float = 60.0
) -> list[dict[str, Any]]:
    """The prediction rows once the ``n`` expected are logged (shadow copies are logged
    after the answer, off the request's path); exactly ``n``."""
    deadline = time.monotonic() + timeout_seconds
    while len(events.rows["prediction"]) < n and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    rows = events.rows["prediction"]
    assert len(rows) == n
    return rows


def metric_samples(text: str, name: str) -> list[Sample]:
    """The samples named ``name`` in a ``/metrics`` exposition."""
    return [
        sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


AppFactory = Callable[..., Awaitable[httpx.AsyncClient]]


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and talk to it in memory (httpx's ASGI transport)."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield client
