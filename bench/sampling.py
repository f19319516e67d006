"""CPU cost of the gateway's monitoring sampler, against a baseline without it, in one run.

    .venv/bin/python bench/sampling.py [--requests 1500] [--rounds 3]

Two measurements, CPU time of this process (``time.process_time``):

* the sampler alone: ``FeatureSampler.offer`` on a one-row request at sample rates 0, 0.01
  (the default) and 1, 200,000 calls each (20,000 at rate 1);
* the whole request: ``POST /v1/predict`` through ``create_app`` in process (httpx's ASGI
  transport, an in-memory event sink, the bundled demo models) with ``monitoring.sample_rate``
  0 (the baseline), 0.01 and 1, interleaved rounds, medians shown.

The share printed is the sampler's cost at the default rate over the baseline request's
cost; the end-to-end difference is printed too, but on a shared machine it is noise.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from abflow.events.sampling import FeatureSampler
from abflow.security.roles import Role
from abflow.security.tokens import InMemoryTokenStore, create_token
from abflow.serving.app import create_app
from abflow.serving.catalog import InMemoryCatalog
from abflow.serving.demo_models import N_FEATURES
from abflow.serving.settings import GatewayConfig, GatewaySettings, demo_config
from abflow.spec import MonitoringSpec

RATES = (0.0, 0.01, 1.0)


class _Events:
    def __init__(self) -> None:
        self.samples = 0

    def start(self) -> None: ...

    def append(self, kind: str, row: dict[str, Any]) -> None:
        self.samples += kind == "sample"

    def close(self, timeout_seconds: float = 10.0) -> None: ...

    queue_depth = 0
    spool_bytes = 0


def sampler_microseconds(rate: float) -> float:
    sampler, config = FeatureSampler(seed=1), MonitoringSpec(sample_rate=rate)
    row = np.random.default_rng(0).normal(size=(1, N_FEATURES))
    n = 200_000 if rate < 1 else 20_000
    began = time.process_time()
    for _ in range(n):
        sampler.offer(
            config=config, experiment_key="e", phase=1, variant="v", model_version="1",
            request_id="r", rows=row, outputs=[0.3], ts=1000.0,
        )  # fmt: skip
    return (time.process_time() - began) / n * 1e6


async def request_microseconds(rate: float, n: int, rows: list[list[float]]) -> tuple[float, int]:
    spec = demo_config().experiments[0]
    monitored = spec.model_copy(update={"monitoring": MonitoringSpec(sample_rate=rate)})
    events, tokens = _Events(), InMemoryTokenStore()
    token, _ = create_token(tokens, "bench", Role.SERVICE)
    with tempfile.TemporaryDirectory() as journal:
        app = create_app(
            GatewaySettings(journal_dir=Path(journal), store_url=None),
            config=GatewayConfig(experiments=[monitored], default_experiment="demo"),
            events=events,
            tokens=tokens,
            catalog=InMemoryCatalog(),
        )
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            headers = {"authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(
                transport=transport, base_url="http://gateway", headers=headers
            ) as client:
                for i in range(200):  # warm-up
                    await client.post("/v1/predict", json={"unit_id": f"w{i}", "features": rows[0]})
                began = time.process_time()
                for i in range(n):
                    body = {"unit_id": f"u{i}", "features": rows[i % len(rows)]}
                    response = await client.post("/v1/predict", json=body)
                    response.raise_for_status()
                return (time.process_time() - began) / n * 1e6, events.samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    alone = {rate: sampler_microseconds(rate) for rate in RATES}
    rows = np.random.default_rng(1).normal(size=(500, N_FEATURES)).round(6).tolist()
    runs: dict[float, list[tuple[float, int]]] = {rate: [] for rate in RATES}
    for _ in range(args.rounds):
        for rate in RATES:
            runs[rate].append(asyncio.run(request_microseconds(rate, args.requests, rows)))
    print(f"{'sample_rate':>11} {'sampler us':>10} {'request us':>10} {'samples':>8}")
    for rate in RATES:
        request = statistics.median(us for us, _ in runs[rate])
        print(f"{rate:>11g} {alone[rate]:>10.2f} {request:>10.0f} {runs[rate][0][1]:>8}")
    baseline = statistics.median(us for us, _ in runs[0.0])
    print(f"sampler at the default rate: {alone[0.01] / baseline:.2%} of a request's CPU")


if __name__ == "__main__":
    main()
