"""Generate tests/golden/abflow-assignments.json once, checking every row against GrowthBook.

Run ``.venv/bin/python tests/routing/make_golden.py`` only to *add* vectors (for a new hash
version or a new experiment shape); existing rows must never change. Each row is verified
against the GrowthBook Python SDK's own ``run`` before it is written.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from growthbook import Experiment, GrowthBook
from growthbook.core import gbhash

from abflow.routing import assign
from abflow.spec import parse_experiment

OUT = Path(__file__).parents[1] / "golden" / "abflow-assignments.json"


def _variants(n: int) -> list[dict[str, str]]:
    return [{"name": f"v{i}", "model": f"models:/m/{i + 1}"} for i in range(n)]


EXPERIMENTS: dict[str, dict[str, Any]] = {
    "even-2": {"key": "checkout-model", "variants": _variants(2)},
    "weighted-3": {
        "key": "ranker",
        "unit": "session_id",
        "variants": _variants(3),
        "weights": [0.5, 0.3, 0.2],
    },
    "coverage": {
        "key": "fraud",
        "seed": "fraud-2026",
        "variants": _variants(2),
        "weights": [0.9, 0.1],
        "coverage": 0.4,
    },
    "namespace": {
        "key": "search",
        "variants": _variants(2),
        "namespace": ["ml-models", 0.25, 0.75],
    },
    "v1-hash": {"key": "legacy", "hash_version": 1, "variants": _variants(4)},
    "v1-namespace-coverage": {
        "key": "legacy-ns",
        "hash_version": 1,
        "seed": "s",
        "variants": _variants(2),
        "coverage": 0.7,
        "namespace": ["pricing", 0.0, 0.5],
    },
    "unicode-seed": {"key": "pricing", "seed": "prix-été", "variants": _variants(2)},
    "uneven-5": {
        "key": "recsys",
        "variants": _variants(5),
        "weights": [0.6, 0.1, 0.1, 0.1, 0.1],
        "coverage": 0.95,
    },
}

_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:@"
_NON_ASCII = "éüñçøßдждзЖ日本語中文한국어ÆŒ€✓→"


def _unit_ids(generator: random.Random, count: int) -> list[str]:
    ids = ["1", "42", "user-1", "a" * 200]
    while len(ids) < count:
        kind = generator.random()
        length = generator.randint(1, 40)
        if kind < 0.6:
            ids.append("".join(generator.choice(_ALPHABET) for _ in range(length)))
        elif kind < 0.8:
            ids.append(str(generator.randint(1, 10**12)))
        else:
            ids.append("".join(generator.choice(_ALPHABET + _NON_ASCII) for _ in range(length)))
    return ids


def _check_with_growthbook(spec_data: dict[str, Any], unit_id: str, row: list[Any]) -> None:
    spec = parse_experiment(spec_data)
    namespace = spec.namespace.as_tuple() if spec.namespace else None
    experiment = Experiment(
        key=spec.key,
        variations=list(range(len(spec.variants))),
        weights=spec.effective_weights,
        coverage=spec.coverage,
        namespace=namespace,
        hashAttribute=spec.unit,
        hashVersion=spec.hash_version,
        seed=spec.hash_seed,
    )
    result = GrowthBook(attributes={spec.unit: unit_id}).run(experiment)
    _, _, index, bucket, reason = row
    assert result.inExperiment == (index >= 0), (spec.key, unit_id)
    if index >= 0:
        assert result.variationId == index, (spec.key, unit_id)
        assert result.bucket == bucket, (spec.key, unit_id)
    if reason == "coverage":
        assert gbhash(spec.hash_seed, unit_id, spec.hash_version) == bucket


def main() -> None:
    generator = random.Random(20261126)
    rows: list[list[Any]] = []
    for name, spec_data in EXPERIMENTS.items():
        spec = parse_experiment(spec_data)
        for unit_id in _unit_ids(generator, 40):
            result = assign(spec, {spec.unit: unit_id})
            row = [name, unit_id, result.index, result.bucket, result.reason]
            _check_with_growthbook(spec_data, unit_id, row)
            rows.append(row)
    header = json.dumps(
        {"format": "rows are [experiment, unit_id, index, bucket, reason]"}, ensure_ascii=False
    )[:-1]
    experiments = json.dumps(EXPERIMENTS, ensure_ascii=False, sort_keys=True)
    lines = ",\n  ".join(json.dumps(row, ensure_ascii=False) for row in rows)
    text = f'{header},\n "experiments": {experiments},\n "rows": [\n  {lines}\n ]\n}}\n'
    json.loads(text)  # the file must stay valid JSON
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {len(rows)} rows to {OUT}")


if __name__ == "__main__":
    main()
