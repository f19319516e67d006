"""Result records of an experiment analysis, and their stable JSON form.

Every report format (terminal table, Markdown, HTML, the HTTP endpoint) renders the same
:class:`ExperimentResult`; ``to_dict`` is the documented JSON (``schema_version`` 1, see
docs/analysis.md). Fields are only ever added, never renamed, within a schema version.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from abflow.stats.srm import srm_status
from abflow.store.monitoring import MonitorRecord

__all__ = [
    "SCHEMA_VERSION",
    "BreakdownRow",
    "ComparisonResult",
    "Decision",
    "ExperimentResult",
    "GuardrailEvidence",
    "LatencySummary",
    "MetricResult",
    "MonitoringSummary",
    "Progress",
    "Provenance",
    "SampledFeatures",
    "ShadowMeasure",
    "ShadowResult",
    "ShadowSegment",
    "SrmSummary",
    "TimelinePoint",
    "VariantCount",
    "VariantValue",
]

SCHEMA_VERSION = 1

Outcome = Literal["better", "worse", "inconclusive", "error"]
GuardrailStatus = Literal["pass", "fail", "inconclusive"]


@dataclass(frozen=True, slots=True)
class VariantCount:
    """Units assigned to a variant against what its weight promised."""

    variant: str
    units: int
    expected_share: float
    observed_share: float


@dataclass(frozen=True, slots=True)
class SrmSummary:
    """Sample-ratio-mismatch check: a tiny p-value means assignment or logging is broken.

    ``status`` is ``healthy``, ``mismatch`` or ``not_enough_data`` (too few units for the
    test: the p-value is NaN, null in JSON, and ``error_code`` says why); left empty, it is
    derived from the other fields.
    """

    p_value: float
    alpha: float
    is_mismatch: bool
    status: str = ""
    error_code: str | None = None

    def __post_init__(self) -> None:
        if not self.status:
            object.__setattr__(self, "status", srm_status(self.p_value, self.is_mismatch))


@dataclass(frozen=True, slots=True)
class VariantValue:
    """A metric's value in one variant and the units (or predictions) behind it."""

    variant: str
    n: int
    value: float
    numerator: float | None = None
    denominator: float | None = None


@dataclass(frozen=True, slots=True)
class GuardrailEvidence:
    """The figures a guardrail's status rests on, and where they come from.

    ``basis`` is ``analysis`` (the comparison as reported), or the fallback named there when
    the reported comparison cannot judge harm: the absolute difference when the control's
    value is 0, an exact permutation test when neither arm varies.
    """

    basis: str
    effect: float
    ci_low: float
    ci_high: float
    relative: bool
    p_value: float | None
    error_code: str | None


@dataclass(frozen=True, slots=True)
class ComparisonResult:
    """One treatment against control for one metric, after multiple-testing correction."""

    variant: str
    effect: float
    ci_low: float
    ci_high: float
    p_value: float | None
    adjusted_p_value: float | None
    chance_to_win: float | None
    expected_loss: float | None
    is_significant: bool
    outcome: Outcome
    guardrail: GuardrailStatus | None = None
    error_code: str | None = None
    guardrail_evidence: GuardrailEvidence | None = None


@dataclass(frozen=True, slots=True)
class TimelinePoint:
    """Cumulative effect of a treatment using units exposed up to and including ``day``."""

    day: str
    variant: str
    effect: float
    ci_low: float
    ci_high: float
    units: int


@dataclass(frozen=True, slots=True)
class MetricResult:
    """One metric of the spec: values per variant, comparisons and cumulative timeline."""

    name: str
    kind: str
    role: str
    direction: str
    relative: bool
    method: str
    margin: float | None
    values: list[VariantValue]
    comparisons: list[ComparisonResult]
    timeline: list[TimelinePoint] = field(default_factory=list)
    cuped: bool = False
    note: str = ""


