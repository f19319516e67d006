"""Generate tests/golden/growthbook-non-bmp.json once, from the GrowthBook Python SDK.

Ids with characters outside the Basic Multilingual Plane (emoji, CJK extension B, musical
symbols, mathematical letters), mixed with ASCII and BMP text. Every expected value comes
from the SDK (``growthbook`` 4.x, which hashes UTF-16 code units as the JavaScript SDK does;
the version is recorded), never from abflow. Run ``.venv/bin/python
tests/routing/make_non_bmp_golden.py`` only to *add* rows; existing rows must never change.
"""

from __future__ import annotations

import json
import random
from importlib.metadata import version
from pathlib import Path
from typing import Any

from growthbook import Experiment, GrowthBook
from growthbook.core import gbhash

OUT = Path(__file__).parents[1] / "golden" / "growthbook-non-bmp.json"

_ASTRAL = "😀🎉👍🏽🚀𝄞𝔘𠀋𩸽🀄🦄"
_OTHER = "abcXYZ019-_.@éß日本語한"

EXPERIMENTS: dict[str, dict[str, Any]] = {
    "v2-even": {"key": "emoji-test", "variants": 2},
    "v2-weighted-seed": {
        "key": "ranker",
        "seed": "seed-🎲",
        "variants": 3,
        "weights": [0.5, 0.3, 0.2],
        "coverage": 0.8,
    },
    "v1-namespace": {
        "key": "legacy",
        "hash_version": 1,
        "variants": 2,
        "namespace": ["ns-🌍", 0.2, 0.9],
    },
}


def _ids(generator: random.Random, count: int) -> list[str]:
    ids = ["user-😀", "😀", "𝄞", "a𠀋b", "👍🏽", "🎉" * 30]
    while len(ids) < count:
        length = generator.randint(1, 24)
        text = [generator.choice(_OTHER) for _ in range(length)]
        for _ in range(generator.randint(1, 3)):
            text.insert(generator.randint(0, len(text)), generator.choice(_ASTRAL))
        ids.append("".join(text))
    return ids


def _sdk_row(name: str, fields: dict[str, Any], unit_id: str) -> list[Any]:
    experiment = Experiment(
        key=fields["key"],
        variations=list(range(fields["variants"])),
        weights=fields.get("weights"),
        coverage=fields.get("coverage", 1.0),
        namespace=tuple(fields["namespace"]) if "namespace" in fields else None,
        hashAttribute="user_id",
        hashVersion=fields.get("hash_version", 2),
        seed=fields.get("seed", fields["key"]),
    )
    result = GrowthBook(attributes={"user_id": unit_id}).run(experiment)
    index = result.variationId if result.inExperiment else -1
    return [name, unit_id, index, result.bucket if result.inExperiment else None]


def main() -> None:
    generator = random.Random(20261207)
    ids = _ids(generator, 60)
    hashes = [
        [seed, unit_id, hash_version, gbhash(seed, unit_id, hash_version)]
        for unit_id in ids
        for seed in ("s", "seed-🎲")
        for hash_version in (1, 2)
    ]
    rows = [
        _sdk_row(name, fields, unit_id) for name, fields in EXPERIMENTS.items() for unit_id in ids
    ]
    document = {
        "source": f"growthbook (Python SDK) {version('growthbook')}",
        "format": {
            "hash": "[seed, value, hash_version, bucket_hash]",
            "rows": "[experiment, unit_id, index (-1: not in experiment), bucket (null: none)]",
        },
        "experiments": EXPERIMENTS,
        "hash": hashes,
        "rows": rows,
    }
    parts = []
    for field, value in document.items():
        if isinstance(value, list):  # one vector a line: diffs show exactly what was added
            lines = ",\n  ".join(json.dumps(item, ensure_ascii=False) for item in value)
            parts.append(f'"{field}": [\n  {lines}\n ]')
        else:
            parts.append(f'"{field}": {json.dumps(value, ensure_ascii=False, sort_keys=True)}')
    text = "{\n " + ",\n ".join(parts) + "\n}\n"
    assert json.loads(text) == json.loads(json.dumps(document))  # stays valid, same content
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {len(hashes)} hashes and {len(rows)} rows to {OUT}")


if __name__ == "__main__":
    main()
