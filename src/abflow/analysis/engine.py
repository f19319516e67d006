"""Analyse one phase of an experiment: SQL aggregates → abflow.stats → an ExperimentResult.

The flow is fixed so that every number in a report can be traced: read the spec and phases
from the store, fetch moments per (variant, cohort day) for the phase only, sum the days into
per-variant statistics, compare each treatment with control, correct p-values across the
non-guardrail metrics, check guardrails against their margins, test the sample ratio, and
estimate progress toward the planned sample. Breakdowns by an exposure attribute are
exploratory (uncorrected) and computed on request. A metric with ``post_stratify`` has its
comparisons replaced by the post-stratified ones, computed on per-cell moments, before the
correction.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterable
from typing import Any

import orjson

from abflow.analysis.decision import decide, outcome_of
from abflow.analysis.drift_timeline import drift_summary
from abflow.analysis.guardrails import judge_guardrail
from abflow.analysis.identical_features import sampled_feature_warnings, sampled_features
from abflow.analysis.metrics import MetricPlan, cell_stats
from abflow.analysis.progress import estimate_progress, srm_check
from abflow.analysis.results import (
    BreakdownRow,
    ExperimentResult,
    MetricResult,
    Provenance,
    VariantCount,
)
from abflow.analysis.run import AnalysisOptions, MetricRun, totals_by_variant
from abflow.analysis.shadow import feature_identity_warnings
from abflow.errors import ExperimentNotFoundError, InvalidArgumentError
from abflow.spec import ExperimentSpec, parse_experiment, spec_hash
from abflow.stats.corrections import adjust_p_values
from abflow.stats.poststrat import compare_post_stratified
from abflow.store.aggregates import (
    ExperimentHistory,
    GroupKey,
    Moments,
    PhaseInfo,
    StoreTarget,
    Window,
    connect,
    experiment_history,
    version_in_force,
)
from abflow.store.early_outcomes import early_outcomes
from abflow.store.monitoring import monitor_history

__all__ = ["AnalysisOptions", "analyze"]

SECONDS_PER_DAY = 86400.0


def _load(
    target: StoreTarget, key: str, spec: ExperimentSpec | None, version: int | None = None
) -> tuple[ExperimentSpec, ExperimentHistory]:
    history = experiment_history(target, key, None if spec is not None else version)
    if spec is None:
        if history.spec_json is None and version is not None:
            latest = experiment_history(target, key).spec_version
            known = "it is not registered" if latest is None else f"versions are 1 to {latest}"
            msg = f"experiment {key!r} has no spec version {version}: {known}"
            raise ExperimentNotFoundError(msg)
        if history.spec_json is None:
            msg = f"experiment {key!r} is not registered in the store; pass its spec file"
            raise ExperimentNotFoundError(msg)
        spec = parse_experiment(orjson.loads(history.spec_json), f"store:{key}")
    if not history.phases:
        msg = f"experiment {key!r} has no phases and no exposures in the store yet"
        raise ExperimentNotFoundError(msg)
    return spec, history


def _finalise(run: MetricRun, metrics: list[MetricResult]) -> list[MetricResult]:
    """Correct p-values across non-guardrail metrics; classify outcomes and guardrails."""
    correction = run.spec.analysis.correction
    tested = [
        (i, j)
        for i, metric in enumerate(metrics)
        if metric.role != "guardrail"
        for j, comparison in enumerate(metric.comparisons)
        if comparison.p_value is not None and math.isfinite(comparison.p_value)
    ]
    adjusted = adjust_p_values(
        [metrics[i].comparisons[j].p_value or 0.0 for i, j in tested], correction
    )
    adjusted_at = dict(zip(tested, adjusted, strict=True))
    out = []
    for i, metric in enumerate(metrics):
        comparisons = []
        for j, comparison in enumerate(metric.comparisons):
            p_adj = adjusted_at.get((i, j), comparison.p_value)
            updated = _replace(comparison, adjusted_p_value=p_adj)
            outcome, significant = outcome_of(updated, metric.direction, run.alpha)
            updated = _replace(updated, outcome=outcome, is_significant=significant)
            if metric.role == "guardrail":
                status, evidence = judge_guardrail(metric, updated, run.alpha)
                updated = _replace(updated, guardrail=status, guardrail_evidence=evidence)
            comparisons.append(updated)
        out.append(_replace(metric, comparisons=comparisons))
    return out


def _post_stratify(run: MetricRun, metrics: list[MetricResult]) -> list[MetricResult]:
    """Metrics with ``post_stratify``: comparisons from the per-cell moments (one query per
    set of attributes), with the single-cell fallback; the rest are returned unchanged."""
    fetched: dict[tuple[str, ...], dict[GroupKey, Moments]] = {}
    out = []
    for plan, metric in zip(run.plans, metrics, strict=True):
        overflowed = any(c.error_code == "non_finite_values" for c in metric.comparisons)
        if not plan.cells or overflowed:
            out.append(metric)
            continue
        if plan.cells not in fetched:
            columns, products = run.unit_columns()
            fetched[plan.cells], _ = run.unit_source(
                run.target,
                run.spec.key,
                run.phase.phase,
                columns,
                products,
                window=run.window,
                dimension=plan.cells,
            )
        out.append(_stratified(run, plan, metric, fetched[plan.cells]))
    return out


def _stratified(
    run: MetricRun, plan: MetricPlan, metric: MetricResult, groups: dict[GroupKey, Moments]
) -> MetricResult:
    comparisons = []
    methods = []
    notes = []
    for comparison in metric.comparisons:
        split = cell_stats(plan, groups, run.control, comparison.variant)
        result = compare_post_stratified(
            split.controls, split.treatments, relative=run.relative(plan), alpha=run.alpha
        )
        methods.append(result.method)
        pooled = f", {split.pooled} thin cells pooled" if split.pooled else ""
        notes.append(f"{comparison.variant}: {split.cells} cells{pooled}")
        comparisons.append(
            _replace(
                comparison,
                effect=result.effect,
                ci_low=result.ci_low,
                ci_high=result.ci_high,
                p_value=result.p_value,
                adjusted_p_value=result.p_value,
                outcome="error" if result.error_code else "inconclusive",
                error_code=result.error_code,
            )
        )
    note = f"post-stratified on cells of {', '.join(plan.cells)} ({'; '.join(notes)})"
    method = methods[0] if len(set(methods)) == 1 else "post-stratified (some fallbacks)"
    return dataclasses.replace(
        metric,
        comparisons=comparisons,
        method=method,
        note="; ".join(filter(None, [metric.note, note])),
    )


def _replace(record: Any, **changes: Any) -> Any:
    return dataclasses.replace(record, **changes)


def _early_outcome_warnings(
    engine: StoreTarget,
    spec: ExperimentSpec,
    history: ExperimentHistory,
    phase: PhaseInfo,
    window: Window,
) -> list[str]:
    """A warning when outcomes sent for this experiment are dated before it began: they never
    count, but they mean reused unit ids or a sender's clock is off."""
    began = history.phases[0].started_at if history.phases else None
    if began is None:
        return []
    early = early_outcomes(engine, spec.key, phase.phase, began, window)
    if not early.rows:
        return []
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(began))
    return [
        f"{early.rows:,} outcomes sent for this experiment ({early.units:,} units) are dated "
        f"before it began ({when}) and were not counted: are unit ids reused from an earlier "
        "run, or is the sender's clock off?"
    ]


