"""ClickHouse as an analysis store, on embedded chDB: tables, URLs, and redelivered events."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
import sqlalchemy as sa
from numpy.testing import assert_allclose
from typer.testing import CliRunner

from abflow.errors import StoreError
from abflow.spec import parse_experiment, spec_hash
from abflow.store.aggregates import OutcomeColumn, connect, unit_moments
from abflow.store.clickhouse import clickhouse_engine, create_tables, is_clickhouse_url
from abflow.store.clickhouse_writer import ClickHouseWriter
from abflow.store.schema import experiment_versions, exposures, outcomes, phases
from event_rows import START, Row, exposures_and_purchases

pytest.importorskip("chdb")


def _rows(rng: np.random.Generator) -> tuple[list[Row], list[Row]]:
    return exposures_and_purchases(rng, units=200, purchases=500)


def test_redelivered_events_count_once(tmp_path: Path, rng: np.random.Generator) -> None:
    # A loader that crashed after the insert and before its offset commit inserts the batch
    # again: the moments must be those of the events, each once (pandas on the rows).
    exposed, done = _rows(rng)
    url = f"chdb:///{tmp_path / 'store.chdb'}"
    engine = connect(url)
    create_tables(engine, [exposures, outcomes])
    with engine.begin() as connection:
        for _ in range(2):
            connection.execute(exposures.insert(), exposed)
            connection.execute(outcomes.insert(), done)
        stored = connection.execute(sa.text("SELECT count() FROM outcomes")).scalar()
    assert stored == len(done)
    moments, _ = unit_moments(url, "k", 1, [OutcomeColumn("revenue", "buy")])
    units = pd.DataFrame(exposed)[["unit_id", "variant"]]
    per_unit = pd.DataFrame(done).groupby("unit_id")["value"].sum()
    units["revenue"] = units.unit_id.map(per_unit).fillna(0.0)
    for variant, group in units.groupby("variant"):
        n = sum(m.n for (v, _), m in moments.items() if v == variant)
        total = sum(m.total("revenue") for (v, _), m in moments.items() if v == variant)
        squares = sum(
            m.product("revenue", "revenue") for (v, _), m in moments.items() if v == variant
        )
        assert n == len(group)
        assert_allclose(
            [total, squares], [group.revenue.sum(), (group.revenue**2).sum()], rtol=1e-9
        )
    engine.dispose()


def test_timestamps_are_64_bit(tmp_path: Path) -> None:
    # ClickHouse's FLOAT is Float32, which rounds today's epoch to minutes.
    engine = connect(f"chdb:///{tmp_path / 'store.chdb'}")
    create_tables(engine, [exposures])
    with engine.connect() as connection:
        types = dict(
            connection.execute(
                sa.text("SELECT name, type FROM system.columns WHERE table = 'exposures'")
            ).all()
        )
    assert types["ts"] == "Float64"
    assert types["attributes_json"] == "Nullable(String)"
    assert types["event_id"] == "String"
    engine.dispose()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("chdb:///data/abflow", True),
        ("clickhouse+chdb:///data/abflow", True),
        ("clickhouse://analyst@ch.internal:8123/abflow", True),
        ("clickhouses://analyst@ch.internal:8443/abflow", True),
        ("duckdb:///x.duckdb", False),
        ("sqlite:///x.db", False),
    ],
)
def test_clickhouse_urls(url: str, expected: bool) -> None:
    assert is_clickhouse_url(url) is expected


def test_a_chdb_url_without_a_folder_is_refused() -> None:
    with pytest.raises(StoreError, match="needs a folder"):
        clickhouse_engine("chdb://")


def test_a_server_url_compiles_with_the_clickhouse_dialect() -> None:
    # No server here: creating the engine connects to nothing; the dialect is the one the
    # chDB tests execute with, so the SQL sent to a server is the SQL tested.
    engine = clickhouse_engine("clickhouse://analyst@ch.internal:8123/abflow")
    assert engine.dialect.name == "clickhousedb"
    assert engine.url.host == "ch.internal"
    assert engine.url.database == "abflow"


def test_the_writer_stores_each_event_id_once(tmp_path: Path, rng: np.random.Generator) -> None:
    # The loader's contract (events.ingest.RowWriter): new rows counted exactly, a redelivered
    # batch stores nothing, a batch that repeats an id stores it once.
    exposed, done = _rows(rng)
    writer = ClickHouseWriter(f"chdb:///{tmp_path / 'store.chdb'}")
    assert writer.write_events("exposure", exposed[:150]) == 150
    assert writer.write_events("exposure", exposed) == 50
    assert writer.write_events("exposure", exposed) == 0
    assert writer.write_events("outcome", [*done, *done[:10]]) == len(done)
    with writer.engine.connect() as connection:
        counts = connection.execute(
            sa.text("SELECT (SELECT count() FROM exposures), (SELECT count() FROM outcomes)")
        ).one()
    assert tuple(counts) == (len(exposed), len(done))
    moments, _ = unit_moments(writer.engine, "k", 1, [OutcomeColumn("revenue", "buy")])
    assert sum(m.n for m in moments.values()) == len(exposed)
    assert_allclose(
        sum(m.total("revenue") for m in moments.values()),
        sum(
            float(str(r["value"])) for r in done if r["unit_id"] in {e["unit_id"] for e in exposed}
        ),
        rtol=1e-9,
    )
    writer.engine.dispose()


def test_the_writer_refuses_what_the_store_refuses(tmp_path: Path) -> None:
    writer = ClickHouseWriter(f"chdb:///{tmp_path / 'store.chdb'}")
    row = {"event_id": "x", "ts": START, "experiment_key": "k", "phase": 1, "unit_id": "u"}
    with pytest.raises(StoreError, match="variant"):
        writer.write_events("exposure", [row])
    with pytest.raises(StoreError, match="unknown event kind"):
        writer.write_events("click", [row])
    writer.engine.dispose()


def test_abflow_analyze_reads_a_chdb_store(
    tmp_path: Path, rng: np.random.Generator, capsys: pytest.CaptureFixture[str]
) -> None:
    # Events written by the loader's writer, the spec registered as the store does: the
    # command's per-variant units and revenue sums are those pandas computes from the rows.
    exposed, done = _rows(rng)
    url = f"chdb:///{tmp_path / 'store.chdb'}"
    writer = ClickHouseWriter(url)
    writer.write_events("exposure", exposed)
    writer.write_events("outcome", done)
    spec = parse_experiment(
        {
            "key": "k",
            "variants": [
                {"name": "a", "model": "models:/m@1"},
                {"name": "b", "model": "models:/m@2"},
            ],
            "weights": [0.5, 0.5],
            "metrics": [{"name": "revenue", "kind": "sum", "event": "buy", "role": "primary"}],
        }
    )
    create_tables(writer.engine, [experiment_versions, phases])
    with writer.engine.begin() as connection:
        connection.execute(
            experiment_versions.insert(),
            [
                {
                    "experiment_key": "k",
                    "version": 1,
                    "spec_json": orjson.dumps(spec.model_dump(mode="json")).decode(),
                    "spec_hash": spec_hash(spec),
                    "created_at": START - 1,
                }
            ],
        )
        connection.execute(
            phases.insert(),
            [
                {
                    "experiment_key": "k",
                    "phase": 1,
                    "spec_version": 1,
                    "weights_json": "[0.5, 0.5]",
                    "coverage": 1.0,
                    "started_at": START,
                    "ended_at": None,
                    "reason": "",
                }
            ],
        )
    writer.engine.dispose()
    from abflow.cli.main import app, main

    result = CliRunner().invoke(app, ["analyze", "k", "--store", url, "--format", "json"])
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.stdout)
    units = pd.DataFrame(exposed)
    assert {v["variant"]: v["units"] for v in report["variants"]} == (
        units.groupby("variant").size().to_dict()
    )
    revenue = units.unit_id.map(pd.DataFrame(done).groupby("unit_id")["value"].sum()).fillna(0)
    means = revenue.groupby(units.variant).mean()
    values = {v["variant"]: v["value"] for v in report["metrics"][0]["values"]}
    assert_allclose([values["a"], values["b"]], [means["a"], means["b"]], rtol=1e-9)

    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", "nope", "--store", url])
    assert exit_info.value.code == 2  # an unknown key: a sentence and 2, not a traceback
    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", "k", "--store", url, "--rollups"])
    assert exit_info.value.code == 2
    said = " ".join(capsys.readouterr().err.split())
    assert "--rollups is not available on a ClickHouse store" in said
