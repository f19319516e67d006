"""Bayesian comparison: a Gaussian model on the effect, as GrowthBook's effect model.

The data give the effect ``d`` (relative or absolute) with variance ``v`` (the same delta
method as the frequentist test). With a flat prior the posterior is ``N(d, v)``; a proper
prior ``N(m0, v0)`` on the same scale gives precision ``1/v + 1/v0`` and mean
``(d/v + m0/v0) / (1/v + 1/v0)``. From the posterior ``N(mu, s^2)``:

- chance to win ``P(effect > 0)`` (``P(effect < 0)`` when lower is better);
- a central credible interval at level ``1 - alpha``;
- expected loss ("risk") of shipping treatment ``E[max(0, -effect)] = s phi(mu/s) -
  mu Phi(-mu/s)`` and of keeping control ``E[max(0, effect)] = s phi(mu/s) + mu Phi(mu/s)``
  (closed forms of the truncated-normal means), swapped when lower is better.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from scipy import special

from abflow.stats.records import GaussianPrior

__all__ = ["Posterior", "gaussian_posterior"]

Array = npt.NDArray[np.float64]


class Posterior(NamedTuple):
    """The posterior of each effect, one array entry per comparison."""

    mean: Array
    sd: Array
    low: Array
    high: Array
    chance_to_win: Array
    loss_treatment: Array
    """Expected loss of shipping treatment (of its effect's wrong sign)."""
    loss_control: Array
    """Expected loss of keeping control."""


def gaussian_posterior(
    effect: Array,
    variance: Array,
    *,
    prior: GaussianPrior | None,
    alpha: float,
    lower_is_better: bool,
    threshold: float,
) -> Posterior:
    """Posterior mean, sd, credible bounds, chance to win, loss of treatment, loss of control.

    ``threshold`` moves the winning line: treatment "wins" when ``effect > threshold``
    (``< threshold`` when lower is better); it is ``-margin`` / ``+margin`` for guardrails.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        if prior is None:
            mean = effect
            sd = np.sqrt(variance)
        else:
            precision = 1.0 / variance + 1.0 / prior.variance
            mean = (effect / variance + prior.mean / prior.variance) / precision
            sd = np.sqrt(1.0 / precision)
        z_crit = -float(special.ndtri(alpha / 2.0))
        low, high = mean - z_crit * sd, mean + z_crit * sd
        z = mean / sd
        win = special.ndtr((mean - threshold) / sd)
        density = np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi)
        loss_control = sd * density + mean * special.ndtr(z)
        loss_treatment = sd * density - mean * special.ndtr(-z)
    if lower_is_better:
        win = 1.0 - win
        loss_control, loss_treatment = loss_treatment, loss_control
    return Posterior(mean, sd, low, high, win, loss_treatment, loss_control)
