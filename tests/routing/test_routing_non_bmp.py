"""Ids outside the Basic Multilingual Plane hash as UTF-16 code units, as GrowthBook does.

``tests/golden/growthbook-non-bmp.json`` was written once by
``tests/routing/make_non_bmp_golden.py`` from the GrowthBook Python SDK (4.x, which hashes
UTF-16 code units like the JavaScript SDK). The single-unit path, the batch path on a numpy
``'U'`` array and on a Python list must reproduce every vector.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from abflow.routing import assign, assign_batch, bucket_hash, fnv1a32, fnv1a32_array, in_namespace
from abflow.spec import ExperimentSpec, parse_experiment

GOLDEN: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "golden" / "growthbook-non-bmp.json").read_text(encoding="utf-8")
)


def _spec(fields: dict[str, Any]) -> ExperimentSpec:
    data = {k: v for k, v in fields.items() if k != "variants"}
    data["variants"] = [
        {"name": f"v{i}", "model": f"models:/m/{i + 1}"} for i in range(fields["variants"])
    ]
    return parse_experiment(data)


SPECS = {name: _spec(fields) for name, fields in GOLDEN["experiments"].items()}


def test_the_issue_example() -> None:
    # issue #14: every GrowthBook SDK puts user-😀 at 0.4483 for seed "s"; code points gave 0.0527
    assert bucket_hash("s", "user-😀", 2) == 0.4483


def test_bucket_hash_reproduces_every_sdk_vector() -> None:
    assert len(GOLDEN["hash"]) == 240
    assert len(GOLDEN["rows"]) == 180
    assert all(any(ord(c) > 0xFFFF for c in row[1]) for row in GOLDEN["hash"] + GOLDEN["rows"])
    assert {row[2] for row in GOLDEN["rows"]} == {-1, 0, 1, 2}
    assert GOLDEN["source"].startswith("growthbook (Python SDK) 4.")
    wrong = [row for row in GOLDEN["hash"] if bucket_hash(row[0], row[1], row[2]) != row[3]]
    assert wrong == []
    if importlib.util.find_spec("growthbook") is not None:  # the SDK still agrees with its rows
        from growthbook.core import gbhash

        assert gbhash("s", "user-😀", 2) == 0.4483  # it hashes UTF-16 code units
        assert [gbhash(*row[:3]) for row in GOLDEN["hash"]] == [row[3] for row in GOLDEN["hash"]]


def test_vectorised_hash_reproduces_every_sdk_vector() -> None:
    for seed in ("s", "seed-🎲"):
        rows = [row for row in GOLDEN["hash"] if row[0] == seed and row[2] == 1]
        ids = np.array([row[1] for row in rows])
        got = fnv1a32_array(ids, suffix=seed) % np.uint32(1000) / 1000
        np.testing.assert_array_equal(got, [row[3] for row in rows])
        assert [fnv1a32(row[1] + seed) % 1000 / 1000 for row in rows] == [row[3] for row in rows]


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_path_reproduces_sdk_assignments(name: str) -> None:
    spec = SPECS[name]
    rows = [row for row in GOLDEN["rows"] if row[0] == name]
    ids = [row[1] for row in rows]
    expected_index = [row[2] for row in rows]
    single = [assign(spec, {"user_id": unit_id}) for unit_id in ids]
    assert [a.index for a in single] == expected_index
    assert [a.bucket for a in single if a.index >= 0] == [r[3] for r in rows if r[2] >= 0]
    for batch in (assign_batch(spec, ids), assign_batch(spec, np.array(ids))):
        np.testing.assert_array_equal(batch.index, expected_index)
        in_experiment = batch.index >= 0
        np.testing.assert_array_equal(
            batch.bucket[in_experiment], [r[3] for r in rows if r[2] >= 0]
        )
        singles = [math.nan if a.bucket is None else a.bucket for a in single]
        np.testing.assert_array_equal(batch.bucket, singles)  # outsiders too


def test_namespace_hash_uses_code_units() -> None:
    spec = SPECS["v1-namespace"]
    assert spec.namespace is not None
    namespace = spec.namespace.as_tuple()
    rows = [row for row in GOLDEN["rows"] if row[0] == "v1-namespace"]
    outside = [row[1] for row in rows if not in_namespace(row[1], namespace)]
    assert outside
    assert {row[2] for row in rows if row[1] in outside} == {-1}
    reasons = assign_batch(spec, [row[1] for row in rows]).reason_names()
    assert int((reasons == "namespace").sum()) == len(outside)


def _naive_units(text: str) -> list[int]:
    units: list[int] = []
    for char in text:
        point = ord(char)
        if point > 0xFFFF:
            units += [0xD800 + ((point - 0x10000) >> 10), 0xDC00 + ((point - 0x10000) & 0x3FF)]
        else:
            units.append(point)
    return units


def _naive_fnv(text: str) -> int:
    value = 0x811C9DC5
    for unit in _naive_units(text):
        value = ((value ^ unit) * 0x01000193) % 2**32
    return value


def test_mixed_chunk_with_ascii_bmp_and_astral_ids() -> None:
    # Rows of every kind and length share one chunk: padding is undone per row in code units.
    kinds = ["user-1", "😀", "", "é" * 7, "a😀" * 9, "x", "𝄞𝄞", "日本"]
    ids = kinds * 700
    batch = assign_batch(SPECS["v2-even"], np.array(ids))
    expected = [
        math.nan if not u else _naive_fnv(str(_naive_fnv("emoji-test" + u))) % 10000 / 10000
        for u in ids
    ]
    np.testing.assert_array_equal(batch.bucket, expected)
    single = [assign(SPECS["v2-even"], {"user_id": unit_id}).index for unit_id in ids]
    assert batch.index.tolist() == single
    assert single.count(-1) == 700  # the empty ids only


def test_lone_surrogates_hash_as_their_own_code_unit() -> None:
    # JavaScript strings may hold a lone surrogate: it is one code unit, hashed as itself.
    assert fnv1a32("\ud83d") == fnv1a32_array(np.array(["\ud83d"]))[0]
    assert fnv1a32("\ud83d\ude00") == fnv1a32("😀")  # a pair written out is the character
    assert bucket_hash("s", "\ud83d\ude00", 2) == bucket_hash("s", "😀", 2)
