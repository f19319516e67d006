"""Small models for gateway tests, loaded by ``python:gwmodels:NAME`` references."""

from __future__ import annotations

import threading
import time
from functools import cache
from typing import Any

import numpy as np

N_FEATURES = 4


@cache
def training_data() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=400, n_features=N_FEATURES, random_state=7)
    return x, y


@cache
def control() -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=0.1).fit(*training_data())


@cache
def challenger() -> Any:
    from sklearn.tree import DecisionTreeClassifier

    return DecisionTreeClassifier(max_depth=3, random_state=0).fit(*training_data())


class CountingModel:
    """Scores rows by their sum, and records the size of every call."""

    n_features_in_ = N_FEATURES
    model_version = "counting-1"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict(self, rows: np.ndarray) -> np.ndarray:
        self.calls.append(rows.shape[0])
        return rows.sum(axis=1)


counting = CountingModel()


class SlowModel:
    """Sleeps before answering: long enough to trip any test timeout."""

    n_features_in_ = N_FEATURES
    model_version = "slow-1"
    delay_seconds = 2.0

    def predict(self, rows: np.ndarray) -> np.ndarray:
        time.sleep(self.delay_seconds)
        return np.zeros(rows.shape[0])


slow = SlowModel()


class BrokenModel:
    """Always raises: a model whose artifacts are fine but whose code is not."""

    n_features_in_ = N_FEATURES
    model_version = "broken-1"

    def __init__(self) -> None:
        self.calls = 0

    def predict(self, rows: np.ndarray) -> np.ndarray:
        self.calls += 1
        msg = "model exploded"
        raise RuntimeError(msg)


broken = BrokenModel()


class GatedModel:
    """Blocks until released: proves that whoever waits on it is not on the answer path."""

    n_features_in_ = N_FEATURES
    model_version = "gated-1"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()

    def predict(self, rows: np.ndarray) -> np.ndarray:
        self.started.set()
        self.release.wait(timeout=10)
        return np.full(rows.shape[0], 0.5)


gated = GatedModel()


class NarrowModel:
    """A model of two features, beside controls of four: it cannot answer their rows."""

    n_features_in_ = 2
    model_version = "narrow-1"

    def predict(self, rows: np.ndarray) -> np.ndarray:
        return rows.sum(axis=1)


narrow = NarrowModel()
