"""What the gateway needs from a model backend, wherever the model runs."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

__all__ = ["ModelBackend"]


class ModelBackend(Protocol):
    """A model the gateway can call: in-process, or a remote model server.

    ``predict`` takes a 2-D float array (one row per example) and returns one output per
    row: a score (probability of the positive class, or a regression value), a label, or a
    list of class probabilities. ``version`` names exactly what answered; it is logged with
    every prediction and labels the latency metrics.
    """

    @property
    def reference(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def n_features(self) -> int | None: ...

    async def predict(self, rows: np.ndarray) -> list[Any]: ...

    async def aclose(self) -> None: ...