def _pick_phase(history: ExperimentHistory, phase: int | None, key: str) -> PhaseInfo:
    """The phase asked for (default: the latest, or the latest the asked spec version was in
    force for); an open phase ends where the next begins."""
    phases = [_with_end(history.phases, i) for i in range(len(history.phases))]
    numbers = [p.phase for p in phases]
    if phase is not None and phase not in numbers:
        msg = f"phase: experiment {key!r} has no phase {phase}; phases are {numbers}"
        raise InvalidArgumentError(msg)
    if history.in_force is None:
        return phases[-1 if phase is None else numbers.index(phase)]
    governed = [p for p in phases if _overlaps(p, history.in_force)]
    version = history.spec_version
    if not governed:
        msg = f"spec version {version} of {key!r} was replaced before any phase ran under it"
        raise InvalidArgumentError(msg)
    if phase is None:
        return governed[-1]
    if phase not in [p.phase for p in governed]:
        msg = (
            f"phase {phase} of {key!r} did not run under spec version {version}, which was in "
            f"force for phase{'s' if len(governed) > 1 else ''} "
            f"{', '.join(str(p.phase) for p in governed)}"
        )
        raise InvalidArgumentError(msg)
    return phases[numbers.index(phase)]


def _version_at_cutoff(
    engine: StoreTarget, key: str, history: ExperimentHistory, options: AnalysisOptions
) -> int | None:
    """The spec version that governed the events analysed, when they end before now: the
    one in force at the end of an earlier phase, or at ``until``. An earlier phase judged
    with the newest spec (a margin loosened since, say) passed a gate on the very events a
    rollout had been rolled back on."""
    cutoffs = [] if options.until is None else [options.until]
    if options.phase is not None:
        numbers = [p.phase for p in history.phases]
        if options.phase in numbers:
            chosen = _with_end(history.phases, numbers.index(options.phase))
            if chosen.ended_at is not None:
                cutoffs.append(chosen.ended_at)
    if not cutoffs:
        return None
    return version_in_force(engine, key, min(cutoffs))


