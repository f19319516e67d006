"""The Hypothesis profile the suite runs under: chosen once in tests/conftest.py.

Each check runs in a fresh interpreter, so that the profile is chosen from that process'
environment (this one already loaded its own).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CONFTEST = Path(__file__).parent / "conftest.py"

PROBE = f"""
import importlib.util, json
from hypothesis import settings
spec = importlib.util.spec_from_file_location("suite_conftest", {str(CONFTEST)!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
current = settings.default
print(json.dumps({{"max_examples": current.max_examples, "deadline": current.deadline,
                   "derandomize": current.derandomize}}))
"""


def _profile(env: dict[str, str]) -> dict[str, object]:
    clean = {k: v for k, v in os.environ.items() if k not in {"CI", "HYPOTHESIS_PROFILE"}} | env
    result = subprocess.run(
        [sys.executable, "-c", PROBE], env=clean, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    loaded: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return loaded


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, {"max_examples": 100, "deadline": None, "derandomize": False}),
        ({"CI": "true"}, {"max_examples": 40, "deadline": None, "derandomize": True}),
        (
            {"HYPOTHESIS_PROFILE": "thorough"},
            {"max_examples": 1000, "deadline": None, "derandomize": False},
        ),
        (
            {"CI": "1", "HYPOTHESIS_PROFILE": "dev"},
            {"max_examples": 100, "deadline": None, "derandomize": True},
        ),
    ],
)
def test_the_profile_follows_the_environment(
    env: dict[str, str], expected: dict[str, object]
) -> None:
    assert _profile(env) == expected


def test_no_example_has_a_deadline_in_this_run() -> None:
    """Hypothesis' default deadline (200 ms) fails innocent examples on a loaded machine."""
    from hypothesis import settings

    assert settings.default.deadline is None
