"""Experiment, metric, analysis and rollout specs: what users write in YAML or JSON.

A spec is validated once, when it is loaded, and every problem is reported at once with its
path (``variants[1].name: duplicate variant name 'b'``), so that a user fixes a file in one
pass instead of one error per run. Routing, analysis and rollout trust a loaded spec.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from abflow.errors import DocumentError, InvalidSpecError
from abflow.settings import read_document
from abflow.targeting.validation import validate_condition

__all__ = [
    "AnalysisSpec",
    "ConversionWindowSpec",
    "ExperimentSpec",
    "FilterSpec",
    "MetricSpec",
    "MonitoringSpec",
    "NamespaceSpec",
    "RampStepSpec",
    "RolloutSpec",
    "ShadowSpec",
    "StickySpec",
    "VariantSpec",
    "canonical_json",
    "challenger_share",
    "experiment_json_schema",
    "is_mirrored",
    "load_experiment",
    "parse_experiment",
    "rollout_registration",
    "shown_reference",
    "shown_spec",
    "spec_hash",
    "text_problem",
    "traffic_fields",
    "validate_condition",
    "with_mirrored",
]

WEIGHT_TOLERANCE = 1e-6
"""Weights must sum to 1 within this (GrowthBook's SDK falls back to equal weights at ±0.01)."""

_KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"
MAX_VARIANTS = 100
"""Most variants one experiment may have: each is a model to load and a set of metric series
(5,000 variants made one gateway's /metrics 1.6 MB)."""
MAX_TEXT = 5_000
"""Longest free text (a name, a description), in characters."""
_MODEL_REF = re.compile(
    r"^(models:/[^/@\s]+(/\d+|/latest|@[A-Za-z0-9_\-]+)"  # MLflow registry: version or alias
    r"|runs:/\S+"  # an MLflow run artifact
    r"|file:\S+"  # a local pickled / joblib model
    r"|https?://\S+"  # a remote model server
    r"|python:[A-Za-z_][\w.]*:[A-Za-z_]\w*)$"  # a Python factory "module:attribute"
)

MetricKind = Literal[
    "conversion",
    "mean",
    "sum",
    "ratio",
    "quantile",
    "accuracy",
    "precision",
    "recall",
    "false_positive_rate",
    "calibration_error",
    "mae",
    "rmse",
    "latency",
    "error_rate",
    "fallback_rate",
    "cost",
]


class _Spec(BaseModel):
    # No whitespace stripping: seeds, unit ids and namespace names are hashed as written,
    # exactly as a client SDK would hash them.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class VariantSpec(_Spec):
    """One arm of an experiment: a name and the model that serves it."""

    name: Annotated[str, Field(pattern=_KEY_PATTERN)]
    model: str = Field(
        description="models:/NAME/VERSION, models:/NAME/latest, models:/NAME@ALIAS, runs:/…, file:PATH, http(s)://URL "
        "or python:module:attribute"
    )
    description: Annotated[str, Field(max_length=MAX_TEXT)] = ""

    @field_validator("model")
    @classmethod
    def _model_reference(cls, value: str) -> str:
        if not _MODEL_REF.match(value):
            msg = (
                f"{value!r} is not a model reference; use models:/NAME/VERSION, "
                "models:/NAME@ALIAS, runs:/…, file:PATH, http(s)://URL or python:module:attr"
            )
            raise ValueError(msg)
        return value


class NamespaceSpec(_Spec):
    """A slice ``[start, end)`` of a namespace; experiments on disjoint slices never share units."""

    name: Annotated[str, Field(min_length=1)]
    start: Annotated[float, Field(ge=0.0, le=1.0)]
    end: Annotated[float, Field(ge=0.0, le=1.0)]

    @model_validator(mode="before")
    @classmethod
    def _from_triple(cls, data: Any) -> Any:
        if isinstance(data, list | tuple):
            if len(data) != 3:
                msg = f"namespace must be [name, start, end], got {len(data)} items"
                raise ValueError(msg)
            return {"name": data[0], "start": data[1], "end": data[2]}
        return data

    @model_validator(mode="after")
    def _ordered(self) -> NamespaceSpec:
        if self.start >= self.end:
            msg = f"namespace start {self.start} must be below end {self.end}"
            raise ValueError(msg)
        return self

    def as_tuple(self) -> tuple[str, float, float]:
        return (self.name, self.start, self.end)


def _ordered_range(bucket_range: tuple[float, float]) -> tuple[float, float]:
    start, end = bucket_range
    if start > end:
        msg = f"range [{start}, {end}] starts above its end"
        raise ValueError(msg)
    return bucket_range


_Share = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
HashRange = Annotated[tuple[_Share, _Share], AfterValidator(_ordered_range)]
"""A half-open bucket range ``[start, end)`` with ``0 <= start <= end <= 1``."""


class FilterSpec(_Spec):
    """A hash slice a unit must fall in to be in the experiment (GrowthBook's ``filters``).

    The attribute is hashed with the filter's own seed, so experiments that share a filter
    seed and attribute can split one population into disjoint slices, on any attribute
    (a namespace slices the unit attribute only).
    """

    attribute: str | None = Field(
        default=None, min_length=1, description="attribute hashed; defaults to the unit"
    )
    seed: str = Field(description="hash seed, shared by the experiments that split one slice")
    hash_version: Literal[1, 2] = 2
    ranges: list[HashRange] = Field(
        min_length=1, description="bucket ranges [start, end) the unit must fall in (any one)"
    )


UNIT_KINDS = ("conversion", "mean", "sum", "ratio")
"""Metric kinds read from each unit's outcomes: the ones a window or post-stratification fits."""

_ATTRIBUTE_PATTERN = r"^[A-Za-z0-9_]{1,64}$"


class ConversionWindowSpec(_Spec):
    """Which outcomes count: from ``delay_hours`` after the unit's first exposure, for
    ``length_hours`` (None: to the end of the analysis), as GrowthBook's conversion windows."""

    delay_hours: float = Field(default=0.0, ge=0.0, allow_inf_nan=False)
    length_hours: float | None = Field(default=None, gt=0.0, allow_inf_nan=False)


class MetricSpec(_Spec):
    """A metric computed from the event log, with the direction that counts as better."""

    name: Annotated[str, Field(pattern=_KEY_PATTERN)]
    kind: MetricKind
    role: Literal["primary", "secondary", "guardrail"] = "secondary"
    event: str | None = Field(
        default=None, description="outcome name whose value the metric reads (conversion, mean…)"
    )
    numerator: str | None = Field(default=None, description="ratio: outcome name on top")
    denominator: str | None = Field(default=None, description="ratio: outcome name below")
    quantile: float | None = Field(default=None, gt=0.0, lt=1.0)
    direction: Literal["increase", "decrease"] = "increase"
    margin: float | None = Field(
        default=None,
        ge=0.0,
        allow_inf_nan=False,  # an infinite margin allows any harm: the guardrail guards nothing
        description="non-inferiority margin (relative), for guardrails: how much worse is allowed",
    )
    # Bounded so that a cost's sums of squares stay finite (1e308 left every result uncomputable).
    cost_per_1000: float | None = Field(
        default=None, ge=0.0, le=1e9, allow_inf_nan=False, description="cost metrics: price"
    )
    cost_per_second: float | None = Field(
        default=None,
        ge=0.0,
        le=1e9,
        allow_inf_nan=False,
        description="cost metrics: compute price per second of latency",
    )
    window: ConversionWindowSpec | None = Field(
        default=None,
        description="conversion window: count outcomes from delay_hours after the unit's "
        "first exposure, for length_hours (conversion, mean, sum, ratio)",
    )
    post_stratify: list[Annotated[str, Field(pattern=_ATTRIBUTE_PATTERN)]] = Field(
        default_factory=list,
        max_length=4,
        description="exposure attributes whose cells post-stratify the comparison, e.g. "
        "[country, platform] (conversion, mean, sum, ratio; frequentist analysis)",
    )

    @model_serializer(mode="wrap")
    def _leave_out_unset_additions(self, handler: SerializerFunctionWrapHandler) -> Any:
        """``window`` and ``post_stratify`` came later: left out when unset, so that a spec
        written before them keeps its canonical JSON and :func:`spec_hash`."""
        data = handler(self)
        if isinstance(data, dict):
            for name in ("window", "post_stratify"):
                if not data.get(name):
                    data.pop(name, None)
        return data

    @model_validator(mode="after")
    def _fields_for_kind(self) -> MetricSpec:
        problems: list[str] = []
        if self.kind in ("conversion", "mean", "sum") and not self.event:
            problems.append(f"a {self.kind} metric needs 'event' (the outcome name it reads)")
        if self.kind == "ratio" and not (self.numerator and self.denominator):
            problems.append("a ratio metric needs 'numerator' and 'denominator'")
        if self.kind == "quantile" and self.quantile is None:
            problems.append("a quantile metric needs 'quantile' (e.g. 0.95)")
        for name in ("window", "post_stratify"):
            if getattr(self, name) and self.kind not in UNIT_KINDS:
                problems.append(f"'{name}' applies to {', '.join(UNIT_KINDS)} metrics only")
        if len(set(self.post_stratify)) != len(self.post_stratify):
            problems.append("post_stratify names an attribute twice")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class AnalysisSpec(_Spec):
    """How results are computed: error rates, method, variance reduction, correction."""

    alpha: float = Field(default=0.05, gt=0.0, lt=1.0)
    power: float = Field(default=0.8, gt=0.0, lt=1.0)
    method: Literal["frequentist", "sequential", "bayesian"] = "frequentist"
    relative: bool = True
    cuped: bool = Field(default=False, description="adjust with each unit's pre-period value")
    cuped_covariate: str | None = Field(
        default=None, description="outcome name whose pre-period value is the covariate"
    )
    correction: Literal["none", "holm", "benjamini-hochberg"] = "holm"
    srm_alpha: float = Field(default=0.001, gt=0.0, lt=1.0)
    sequential_tuning: int = Field(default=5000, gt=0)
    minimum_detectable_effect: float | None = Field(default=None, gt=0.0)
    daily_units: int | None = Field(default=None, gt=0)


class RampStepSpec(_Spec):
    """One step of a canary ramp: the challenger's share and how long to hold it.

    A plan's first step may be a shadow step (``shadow: true``, no traffic): the challenger
    serves no one and gets copies of the requests, and the controller moves on only when
    it is paired non-inferior on the guardrails (``min_samples`` counts paired requests).
    """

    traffic: float = Field(
        default=0.0, ge=0.0, le=1.0, description="challenger share of covered traffic"
    )
    shadow: bool = Field(default=False, description="mirror requests to the challenger only")
    min_duration_hours: float = Field(default=24.0, ge=0.0)
    min_samples: int = Field(default=1000, ge=0)

    @model_serializer(mode="wrap")
    def _leave_out_unset_shadow(self, handler: SerializerFunctionWrapHandler) -> Any:
        """``shadow`` came later: left out when false, so that a plan written before it
        keeps its canonical JSON and :func:`spec_hash`."""
        data = handler(self)
        if isinstance(data, dict) and not data.get("shadow"):
            data.pop("shadow", None)
        return data

    @model_validator(mode="after")
    def _traffic_or_shadow(self) -> RampStepSpec:
        if self.shadow and self.traffic > 0:
            msg = f"a shadow step serves no traffic; leave 'traffic' ({self.traffic}) out"
            raise ValueError(msg)
        if not self.shadow and self.traffic <= 0:
            msg = "traffic must be above 0 (or the step must be a shadow step: shadow: true)"
            raise ValueError(msg)
        return self


class RolloutSpec(_Spec):
    """A progressive rollout: ramp the challenger while guardrails hold."""

    challenger: str | None = Field(default=None, description="variant that ramps; default second")
    steps: list[RampStepSpec] = Field(min_length=1)
    guardrails: list[str] = Field(default_factory=list, description="metric names")
    auto_promote: bool = False
    auto_rollback: bool = True
    on_monitor_alarm: Literal["hold", "rollback", "ignore"] = Field(
        default="hold",
        description="what a tick does while the live monitor raises an alarm on the "
        "challenger (drift, skew or quality, see abflow monitor)",
    )

    @model_serializer(mode="wrap")
    def _leave_out_unset_alarm_action(self, handler: SerializerFunctionWrapHandler) -> Any:
        """``on_monitor_alarm`` came later: left out when unset, so that a plan written
        before it keeps its canonical JSON and :func:`spec_hash`."""
        data = handler(self)
        if isinstance(data, dict) and "on_monitor_alarm" not in self.model_fields_set:
            data.pop("on_monitor_alarm", None)
        return data

    @field_validator("steps")
    @classmethod
    def _increasing(cls, steps: list[RampStepSpec]) -> list[RampStepSpec]:
        for index, step in enumerate(steps):
            if step.shadow and index > 0:
                msg = f"steps[{index}] is a shadow step: only the first step can be one"
                raise ValueError(msg)
        if steps[0].shadow and len(steps) == 1:
            msg = "a shadow step must be followed by a ramp step (with traffic)"
            raise ValueError(msg)
        for index in range(1, len(steps)):
            if steps[index].traffic <= steps[index - 1].traffic:
                msg = (
                    f"steps[{index}].traffic {steps[index].traffic} must exceed the previous "
                    f"step's {steps[index - 1].traffic}: a ramp only moves units to the challenger"
                )
                raise ValueError(msg)
        return steps


class ShadowSpec(_Spec):
    """Shadow traffic: which challengers get a copy of requests, and of what share.

    The gateway's config may name more mirrored variants; ``share`` applies to all of them.
    Sampling is deterministic (a hash of the request id, or of the unit id with
    ``by: unit``), so every replica mirrors the same requests.
    """

    variants: list[str] = Field(default_factory=list, description="challengers to mirror")
    share: float = Field(default=1.0, gt=0.0, le=1.0, description="fraction of requests mirrored")
    by: Literal["request", "unit"] = Field(
        default="request", description="what the sample is drawn on: request ids or unit ids"
    )


class MonitoringSpec(_Spec):
    """Live monitoring: the share of each variant's served rows whose features and score are
    kept (a reservoir per window), the window, and how drift is judged (``abflow monitor``)."""

    sample_rate: float = Field(
        default=0.01, ge=0.0, le=1.0, description="share of served rows sampled; 0 turns it off"
    )
    window_hours: float = Field(default=1.0, gt=0.0, le=168.0, allow_inf_nan=False)
    max_samples_per_window: int = Field(
        default=1000, ge=10, le=100_000, description="reservoir size per variant and window"
    )
    features: list[str] = Field(
        default_factory=list, description="names of the feature positions (default f0, f1, …)"
    )
    drift_method: Literal["psi", "ks", "wasserstein", "js", "chi2", "auto"] = "psi"
    drift_threshold: float | None = Field(
        default=None, gt=0.0, description="default: the method's (PSI 0.2 in drift's table)"
    )
    min_samples: int = Field(
        default=300,
        ge=1,
        description="fewer sampled rows in a window or reference: no verdict (PSI over 10 bins "
        "of two samples of 300 from one distribution averages 0.06, a third of its threshold)",
    )


class StickySpec(_Spec):
    """Sticky bucketing as GrowthBook does it: a unit keeps the variant it was first given
    while weights and coverage change (see :mod:`abflow.routing.sticky`)."""

    bucket_version: int = Field(default=0, ge=0, description="raise to assign everyone afresh")
    min_bucket_version: int = Field(
        default=0, ge=0, description="units holding an older version's bucket are left out"
    )
    fallback_attribute: str | None = Field(
        default=None, min_length=1, description="hashed when the unit attribute is missing"
    )

    @model_validator(mode="after")
    def _versions(self) -> StickySpec:
        if self.min_bucket_version > self.bucket_version:
            msg = (
                f"min_bucket_version {self.min_bucket_version} is above bucket_version "
                f"{self.bucket_version}: every unit would be blocked"
            )
            raise ValueError(msg)
        return self


class ExperimentSpec(_Spec):
    """An experiment: who is in it, which variant each unit sees, and how it is judged."""

    key: Annotated[str, Field(pattern=_KEY_PATTERN)]
    name: Annotated[str, Field(max_length=MAX_TEXT)] = ""
    unit: Annotated[str, Field(min_length=1, max_length=256)] = "user_id"
    seed: str | None = Field(
        default=None, description="hash seed; defaults to the key (an empty seed too)"
    )
    hash_version: Literal[1, 2] = 2
    variants: list[VariantSpec] = Field(min_length=2, max_length=MAX_VARIANTS)
    weights: list[float] | None = Field(default=None, description="defaults to equal weights")
    coverage: float = Field(default=1.0, ge=0.0, le=1.0)
    namespace: NamespaceSpec | None = None
    filters: list[FilterSpec] = Field(
        default_factory=list,
        description="hash slices a unit must fall in, every one (instead of a namespace)",
    )
    condition: dict[str, Any] | None = None
    forced: dict[str, str] = Field(default_factory=dict, description="unit id -> variant name")
    active: bool = Field(
        default=True, description="false: nobody is in the experiment but the forced units"
    )
    force: str | None = Field(
        default=None,
        description="variant that every unit passing targeting and coverage gets, not by hash",
    )
    metrics: list[MetricSpec] = Field(default_factory=list)
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec)
    rollout: RolloutSpec | None = None
    monitoring: MonitoringSpec | None = None
    shadow: ShadowSpec | None = None
    sticky: StickySpec | None = Field(
        default=None,
        description="sticky bucketing: exposed units keep their variant when weights or "
        "coverage change (a rollout may then ramp below full coverage)",
    )

    @model_serializer(mode="wrap")
    def _leave_out_unset_additions(self, handler: SerializerFunctionWrapHandler) -> Any:
        """``shadow``, ``monitoring``, ``sticky``, ``filters``, ``active`` and ``force`` came
        later: left out when unset (as for :class:`RampStepSpec`)."""
        data = handler(self)
        if isinstance(data, dict):
            for name in ("shadow", "monitoring", "sticky", "force"):
                if data.get(name) is None:
                    data.pop(name, None)
            if not data.get("filters"):
                data.pop("filters", None)
            if data.get("active") is True:
                data.pop("active", None)
        return data

    @property
    def hash_seed(self) -> str:
        """The seed hashed with each unit: the key when none is set or it is empty, as
        GrowthBook's SDKs do (``seed || key``)."""
        return self.seed or self.key

    @property
    def control(self) -> VariantSpec:
        return self.variants[0]

    @property
    def variant_names(self) -> list[str]:
        return [v.name for v in self.variants]

    @property
    def effective_weights(self) -> list[float]:
        """The weights that route: as written, else equal; a rollout plan without weights
        starts with all traffic on the control (the first tick opens step 1)."""
        if self.weights is not None:
            return list(self.weights)
        if self.rollout is not None:
            weights = [0.0] * len(self.variants)
            weights[0] = 1.0
            return weights
        return [1.0 / len(self.variants)] * len(self.variants)

    @property
    def challenger_index(self) -> int:
        """The variant a rollout ramps: the plan's challenger, else the second variant."""
        name = self.rollout.challenger if self.rollout is not None else None
        return self.variant_names.index(name) if name is not None else 1

    @property
    def primary_metric(self) -> MetricSpec | None:
        return next((m for m in self.metrics if m.role == "primary"), None)

    def metric(self, name: str) -> MetricSpec:
        for metric in self.metrics:
            if metric.name == name:
                return metric
        msg = f"experiment {self.key!r} has no metric {name!r}"
        raise KeyError(msg)

    @model_validator(mode="after")
    def _cross_field_rules(self) -> ExperimentSpec:
        problems = _cross_field_problems(self)
        if problems:
            raise _Problems(problems)
        return self


