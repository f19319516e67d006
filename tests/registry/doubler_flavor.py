"""A minimal custom pyfunc flavour (``loader_module``) for tests: it doubles its input."""

from __future__ import annotations

from typing import Any

import numpy as np


class Doubler:
    def predict(self, model_input: Any, params: Any = None) -> Any:
        return np.asarray(model_input, dtype=float) * 2.0


def _load_pyfunc(path: str) -> Doubler:
    return Doubler()