def _with_end(phases: list[PhaseInfo], index: int) -> PhaseInfo:
    chosen = phases[index]
    following = phases[index + 1] if index + 1 < len(phases) else None
    if chosen.ended_at is None and following is not None and following.started_at is not None:
        return dataclasses.replace(chosen, ended_at=following.started_at)
    return chosen


def _overlaps(phase: PhaseInfo, in_force: tuple[float, float]) -> bool:
    """Whether a spec version in force over ``[from, until)`` governed some of the phase."""
    if phase.started_at is None:  # seen only in exposures: no registration to go by
        return False
    ended = math.inf if phase.ended_at is None else phase.ended_at
    return in_force[0] < ended and in_force[1] > phase.started_at


def analyze(
    target: StoreTarget,
    experiment: str | ExperimentSpec,
    options: AnalysisOptions | None = None,
    *,
    dimensions: Iterable[str] = (),
) -> ExperimentResult:
    """Analyse one phase (default: the latest) of an experiment in the store ``target``.

    ``target`` is a store URL, a SQLAlchemy engine or an ``EventStore``. ``experiment`` is a
    key (the spec is read from the store) or a spec (which wins over the stored one).
    """
    options = options or AnalysisOptions()
    engine = connect(target)
    try:
        return _analyze(engine, experiment, options, tuple(dimensions))
    finally:
        if target is None or isinstance(target, str):
            engine.dispose()


