"""Two small bundled classifiers, so that ``abflow serve`` answers with nothing configured.

Trained on scikit-learn's synthetic data with fixed seeds at first use (a few milliseconds),
so they are the same in every process and need no files.
"""

from __future__ import annotations

from functools import cache
from typing import Any

__all__ = ["N_FEATURES", "challenger", "champion"]

N_FEATURES = 8


@cache
def _data() -> tuple[Any, Any]:
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=2000, n_features=N_FEATURES, n_informative=5, random_state=20261126
    )
    return x, y


@cache
def champion() -> Any:
    """Logistic regression, strongly regularised (the incumbent)."""
    from sklearn.linear_model import LogisticRegression

    x, y = _data()
    return LogisticRegression(C=0.01).fit(x, y)


@cache
def challenger() -> Any:
    """Logistic regression, lightly regularised (the candidate)."""
    from sklearn.linear_model import LogisticRegression

    x, y = _data()
    return LogisticRegression(C=1.0).fit(x, y)
