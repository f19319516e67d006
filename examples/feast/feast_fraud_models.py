"""Two small fraud scorers over the example repo's features, for examples/feast/gateway.yaml.

Each takes ``[txn_count_7d, avg_amount_7d]`` (the order the gateway config lists them) and
answers a logistic probability; the challenger leans more on the transaction count.
"""

from __future__ import annotations

import numpy as np


class Logistic:
    """``P(fraud) = sigmoid(weights . row + bias)``."""

    n_features_in_ = 2

    def __init__(self, weights: list[float], bias: float, version: str) -> None:
        self.weights = np.asarray(weights, dtype=np.float64)
        self.bias = bias
        self.model_version = version

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-(rows @ self.weights + self.bias)))
        return np.column_stack([1.0 - p, p])

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """Decisions at 0.5 (the gateway answers ``predict_proba``'s positive column)."""
        return (self.predict_proba(rows)[:, 1] >= 0.5).astype(np.int64)


champion = Logistic([0.05, 0.01], -2.0, "champion-1")
challenger = Logistic([0.08, 0.008], -2.2, "challenger-1")
