"""Shadow share: the spec's ``shadow`` section picks the mirrored variants and samples requests.

The sample is checked against a reference written here from the documented contract
(GrowthBook's v2 bucket hash of the request or unit id under ``"__shadow__" + seed``) and
against a binomial test on the fraction mirrored.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from gateway_support import AppFactory, MemoryEvents, auth, experiment
from scipy import stats as sps

from abflow.security.roles import Role

pytestmark = pytest.mark.anyio

ROW = [0.3, -0.2, 1.1, 0.4]
VARIANTS = [
    {"name": "control", "model": "python:gwmodels:control"},
    {"name": "candidate", "model": "python:gwmodels:challenger"},
]


def fnv1a32(text: str) -> int:
    """FNV-1a over UTF-16 code units (ASCII ids here: one unit per character)."""
    h = 0x811C9DC5
    for char in text:
        h = ((h ^ ord(char)) * 0x01000193) % 2**32
    return h


def reference_sampled(seed: str, value: str, share: float) -> bool:
    inner = fnv1a32("__shadow__" + seed + value)
    return (fnv1a32(str(inner)) % 10000) / 10000 < share


async def _send(client: Any, token: str, requests: list[tuple[str, str]]) -> None:
    for request_id, unit in requests:
        response = await client.post(
            "/v1/predict",
            json={"unit_id": unit, "request_id": request_id, "features": ROW},
            headers=auth(token),
        )
        assert response.status_code == 200, response.text


async def _shadow_rows(events: MemoryEvents, expected: int) -> list[dict[str, Any]]:
    for _ in range(600):
        rows = [p for p in events.rows["prediction"] if p["is_shadow"]]
        if len(rows) >= expected:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # a copy beyond the expected ones would have landed by now
    return [p for p in events.rows["prediction"] if p["is_shadow"]]


async def test_share_samples_requests_by_request_id(
    make_client: AppFactory, tokens: dict[Role, str], events: MemoryEvents
) -> None:
    share = 0.25
    spec = experiment(
        variants=VARIANTS,
        weights=[1.0, 0.0],
        shadow={"variants": ["candidate"], "share": share},
    )
    client = await make_client(spec, cache_enabled=False)
    requests = [(f"req-{i}", f"u{i % 40}") for i in range(200)]
    await _send(client, tokens[Role.SERVICE], requests)
    expected = {r for r, _ in requests if reference_sampled("exp", r, share)}
    shadow = await _shadow_rows(events, len(expected))
    assert {p["request_id"] for p in shadow} == expected
    assert {p["variant"] for p in shadow} == {"candidate"}
    served = [p for p in events.rows["prediction"] if not p["is_shadow"]]
    assert len(served) == 200
    assert {p["variant"] for p in served} == {"control"}  # a mirrored variant serves no one
    assert sps.binomtest(len(expected), 200, share).pvalue > 1e-3


async def test_share_by_unit_mirrors_all_or_none_of_a_units_requests(
    make_client: AppFactory, tokens: dict[Role, str], events: MemoryEvents
) -> None:
    share = 0.3
    spec = experiment(variants=VARIANTS, weights=[1.0, 0.0], shadow={"share": share, "by": "unit"})
    # mirrored by the gateway config; the spec only sets the share
    client = await make_client(spec, shadow={"exp": ["candidate"]}, cache_enabled=False)
    requests = [(f"req-{i}", f"u{i % 100}") for i in range(300)]
    await _send(client, tokens[Role.SERVICE], requests)
    units = {f"u{i}" for i in range(100)}
    expected_units = {u for u in units if reference_sampled("exp", u, share)}
    expected = {r for r, u in requests if u in expected_units}
    shadow = await _shadow_rows(events, len(expected))
    assert {p["request_id"] for p in shadow} == expected
    assert {p["unit_id"] for p in shadow} == expected_units
    assert sps.binomtest(len(expected_units), 100, share).pvalue > 1e-3


async def test_spec_without_share_mirrors_every_request(
    make_client: AppFactory, tokens: dict[Role, str], events: MemoryEvents
) -> None:
    spec = experiment(variants=VARIANTS, weights=[1.0, 0.0], shadow={"variants": ["candidate"]})
    client = await make_client(spec, cache_enabled=False)
    requests = [(f"req-{i}", f"u{i}") for i in range(30)]
    await _send(client, tokens[Role.SERVICE], requests)
    shadow = await _shadow_rows(events, 30)
    assert sorted(p["request_id"] for p in shadow) == sorted(r for r, _ in requests)
