"""Shadow evaluation: a shadow model against the served model, request by request.

The shadow variant saw a copy of each request and its answer was never shown, so the two
models are compared on exactly the same traffic. Every interval here uses that pairing:
score, Brier and latency differences get a paired t interval, and rates of binary events
(positive decisions, errors, correctness, recall, false positives) get the same interval on
per-request differences of -1, 0 or 1 with McNemar's test on the discordant requests.
Precision and calibration bias are shown per model without a test (their denominators
differ between the models).

Only requests both models answered are paired, so with a shadow ``share`` below 1 the
figures are those of the sampled requests (an unbiased sample: it is drawn on a hash of the
request or unit id, which knows nothing of the scores); the result carries the share and
the served request count so that a reader sees how much was mirrored. A breakdown by an
exposure attribute repeats the tested measures per segment, with p-values corrected across
the segments by the spec's correction (Holm by default): a model worse only in one country
shows there, and the number of segments looked at is paid for.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

from abflow.analysis.formatting import format_p_value
from abflow.analysis.results import ShadowMeasure, ShadowResult, ShadowSegment
from abflow.errors import InvalidArgumentError
from abflow.stats.corrections import CorrectionMethod, adjust_p_values
from abflow.stats.paired import mcnemar, paired_mean_difference
from abflow.stats.quantile import quantile_stats_from_bins
from abflow.store.aggregates import StoreTarget, Window
from abflow.store.feature_identity import feature_identity
from abflow.store.shadow_pairs import (
    ShadowPairTotals,
    served_request_count,
    shadow_pair_totals,
    shadow_segment_totals,
)

__all__ = [
    "DIFF_BIN_WIDTH",
    "QUANTILES",
    "SEGMENT_MEASURES",
    "SHADOW_COLUMNS",
    "feature_identity_warnings",
    "shadow_result",
    "shadow_results",
    "shadow_rows",
    "shadow_segments",
    "shadow_summary",
]

DIFF_BIN_WIDTH = 0.01
LATENCY_BIN_MS = 0.25
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)

Harm = Literal["increase", "decrease", ""]

RATES = frozenset(
    {"positive_rate", "error_rate", "timeout_rate", "accuracy", "recall"}
    | {"false_positive_rate", "precision"}
)
"""Measures shown as percentages (their differences in percentage points)."""

SEGMENT_MEASURES = (
    "score",
    "positive_rate",
    "error_rate",
    "accuracy",
    "recall",
    "false_positive_rate",
)
"""Measures repeated per segment (those with a paired test that a guardrail can read)."""

SHADOW_COLUMNS = ("measure", "n", "served", "shadow", "difference", "95% interval", "p (test)")


def _ratio(top: float, bottom: float) -> float:
    return top / bottom if bottom else math.nan


def _binary(
    name: str,
    n: int,
    served_count: int,
    shadow_count: int,
    served_only: int,
    shadow_only: int,
    harmful: Harm,
    alpha: float,
) -> ShadowMeasure:
    """A rate on ``n`` paired requests: shadow minus served, McNemar on the discordant."""
    difference = paired_mean_difference(
        n, float(shadow_only - served_only), float(shadow_only + served_only), alpha=alpha
    )
    test = mcnemar(served_only, shadow_only)
    return ShadowMeasure(
        name=name,
        n=n,
        served=_ratio(served_count, n),
        shadow=_ratio(shadow_count, n),
        difference=difference.mean,
        ci_low=difference.ci_low,
        ci_high=difference.ci_high,
        p_value=test.p_value if n else None,
        test=("McNemar exact" if test.is_exact else "McNemar chi-square") if n else "",
        harmful=harmful,
        error_code="too_few_pairs" if n < 2 else None,
    )


def _continuous(
    name: str,
    n: int,
    served_sum: float,
    total: float,
    squares: float,
    harmful: Harm,
    alpha: float,
) -> ShadowMeasure:
    difference = paired_mean_difference(n, total, squares, alpha=alpha)
    served = _ratio(served_sum, n)
    error = difference.error_code if difference.error_code == "too_few_pairs" else None
    return ShadowMeasure(
        name=name,
        n=n,
        served=served,
        shadow=served + difference.mean if n else math.nan,
        difference=difference.mean,
        ci_low=difference.ci_low,
        ci_high=difference.ci_high,
        p_value=difference.p_value,
        test="paired t",
        harmful=harmful,
        error_code=error,
    )


def _descriptive(name: str, n: int, served: float, shadow: float) -> ShadowMeasure:
    nan = math.nan
    return ShadowMeasure(name, n, served, shadow, shadow - served, nan, nan, None, "")


def _quantiles(bins: Sequence[tuple[float, int]], width: float, qs: Sequence[float]) -> list[float]:
    if not any(count for _, count in bins):
        return [math.nan for _ in qs]
    return [float(quantile_stats_from_bins(bins, width, q).quantile) for q in qs]


def _measures(t: ShadowPairTotals, alpha: float) -> list[ShadowMeasure]:
    tp_served, tp_shadow = t.served_tp, t.shadow_tp
    return [
        _continuous("score", t.scored, t.served_score_sum, t.diff_sum, t.diff_squares, "", alpha),
        _binary(
            "positive_rate",
            t.scored,
            t.both_positive + t.served_only_positive,
            t.both_positive + t.shadow_only_positive,
            t.served_only_positive,
            t.shadow_only_positive,
            "",
            alpha,
        ),
        _binary(
            "error_rate",
            t.pairs,
            t.served_errors,
            t.shadow_errors,
            t.served_only_errors,
            t.shadow_only_errors,
            "increase",
            alpha,
        ),
        _descriptive(
            "timeout_rate",
            t.pairs,
            _ratio(t.served_timeouts, t.pairs),
            _ratio(t.shadow_timeouts, t.pairs),
        ),
        _continuous(
            "latency",
            t.pairs,
            t.served_latency_sum,
            t.latency_diff_sum,
            t.latency_diff_squares,
            "increase",
            alpha,
        ),
        _binary(
            "accuracy",
            t.labeled,
            t.served_correct,
            t.shadow_correct,
            t.served_only_correct,
            t.shadow_only_correct,
            "decrease",
            alpha,
        ),
        _binary(
            "recall",
            t.positives,
            tp_served,
            tp_shadow,
            t.served_only_tp,
            t.shadow_only_tp,
            "decrease",
            alpha,
        ),
        _binary(
            "false_positive_rate",
            t.negatives,
            t.served_fp,
            t.shadow_fp,
            t.served_only_fp,
            t.shadow_only_fp,
            "increase",
            alpha,
        ),
        _descriptive(
            "precision",
            t.labeled,
            _ratio(tp_served, t.served_predicted_positive),
            _ratio(tp_shadow, t.shadow_predicted_positive),
        ),
        _descriptive(
            "calibration_error",
            t.labeled,
            _ratio(t.served_bias, t.labeled),
            _ratio(t.shadow_bias, t.labeled),
        ),
        _continuous(
            "brier_score",
            t.labeled,
            t.served_brier_sum,
            t.brier_diff_sum,
            t.brier_diff_squares,
            "increase",
            alpha,
        ),
    ]


def shadow_result(
    totals: ShadowPairTotals,
    *,
    threshold: float,
    label_event: str,
    alpha: float,
    share: float = 1.0,
    served_requests: int = 0,
    segments: Sequence[ShadowSegment] = (),
) -> ShadowResult:
    """The paired comparison of one shadow variant from its SQL totals."""
    t = totals
    measures = _measures(t, alpha)
    quantiles = _quantiles(t.diff_bins, DIFF_BIN_WIDTH, QUANTILES)
    latency_qs = (0.5, 0.95, 0.99)
    return ShadowResult(
        variant=t.variant,
        model_version=t.model_version,
        threshold=threshold,
        label_event=label_event,
        pairs=t.pairs,
        scored_pairs=t.scored,
        labeled_pairs=t.labeled,
        agreement_rate=_ratio(t.scored - t.served_only_positive - t.shadow_only_positive, t.scored),
        measures=measures,
        score_difference_quantiles={
            f"p{round(q * 100)}": value for q, value in zip(QUANTILES, quantiles, strict=True)
        },
        score_difference_histogram=list(t.diff_bins),
        bin_width=DIFF_BIN_WIDTH,
        served_latency_ms=_quantiles(t.served_latency_bins, LATENCY_BIN_MS, latency_qs),
        shadow_latency_ms=_quantiles(t.shadow_latency_bins, LATENCY_BIN_MS, latency_qs),
        share=share,
        served_requests=served_requests,
        segments=list(segments),
    )


def shadow_segments(
    segments: Sequence[tuple[str | None, ShadowPairTotals]],
    attribute: str,
    *,
    alpha: float,
    correction: CorrectionMethod = "holm",
) -> list[ShadowSegment]:
    """Per segment, the :data:`SEGMENT_MEASURES`; each measure's p-values adjusted across
    the segments (one family per measure: the question is "is it worse anywhere?")."""
    chosen = [
        [m for m in _measures(totals, alpha) if m.name in SEGMENT_MEASURES]
        for _, totals in segments
    ]
    for index in range(len(SEGMENT_MEASURES)):
        adjusted = adjust_p_values([row[index].p_value for row in chosen], correction)
        for row, p in zip(chosen, adjusted, strict=True):
            row[index] = replace(row[index], p_adjusted=p)
    return [
        ShadowSegment(attribute, value, totals.pairs, measures)
        for (value, totals), measures in zip(segments, chosen, strict=True)
    ]


def shadow_results(
    target: StoreTarget,
    experiment_key: str,
    phase: int,
    *,
    threshold: float,
    label_event: str,
    alpha: float,
    window: Window | None = None,
    share: float = 1.0,
    segment: str | None = None,
    correction: CorrectionMethod = "holm",
) -> list[ShadowResult]:
    """One :class:`ShadowResult` per shadow variant with predictions in the phase; with
    ``segment``, broken down by that exposure attribute."""
    if segment is not None and not (segment.replace("_", "").isalnum() and segment.isascii()):
        msg = f"segment: {segment!r} is not an attribute name (letters, digits, underscores)"
        raise InvalidArgumentError(msg)
    totals = shadow_pair_totals(
        target,
        experiment_key,
        phase,
        threshold=threshold,
        label_event=label_event,
        window=window,
        diff_bin_width=DIFF_BIN_WIDTH,
        latency_bin_ms=LATENCY_BIN_MS,
    )
    if not totals:
        return []
    served = served_request_count(target, experiment_key, phase, window)
    identity = feature_identity(target, experiment_key, phase, window=window)
    by_segment = (
        shadow_segment_totals(
            target,
            experiment_key,
            phase,
            segment,
            threshold=threshold,
            label_event=label_event,
            window=window,
        )
        if segment is not None
        else {}
    )
    return [
        replace(
            shadow_result(
                t,
                threshold=threshold,
                label_event=label_event,
                alpha=alpha,
                share=share,
                served_requests=served,
                segments=shadow_segments(
                    by_segment.get(t.variant, []), segment or "", alpha=alpha, correction=correction
                ),
            ),
            feature_pairs=identity[t.variant].compared if t.variant in identity else 0,
            identical_feature_pairs=identity[t.variant].identical if t.variant in identity else 0,
        )
        for t in totals
    ]


def feature_identity_warnings(shadows: Sequence[ShadowResult]) -> list[str]:
    """A warning per shadow variant whose requests did not all reach both models with the
    same feature vector (the paired comparison then mixes model and input differences)."""
    return [
        f"shadow {s.variant}: features differed between the served and the shadow model on "
        f"{s.feature_pairs - s.identical_feature_pairs:,} of {s.feature_pairs:,} requests "
        f"(identical on {_number('positive_rate', s.identical_feature_pairs / s.feature_pairs)}"
        "): a cache, a feature pipeline or the client gave them different inputs"
        for s in shadows
        if s.identical_feature_pairs < s.feature_pairs
    ]


def _number(name: str, value: float, *, signed: bool = False) -> str:
    if value != value:  # NaN
        return "—"
    if name in RATES:
        return f"{value * 100:+.2f} pp" if signed else f"{value:.2%}"
    suffix = " ms" if name == "latency" else ""
    return f"{value:+.4g}{suffix}" if signed else f"{value:.4g}{suffix}"


def _row(m: ShadowMeasure, label: str) -> list[str]:
    interval = (
        f"[{_number(m.name, m.ci_low, signed=True)}, {_number(m.name, m.ci_high, signed=True)}]"
        if math.isfinite(m.ci_low)
        else "—"
    )
    p_value = "—" if m.p_value is None else f"{format_p_value(m.p_value)} ({m.test})"
    if m.p_adjusted is not None:
        p_value += f"; adjusted {format_p_value(m.p_adjusted)}"
    return [
        label,
        f"{m.n:,}",
        _number(m.name, m.served),
        _number(m.name, m.shadow),
        _number(m.name, m.difference, signed=True),
        interval,
        p_value,
    ]


def shadow_rows(shadow: ShadowResult) -> list[list[str]]:
    """The measures of one shadow variant as text cells, in :data:`SHADOW_COLUMNS` order,
    then each segment's (``measure · attribute=value``, p-values with the adjusted one)."""
    rows = [_row(m, m.name) for m in shadow.measures]
    for segment in shadow.segments:
        value = "(none)" if segment.value is None else segment.value
        rows.extend(_row(m, f"{m.name} · {segment.attribute}={value}") for m in segment.measures)
    return rows


