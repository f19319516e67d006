"""The Airflow and Prefect modules can be copied anywhere: they import no abflow code, only
the standard library, the orchestrator, and (the example DAGs and flows) their own module."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parents[2] / "examples"
ALLOWED = {
    "airflow/abflow_airflow.py": {"airflow"},
    "airflow/abflow_dags.py": {"airflow", "abflow_airflow"},
    "prefect/abflow_prefect.py": {"prefect"},
    "prefect/abflow_flow.py": {"prefect", "abflow_prefect"},
}


def top_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("relative", sorted(ALLOWED))
def test_imports_only_the_standard_library_and_the_orchestrator(relative: str) -> None:
    imported = top_level_imports(EXAMPLES / relative)
    foreign = imported - sys.stdlib_module_names - ALLOWED[relative]
    assert foreign == set()
    assert "abflow" not in imported
    assert ALLOWED[relative] <= imported  # the allowance is not wider than what is used


def test_every_module_in_the_example_folders_is_checked() -> None:
    found = {str(p.relative_to(EXAMPLES)) for d in ("airflow", "prefect") for p in (EXAMPLES / d).glob("*.py")}  # fmt: skip
    assert found == set(ALLOWED)
