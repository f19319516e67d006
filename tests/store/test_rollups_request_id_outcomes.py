"""Rollups count outcomes sent by request id alone exactly as the plain analysis does.

Such an outcome is stored with an empty ``unit_id`` and belongs to the unit of the non-shadow
prediction with its request id in the analysed experiment and phase. Events land in four
batches, folded after each one, and every fold is compared with :func:`unit_moments` over the
same rows. The batches hold: outcomes with unit ids and by request id alone, a shadow
prediction (whose unit must not be used), a request predicted in another experiment and one
in another phase, predictions that land after their outcome was folded (stamped before the
watermark, as when they wait in another gateway's spool), an outcome resolved before its
unit's first exposure (a pre-period value), a unit that becomes mixed, and a last batch with
nothing but a late prediction.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from abflow.store import rollups
from abflow.store.aggregates import GroupKey, Moments, OutcomeColumn, connect, unit_moments
from abflow.store.rollups import refresh_rollup, rollup_moments
from abflow.store.schema import UNRESOLVED_UNIT, exposures, metadata, outcomes, predictions

COLUMNS = [
    OutcomeColumn("buy_sum", "buy", "sum"),
    OutcomeColumn("buy_count", "buy", "count"),
    OutcomeColumn("buy_any", "buy", "any"),
    OutcomeColumn("buy_pre", "buy", "sum", period="pre"),
    OutcomeColumn("visits", "visit", "count"),
]
PAIRS = [("buy_sum", "buy_pre"), ("buy_sum", "visits"), ("buy_any", "buy_count")]
NAMES = [column.name for column in COLUMNS]

Batch = dict[str, list[dict[str, Any]]]


def exposure(event_id: str, unit: str, variant: str, ts: float, phase: int = 1) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "ts": ts,
        "experiment_key": "e",
        "phase": phase,
        "unit_id": unit,
        "variant": variant,
        "attributes_json": None,
    }


def prediction(
    event_id: str,
    request_id: str,
    unit: str,
    ts: float,
    *,
    experiment_key: str = "e",
    phase: int = 1,
    is_shadow: bool = False,
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "ts": ts,
        "request_id": request_id,
        "experiment_key": experiment_key,
        "phase": phase,
        "unit_id": unit,
        "variant": "control",
        "model_version": "1",
        "latency_ms": 1.0,
        "is_fallback": False,
        "is_shadow": is_shadow,
        "score": None,
        "output_json": None,
        "features_hash": None,
        "error": None,
    }


def by_request(event_id: str, request_id: str, value: float, ts: float) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "ts": ts,
        "unit_id": UNRESOLVED_UNIT,
        "name": "buy",
        "value": value,
        "request_id": request_id,
        "experiment_key": None,
    }


def by_unit(event_id: str, unit: str, value: float, ts: float, name: str = "buy") -> dict[str, Any]:
    return {
        "event_id": event_id,
        "ts": ts,
        "unit_id": unit,
        "name": name,
        "value": value,
        "request_id": None,
        "experiment_key": "e",
    }


BATCHES: list[Batch] = [
    {  # fold 1: only r1 can be resolved yet
        "exposures": [
            exposure("x1", "u1", "control", 100.0),
            exposure("x2", "u2", "treatment", 100.0),
            exposure("x3", "u3", "control", 100.0),
            exposure("x4", "u4", "treatment", 100.0),
            exposure("x7", "u7", "control", 100.0),
        ],
        "predictions": [
            prediction("p1", "r1", "u1", 95.0),
            prediction("p1s", "r1", "u0", 95.0, is_shadow=True),  # u0 < u1: min() would pick it
            prediction("p3", "r3", "u3", 95.0, experiment_key="other"),
            prediction("p5s", "r5", "u2", 95.0, is_shadow=True),  # r5 has a shadow call only
            prediction("p10", "r10", "u4", 95.0, phase=2),  # another phase of the experiment
        ],
        "outcomes": [
            by_request("o1", "r1", 2.0, 200.0),
            by_unit("o2", "u1", 1.0, 150.0),
            by_request("o3", "r2", 5.0, 50.0),  # u2's prediction lands in batch 2: pre period
            by_request("o4", "r3", 7.0, 200.0),
            by_request("o5", "r9", 11.0, 200.0),  # no prediction ever has r9
            by_request("o6", "r5", 4.0, 200.0),
            by_request("o7", "r4", 3.0, 220.0),  # u4's prediction lands in batch 2
            by_request("o10", "r10", 6.0, 220.0),
            by_request("o12", "r12", 0.5, 230.0),  # u7's, whose prediction lands in batch 3
            by_unit("o13", "u7", 1.0, 120.0, name="visit"),
        ],
    },
    {  # fold 2: late predictions (stamped before the watermark) and a new unit
        "exposures": [exposure("x5", "u5", "control", 300.0)],
        "predictions": [
            prediction("p2", "r2", "u2", 90.0),
            prediction("p4", "r4", "u4", 120.0),
            prediction("p6", "r6", "u5", 299.0),
            prediction("p7", "r7", "u6", 305.0),  # u6 is first exposed in batch 3
        ],
        "outcomes": [
            by_request("o8", "r6", 1.5, 310.0),
            by_request("o9", "r7", 2.5, 320.0),  # before u6's first exposure: pre period
            by_unit("o14", "u5", 1.0, 315.0, name="visit"),
        ],
    },
    {  # fold 3: u6 exposed, u7 becomes mixed, u3's outcome waits for its prediction
        "exposures": [
            exposure("x6", "u6", "treatment", 400.0),
            exposure("x7b", "u7", "treatment", 405.0),
        ],
        "predictions": [prediction("p12", "r12", "u7", 110.0)],
        "outcomes": [
            by_request("o11", "r8", 8.0, 330.0),
            by_request("o15", "r7", 0.0, 410.0),  # a zero: counted, but not a conversion
            by_request("o16", "r7", 4.0, 420.0),
        ],
    },
    {  # fold 4: nothing but a late prediction
        "predictions": [prediction("p8", "r8", "u3", 101.0)],
    },
]


def write(engine: sa.Engine, batch: Batch) -> None:
    metadata.create_all(engine, tables=[exposures, outcomes, predictions])
    with engine.begin() as connection:
        for table in (exposures, predictions, outcomes):
            rows = batch.get(str(table.name), [])
            if rows:
                connection.execute(table.insert(), rows)


def assert_same(
    folded: tuple[dict[GroupKey, Moments], int], direct: tuple[dict[GroupKey, Moments], int]
) -> None:
    (got, got_mixed), (want, want_mixed) = folded, direct
    assert got_mixed == want_mixed
    assert got.keys() == want.keys()
    for key, moments in want.items():
        other = got[key]
        assert (other.n, other.rows, other.first_ts, other.last_ts) == (
            moments.n,
            moments.rows,
            moments.first_ts,
            moments.last_ts,
        ), key
        assert {n: other.total(n) for n in NAMES} == {n: moments.total(n) for n in NAMES}, key
        for a in NAMES:
            assert other.product(a, a) == moments.product(a, a), (key, a)
        for a, b in PAIRS:
            assert other.product(a, b) == moments.product(a, b), (key, a, b)


def totals(moments: dict[GroupKey, Moments]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for (variant, _), m in moments.items():
        row = out.setdefault(variant, {"n": 0.0, "rows": 0.0})
        row["n"] += m.n
        row["rows"] += m.rows
        for name in NAMES:
            row[name] = row.get(name, 0.0) + m.total(name)
    return out


EXPECTED = [
    {  # u1: o2 + o1 (r1); u2, u3, u4, u7 nothing resolved yet (u7 has a visit)
        "control": {"n": 3, "rows": 6, "buy_sum": 3.0, "buy_count": 2, "buy_any": 1, "visits": 1},
        "treatment": {"n": 2, "rows": 2, "buy_sum": 0.0, "buy_count": 0, "buy_any": 0},
    },
    {  # + u2's pre-period 5.0 (r2), u4's 3.0 (r4), new u5 with 1.5 (r6) and a visit
        "control": {"n": 4, "rows": 9, "buy_sum": 4.5, "buy_count": 3, "buy_any": 2, "visits": 2},
        "treatment": {"n": 2, "rows": 4, "buy_sum": 3.0, "buy_count": 1, "buy_any": 1},
    },
    {  # + u6 (2.5 before exposure, 0.0 and 4.0 after); u7 mixed; r8 waits for its prediction
        "control": {"n": 3, "rows": 7, "buy_sum": 4.5, "buy_count": 3, "buy_any": 2, "visits": 1},
        "treatment": {"n": 3, "rows": 8, "buy_sum": 7.0, "buy_count": 3, "buy_any": 2},
    },
    {  # + u3's 8.0 (r8), whose prediction landed alone
        "control": {"n": 3, "rows": 8, "buy_sum": 12.5, "buy_count": 4, "buy_any": 3, "visits": 1},
        "treatment": {"n": 3, "rows": 8, "buy_sum": 7.0, "buy_count": 3, "buy_any": 2},
    },
]
PRE = [  # buy_pre per variant after each fold
    {"control": 0.0, "treatment": 0.0},
    {"control": 0.0, "treatment": 5.0},
    {"control": 0.0, "treatment": 7.5},
    {"control": 0.0, "treatment": 7.5},
]


def fold_every_batch(url: str) -> list[int]:
    """Land each batch, fold, compare with the plain path and the hand-worked figures."""
    engine = connect(url)
    mixed_seen = []
    try:
        for index, batch in enumerate(BATCHES):
            write(engine, batch)
            folded = rollup_moments(engine, "e", 1, COLUMNS, PAIRS)
            direct = unit_moments(engine, "e", 1, COLUMNS, PAIRS)
            assert_same(folded, direct)
            got = totals(folded[0])
            for variant, figures in EXPECTED[index].items():
                for name, value in figures.items():
                    assert got[variant].get(name, 0.0) == value, (index, variant, name)
                assert got[variant]["buy_pre"] == PRE[index][variant], (index, variant)
            mixed_seen.append(folded[1])
    finally:
        engine.dispose()
    return mixed_seen


def test_rollup_counts_outcomes_sent_by_request_id(store_url: str) -> None:
    assert fold_every_batch(store_url) == [0, 0, 1, 1]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_duckdb_rollup_counts_outcomes_sent_by_request_id(tmp_path: Any) -> None:
    pytest.importorskip("duckdb_engine")
    assert fold_every_batch(f"duckdb:///{tmp_path / 'r.duckdb'}") == [0, 0, 1, 1]


def test_a_rebuilt_rollup_counts_them_at_once(store_url: str) -> None:
    """Every batch landed before the first fold: one build resolves every request id."""
    engine = connect(store_url)
    try:
        for batch in BATCHES:
            write(engine, batch)
        folded = rollup_moments(engine, "e", 1, COLUMNS, PAIRS)
        assert_same(folded, unit_moments(engine, "e", 1, COLUMNS, PAIRS))
        assert refresh_rollup(engine, "e", 1, COLUMNS).startswith("rollup_")
        again = rollup_moments(engine, "e", 1, COLUMNS, PAIRS)  # a fold with no new event
    finally:
        engine.dispose()
    assert_same(again, folded)
    got = totals(folded[0])
    assert (got["control"]["buy_sum"], got["treatment"]["buy_sum"]) == (12.5, 7.0)
    assert (got["control"]["rows"], got["treatment"]["rows"]) == (8, 8)


def test_a_rollup_folded_before_request_tables_counts_them_on_its_next_fold(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rollup whose folds ignored these outcomes (no request table) catches up at once."""
    engine = connect(store_url)
    try:
        for batch in BATCHES:
            write(engine, batch)
        with monkeypatch.context() as patched:
            patched.setattr(rollups, "prepare_requests", lambda *args, **kwargs: None)
            blind = totals(rollup_moments(engine, "e", 1, COLUMNS, PAIRS)[0])
        folded = rollup_moments(engine, "e", 1, COLUMNS, PAIRS)  # no new event since
        assert_same(folded, unit_moments(engine, "e", 1, COLUMNS, PAIRS))
    finally:
        engine.dispose()
    assert (blind["control"]["buy_sum"], blind["treatment"]["buy_sum"]) == (1.0, 0.0)
    got = totals(folded[0])
    assert (got["control"]["buy_sum"], got["treatment"]["buy_sum"]) == (12.5, 7.0)