class _Problems(ValueError):
    """Several located problems from one validator, unpacked by :func:`parse_experiment`."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{path}: {msg}" for path, msg in problems))


def _cross_field_problems(spec: ExperimentSpec) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    names = spec.variant_names
    seen: dict[str, int] = {}
    for index, name in enumerate(names):
        if name in seen:
            problems.append(
                (
                    f"variants[{index}].name",
                    f"duplicate variant name {name!r} (also variants[{seen[name]}])",
                )
            )
        seen.setdefault(name, index)

    if spec.weights is not None:
        if len(spec.weights) != len(names):
            problems.append(
                ("weights", f"{len(spec.weights)} weights for {len(names)} variants; give one each")
            )
        out_of_range = [i for i, weight in enumerate(spec.weights) if not 0 <= weight <= 1]
        for index in out_of_range:  # NaN too
            weight = spec.weights[index]
            problems.append((f"weights[{index}]", f"weight {weight} must be between 0 and 1"))
        if not out_of_range:  # each in [0, 1], the sum cannot overflow (1e308 + 1e308 does)
            total = math.fsum(spec.weights)
            if abs(total - 1.0) > WEIGHT_TOLERANCE:
                problems.append(("weights", f"weights sum to {total:g}, expected 1"))

    for unit_id, variant in spec.forced.items():
        if variant not in seen:
            problems.append(
                (f"forced.{unit_id}", f"unknown variant {variant!r}; variants are {names}")
            )
    if spec.force is not None and spec.force not in seen:
        problems.append(("force", f"unknown variant {spec.force!r}; variants are {names}"))
    if spec.filters and spec.namespace is not None:
        ns = spec.namespace
        problems.append(
            (
                "namespace",
                "give a namespace or filters, not both (GrowthBook ignores the namespace when "
                f"filters are set); write it as one more filter: {{seed: '__{ns.name}', "
                f"hash_version: 1, ranges: [[{ns.start}, {ns.end}]]}}",
            )
        )

    if spec.condition is not None:
        problems.extend(
            ("condition" + path, msg) for path, msg in validate_condition(spec.condition)
        )

    metric_names: dict[str, int] = {}
    for index, metric in enumerate(spec.metrics):
        if metric.name in metric_names:
            problems.append((f"metrics[{index}].name", f"duplicate metric name {metric.name!r}"))
        metric_names.setdefault(metric.name, index)
        if metric.post_stratify and spec.analysis.method != "frequentist":
            problems.append(
                (
                    f"metrics[{index}].post_stratify",
                    f"post-stratification is a fixed-horizon frequentist test; analysis.method "
                    f"is {spec.analysis.method!r}",
                )
            )
    primaries = [i for i, m in enumerate(spec.metrics) if m.role == "primary"]
    if len(primaries) > 1:
        problems.append((f"metrics[{primaries[1]}].role", "only one metric can be primary"))

    if spec.rollout is not None:
        for index, guardrail in enumerate(spec.rollout.guardrails):
            if guardrail not in metric_names:
                problems.append(
                    (
                        f"rollout.guardrails[{index}]",
                        f"unknown metric {guardrail!r}; metrics are {sorted(metric_names)}",
                    )
                )
        challenger = spec.rollout.challenger
        if challenger is not None and challenger not in seen:
            problems.append(("rollout.challenger", f"unknown variant {challenger!r}"))
        if challenger is not None and challenger == names[0]:
            problems.append(("rollout.challenger", "the control cannot be the challenger"))
    if spec.shadow is not None:
        for index, name in enumerate(spec.shadow.variants):
            if name not in seen or name == names[0]:
                problems.append(
                    (
                        f"shadow.variants[{index}]",
                        f"{name!r} is not a challenger; variants are {names}",
                    )
                )
    return problems


# --- loading --------------------------------------------------------------------------------


def text_problem(value: str) -> str | None:
    """Why a store cannot hold ``value`` (a NUL or a lone surrogate), or None if it can."""
    if "\x00" in value:
        return "contains a NUL character (U+0000), which the event store cannot hold"
    try:
        value.encode()
    except UnicodeEncodeError:
        return "contains a lone surrogate, which is not UTF-8 and the event store cannot hold"
    return None


def _unstorable(data: Any) -> list[str]:
    """Problems of values JSON cannot carry into the store and back: an infinite or NaN
    number (stored as null, so the spec read back differs or no longer validates) and text
    with a NUL or a lone surrogate, in keys and values alike, at any depth."""
    found: list[str] = []
    stack: list[tuple[str, Any]] = [("", data)]
    while stack and len(found) < 20:
        where, value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            found.append(f"{where or '.'}: Input should be a finite number, got {value}")
        elif isinstance(value, str):
            problem = text_problem(value)
            if problem is not None:
                found.append(f"{where or '.'}: {problem}")
        elif isinstance(value, dict):
            for key, item in value.items():
                name = str(key)
                problem = text_problem(name)
                if problem is not None:
                    found.append(f"{where or '.'}: a key {problem}")
                    continue
                stack.append((f"{where}.{name}" if where else name, item))
        elif isinstance(value, list | tuple):
            stack.extend((f"{where}[{i}]", item) for i, item in enumerate(value))
    return sorted(found)


def parse_experiment(data: Any, source: str | None = None) -> ExperimentSpec:
    """Validate a decoded spec, raising :class:`InvalidSpecError` with every problem found."""
    if not isinstance(data, dict):
        raise InvalidSpecError([".: a spec must be a mapping of fields"], source)
    unstorable = _unstorable(data)
    if unstorable:
        raise InvalidSpecError(unstorable, source)
    try:
        return ExperimentSpec.model_validate(data)
    except ValidationError as exc:
        problems = _describe(exc)
        first_error_fields = {e["loc"][0] for e in exc.errors() if e["loc"]}
    # Field errors stop pydantic before the cross-field rules run; check those rules again
    # without the broken fields, so that one pass reports every problem.
    rest = {k: v for k, v in data.items() if k not in first_error_fields}
    try:
        ExperimentSpec.model_validate(rest)
    except ValidationError as exc:
        # A rule that reads a broken field would judge it by its default (no metrics, say)
        # and report a problem that is not there.
        misleading = tuple(p for f in first_error_fields for p in _READS.get(str(f), ()))
        problems.extend(
            p
            for p in _describe(exc, only_cross_field=True)
            if p not in problems and not p.startswith(misleading)
        )
    raise InvalidSpecError(problems, source)


_READS = {"metrics": ("rollout.guardrails",)}
"""Top-level field → the paths of cross-field rules that read it."""


def _describe(exc: ValidationError, *, only_cross_field: bool = False) -> list[str]:
    problems: list[str] = []
    for error in exc.errors(include_url=False):
        context = error.get("ctx") or {}
        inner = context.get("error")
        location = _format_location(error["loc"])
        if isinstance(inner, _Problems):
            problems.extend(f"{_join(location, path)}: {msg}" for path, msg in inner.problems)
            continue
        if only_cross_field:
            continue
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(f"{location or '.'}: {message}")
    return problems


def _format_location(location: tuple[int | str, ...]) -> str:
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        elif str(part).startswith(("function-", "tagged-union")):
            continue
        elif not _plain_name(str(part)):  # "monitoring[' ']", never "monitoring. "
            text += f"[{str(part)!r}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _plain_name(key: str) -> bool:
    """Whether a key reads as one name after a dot (else an error shows it as ``['key']``)."""
    return bool(key) and key.isprintable() and not set(key) & set(".[] '\"")


def _join(prefix: str, path: str) -> str:
    if not prefix:
        return path
    return f"{prefix}{path}" if path.startswith("[") else f"{prefix}.{path}"


def load_experiment(path: str | Path) -> ExperimentSpec:
    """Read a spec from a ``.yaml``/``.yml`` or ``.json`` file."""
    try:
        data = read_document(Path(path))
    except DocumentError as exc:
        raise InvalidSpecError([exc.problem], str(path)) from None
    return parse_experiment(data, str(path))


def canonical_json(spec: ExperimentSpec) -> str:
    """The spec as sorted, compact JSON: what the store keeps and what :func:`spec_hash` hashes."""
    return json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def shown_reference(reference: str) -> str:
    """A model reference as responses, logs and reports may show it: an HTTP URL without
    the user info, query and fragment, where credentials and API keys ride."""
    if not reference.startswith(("http://", "https://")):
        return reference
    parts = urlsplit(reference)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def shown_spec(spec: ExperimentSpec) -> dict[str, Any]:
    """The spec as JSON, each variant's model reference as :func:`shown_reference` shows it."""
    document = spec.model_dump(mode="json")
    for variant in document["variants"]:
        variant["model"] = shown_reference(variant["model"])
    return document


