"""Fault-injection suite: each test breaks something real and reports a figure.

A test records what it measured with the ``fault_figure`` fixture (``fault_figure("store
black-holed 10 s, PostgreSQL", failed_predictions=0, lost_events=0)``; it lives in
tests/conftest.py, which also gathers the figures from every pytest-xdist worker) and
asserts the figure it promises. The figures are printed together at the end of the run, so
a CI log shows them without ``-s``, and docs/durability.md quotes them with the command that
made them: ``.venv/bin/pytest tests/faults -q``.
"""
