"""Saved groups: ``$inGroup`` / ``$notInGroup`` conditions see the groups they name.

Groups reach routing per call (``assign``/``assign_batch``), compiled into an experiment,
or, in the gateway, from the config file's ``saved_groups:`` section.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from abflow.errors import ConfigError
from abflow.routing import assign, assign_batch, compile_experiment
from abflow.security.tokens import InMemoryTokenStore
from abflow.serving.app import create_app
from abflow.serving.catalog import InMemoryCatalog
from abflow.serving.demo_models import N_FEATURES
from abflow.serving.settings import GatewaySettings, load_config
from abflow.spec import ExperimentSpec, parse_experiment
from memory_sink import MemorySink

GROUPS = {"beta": [f"u{i}" for i in range(0, 100, 3)], "staff": ["u1", "u2"]}
UNITS = [f"u{i}" for i in range(100)]
MEMBERS = set(GROUPS["beta"])  # 34 of the 100 units


def _spec(condition: dict[str, Any]) -> ExperimentSpec:
    return parse_experiment(
        {
            "key": "grouped",
            "variants": [
                {"name": "a", "model": "models:/m/1"},
                {"name": "b", "model": "models:/m/2"},
            ],
            "condition": condition,
        }
    )


IN_BETA = _spec({"user_id": {"$inGroup": "beta"}})
NOT_STAFF = _spec({"user_id": {"$notInGroup": "staff"}})


def test_in_group_targets_exactly_the_members_on_every_path() -> None:
    rows = [{"user_id": unit} for unit in UNITS]
    single = [assign(IN_BETA, row, saved_groups=GROUPS) for row in rows]
    assert sum(a.in_experiment for a in single) == len(MEMBERS) == 34
    assert {unit for unit, a in zip(UNITS, single, strict=True) if a.in_experiment} == MEMBERS
    assert {a.reason for a in single if not a.in_experiment} == {"condition"}
    compiled = compile_experiment(IN_BETA, saved_groups=GROUPS)
    for batch in (
        assign_batch(IN_BETA, UNITS, rows, saved_groups=GROUPS),
        assign_batch(IN_BETA, np.array(UNITS), rows, saved_groups=GROUPS),
        assign_batch(compiled, UNITS, rows),
    ):
        assert batch.index.tolist() == [a.index for a in single]
    assert [compiled.assign(row).index for row in rows] == [a.index for a in single]


def test_not_in_group_excludes_the_members() -> None:
    rows = [{"user_id": unit} for unit in UNITS]
    batch = assign_batch(NOT_STAFF, UNITS, rows, saved_groups=GROUPS)
    assert int(batch.in_experiment.sum()) == 98
    assert batch.reason_names()[1:3].tolist() == ["condition", "condition"]


def test_without_groups_a_group_is_empty_and_per_call_groups_win() -> None:
    assert not assign(IN_BETA, {"user_id": "u0"}).in_experiment  # unknown group: nobody
    assert assign(NOT_STAFF, {"user_id": "u1"}).in_experiment  # ... and $notInGroup: everyone
    compiled = compile_experiment(IN_BETA, saved_groups={"beta": ["u1"]})
    assert compiled.assign({"user_id": "u1"}).in_experiment
    assert not compiled.assign({"user_id": "u1"}, {"beta": ["u0"]}).in_experiment
    assert compiled is not compile_experiment(IN_BETA)  # the cached, group-less one stays


def _config_file(tmp_path: Path, groups: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        f"""
experiments:
  - key: beta-model
    condition: {{user_id: {{$inGroup: beta}}}}
    variants:
      - {{name: control, model: "python:abflow.serving.demo_models:champion"}}
      - {{name: challenger, model: "python:abflow.serving.demo_models:challenger"}}
saved_groups:
{groups}
""",
        encoding="utf-8",
    )
    return path


def test_config_file_reads_saved_groups(tmp_path: Path) -> None:
    config = load_config(_config_file(tmp_path, '  beta: ["u0", "u3", 7, true]'))
    assert config.saved_groups == {"beta": ["u0", "u3", 7, True]}  # types kept: $inGroup is strict
    with pytest.raises(ConfigError, match=r"saved_groups\.beta"):
        load_config(_config_file(tmp_path, "  beta: {not: a list}"))


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_gateway_routes_with_the_config_groups(tmp_path: Path, anyio_backend: str) -> None:
    members = ", ".join(f'"{unit}"' for unit in sorted(MEMBERS))
    config = load_config(_config_file(tmp_path, f"  beta: [{members}]"))
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
    answers = {}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            for unit in UNITS:
                body = {"unit_id": unit, "features": [0.5] * N_FEATURES}
                response = await client.post("/v1/predict", json=body)
                assert response.status_code == 200, response.text
                answers[unit] = response.json()
    included = {unit for unit, answer in answers.items() if answer["in_experiment"]}
    assert included == MEMBERS
    assert {answers[u]["reason"] for u in UNITS if u not in MEMBERS} == {"condition"}


def test_batch_conditions_see_the_unit_id_as_assign_does() -> None:
    # Attributes without the unit (a CSV's other columns): the condition still reads the id.
    rows: list[dict[str, Any]] = [{} for _ in UNITS]
    batch = assign_batch(IN_BETA, UNITS, rows, saved_groups=GROUPS)
    assert int(batch.in_experiment.sum()) == 34
    single = [assign(IN_BETA, {"user_id": u}, saved_groups=GROUPS).index for u in UNITS]
    assert batch.index.tolist() == single