def spec_hash(spec: ExperimentSpec) -> str:
    """SHA-256 of the spec's canonical JSON: what reports record to make a result reproducible."""
    return hashlib.sha256(canonical_json(spec).encode()).hexdigest()


def traffic_fields(spec: ExperimentSpec) -> dict[str, Any]:
    """The fields that decide which unit gets which variant: a change to any starts a phase.

    The store and the gateway's in-memory catalog both open phases by this one rule, so
    analysis never mixes traffic split under different assignments. ``active`` is not one of
    them, like ``condition``: it says who is in, not which variant a unit gets, so pausing
    and resuming an experiment keeps its phase.
    """
    return {
        "variants": [(v.name, v.model) for v in spec.variants],
        "weights": spec.effective_weights,
        "coverage": spec.coverage,
        "unit": spec.unit,
        "seed": spec.hash_seed,
        "hash_version": spec.hash_version,
        "namespace": spec.namespace.as_tuple() if spec.namespace else None,
        "sticky": spec.sticky.model_dump() if spec.sticky else None,
        "filters": [f.model_dump() for f in spec.filters],
        "force": spec.force,
    }


def challenger_share(spec: ExperimentSpec) -> float | None:
    """The challenger's share when the weights split traffic between the control and the
    challenger only (0 before a rollout starts, 1 once promoted); None for any other split."""
    weights = spec.effective_weights
    index = spec.challenger_index
    if any(w > WEIGHT_TOLERANCE for i, w in enumerate(weights) if i not in (0, index)):
        return None
    return weights[index]