def _analyze(
    engine: StoreTarget,
    experiment: str | ExperimentSpec,
    options: AnalysisOptions,
    dimensions: tuple[str, ...],
) -> ExperimentResult:
    import abflow

    key = experiment if isinstance(experiment, str) else experiment.key
    given = None if isinstance(experiment, str) else experiment
    spec, history = _load(engine, key, given, options.spec_version)
    if given is None and options.spec_version is None:
        in_force = _version_at_cutoff(engine, key, history, options)
        if in_force is not None and in_force != history.spec_version:
            spec, history = _load(engine, key, None, in_force)
    phase = _pick_phase(history, options.phase, key)
    windowed = [m.name for m in spec.metrics if m.window is not None]
    if options.rollups and windowed:
        # A rollup folds every outcome after first exposure; windows need the raw events.
        note = f"conversion windows ({', '.join(windowed)}): read from raw events, not rollups"
        options = dataclasses.replace(
            options, rollups=False, extra_warnings=[*options.extra_warnings, note]
        )
    run = MetricRun(engine, spec, phase, options)
    run.fetch()
    metrics = _finalise(run, _post_stratify(run, [run.metric_result(plan) for plan in run.plans]))

    totals = totals_by_variant(run.unit_groups, run.variants)
    counts = [totals[name].n for name in run.variants]
    weights = phase.weights or spec.effective_weights
    srm = srm_check(counts, weights, spec.analysis.srm_alpha)
    total_units = sum(counts)
    variant_counts = [
        VariantCount(
            name,
            totals[name].n,
            weights[i],
            totals[name].n / total_units if total_units else math.nan,
        )
        for i, name in enumerate(run.variants)
    ]
    now = options.now if options.now is not None else time.time()
    data_first = min((m.first_ts for m in totals.values()), default=math.inf)
    data_last = max((m.last_ts for m in totals.values()), default=-math.inf)
    window_start = run.window.start if run.window.start is not None else data_first
    window_end = run.window.end if run.window.end is not None else data_last
    if not math.isfinite(window_start):
        window_start = now
    if not math.isfinite(window_end):
        window_end = now
    primary = next((p for p in run.plans if p.metric.role == "primary"), None)
    primary_totals = totals
    if primary is not None and primary.source == "prediction":
        primary_totals = totals_by_variant(run.groups_for(primary), run.variants)
    progress = estimate_progress(
        spec, metrics, primary_totals, run.plans, weights, total_units, window_start, window_end
    )
    breakdowns: list[BreakdownRow] = []
    for dimension in (*options.dimensions, *dimensions):
        breakdowns.extend(run.breakdowns(dimension))
    warnings = list(options.extra_warnings)
    for dimension in (*options.dimensions, *dimensions):
        labels = {row.value for row in breakdowns if row.dimension == dimension}
        if labels == {"None"}:
            warnings.append(
                f"breakdown by {dimension!r}: no exposed unit has this attribute "
                "(misspelled, or not sent in the requests' attributes)"
            )
    if run.mixed:
        warnings.append(
            f"{run.mixed} units saw more than one variant in this phase and were left out"
        )
    warnings.extend(_early_outcome_warnings(engine, spec, history, phase, run.window))
    shadow = run.shadow()
    warnings.extend(feature_identity_warnings(shadow))
    sampled = sampled_features(engine, spec, phase.phase, run.window)
    warnings.extend(sampled_feature_warnings(sampled))
    monitoring = drift_summary(monitor_history(engine, spec.key), run.window)
    if monitoring is not None:
        warnings.extend(monitoring.train_serve_skew)
    decision = decide(spec, metrics, srm, run.control)
    rows = {
        "units": total_units,
        "unit_event_rows": sum(m.rows for m in totals.values()),
        "prediction_event_rows": sum(
            m.rows for groups in run.prediction_groups.values() for m in groups.values()
        ),
    }
    provenance = Provenance(
        experiment_key=spec.key,
        spec_version=history.spec_version if given is None else phase.spec_version,
        spec_hash=spec_hash(spec),
        phase=phase.phase,
        window_start=window_start,
        window_end=window_end,
        rows=rows,
        abflow_version=abflow.__version__,
        generated_at=now,
        store=options.store_label,
        until=options.until,
    )
    return ExperimentResult(
        experiment_key=spec.key,
        name=spec.name or spec.key,
        phase=phase.phase,
        phases=[p.phase for p in history.phases],
        method=spec.analysis.method,
        alpha=spec.analysis.alpha,
        correction=spec.analysis.correction,
        provenance=provenance,
        variants=variant_counts,
        srm=srm,
        metrics=metrics,
        progress=progress,
        decision=decision,
        latency=run.latency(),
        breakdowns=breakdowns,
        mixed_units=run.mixed,
        warnings=warnings,
        shadow=shadow,
        monitoring=monitoring,
        sampled_features=sampled,
    )
