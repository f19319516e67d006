"""FeastFeatures against the real example repo, read through its online store (the session's
``feast_repo`` fixture applies and materialises examples/feast; tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from abflow.errors import ConfigError, FeatureError, InvalidArgumentError
from abflow.features import FeastFeatures, FeatureSource, feature_vector_hash

pytest.importorskip("feast")

REFS = ["user_stats:txn_count_7d", "user_stats:avg_amount_7d", "user_stats:country"]


@pytest.fixture(scope="module")
def source(feast_repo: tuple[Path, pd.DataFrame]) -> FeastFeatures:
    return FeastFeatures(feast_repo[0], REFS, entity_key="user_id")


def _latest(frame: pd.DataFrame, user_id: int) -> dict[str, Any]:
    rows = frame[frame["user_id"] == user_id].sort_values("event_timestamp")
    return rows.iloc[-1].to_dict()


def test_online_values_are_the_latest_snapshot(
    source: FeastFeatures, feast_repo: tuple[Path, pd.DataFrame]
) -> None:
    _, frame = feast_repo
    assert isinstance(source, FeatureSource)
    assert source.names == ("txn_count_7d", "avg_amount_7d", "country")
    for user_id in (1, 17, 50):
        expected = _latest(frame, user_id)
        vector = source.get({"user_id": user_id, "other": "ignored"})
        assert vector.values == (
            int(expected["txn_count_7d"]),
            float(expected["avg_amount_7d"]),
            str(expected["country"]),
        )
        assert vector.hash == feature_vector_hash(source.names, list(vector.values))
        assert vector.defaulted == ()


def test_get_many_reads_many_entities_at_once(
    source: FeastFeatures, feast_repo: tuple[Path, pd.DataFrame]
) -> None:
    _, frame = feast_repo
    users = [3, 4, 3]
    vectors = source.get_many([{"user_id": u} for u in users])
    assert [v.values[0] for v in vectors] == [int(_latest(frame, u)["txn_count_7d"]) for u in users]
    assert vectors[0].hash == vectors[2].hash
    assert source.get_many([]) == []


def test_unknown_entity_is_an_error_naming_feature_and_entity(source: FeastFeatures) -> None:
    with pytest.raises(
        FeatureError, match=r"feature 'txn_count_7d' has no value in Feast for user_id=9999"
    ):
        source.get({"user_id": 9999})
    with pytest.raises(FeatureError, match="has no 'user_id'"):
        source.get({"account": 1})


def test_declared_defaults_fill_unknown_entities(feast_repo: tuple[Path, pd.DataFrame]) -> None:
    with_defaults = FeastFeatures(
        feast_repo[0],
        REFS,
        entity_key="user_id",
        request_key="uid",
        defaults={"txn_count_7d": 0, "avg_amount_7d": 0.0, "country": "unknown"},
    )
    vector = with_defaults.get({"uid": 9999})
    assert vector.values == (0, 0.0, "unknown")
    assert vector.defaulted == with_defaults.names


def test_configuration_mistakes(tmp_path: Path, feast_repo: tuple[Path, pd.DataFrame]) -> None:
    with pytest.raises(ConfigError, match=r"no feature_store\.yaml"):
        FeastFeatures(tmp_path, REFS, entity_key="user_id")
    with pytest.raises(InvalidArgumentError, match="'view:feature'"):
        FeastFeatures(feast_repo[0], ["txn_count_7d"], entity_key="user_id")
    with pytest.raises(InvalidArgumentError, match="undeclared features"):
        FeastFeatures(feast_repo[0], REFS, entity_key="user_id", defaults={"nope": 1})
    missing_view = FeastFeatures(feast_repo[0], ["nope:x"], entity_key="user_id")
    with pytest.raises(FeatureError, match="cannot read features from the Feast repo"):
        missing_view.get({"user_id": 1})


def test_feast_source_from_config_resolves_the_repo_against_base_dir(
    feast_repo: tuple[Path, pd.DataFrame],
) -> None:
    from abflow.features import feature_source_from_config

    repo, frame = feast_repo
    built = feature_source_from_config(
        {"feast": {"repo": repo.name, "features": REFS[:1], "entity_key": "user_id"}},
        base_dir=repo.parent,
    )
    assert isinstance(built, FeastFeatures)
    assert built.get({"user_id": 5}).values == (int(_latest(frame, 5)["txn_count_7d"]),)


def test_a_text_entity_key_is_read_as_the_integer_join_key(
    source: FeastFeatures, feast_repo: tuple[Path, pd.DataFrame]
) -> None:
    """A unit id arrives as text; the example's join key is INT64."""
    _, frame = feast_repo
    assert source.get({"user_id": "17"}) == source.get({"user_id": 17})
    assert source.get({"user_id": "17"}).values[0] == int(_latest(frame, 17)["txn_count_7d"])
    with pytest.raises(FeatureError, match=r"user_id='abc' is not an integer") as caught:
        source.get({"user_id": "abc"})
    assert caught.value.__cause__ is None  # bad input, not a store failure