def rollout_registration(
    new: ExperimentSpec, stored: ExperimentSpec | None, *, is_before_start: bool = False
) -> ExperimentSpec:
    """The spec to store when ``new`` is registered over ``stored``: under a rollout plan the
    weights are the rollout's, so that a plan is in force from its registration on.

    ``is_before_start`` says that the rollout has not opened its first step yet: the store
    reads it from the audit trail. A caller that cannot know (the in-memory catalog, which
    may be handed the controller's moves) leaves it False.

    * A new rollout (nothing stored under a plan with the same variants and challenger)
      starts with all traffic on the control: weights giving the challenger more are refused,
      and so is a plan added to a live experiment whose challenger already has traffic.
    * Until the rollout has started, weights giving the challenger traffic are refused,
      even those of a plan step: only ``abflow rollout tick`` opens step 1.
    * A spec without weights keeps the stored split: registering the file again never undoes
      a ramp step, a rollback or a promotion.
    * Explicit weights must be a position of the plan (0, a step's share, or 1) and never
      lower the challenger's share except to 0 (a rollback): a ramp moves no unit back.

    Raises InvalidSpecError naming ``weights``.
    """
    plan = new.rollout
    if plan is None:
        return new
    share = challenger_share(new)
    written = f"weights {new.effective_weights}"
    if stored is None or not _same_rollout(new, stored):
        exposed = _live_challenger_share(new, stored)
        if exposed > WEIGHT_TOLERANCE:
            problem = (
                f"the challenger already serves {exposed:g} of traffic without a plan; a plan "
                "starts at 0 % and would move the units that saw it back to the control: "
                "register the plan under a new experiment key, or promote or stop this one"
            )
            raise InvalidSpecError([f"rollout: {problem}"], new.key)
        if share == 0.0:
            return new
        raise _before_the_start(new, written)
    if new.weights is not None and is_before_start and share != 0.0:
        raise _before_the_start(new, written)
    if new.weights is None:
        # The stored split, and whether the plan's shadow step mirrors the challenger now.
        kept: dict[str, Any] = {} if stored.weights is None else {"weights": stored.weights}
        challenger = new.variant_names[new.challenger_index]
        if is_mirrored(stored, challenger) != is_mirrored(new, challenger):
            kept["shadow"] = with_mirrored(new, challenger, on=is_mirrored(stored, challenger))
        return new.model_copy(update=kept) if kept else new
    positions = sorted({0.0, 1.0, *(step.traffic for step in plan.steps)})
    before = challenger_share(stored)
    if share is None or all(abs(share - p) > WEIGHT_TOLERANCE for p in positions):
        problem = (
            f"{written} are not a position of the rollout plan (the challenger's share must "
            f"be one of {positions}, the control's the rest); leave 'weights' out: "
            "`abflow rollout tick` sets them"
        )
        raise InvalidSpecError([f"weights: {problem}"], new.key)
    if before is not None and WEIGHT_TOLERANCE < share < before - WEIGHT_TOLERANCE:
        problem = (
            f"{written} would lower the challenger's share from {before:g} to {share:g}, "
            "moving units that saw it back to the control; use `abflow rollout rollback`"
        )
        raise InvalidSpecError([f"weights: {problem}"], new.key)
    return new


