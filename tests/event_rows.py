"""Synthetic exposure and purchase rows for the warehouse tests (ClickHouse, Kafka to ClickHouse).

Imported by those tests (pytest puts this folder on ``sys.path``).
"""

from __future__ import annotations

import numpy as np

START = 1_764_000_000.0

Row = dict[str, object]


def exposures_and_purchases(
    rng: np.random.Generator, *, units: int, purchases: int
) -> tuple[list[Row], list[Row]]:
    """``units`` exposures of experiment ``k`` (phase 1, variants a and b) and ``purchases``
    ``buy`` outcomes of random exposed units, each with a unique event id."""
    exposed: list[Row] = [
        {
            "event_id": f"x{u}",
            "ts": START + u,
            "experiment_key": "k",
            "phase": 1,
            "unit_id": f"u{u}",
            "variant": "b" if rng.random() < 0.5 else "a",
            "attributes_json": None,
        }
        for u in range(units)
    ]
    bought: list[Row] = [
        {
            "event_id": f"o{i}",
            "ts": START + 1000.0 + i,
            "unit_id": f"u{int(rng.integers(units))}",
            "name": "buy",
            "value": float(np.round(rng.gamma(2.0, 10.0), 2)),
            "request_id": None,
            "experiment_key": None,
        }
        for i in range(purchases)
    ]
    return exposed, bought
