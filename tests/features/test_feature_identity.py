"""Share of requests whose served and shadow models saw identical features, on a real store.

Predictions are written through the store's own writer; the reference pairs them with
pandas. ``analyze`` must report the same counts in its shadow section and warn exactly
when the share is below 100 %.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from abflow.analysis import analyze
from abflow.events.sink import prediction_row
from abflow.features import feature_vector_hash
from abflow.spec import parse_experiment
from abflow.store.event_store import EventStore
from abflow.store.feature_identity import feature_identity

SPEC: dict[str, Any] = {
    "key": "fraud",
    "unit": "user_id",
    "variants": [
        {"name": "champion", "model": "models:/fraud@champion"},
        {"name": "challenger", "model": "models:/fraud@challenger"},
    ],
    "weights": [1.0, 0.0],
}


def _rows(rng: np.random.Generator, n: int, *, p_differ: float, p_missing: float) -> list[dict]:
    rows = []
    for r in range(n):
        vector = [float(rng.normal()), int(rng.integers(0, 9))]
        served = feature_vector_hash(["amount", "visits"], vector)
        draw = rng.random()
        if draw < p_differ:  # the challenger's pipeline rounded the amount
            shadow: str | None = feature_vector_hash(
                ["amount", "visits"], [round(vector[0], 1), vector[1]]
            )
        elif draw < p_differ + p_missing:
            shadow = None
        else:
            shadow = served
        for variant, is_shadow, digest in (
            ("champion", False, served),
            ("challenger", True, shadow),
        ):
            rows.append(
                prediction_row(
                    request_id=f"r{r}",
                    experiment_key="fraud",
                    phase=1,
                    unit_id=f"u{r % 50}",
                    variant=variant,
                    model_version=f"{variant}-1",
                    latency_ms=1.0,
                    outputs=[float(rng.random())],
                    features_hash=digest,
                    is_shadow=is_shadow,
                )
            )
    return rows


def _reference(rows: list[dict]) -> tuple[int, int, int]:
    frame = pd.DataFrame(rows)
    served = frame[~frame.is_shadow].set_index("request_id")
    shadow = frame[frame.is_shadow].set_index("request_id")
    pairs = served.join(shadow, lsuffix="_0", rsuffix="_1", how="inner")
    both = pairs.features_hash_0.notna() & pairs.features_hash_1.notna()
    same = both & (pairs.features_hash_0 == pairs.features_hash_1)
    return len(pairs), int(both.sum()), int(same.sum())


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = EventStore.open(url)
    store.register_experiment(parse_experiment(SPEC))
    store.close()
    return url


def _write(url: str, rows: list[dict]) -> None:
    store = EventStore.open(url)
    try:
        store.write_events("prediction", rows)
    finally:
        store.close()


def test_counts_match_pandas_and_analysis_warns_below_full_identity(
    store_url: str, rng: np.random.Generator
) -> None:
    rows = _rows(rng, 600, p_differ=0.05, p_missing=0.03)
    _write(store_url, rows)
    pairs, compared, identical = _reference(rows)
    assert 0 < identical < compared < pairs  # the simulation has all three kinds of pair
    found = feature_identity(store_url, "fraud", 1)
    assert set(found) == {"challenger"}
    counted = found["challenger"]
    assert (counted.pairs, counted.compared, counted.identical) == (pairs, compared, identical)
    assert counted.share == pytest.approx(identical / compared)

    result = analyze(store_url, "fraud")
    [shadow] = result.shadow
    assert (shadow.feature_pairs, shadow.identical_feature_pairs) == (compared, identical)
    warned = [w for w in result.warnings if "features differed" in w]
    assert warned == [
        f"shadow challenger: features differed between the served and the shadow model on "
        f"{compared - identical:,} of {compared:,} requests (identical on "
        f"{identical / compared:.2%}): a cache, a feature pipeline or the client gave them "
        "different inputs"
    ]


def test_identical_features_raise_no_warning(store_url: str, rng: np.random.Generator) -> None:
    rows = _rows(rng, 200, p_differ=0.0, p_missing=0.0)
    _write(store_url, rows)
    result = analyze(store_url, "fraud")
    [shadow] = result.shadow
    assert shadow.feature_pairs == shadow.identical_feature_pairs == 200
    assert not [w for w in result.warnings if "features differed" in w]
    assert feature_identity(store_url, "other", 1) == {}
