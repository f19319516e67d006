"""Where GrowthBook's shared SDK test vectors are read from (they are not copied here).

The file lives in ``../shared/conformance/growthbook-cases.json`` next to the project's root
(``ABFLOW_CONFORMANCE_DIR`` overrides the folder). Where it is absent, as in a fresh clone,
the conformance tests skip with :data:`MISSING`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

FILE_NAME = "growthbook-cases.json"


def conformance_dir() -> Path:
    """``$ABFLOW_CONFORMANCE_DIR``, else ``<repository root>/../shared/conformance``."""
    override = os.environ.get("ABFLOW_CONFORMANCE_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2].parent / "shared" / "conformance"


PATH = conformance_dir() / FILE_NAME
MISSING = (
    f"GrowthBook's SDK vectors are not at {PATH} (they live outside the repository: "
    "set ABFLOW_CONFORMANCE_DIR to the folder that holds growthbook-cases.json)"
)


def load_or_skip() -> dict[str, Any]:
    """The decoded vectors; skips the calling test module when the file is absent."""
    if not PATH.is_file():
        pytest.skip(MISSING, allow_module_level=True)
    cases: dict[str, Any] = json.loads(PATH.read_text(encoding="utf-8"))
    return cases
