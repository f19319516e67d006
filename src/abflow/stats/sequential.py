"""Always-valid inference: asymptotic confidence sequences (Waudby-Smith et al., 2021/2023).

A fixed-horizon test read after every batch of data rejects far more often than alpha. A
confidence sequence is wide enough to hold at *every* sample size at once, so the experiment
may be watched continuously and stopped whenever the interval leaves zero. With ``N`` units
in total, ``sigma^2 = N * Var(effect)`` and the normal-mixture parameter ``rho`` tuned so the
boundary is tightest at ``N = tuning_sample_size``, the half-width is

    sigma * sqrt( 2 (N rho^2 + 1) / (N^2 rho^2) * log( sqrt(N rho^2 + 1) / alpha ) )

with ``rho^2 = (-2 log alpha + log(-2 log alpha + 1)) / tuning_sample_size`` (their eq. 9
and the tuning rule of their appendix; GrowthBook uses the same). The always-valid p-value
is ``min(1, 1 / E)`` for the mixture e-value ``E = exp(rho^2 N z^2 / (2 (N rho^2 + 1))) /
sqrt(N rho^2 + 1)``, with ``z`` the effect over its standard error, so ``p < alpha`` exactly
when the sequence excludes the null value.

One-sided tests reuse the two-sided boundary on their side only: still valid, conservative.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["confidence_sequence", "rho_squared"]

Array = npt.NDArray[np.float64]


def rho_squared(alpha: float, tuning_sample_size: float) -> float:
    """Mixture variance that makes the boundary tightest near ``tuning_sample_size`` units."""
    log_alpha = float(np.log(alpha))
    return (-2.0 * log_alpha + float(np.log(-2.0 * log_alpha + 1.0))) / tuning_sample_size


def confidence_sequence(
    effect: Array,
    variance: Array,
    n_total: Array,
    *,
    alpha: float,
    alternative: str,
    null_value: float,
    tuning_sample_size: float,
) -> tuple[Array, Array, Array]:
    """Bounds of the confidence sequence and the always-valid p-value."""
    r2 = rho_squared(alpha, tuning_sample_size)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        spread = n_total * r2 + 1.0
        # sqrt(variance) apart, so a huge variance times N cannot overflow on its way.
        half_width = np.sqrt(variance) * np.sqrt(
            2.0 * spread * np.log(np.sqrt(spread) / alpha) / (n_total * r2)
        )
        z2 = (effect - null_value) ** 2 / variance
        log_e = r2 * n_total * z2 / (2.0 * spread) - 0.5 * np.log(spread)
        p = np.minimum(1.0, np.exp(-log_e))
    low, high = effect - half_width, effect + half_width
    if alternative == "greater":
        p = np.where(effect > null_value, p, 1.0)
        high = np.full_like(effect, np.inf)
    elif alternative == "less":
        p = np.where(effect < null_value, p, 1.0)
        low = np.full_like(effect, -np.inf)
    return low, high, p
