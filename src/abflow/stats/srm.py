"""Sample ratio mismatch: did each variant receive the share of units its weight promised?

A split that drifts from its weights (a redirect that loses users, a bot filter that hits one
arm, a crash in one model) biases every metric of the experiment, so analysis runs this check
first and distrusts results that fail it. The test is Pearson's chi-square goodness of fit of
the observed unit counts against ``total * weight``, with ``k - 1`` degrees of freedom for
``k`` variants. The default threshold is p < 0.001: the check runs on every experiment and
every refresh, so it must almost never raise a false alarm, while a real mismatch on
thousands of units drives p far below any threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import special

from abflow.errors import InvalidArgumentError
from abflow.stats.validation import real_number, real_numbers

__all__ = ["MIN_EXPECTED_COUNT", "SRM_STATUSES", "SrmResult", "srm_status", "srm_test"]

SRM_STATUSES: tuple[str, ...] = ("healthy", "mismatch", "not_enough_data")

MIN_EXPECTED_COUNT = 5.0
"""Below this expected count in any variant the chi-square approximation is not trusted."""


def srm_status(p_value: float | None, is_mismatch: bool) -> str:
    """One word for a sample-ratio check; an undefined p-value (None or NaN) is not healthy."""
    if is_mismatch:
        return "mismatch"
    if p_value is None or not math.isfinite(p_value):
        return "not_enough_data"
    return "healthy"


@dataclass(frozen=True, slots=True)
class SrmResult:
    """Outcome of a sample-ratio-mismatch check.

    ``is_mismatch`` is true when ``p_value < alpha``. Degenerate inputs (no units, a single
    variant, too few units for the approximation) give ``error_code`` set, NaN statistics
    and ``is_mismatch`` false rather than an exception: too little data is not an alarm.
    """

    p_value: float
    chi_square: float
    df: int
    observed_counts: tuple[float, ...]
    expected_counts: tuple[float, ...]
    expected_weights: tuple[float, ...]
    alpha: float
    is_mismatch: bool
    error_code: str | None = None
    error_message: str = ""

    @property
    def is_ok(self) -> bool:
        return self.error_code is None

    @property
    def status(self) -> str:
        """``mismatch``, ``healthy``, or ``not_enough_data`` when the test is undefined (a
        NaN p-value): too little data is neither an alarm nor a clean bill of health."""
        return srm_status(self.p_value, self.is_mismatch)

    @property
    def observed_shares(self) -> tuple[float, ...]:
        total = sum(self.observed_counts)
        return tuple(c / total if total > 0 else math.nan for c in self.observed_counts)


def _check(
    observed_counts: Sequence[float], expected_weights: Sequence[float] | None, alpha: float
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if not (0.0 < real_number("alpha", alpha) < 1.0):
        msg = f"alpha must be strictly between 0 and 1, got {alpha!r}"
        raise InvalidArgumentError(msg)
    counts = real_numbers("observed_counts", observed_counts)
    if not counts:
        msg = "observed_counts is empty; give one count per variant"
        raise InvalidArgumentError(msg)
    if not all(math.isfinite(c) and c >= 0 for c in counts):
        msg = f"observed counts must be non-negative finite numbers, got {list(counts)}"
        raise InvalidArgumentError(msg)
    if expected_weights is None:
        return counts, tuple(1.0 / len(counts) for _ in counts)
    weights = real_numbers("expected_weights", expected_weights)
    if len(weights) != len(counts):
        msg = f"{len(weights)} expected weights for {len(counts)} observed counts"
        raise InvalidArgumentError(msg)
    if not all(math.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0:
        msg = f"expected weights must be non-negative with a positive sum, got {list(weights)}"
        raise InvalidArgumentError(msg)
    total = sum(weights)
    return counts, tuple(w / total for w in weights)


def srm_test(
    observed_counts: Sequence[float],
    expected_weights: Sequence[float] | None = None,
    *,
    alpha: float = 0.001,
) -> SrmResult:
    """Chi-square goodness-of-fit test of unit counts per variant against their weights.

    ``expected_weights`` are normalised (equal when omitted). A variant with weight 0 and no
    units is left out of the test; one with weight 0 that received units is a mismatch by
    itself (``chi_square`` infinite, ``p_value`` 0).
    """
    counts, weights = _check(observed_counts, expected_weights, alpha)
    total = sum(counts)
    expected = tuple(total * w for w in weights)

    def degenerate(code: str, message: str) -> SrmResult:
        return SrmResult(
            p_value=math.nan,
            chi_square=math.nan,
            df=0,
            observed_counts=counts,
            expected_counts=expected,
            expected_weights=weights,
            alpha=alpha,
            is_mismatch=False,
            error_code=code,
            error_message=message,
        )

    if any(w == 0 and c > 0 for w, c in zip(weights, counts, strict=True)):
        return SrmResult(
            p_value=0.0,
            chi_square=math.inf,
            df=max(sum(w > 0 for w in weights) - 1, 0),
            observed_counts=counts,
            expected_counts=expected,
            expected_weights=weights,
            alpha=alpha,
            is_mismatch=True,
        )
    live = [(c, e) for c, e, w in zip(counts, expected, weights, strict=True) if w > 0]
    if total <= 0:
        return degenerate("no_units", "No units were observed, so the split cannot be checked.")
    if len(live) < 2:
        return degenerate("single_variant", "Only one variant has traffic; nothing to compare.")
    if min(e for _, e in live) < MIN_EXPECTED_COUNT:
        return degenerate(
            "too_few_units",
            f"Some variant expects fewer than {MIN_EXPECTED_COUNT:g} units; wait for more.",
        )
    chi_square = sum((c - e) ** 2 / e for c, e in live)
    df = len(live) - 1
    p_value = float(special.chdtrc(df, chi_square))  # chi2.sf without the distribution overhead
    return SrmResult(
        p_value=p_value,
        chi_square=float(chi_square),
        df=df,
        observed_counts=counts,
        expected_counts=expected,
        expected_weights=weights,
        alpha=alpha,
        is_mismatch=p_value < alpha,
    )
