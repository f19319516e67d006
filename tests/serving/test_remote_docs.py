"""The remote backend config in docs/gateway.md is what the gateway accepts, and it means
what the tests exercise (columns, output_name, vertex, output_path)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from abflow.serving.backends import BackendOptions

DOC = Path(__file__).parents[2] / "docs" / "gateway.md"


def test_the_documented_remote_backend_options_parse() -> None:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("### Remote backend options", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    backends = yaml.safe_load(block.group(1))["backends"]
    options = {url: BackendOptions(**value) for url, value in backends.items()}
    assert len(options) == 4
    mlflow, v2, vertex, custom = options.values()
    assert mlflow.columns == ["f0", "f1", "f2", "f3"]
    assert (mlflow.output, mlflow.class_index) == ("proba", 1)
    assert v2.output_name == "probabilities"
    assert (vertex.protocol, vertex.class_index) == ("vertex", 1)
    assert custom.output_path == "$.result.scores"
