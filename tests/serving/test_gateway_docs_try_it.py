"""docs/gateway.md's "Try it" block is what the demo gateway answers: the request is sent as
written and every field the doc shows is compared with the real response ("…" elides)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from gateway_support import AppFactory

from abflow.security.roles import Role
from abflow.serving.settings import demo_config

DOC = Path(__file__).resolve().parents[2] / "docs" / "gateway.md"


def _try_it() -> tuple[dict[str, Any], str]:
    text = DOC.read_text(encoding="utf-8")
    block = text[text.index("Try it") :].split("```sh\n", 1)[1].split("```", 1)[0]
    body = re.search(r"-d '(\{.*?\})'", block, flags=re.DOTALL)
    assert body is not None, block
    answer = block[block.index("\n{") + 1 :]
    return orjson.loads(body.group(1)), answer


def _matches(documented: str, actual: Any) -> bool:
    text = documented[1:-1] if documented.startswith('"') else documented
    if text.endswith("…"):
        return str(actual).startswith(text.removesuffix("…"))
    return orjson.loads(documented) == actual


@pytest.mark.anyio
async def test_try_it_shows_what_the_demo_gateway_answers(
    make_client: AppFactory, tokens: dict[Role, str]
) -> None:
    request, answer = _try_it()
    client = await make_client(*demo_config().experiments, default_experiment="demo")
    got = await client.post(
        "/v1/predict", json=request, headers={"Authorization": f"Bearer {tokens[Role.SERVICE]}"}
    )
    assert got.status_code == 200, got.text
    actual = got.json()
    shown = dict(re.findall(r'"(\w+)":("[^"]*"|[^,}\s]+)', answer))
    assert set(shown) == set(actual), "the doc lists other fields than the gateway returns"
    wrong = {k: (v, actual[k]) for k, v in shown.items() if not _matches(v, actual[k])}
    assert wrong == {}
