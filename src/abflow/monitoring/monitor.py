"""The live monitor: drift, skew and quality of each variant, window by window.

For every window holding monitoring samples (see :mod:`abflow.events.sampling`) it measures,
per variant:

- **feature drift** of the sampled inputs against a reference: the training sample of the
  variant's model when one is given (``reference_by_variant``; the record says
  ``reference="training"``, which analysis reports as train/serve skew), a pinned window, or
  by default the experiment's first sampled window (the variant's own rows there, else every
  variant's rows);
- **prediction drift** of the variant's scores against its scores in the reference window:
  it moves as soon as the inputs move, long before any label arrives;
- **skew between variants** on the same window: each challenger's inputs against the
  control's. Assignment is random, so the inputs should match; a difference points at
  routing or at a feature pipeline that differs per variant;
- **quality** once labels arrive (FPR, precision, recall, per variant), with an alarm when a
  challenger is significantly worse than the control on the same window's traffic.

The measures come from :mod:`abflow.drift` (method and threshold from the spec's
``monitoring`` section) and :func:`abflow.stats.compare`; a window with fewer than
``min_samples`` rows gets no verdict (value None, no alarm), never a noisy one. Results go to
the store (``monitor_results``, :func:`abflow.store.monitoring.monitor_history`) and to
Prometheus gauges (:mod:`abflow.monitoring.monitor_metrics`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from abflow.drift import FeatureDrift, compare_feature, detect_drift
from abflow.errors import InvalidArgumentError
from abflow.spec import ExperimentSpec, MonitoringSpec
from abflow.stats import SampleStats, compare
from abflow.store.monitoring import (
    MonitorRecord,
    QualityCounts,
    WindowSample,
    latest_alarms,
    quality_counts,
    sample_windows,
    save_monitor_results,
    window_samples,
)

__all__ = [
    "QUALITY_ALPHA",
    "MonitorOptions",
    "WindowReport",
    "challenger_alarms",
    "evaluate_window",
    "feature_names",
    "monitor_experiment",
]

QUALITY_ALPHA = 0.01
"""A challenger's quality alarm: worse than the control's at this two-sided p-value."""

_QUALITY_LABELLED_MIN = 30
"""Fewer labelled predictions in one cell (positives for recall, negatives for FPR, …): no
verdict, the count cannot say anything yet."""


@dataclass(frozen=True, slots=True)
class MonitorOptions:
    """How one pass runs: the reference, how far back windows are recomputed, labels."""

    reference_window: float | None = None
    """Start of the pinned reference window (None: the first sampled window)."""
    lookback_windows: int = 48
    """Windows recomputed on each pass (labels keep arriving for past windows)."""
    label_event: str = "label"
    threshold: float = 0.5
    """Score at or above which a prediction is positive, as in analysis."""
    reference_features: Mapping[str, Sequence[Any]] | None = None
    """A reference for feature drift given directly (e.g. training data), by feature name."""
    reference_by_variant: Mapping[str, Mapping[str, Sequence[Any]]] | None = None
    """Per variant, a reference for feature drift by feature name: the training sample of the
    variant's model (see :func:`abflow.registry.training_data.training_sample`)."""


@dataclass(frozen=True, slots=True)
class WindowReport:
    """What the monitor found in one window."""

    window_start: float
    window_end: float
    records: list[MonitorRecord] = field(default_factory=list)

    @property
    def alarms(self) -> list[MonitorRecord]:
        return [record for record in self.records if record.is_alarm]


def feature_names(config: MonitoringSpec, width: int) -> list[str]:
    """The spec's names for the feature positions, else ``f0``, ``f1``, …"""
    names = list(config.features)
    if names and len(names) != width:
        msg = f"monitoring.features names {len(names)} features, the samples hold {width}"
        raise InvalidArgumentError(msg)
    return names or [f"f{i}" for i in range(width)]


def _measured(verdict: FeatureDrift) -> dict[str, Any]:
    """A drift verdict's figures as a monitor record stores them."""
    return {
        "value": verdict.statistic,
        "p_value": verdict.p_value,
        "threshold": verdict.threshold,
        "is_alarm": verdict.drifted,
        "n_reference": verdict.n_reference,
        "n_current": verdict.n_current,
    }


def _columns(sample: WindowSample, names: list[str]) -> dict[str, list[float]]:
    return {name: [row[i] for row in sample.features] for i, name in enumerate(names)}


