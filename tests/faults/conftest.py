"""Fault-injection suite: each test breaks something real and reports a figure.

A test records what it measured with the ``fault_figure`` fixture (``fault_figure("store
black-holed 10 s, PostgreSQL", failed_predictions=0, lost_events=0)``) and asserts the
figure it promises. The figures are printed together at the end of the run, so a CI log
shows them without ``-s``, and docs/durability.md quotes them with the command that made
them: ``.venv/bin/pytest tests/faults -q``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

FaultFigure = Callable[..., None]

_FIGURES: list[str] = []


@pytest.fixture
def fault_figure(request: pytest.FixtureRequest) -> FaultFigure:
    """Record one named measurement of this test: ``fault_figure(scenario, **numbers)``."""

    def record(scenario: str, **numbers: object) -> None:
        values = ", ".join(f"{name}={value}" for name, value in numbers.items())
        _FIGURES.append(f"{request.node.nodeid}: {scenario}: {values}")

    return record


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _FIGURES:
        terminalreporter.section("fault-injection figures")
        for line in _FIGURES:
            terminalreporter.write_line(line)
