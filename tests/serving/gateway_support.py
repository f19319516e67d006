"""Helpers for gateway tests: an in-memory event sink, specs, and an in-memory client."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI

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


AppFactory = Callable[..., Awaitable[httpx.AsyncClient]]


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and talk to it in memory (httpx's ASGI transport)."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield client
