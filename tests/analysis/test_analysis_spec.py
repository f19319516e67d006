"""MetricSpec.cost_per_second: the compute price of a prediction's latency."""

from __future__ import annotations

import pytest

from abflow.spec import MetricSpec


def test_cost_metric_takes_a_price_per_second_of_latency() -> None:
    metric = MetricSpec(name="cost", kind="cost", cost_per_1000=1.5, cost_per_second=0.2)
    assert metric.cost_per_second == 0.2
    with pytest.raises(ValueError, match="cost_per_second"):
        MetricSpec(name="cost", kind="cost", cost_per_second=-1.0)
