"""Kafka → loader → ClickHouse (chDB): the loader's guarantees hold with the warehouse writer."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import orjson
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from abflow.cli.main import main
from abflow.events.kafka import KafkaEventWriter, KafkaTarget
from abflow.store.aggregates import OutcomeColumn, unit_moments
from abflow.store.clickhouse_writer import ClickHouseWriter
from event_rows import exposures_and_purchases
from kafka_broker import TansuBroker

pytest.importorskip("chdb")

GROUP_OPTIONS = {"session.timeout.ms": "3000", "heartbeat.interval.ms": "300"}


def test_redelivered_topics_load_once_and_analyse_as_pandas(
    kafka_broker: TansuBroker,
    topic_prefix: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rng = np.random.default_rng(11)
    exposed, bought = exposures_and_purchases(rng, units=300, purchases=600)
    target = KafkaTarget(kafka_broker.bootstrap, topic_prefix, GROUP_OPTIONS)
    producer = KafkaEventWriter(target, partitions=2)
    try:
        for _ in range(2):  # a batch sent again after a lost acknowledgement
            producer.write_events("exposure", exposed)
            producer.write_events("outcome", bought)
    finally:
        producer.close()

    # `abflow ingest --store chdb:///…`, as a user runs it, loads the warehouse.
    store = f"chdb:///{tmp_path / 'store.chdb'}"
    source = f"kafka://{kafka_broker.bootstrap}/{topic_prefix}?" + urlencode(GROUP_OPTIONS)
    argv = ["ingest", "--from", source, "--store", store, "--group", "ch", "--once", "--json"]
    argv += ["--kind", "exposure", "--kind", "outcome", "--max-seconds", "120", "--quiet"]
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code in (0, None)
    totals = orjson.loads(capsys.readouterr().out)
    writer = ClickHouseWriter(store, create=False)
    try:
        moments, _ = unit_moments(writer.engine, "k", 1, [OutcomeColumn("revenue", "buy")])
    finally:
        writer.close()
    events = len(exposed) + len(bought)
    assert (totals["consumed"], totals["stored"], totals["repeated"]) == (
        2 * events,
        events,
        events,
    )

    units = pd.DataFrame(exposed)
    units["revenue"] = units.unit_id.map(pd.DataFrame(bought).groupby("unit_id")["value"].sum())
    units["revenue"] = units["revenue"].fillna(0.0)
    for variant, group in units.groupby("variant"):
        mine = [m for (v, _), m in moments.items() if v == variant]
        assert sum(m.n for m in mine) == len(group)
        assert_allclose(
            [
                sum(m.total("revenue") for m in mine),
                sum(m.product("revenue", "revenue") for m in mine),
            ],
            [group.revenue.sum(), (group.revenue**2).sum()],
            rtol=1e-9,
        )
