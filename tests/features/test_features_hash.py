"""feature_vector_hash: an independent reference, type sensitivity, stability across processes."""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from abflow.errors import InvalidArgumentError
from abflow.features import FeatureVector, feature_vector_hash


def _reference(names: list[str], values: list[Any]) -> str:
    """The documented encoding, written out longhand."""
    out = bytearray(b"abflow-features-v1")
    out += struct.pack(">I", len(names))
    for name, value in zip(names, values, strict=True):
        raw = name.encode("utf-8")
        out += struct.pack(">I", len(raw)) + raw
        if value is None:
            out += b"n"
        elif value is True or value is False:
            out += b"b1" if value else b"b0"
        elif isinstance(value, int):
            digits = str(value).encode()
            out += b"i" + struct.pack(">I", len(digits)) + digits
        elif isinstance(value, float):
            out += (
                b"fnan"
                if value != value
                else b"f" + struct.pack(">d", 0.0 if value == 0 else value)
            )
        else:
            text = value.encode("utf-8")
            out += b"s" + struct.pack(">I", len(text)) + text
    return hashlib.sha256(bytes(out)).hexdigest()


CASES: list[tuple[list[str], list[Any]]] = [
    (["amount", "country", "is_new", "visits"], [12.5, "DE", True, 3]),
    (["x"], [None]),
    (["ünïcode", "b"], ["naïve ☕", -1e-300]),
    (["big"], [2**80]),
    (["nan"], [float("nan")]),
]


@pytest.mark.parametrize(("names", "values"), CASES)
def test_matches_the_reference_encoding(names: list[str], values: list[Any]) -> None:
    assert feature_vector_hash(names, values) == _reference(names, values)


def test_types_names_and_order_all_matter() -> None:
    base = feature_vector_hash(["a", "b"], [1.0, 2.0])
    variants = [
        feature_vector_hash(["a", "b"], [1, 2.0]),  # int vs float
        feature_vector_hash(["a", "b"], [True, 2.0]),  # bool vs number
        feature_vector_hash(["a", "b"], ["1.0", 2.0]),  # str vs number
        feature_vector_hash(["b", "a"], [2.0, 1.0]),  # order
        feature_vector_hash(["a", "c"], [1.0, 2.0]),  # name
        feature_vector_hash(["ab", ""], [1.0, 2.0]),  # no ambiguity from concatenation
        feature_vector_hash(["a", "b"], [1.0, np.nextafter(2.0, 3.0)]),  # one ulp
    ]
    assert len({base, *variants}) == len(variants) + 1
    # numpy scalars hash like the Python values they hold; -0.0 like 0.0.
    assert feature_vector_hash(["a", "b"], [np.float64(1.0), np.float32(2.0)]) == base
    assert feature_vector_hash(["z"], [-0.0]) == feature_vector_hash(["z"], [0.0])
    assert feature_vector_hash(["i"], [np.int64(7)]) == feature_vector_hash(["i"], [7])


def test_rejects_mismatched_lengths_and_unhashable_values() -> None:
    with pytest.raises(InvalidArgumentError, match="2 feature names but 1 values"):
        feature_vector_hash(["a", "b"], [1.0])
    with pytest.raises(InvalidArgumentError, match="type list"):
        feature_vector_hash(["a"], [[1.0]])


def test_stable_across_processes_with_different_hash_seeds() -> None:
    names, values = CASES[0]
    code = (
        "from abflow.features import feature_vector_hash; "
        f"print(feature_vector_hash({names!r}, {values!r}))"
    )
    seen = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        )
        seen.add(out.stdout.strip())
    assert seen == {feature_vector_hash(names, values)}


def test_feature_vector_carries_its_hash() -> None:
    vector = FeatureVector(("a", "b"), (1.0, "x"))
    assert vector.hash == feature_vector_hash(["a", "b"], [1.0, "x"])
    assert vector.as_dict() == {"a": 1.0, "b": "x"}
