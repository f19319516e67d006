"""Generate tests/golden/growthbook-js-conditions.json: random conditions, answered by the JS SDK.

GrowthBook's JavaScript SDK is the implementation its shared test vectors come from, so it is
the reference for what a condition means, JavaScript's coercions included. This script draws
random attributes and conditions (well-formed and odd ones: mixed types, missing attributes,
nested paths, arrays), asks the SDK's ``evalCondition`` for each, and writes the answers.

Needs Node.js and the SDK: ``npm install --prefix /tmp/gbjs @growthbook/growthbook``, then
``GROWTHBOOK_JS=/tmp/gbjs .venv/bin/python tests/routing/make_condition_vectors.py``.
Run it only to add vectors; the file records the SDK version that answered.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import tempfile
from pathlib import Path
from typing import Any

OUT = Path(__file__).parents[1] / "golden" / "growthbook-js-conditions.json"
CASES_PER_KIND = 1500

# Glue only: read JSON cases, answer each with the SDK's public evalCondition.
NODE_GLUE = """
const { evalCondition } = require(process.argv[2]);
const cases = JSON.parse(require("fs").readFileSync(process.argv[3], "utf8"));
const out = cases.map(([attributes, condition, groups]) => {
  try { return evalCondition(attributes, condition, groups); } catch (e) { return null; }
});
console.log(JSON.stringify(out));
"""

OPERATORS = [
    "$eq", "$ne", "$lt", "$lte", "$gt", "$gte", "$in", "$nin", "$all", "$elemMatch", "$size",
    "$exists", "$type", "$regex", "$not", "$veq", "$vne", "$vgt", "$vgte", "$vlt", "$vlte",
    "$ini", "$nini", "$alli", "$regexi", "$inGroup", "$notInGroup",
]  # fmt: skip
TEXTS = ["", "a", "b", "ab", "A", "1", "10", "2", "0", "1.2.3", "v1.2.0", "1.10.0-beta", " 7 "]
NUMBERS = [0, 1, -1, 2, 10, 0.5, -1.5, 1e20, 1e21, 1e-7, 0.000001]
GROUPS = {"g1": ["a", 1, "10"], "g2": {"type": "list", "values": ["b", 2]}, "bad": {"x": 1}}


class Draw:
    def __init__(self, rng: random.Random, *, odd: bool) -> None:
        self.rng = rng
        self.odd = odd  # mix types freely; otherwise keep each attribute to one type

    def scalar(self) -> Any:
        kinds = [self.rng.choice(TEXTS), self.rng.choice(NUMBERS), self.rng.random() < 0.5]
        return self.rng.choice([*kinds, None] if self.odd else kinds)

    def value(self, depth: int = 0) -> Any:
        roll = self.rng.random()
        if depth < 2 and roll < 0.15:
            return [self.value(depth + 1) for _ in range(self.rng.randint(0, 3))]
        if depth < 2 and roll < 0.2 and self.odd:
            return {self.rng.choice("xy"): self.value(depth + 1) for _ in range(2)}
        return self.scalar()

    def argument(self, operator: str, depth: int) -> Any:
        rng = self.rng
        if operator in ("$in", "$nin", "$all", "$ini", "$nini", "$alli"):
            return [self.scalar() for _ in range(rng.randint(0, 3))]
        if operator == "$elemMatch":
            return self.operators(depth + 1) if rng.random() < 0.6 else self.condition(depth + 1)
        if operator == "$size":
            return rng.choice([rng.randint(0, 3), {"$gt": rng.randint(0, 2)}])
        if operator == "$exists":
            return rng.choice([True, False])
        if operator == "$type":
            return rng.choice(["string", "number", "boolean", "array", "object", "null"])
        if operator in ("$regex", "$regexi"):
            return rng.choice(["^a", "b$", "[0-9]", "a|b", "^n", "^$"])
        if operator == "$not":
            return self.operators(depth + 1)
        if operator in ("$inGroup", "$notInGroup"):
            return rng.choice(["g1", "g2", "bad", "missing"])
        return self.scalar()

    def operators(self, depth: int) -> dict[str, Any]:
        chosen = self.rng.sample(OPERATORS, self.rng.randint(1, 2))
        return {op: self.argument(op, depth) for op in chosen}

    def condition(self, depth: int = 0) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for _ in range(self.rng.randint(1, 2)):
            roll = self.rng.random()
            if depth < 2 and roll < 0.15:
                key = self.rng.choice(["$and", "$or", "$nor"])
                out[key] = [self.condition(depth + 1) for _ in range(self.rng.randint(0, 2))]
            elif depth < 2 and roll < 0.2:
                out["$not"] = self.condition(depth + 1)
            else:
                path = self.rng.choice(["a", "b", "c", "d.e", "c.0", "c.length"])
                literal = self.rng.random() < 0.3 or depth > 2
                out[path] = self.value(depth + 1) if literal else self.operators(depth)
        return out

    def attributes(self) -> dict[str, Any]:
        names = self.rng.sample(["a", "b", "c", "d"], self.rng.randint(0, 4))
        out = {name: self.value() for name in names}
        if "d" in out and self.rng.random() < 0.6:
            out["d"] = {"e": self.value()}
        return out


def main() -> None:
    sdk = os.environ.get("GROWTHBOOK_JS", "/tmp/gbjs")
    module = Path(sdk) / "node_modules" / "@growthbook" / "growthbook"
    version = json.loads((module / "package.json").read_text())["version"]
    rng = random.Random(20261126)
    cases = []
    for odd in (False, True):
        draw = Draw(rng, odd=odd)
        cases += [[draw.attributes(), draw.condition(), GROUPS] for _ in range(CASES_PER_KIND)]
    with tempfile.TemporaryDirectory() as folder:
        glue, data = Path(folder) / "glue.js", Path(folder) / "cases.json"
        glue.write_text(NODE_GLUE)
        data.write_text(json.dumps(cases))
        answers = json.loads(
            subprocess.run(
                ["node", str(glue), str(module), str(data)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
    rows = [
        [attributes, condition, answer]
        for (attributes, condition, _), answer in zip(cases, answers, strict=True)
        if answer is not None  # the SDK threw: a condition no spec would pass validation
    ]
    OUT.write_text(
        json.dumps(
            {"sdk": f"@growthbook/growthbook {version}", "saved_groups": GROUPS, "cases": rows},
            separators=(",", ":"),
        )
        + "\n"
    )
    print(f"wrote {len(rows)} cases to {OUT}")


if __name__ == "__main__":
    main()
