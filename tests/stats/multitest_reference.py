"""statsmodels' multipletests as the tests' reference, without its gc.collect().

Its Holm branch runs ``gc.collect()`` on every call: a full collection of the test process's
heap (SciPy, MLflow and the rest of the suite's objects), 0.08 s alone and seconds in the full
suite, where a Holm property test took 250 s. Collecting garbage changes no number.
"""

from __future__ import annotations

import gc
from typing import Any
from unittest import mock

import numpy as np
from statsmodels.stats.multitest import multipletests as _statsmodels_multipletests


def multipletests(p: Any, method: str) -> tuple[np.ndarray, ...]:
    """``statsmodels.stats.multitest.multipletests(p, method=method)``, gc.collect() skipped."""
    with mock.patch.object(gc, "collect", return_value=0):
        result: tuple[np.ndarray, ...] = _statsmodels_multipletests(p, method=method)
    return result