def _pooled(samples: Mapping[str, WindowSample]) -> WindowSample:
    features: list[list[float]] = []
    scores: list[float | None] = []
    for sample in samples.values():
        features += sample.features
        scores += sample.scores
    return WindowSample(features, scores)


def evaluate_window(
    spec: ExperimentSpec,
    window_start: float,
    current: Mapping[str, WindowSample],
    reference: Mapping[str, WindowSample],
    quality: Mapping[str, QualityCounts],
    *,
    reference_features: Mapping[str, Sequence[Any]] | None = None,
    reference_by_variant: Mapping[str, Mapping[str, Sequence[Any]]] | None = None,
) -> WindowReport:
    """Every measure of one window (pure: the samples and counts are given)."""
    config = spec.monitoring or MonitoringSpec()
    window_end = window_start + config.window_hours * 3600.0
    records: list[MonitorRecord] = []

    def record(kind: str, variant: str, feature: str, method: str, **values: Any) -> None:
        records.append(
            MonitorRecord(
                experiment_key=spec.key,
                window_start=window_start,
                window_end=window_end,
                kind=kind,
                variant=variant,
                feature=feature,
                method=method,
                **{
                    "value": None,
                    "p_value": None,
                    "threshold": None,
                    "is_alarm": False,
                    "n_reference": 0,
                    "n_current": 0,
                    **values,
                },
            )
        )

    method = config.drift_method
    pooled_reference = _pooled(reference)
    for variant in spec.variant_names:
        sample = current.get(variant)
        if sample is None or sample.n == 0:
            continue
        names = feature_names(config, len(sample.features[0]))
        ref = reference.get(variant)
        ref_features = ref if ref is not None and ref.n >= config.min_samples else pooled_reference
        enough = sample.n >= config.min_samples
        trained = (reference_by_variant or {}).get(variant)
        given = reference_features if trained is None else trained
        source = "window" if given is None else "given" if trained is None else "training"
        if given is not None:
            baseline: Mapping[str, Sequence[Any]] | None = given
            n_baseline = min((len(v) for v in given.values()), default=0)
        else:
            baseline = _columns(ref_features, names) if ref_features.n else None
            n_baseline = ref_features.n
        shared = [name for name in names if baseline is not None and name in baseline]
        if enough and shared and n_baseline >= config.min_samples:
            assert baseline is not None
            report = detect_drift(
                baseline,
                _columns(sample, names),
                features=shared,  # a training sample may lack a served feature, or add some
                method=method,
                threshold=config.drift_threshold,
            )
            for verdict in report.features:
                record(
                    "feature_drift",
                    variant,
                    verdict.feature,
                    verdict.method.value,
                    reference=source,
                    **_measured(verdict),
                )
        scores = [s for s in sample.scores if s is not None]
        ref_scores = [s for s in ref.scores if s is not None] if ref is not None else []
        if len(scores) >= config.min_samples and len(ref_scores) >= config.min_samples:
            verdict = compare_feature(
                "score", ref_scores, scores, method=method, threshold=config.drift_threshold
            )
            record(
                "prediction_drift",
                variant,
                "score",
                verdict.method.value,
                reference="window",
                **_measured(verdict),
            )
        else:
            record(
                "prediction_drift",
                variant,
                "score",
                method,
                reference="window",
                n_reference=len(ref_scores),
                n_current=len(scores),
            )
    records += _skew(spec, config, window_start, window_end, current)
    records += _quality(spec, window_start, window_end, quality)
    return WindowReport(window_start, window_end, records)


def _skew(
    spec: ExperimentSpec,
    config: MonitoringSpec,
    window_start: float,
    window_end: float,
    current: Mapping[str, WindowSample],
) -> list[MonitorRecord]:
    control = current.get(spec.variant_names[0])
    if control is None or control.n < config.min_samples:
        return []
    names = feature_names(config, len(control.features[0]))
    found = []
    for variant in spec.variant_names[1:]:
        sample = current.get(variant)
        if sample is None or sample.n < config.min_samples:
            continue
        report = detect_drift(
            _columns(control, names),
            _columns(sample, names),
            features=names,
            method=config.drift_method,
            threshold=config.drift_threshold,
        )
        found += [
            MonitorRecord(
                experiment_key=spec.key,
                window_start=window_start,
                window_end=window_end,
                kind="variant_skew",
                variant=variant,
                feature=verdict.feature,
                method=verdict.method.value,
                reference="control",
                **_measured(verdict),
            )
            for verdict in report.features
        ]
    return found


