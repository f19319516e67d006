"""abflow's own golden assignments: they must never change between releases.

The rows were generated once (``tests/routing/make_golden.py``) and checked against the
GrowthBook Python SDK; here both the single-unit and the batch path must reproduce every
row exactly, and the SDK must still agree with them.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from abflow.routing import assign, assign_batch
from abflow.spec import ExperimentSpec, parse_experiment

GOLDEN: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "golden" / "abflow-assignments.json").read_text(encoding="utf-8")
)
SPECS: dict[str, ExperimentSpec] = {
    name: parse_experiment(data) for name, data in GOLDEN["experiments"].items()
}


def test_golden_file_covers_every_outcome() -> None:
    rows = GOLDEN["rows"]
    assert len(rows) >= 300
    assert {row[4] for row in rows} == {"assigned", "coverage", "namespace"}
    assert any(not row[1].isascii() for row in rows)
    assert {spec.hash_version for spec in SPECS.values()} == {1, 2}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_single_unit_path_reproduces_golden_rows(name: str) -> None:
    spec = SPECS[name]
    rows = [row for row in GOLDEN["rows"] if row[0] == name]
    assert rows
    for _, unit_id, index, bucket, reason in rows:
        result = assign(spec, {spec.unit: unit_id})
        assert (result.index, result.bucket, result.reason) == (index, bucket, reason), unit_id
        assert result.in_experiment is (index >= 0)
        assert result.variant == (spec.variant_names[index] if index >= 0 else None)


def test_batch_path_reproduces_golden_rows() -> None:
    by_experiment: dict[str, list[list[Any]]] = defaultdict(list)
    for row in GOLDEN["rows"]:
        by_experiment[row[0]].append(row)
    for name, rows in by_experiment.items():
        result = assign_batch(SPECS[name], [row[1] for row in rows])
        np.testing.assert_array_equal(result.index, [row[2] for row in rows])
        expected = [math.nan if row[3] is None else row[3] for row in rows]
        np.testing.assert_array_equal(result.bucket, expected)
        assert list(result.reason_names()) == [row[4] for row in rows]


def test_growthbook_sdk_still_agrees_with_golden_rows() -> None:
    growthbook = pytest.importorskip("growthbook")
    from growthbook.core import gbhash

    for name, unit_id, index, bucket, reason in GOLDEN["rows"]:
        spec = SPECS[name]
        experiment = growthbook.Experiment(
            key=spec.key,
            variations=list(range(len(spec.variants))),
            weights=spec.effective_weights,
            coverage=spec.coverage,
            namespace=spec.namespace.as_tuple() if spec.namespace else None,
            hashAttribute=spec.unit,
            hashVersion=spec.hash_version,
            seed=spec.hash_seed,
        )
        result = growthbook.GrowthBook(attributes={spec.unit: unit_id}).run(experiment)
        assert result.inExperiment is (index >= 0), (name, unit_id)
        if index >= 0:
            assert (result.variationId, result.bucket) == (index, bucket), (name, unit_id)
        if reason == "coverage":
            assert gbhash(spec.hash_seed, unit_id, spec.hash_version) == bucket
