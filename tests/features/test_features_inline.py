"""InlineFeatures: declared order, types and defaults; every failure names the feature."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from abflow.errors import FeatureError, InvalidArgumentError
from abflow.features import FeatureSource, FeatureSpec, InlineFeatures, feature_vector_hash


@pytest.fixture
def source() -> InlineFeatures:
    return InlineFeatures(
        [
            FeatureSpec("amount", "float"),
            FeatureSpec("visits", "int", default=0),
            ("country", "str", "unknown"),
            {"name": "is_new", "type": "bool", "default": False},
        ]
    )


def test_mapping_is_put_in_declared_order_and_coerced(source: InlineFeatures) -> None:
    assert isinstance(source, FeatureSource)
    vector = source.get({"is_new": True, "country": "DE", "visits": 3.0, "amount": 12})
    assert vector.names == ("amount", "visits", "country", "is_new")
    assert vector.values == (12.0, 3, "DE", True)
    assert type(vector.values[0]) is float
    assert type(vector.values[1]) is int
    assert vector.defaulted == ()
    assert vector.hash == feature_vector_hash(vector.names, [12.0, 3, "DE", True])


def test_missing_features_take_declared_defaults(source: InlineFeatures) -> None:
    vector = source.get({"amount": np.float32(2.5), "visits": None})
    assert vector.values == (2.5, 0, "unknown", False)
    assert vector.defaulted == ("visits", "country", "is_new")


def test_positional_values_follow_the_schema(source: InlineFeatures) -> None:
    assert source.get([1.5, 2, "FR", False]).as_dict() == {
        "amount": 1.5,
        "visits": 2,
        "country": "FR",
        "is_new": False,
    }
    with pytest.raises(FeatureError, match=r"3 feature values, expected 4"):
        source.get([1.5, 2, "FR"])


@pytest.mark.parametrize(
    ("request_features", "message"),
    [
        ({}, "feature 'amount' is missing and has no default"),
        ({"amount": "12"}, r"feature 'amount' must be a float, got '12' \(str\)"),
        ({"amount": True}, "feature 'amount' must be a float, got True"),
        ({"amount": math.nan}, "feature 'amount' is nan, not a finite number"),
        ({"amount": math.inf}, "feature 'amount' is inf, not a finite number"),
        ({"amount": 1.0, "visits": 2.5}, "feature 'visits' must be an int, got 2.5"),
        ({"amount": 1.0, "country": 7}, "feature 'country' must be a str, got 7"),
        ({"amount": 1.0, "is_new": 1}, "feature 'is_new' must be a bool, got 1"),
        ({"amount": 1.0, "amuont": 2.0}, "unexpected feature 'amuont'"),
    ],
)
def test_bad_features_name_the_feature(
    source: InlineFeatures, request_features: dict[str, Any], message: str
) -> None:
    with pytest.raises(FeatureError, match=message):
        source.get(request_features)


def test_extra_features_can_be_allowed() -> None:
    loose = InlineFeatures(["a"], allow_extra=True)
    assert loose.get({"a": 1, "b": "ignored"}).values == (1.0,)


def test_get_many_names_the_request(source: InlineFeatures) -> None:
    vectors = source.get_many([{"amount": 1.0}, {"amount": 2.0}])
    assert [v.values[0] for v in vectors] == [1.0, 2.0]
    with pytest.raises(FeatureError, match=r"^request 1: feature 'amount' is missing"):
        source.get_many([{"amount": 1.0}, {}])


def test_schema_mistakes_are_caught_when_declared() -> None:
    with pytest.raises(InvalidArgumentError, match="declared twice"):
        InlineFeatures(["a", "a"])
    with pytest.raises(InvalidArgumentError, match="has type 'double'"):
        FeatureSpec("a", "double")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="default of feature 'a' must be a float"):
        FeatureSpec("a", "float", default="zero")
    with pytest.raises(InvalidArgumentError, match="at least one"):
        InlineFeatures([])


def test_as_floats_refuses_strings(source: InlineFeatures) -> None:
    numeric = InlineFeatures(["a", ("b", "int"), ("c", "bool")]).get({"a": 1.5, "b": 2, "c": True})
    assert numeric.as_floats() == [1.5, 2.0, 1.0]
    with pytest.raises(FeatureError, match="feature 'country' is 'DE', not a number"):
        source.get({"amount": 1.0, "country": "DE"}).as_floats()


def test_inline_source_from_config() -> None:
    from abflow.errors import ConfigError
    from abflow.features import feature_source_from_config

    built = feature_source_from_config(
        {"inline": [{"name": "amount"}, {"name": "visits", "type": "int", "default": 0}, "score"]}
    )
    assert isinstance(built, InlineFeatures)
    assert built.get({"amount": 2, "score": 0.5}).values == (2.0, 0, 0.5)
    with pytest.raises(ConfigError, match="exactly one of 'inline' or 'feast'"):
        feature_source_from_config({})
    with pytest.raises(ConfigError, match="has type 'decimal'"):
        feature_source_from_config({"inline": [{"name": "a", "type": "decimal"}]})
    with pytest.raises(ConfigError, match=r"missing \['entity_key', 'features'\]"):
        feature_source_from_config({"feast": {"repo": "x"}})