def shadow_summary(shadow: ShadowResult) -> str:
    """One paragraph: pairs, agreement, score-difference quantiles and latencies."""
    quantiles = ", ".join(
        f"{name.upper()} {value:+.3f}" for name, value in shadow.score_difference_quantiles.items()
    )
    served = "/".join(f"{v:.1f}" for v in shadow.served_latency_ms)
    copied = "/".join(f"{v:.1f}" for v in shadow.shadow_latency_ms)
    mirrored = ""
    if shadow.served_requests:
        observed = _number("positive_rate", shadow.pairs / shadow.served_requests)
        mirrored = f" of {shadow.served_requests:,} served ({observed}; share {shadow.share:g})"
    features = ""
    if shadow.feature_pairs:
        identical = shadow.identical_feature_pairs / shadow.feature_pairs
        features = (
            f" Identical features on {_number('positive_rate', identical)} of "
            f"{shadow.feature_pairs:,} requests with a features hash."
        )
    return (
        f"Shadow {shadow.variant} ({shadow.model_version}): {shadow.pairs:,} requests{mirrored} "
        f"answered by both models, {shadow.scored_pairs:,} scored by both, {shadow.labeled_pairs:,} "
        f"labelled ({shadow.label_event!r}). Decisions (score >= {shadow.threshold:g}) agree "
        f"on {_number('positive_rate', shadow.agreement_rate)}. Score difference (shadow - "
        f"served): {quantiles}. Latency P50/P95/P99 ms: served {served}, shadow {copied}."
        f"{features}"
    )