_QUALITY: dict[str, tuple[str, str, str]] = {
    "fpr": ("fp", "tn", "increase"),
    "precision": ("tp", "fp", "decrease"),
    "recall": ("tp", "fn", "decrease"),
}
"""Metric -> (count of successes, the other count of its denominator, the harmful move)."""


def _quality(
    spec: ExperimentSpec,
    window_start: float,
    window_end: float,
    quality: Mapping[str, QualityCounts],
) -> list[MonitorRecord]:
    found = []
    control_name = spec.variant_names[0]
    for variant in spec.variant_names:
        counts = quality.get(variant)
        if counts is None:
            continue
        for metric, (hit, other, harm) in _QUALITY.items():
            successes = getattr(counts, hit)
            n = successes + getattr(counts, other)
            value = successes / n if n else None
            p_value: float | None = None
            is_alarm = False
            reference = quality.get(control_name)
            ref_n = 0  # the control's labelled count this variant was compared with
            if variant != control_name and reference is not None and n >= _QUALITY_LABELLED_MIN:
                ref_successes = getattr(reference, hit)
                ref_n = ref_successes + getattr(reference, other)
                if ref_n >= _QUALITY_LABELLED_MIN:
                    comparison = compare(
                        SampleStats.proportion(ref_n, ref_successes),
                        SampleStats.proportion(n, successes),
                        relative=False,
                        alpha=QUALITY_ALPHA,
                    )
                    p_value = comparison.p_value
                    worse = comparison.effect > 0 if harm == "increase" else comparison.effect < 0
                    is_alarm = bool(p_value is not None and p_value < QUALITY_ALPHA and worse)
            found.append(
                MonitorRecord(
                    experiment_key=spec.key,
                    window_start=window_start,
                    window_end=window_end,
                    kind="quality",
                    variant=variant,
                    feature="",
                    method=metric,
                    value=value,
                    p_value=p_value,
                    threshold=QUALITY_ALPHA if variant != control_name else None,
                    is_alarm=is_alarm,
                    n_reference=ref_n,
                    n_current=n,
                    reference="control",
                )
            )
    return found


def monitor_experiment(
    store: Any,
    spec: ExperimentSpec,
    options: MonitorOptions | None = None,
    *,
    now: float | None = None,
) -> list[WindowReport]:
    """One pass over an experiment: compute and save its recent windows, oldest first.

    ``store`` is an :class:`~abflow.store.EventStore` or an engine. Windows that have not
    started by ``now`` are left out (samples stamped in the future by a skewed clock).
    """
    options = options or MonitorOptions()
    config = spec.monitoring or MonitoringSpec()
    now = time.time() if now is None else now
    windows = [start for start in sample_windows(store, spec.key) if start <= now]
    if not windows:
        return []
    reference_start = options.reference_window
    if reference_start is None:
        reference_start = windows[0]
    reference = window_samples(store, spec.key, reference_start, config.max_samples_per_window)
    reports = []
    width = config.window_hours * 3600.0
    for start in windows[-options.lookback_windows :]:
        current = window_samples(store, spec.key, start, config.max_samples_per_window)
        quality = quality_counts(
            store,
            spec.key,
            start,
            start + width,
            label_event=options.label_event,
            threshold=options.threshold,
        )
        report = evaluate_window(
            spec,
            start,
            current,
            reference,
            quality,
            reference_features=options.reference_features,
            reference_by_variant=options.reference_by_variant,
        )
        save_monitor_results(store, spec.key, start, report.records, now=now)
        reports.append(report)
    return reports


def challenger_alarms(store: Any, spec: ExperimentSpec, variant: str, now: float) -> list[str]:
    """The monitor's alarms on ``variant`` in the current and the previous window, as
    sentences for a rollout's reasons (none: the monitor sees nothing wrong, or has not run).
    """
    config = spec.monitoring or MonitoringSpec()
    width = config.window_hours * 3600.0
    since = math.floor(now / width) * width - width
    found = []
    for r in latest_alarms(store, spec.key, since=since):
        if r.variant != variant or r.window_start > now:
            continue
        what = {
            "feature_drift": f"feature {r.feature!r} drifted",
            "prediction_drift": "its scores drifted",
            "variant_skew": f"its inputs differ from the control's on {r.feature!r}",
            "quality": f"its {r.method} is worse than the control's",
        }.get(r.kind, r.kind)
        value = "" if r.value is None else f" ({r.method} {r.value:.3g})"
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(r.window_start))
        found.append(f"monitor: {variant} {what}{value} in the window from {when}")
    return found
