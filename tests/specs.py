"""A two-variant spec on the bundled demo models, for tests that need a real registered
experiment and vary only a field or two (pytest puts this folder on ``sys.path``)."""

from __future__ import annotations

from typing import Any

from abflow.spec import ExperimentSpec, parse_experiment


def two_arm_spec(**fields: Any) -> ExperimentSpec:
    """Experiment ``checkout``: control and treatment at 50/50, with ``fields`` on top."""
    return parse_experiment(
        {
            "key": "checkout",
            "unit": "user_id",
            "variants": [
                {"name": "control", "model": "python:abflow.serving.demo_models:champion"},
                {"name": "treatment", "model": "python:abflow.serving.demo_models:challenger"},
            ],
            "weights": [0.5, 0.5],
            **fields,
        },
        "test",
    )