def _before_the_start(new: ExperimentSpec, written: str) -> InvalidSpecError:
    problem = (
        f"{written} send traffic to a variant other than the control before the rollout "
        "has started; a plan starts at 0 % to the challenger and `abflow rollout tick` "
        "opens each step: leave 'weights' out"
    )
    return InvalidSpecError([f"weights: {problem}"], new.key)


def is_mirrored(spec: ExperimentSpec, variant: str) -> bool:
    """Whether the spec asks for shadow copies of requests to ``variant``."""
    return spec.shadow is not None and variant in spec.shadow.variants


def with_mirrored(spec: ExperimentSpec, variant: str, *, on: bool) -> ShadowSpec | None:
    """The spec's shadow section with ``variant`` mirrored (``on``) or not; None when it
    would then mirror nothing and set nothing else."""
    current = spec.shadow or ShadowSpec()
    names = [name for name in current.variants if name != variant] + ([variant] if on else [])
    if not names and current.model_fields_set <= {"variants"}:
        return None
    return current.model_copy(update={"variants": names})


def _live_challenger_share(new: ExperimentSpec, stored: ExperimentSpec | None) -> float:
    """The share the stored spec gives ``new``'s challenger model (0 when it is not live)."""
    if stored is None or stored.rollout is not None or not _same_variants(new, stored):
        return 0.0
    return stored.effective_weights[new.challenger_index]


def _same_variants(new: ExperimentSpec, stored: ExperimentSpec) -> bool:
    return [(v.name, v.model) for v in stored.variants] == [
        (v.name, v.model) for v in new.variants
    ] and stored.challenger_index == new.challenger_index


def _same_rollout(new: ExperimentSpec, stored: ExperimentSpec) -> bool:
    return stored.rollout is not None and _same_variants(new, stored)


def experiment_json_schema() -> dict[str, Any]:
    """JSON Schema of an experiment spec, for editors (``abflow validate --schema``)."""
    schema = ExperimentSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "abflow experiment"
    return schema
