"""Which alias a rollout's promotion moves, from the control's and challenger's references."""

from __future__ import annotations

import pytest

from abflow.registry.promotion import AliasTarget, promotion_target


@pytest.mark.parametrize(
    ("control", "challenger", "expected"),
    [
        ("models:/fraud@champion", "models:/fraud/2", ("fraud", "champion")),
        ("models:/fraud@prod", "models:/fraud@challenger", ("fraud", "prod")),
        ("models:/fraud/1", "models:/fraud/latest", ("fraud", "champion")),
        ("models:/legacy@prod", "models:/fraud/2", ("fraud", "champion")),
        ("python:abflow.serving.demo_models:champion", "models:/fraud/2", ("fraud", "champion")),
    ],
)
def test_the_controls_alias_of_the_challengers_model_else_champion(
    control: str, challenger: str, expected: tuple[str, str]
) -> None:
    assert promotion_target(control, challenger) == AliasTarget(*expected, challenger)


@pytest.mark.parametrize(
    "challenger",
    ["python:abflow.serving.demo_models:challenger", "runs:/abc/model", "https://x.test/v1"],
)
def test_a_challenger_outside_the_registry_moves_no_alias(challenger: str) -> None:
    assert promotion_target("models:/fraud@champion", challenger) is None
