"""docs/routing.md: its ``python`` blocks print what it shows, its YAML example routes as said."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from abflow.errors import InvalidSpecError
from abflow.routing import assign, bucket_hash
from abflow.spec import parse_experiment

DOC = Path(__file__).resolve().parents[2] / "docs" / "routing.md"
TEXT = DOC.read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", TEXT, flags=re.DOTALL)
SHOWN = re.findall(r"prints\n\n```text\n(.*?)```", TEXT, flags=re.DOTALL)


def test_doc_examples_print_what_the_page_shows(capsys: pytest.CaptureFixture[str]) -> None:
    assert len(BLOCKS) == len(SHOWN) == 3
    namespace: dict[str, object] = {}
    for index, (block, shown) in enumerate(zip(BLOCKS, SHOWN, strict=True)):
        exec(compile(block, f"{DOC.name}[{index}]", "exec"), namespace)
        assert capsys.readouterr().out.splitlines() == shown.splitlines()
    assert SHOWN[0].splitlines() == ["0.4483", "[0.2064, 0.7887]"]
    assert SHOWN[1].splitlines() == ["True", "condition"]
    assert SHOWN[2].splitlines() == ["b None", "b sticky {'emoji-test__0': 'b'}"]


def test_doc_counts_match_the_run_vector_test() -> None:
    assert "62 of the 73 `run`" in TEXT
    assert "Two more give `force`" in TEXT
    assert "The other 9 are skipped" in TEXT
    assert "all 13 of GrowthBook's\n`stickyBucket` vectors" in TEXT


def test_the_yaml_example_validates_and_routes_as_the_page_says() -> None:
    (text,) = re.findall(r"```yaml\n(# experiments/ranker.yaml\n.*?)```", TEXT, flags=re.DOTALL)
    spec = parse_experiment(yaml.safe_load(text))
    assert (spec.active, spec.force, len(spec.filters)) == (True, "control", 1)
    assert assign(spec, {"user_id": "qa-user-1"}).variant == "candidate"
    assert assign(spec, {"user_id": "u1"}).reason == "filters"  # no device_id
    reasons = set()
    for number in range(200):
        device = f"d{number}"
        result = assign(spec, {"user_id": f"u{number}", "device_id": device})
        reasons.add(result.reason)
        kept = bucket_hash("ranker-devices", device, 2)
        assert kept is not None
        assert (result.reason == "filters") is (kept >= 0.4)
        assert result.variant in (None, "control")
    assert reasons == {"filters", "coverage", "force"}
    paused = parse_experiment(yaml.safe_load(text) | {"active": False})
    assert assign(paused, {"user_id": "u1", "device_id": "d1"}).reason == "inactive"
    assert assign(paused, {"user_id": "qa-user-1"}).variant == "candidate"
    problems = _problems(
        yaml.safe_load(text) | {"filters": [{"seed": "s", "ranges": [[0.6, 0.2]]}]}
    )
    assert "filters[0].ranges[0]: range [0.6, 0.2] starts above its end" in problems


def _problems(data: dict[str, object]) -> list[str]:
    with pytest.raises(InvalidSpecError) as refused:
        parse_experiment(data)
    return refused.value.problems