@dataclass(frozen=True, slots=True)
class BreakdownRow:
    """A metric's comparison within one value of an exposure attribute (country, device)."""

    dimension: str
    value: str
    metric: str
    variant: str
    control_units: int
    treatment_units: int
    control_value: float
    treatment_value: float
    effect: float
    ci_low: float
    ci_high: float
    p_value: float | None


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Latency quantiles of a variant's predictions (milliseconds) and its histogram."""

    variant: str
    predictions: int
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    histogram: list[tuple[float, int]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ShadowMeasure:
    """One measure of a shadow model against the served model on the same requests.

    ``difference`` is shadow minus served, with a paired interval (``ci_low``, ``ci_high``)
    over ``n`` pairs; ``test`` names how ``p_value`` was computed (``paired t``, ``McNemar
    exact`` or ``McNemar chi-square``; empty when the measure is descriptive only).
    ``harmful`` is the direction of the difference that would hurt, when a risk team cares.
    """

    name: str
    n: int
    served: float
    shadow: float
    difference: float
    ci_low: float
    ci_high: float
    p_value: float | None
    test: str
    harmful: Literal["increase", "decrease", ""] = ""
    error_code: str | None = None
    p_adjusted: float | None = None
    """In a segment breakdown: ``p_value`` corrected across the segments (spec's correction)."""


@dataclass(frozen=True, slots=True)
class ShadowSegment:
    """The paired measures of one shadow variant on the requests of one segment: units
    whose exposure attribute ``attribute`` is ``value`` (None: no exposure or no value)."""

    attribute: str
    value: str | None
    pairs: int
    measures: list[ShadowMeasure]


@dataclass(frozen=True, slots=True)
class ShadowResult:
    """A shadow variant judged on the requests it shared with the served model.

    Decisions are ``score >= threshold``; labels are outcomes named ``label_event`` carrying
    the request id. ``score_difference_quantiles`` maps P5…P95 of shadow minus served score
    (read off ``score_difference_histogram``, bins of ``bin_width``); latencies are
    ``[P50, P95, P99]`` in milliseconds for each model on the same requests.
    """

    variant: str
    model_version: str
    threshold: float
    label_event: str
    pairs: int
    scored_pairs: int
    labeled_pairs: int
    agreement_rate: float
    measures: list[ShadowMeasure]
    score_difference_quantiles: dict[str, float]
    score_difference_histogram: list[tuple[float, int]]
    bin_width: float
    served_latency_ms: list[float]
    shadow_latency_ms: list[float]
    share: float = 1.0
    """The spec's ``shadow.share``: the fraction of requests meant to be mirrored."""
    served_requests: int = 0
    """Requests the served model answered in the window (``pairs`` of them were mirrored)."""
    segments: list[ShadowSegment] = field(default_factory=list)
    feature_pairs: int = 0
    """Pairs where both predictions logged a features hash (store/feature_identity.py)."""
    identical_feature_pairs: int = 0
    """Of ``feature_pairs``, those whose two models saw the same feature vector."""

    def measure(self, name: str) -> ShadowMeasure:
        """The measure called ``name``."""
        for measure in self.measures:
            if measure.name == name:
                return measure
        msg = f"no shadow measure {name!r} for {self.variant!r}"
        raise KeyError(msg)


@dataclass(frozen=True, slots=True)
class SampledFeatures:
    """Did a variant's model see the features its predictions logged? From the monitoring
    samples (store/feature_identity.py): each sample is joined to the served prediction of
    its request, and its stored vector is hashed as the gateway hashes a request's row."""

    variant: str
    samples: int
    """Samples joined to a served prediction of the variant in the analysed window."""
    compared: int
    """Of ``samples``, those whose prediction logged a features hash (a batch logs none)."""
    identical: int
    """Of ``compared``, those whose sampled vector hashes to the logged hash."""

    @property
    def share(self) -> float:
        """Identical among compared (NaN when nothing could be compared)."""
        return self.identical / self.compared if self.compared else math.nan


@dataclass(frozen=True, slots=True)
class MonitoringSummary:
    """What the live monitor (``abflow monitor``) recorded over the analysed window.

    ``latest`` holds each measure's most recent verdict (per kind, variant, feature and
    method: the last window that had a value), ``train_serve_skew`` a sentence per such
    verdict that is a feature-drift alarm against the model's training data. ``history``
    (every record, oldest first, for the report's charts) is left out of the JSON.
    """

    windows: int
    first_window_start: float | None
    last_window_start: float | None
    alarms: int
    latest: list[MonitorRecord]
    train_serve_skew: list[str]
    history: list[MonitorRecord] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Progress:
    """How far the experiment is toward the sample its primary metric needs."""

    units: int
    required_units: int | None
    fraction: float | None
    elapsed_days: float
    remaining_days: float | None
    note: str = ""


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict in one line, the variant to ship, and the reasons behind it."""

    verdict: Literal["ship", "keep_control", "keep_running", "invalid"]
    winner: str | None
    summary: str
    reasons: list[str]


@dataclass(frozen=True, slots=True)
class Provenance:
    """What reproduces the result: the spec, the data window and the code version."""

    experiment_key: str
    spec_version: int | None
    spec_hash: str
    phase: int
    window_start: float | None
    window_end: float | None
    rows: dict[str, int]
    abflow_version: str
    generated_at: float
    store: str
    until: float | None = None
    """The data cutoff given (``--until``): no event stamped at or after it was read. The
    value to give again to re-run on the same data; None: every event of the window."""


@dataclass(frozen=True, slots=True)
class ExperimentResult:
    """Everything one analysis found: the record every report and the API render."""

    experiment_key: str
    name: str
    phase: int
    phases: list[int]
    method: str
    alpha: float
    correction: str
    provenance: Provenance
    variants: list[VariantCount]
    srm: SrmSummary
    metrics: list[MetricResult]
    progress: Progress
    decision: Decision
    latency: list[LatencySummary] = field(default_factory=list)
    breakdowns: list[BreakdownRow] = field(default_factory=list)
    mixed_units: int = 0
    warnings: list[str] = field(default_factory=list)
    shadow: list[ShadowResult] = field(default_factory=list)
    monitoring: MonitoringSummary | None = None
    """None when the monitor has recorded nothing for the analysed window."""
    sampled_features: list[SampledFeatures] = field(default_factory=list)

    @property
    def control(self) -> str:
        return self.variants[0].variant

    def metric(self, name: str) -> MetricResult:
        """The result of the metric called ``name``."""
        for metric in self.metrics:
            if metric.name == name:
                return metric
        msg = f"no metric {name!r} in the result of {self.experiment_key!r}"
        raise KeyError(msg)

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON form: NaN and infinities become ``null``."""
        data = asdict(self)
        if data["monitoring"] is not None:
            del data["monitoring"]["history"]  # the charts' input; ``abflow monitor`` has it
        for identity, found in zip(data["sampled_features"], self.sampled_features, strict=True):
            identity["share"] = found.share
        data["schema_version"] = SCHEMA_VERSION
        cleaned: dict[str, Any] = _clean(data)
        return cleaned


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value
