"""The ``run`` section of GrowthBook's shared SDK vectors, through ``abflow.assign``.

Each case is ``[name, context, experiment, value, in_experiment, hash_used]``. A case whose
fields map onto an abflow experiment spec is translated (``key``, ``variations`` as
variants, ``weights``, ``coverage``, ``hashAttribute`` as ``unit``, ``seed``,
``hashVersion`` (default 1 in the SDK), ``namespace``, ``condition``, ``active``,
``filters`` (their ``hashVersion`` as ``hash_version``, their attribute defaulting to
``id`` as in the SDK), ``force`` (a variation index) as the variant name, ``ranges`` as the
compiled bucket ranges, the context's ``attributes``, ``savedGroups`` as ``saved_groups``
and ``forcedVariations`` as the spec's per-unit ``forced``) and must give the SDK's answer:
the same value, whether the unit is in the experiment, and whether its hash decided
(``reason == "assigned"``); the batch path must give the single-unit answer. The SDK ignores
a namespace when filters are set, and a spec refuses the pair, so the translation drops it.
A ``force`` index naming no variation (the SDK then includes nobody) has no variant name to
translate to: the spec validator refuses it, and those cases check that.

The other cases are skipped by group, one reason per group, and the groups are counted, so a
new file with new kinds of case fails here instead of being skipped in silence.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from growthbook_cases import load_or_skip

from abflow.errors import InvalidSpecError
from abflow.routing import assign, assign_batch, compile_experiment
from abflow.spec import parse_experiment

CASES: dict[str, Any] = load_or_skip()
RUN: list[list[Any]] = CASES["run"]

Predicate = Callable[[dict[str, Any], dict[str, Any]], bool]

# (group, why abflow does not run it, which cases), checked in this order.
SKIPPED: list[tuple[str, str, Predicate]] = [
    (
        "context-disabled",
        "the SDK context's `enabled: false` switches every experiment off for one client; "
        "the gateway has no per-client switch (it serves what is registered)",
        lambda ctx, exp: ctx.get("enabled") is False,
    ),
    (
        "url-override",
        "query-string overrides (`?key=1`) are a browser SDK feature; the gateway takes no URL",
        lambda ctx, exp: "url" in ctx,
    ),
    (
        "qa-mode",
        "QA mode is an SDK context setting with no abflow counterpart",
        lambda ctx, exp: bool(ctx.get("qaMode")),
    ),
    (
        "prerequisites",
        "`parentConditions` test other feature flags; abflow has no feature flags",
        lambda ctx, exp: "parentConditions" in exp,
    ),
    (
        "one-variation",
        "an abflow spec has at least two variants (the validator refuses one)",
        lambda ctx, exp: len(exp["variations"]) < 2,
    ),
]


def _group(case: list[Any]) -> str | None:
    _, context, experiment, *_ = case
    return next((name for name, _, applies in SKIPPED if applies(context, experiment)), None)


def _force_names_no_variation(case: list[Any]) -> bool:
    force = case[2].get("force")
    return force is not None and not 0 <= force < len(case[2]["variations"])


MAPPED = [case for case in RUN if _group(case) is None and not _force_names_no_variation(case)]
REFUSED = [case for case in RUN if _group(case) is None and _force_names_no_variation(case)]


def _translate(context: dict[str, Any], experiment: dict[str, Any]) -> dict[str, Any]:
    unit = experiment.get("hashAttribute", "id")
    spec: dict[str, Any] = {
        "key": experiment["key"],
        "unit": unit,
        "variants": [
            {"name": f"v{i}", "model": f"models:/m/{i + 1}"}
            for i in range(len(experiment["variations"]))
        ],
        "hash_version": 1,  # the SDK's default for an experiment (abflow's is 2)
    }
    for theirs, ours in (
        ("weights", "weights"),
        ("coverage", "coverage"),
        ("seed", "seed"),
        ("hashVersion", "hash_version"),
        ("namespace", "namespace"),
        ("condition", "condition"),
        ("active", "active"),
    ):
        if theirs in experiment:
            spec[ours] = experiment[theirs]
    if "filters" in experiment:
        spec.pop("namespace", None)  # the SDK ignores it when filters are set
        spec["filters"] = [
            {
                "attribute": f.get("attribute", "id"),
                "seed": f["seed"],
                "hash_version": f.get("hashVersion", 2),
                "ranges": f["ranges"],
            }
            for f in experiment["filters"]
        ]
    if "force" in experiment:
        spec["force"] = f"v{experiment['force']}"
    forced = context.get("forcedVariations", {})
    unit_id = context.get("attributes", {}).get(unit)
    if experiment["key"] in forced and isinstance(unit_id, str) and unit_id:
        spec["forced"] = {unit_id: f"v{forced[experiment['key']]}"}
    return spec


@pytest.mark.parametrize("case", MAPPED, ids=[case[0] for case in MAPPED])
def test_run_case(case: list[Any]) -> None:
    _, context, experiment, value, in_experiment, hash_used = case
    spec = parse_experiment(_translate(context, experiment))
    ranges = experiment.get("ranges")
    compiled = compile_experiment(spec, ranges=[tuple(r) for r in ranges]) if ranges else spec
    attributes = context.get("attributes", {})
    groups = context.get("savedGroups")
    result = assign(compiled, attributes, saved_groups=groups)
    variations = experiment["variations"]
    got_value = variations[result.index] if result.index >= 0 else variations[0]
    assert (got_value, result.in_experiment, result.reason == "assigned") == (
        value,
        in_experiment,
        hash_used,
    )
    unit_id = attributes.get(spec.unit)
    if isinstance(unit_id, str):  # the batch path agrees (it takes string ids)
        batch = assign_batch(compiled, np.array([unit_id]), [attributes], saved_groups=groups)
        bucket = float(batch.bucket[0])
        assert (
            int(batch.index[0]),
            bool(batch.in_experiment[0]),
            batch.reason_names()[0],
            None if np.isnan(bucket) else bucket,
        ) == (result.index, result.in_experiment, result.reason, result.bucket)


@pytest.mark.parametrize("case", REFUSED, ids=[case[0] for case in REFUSED])
def test_a_force_naming_no_variation_is_refused(case: list[Any]) -> None:
    _, context, experiment, value, in_experiment, hash_used = case
    assert (value, in_experiment, hash_used) == (experiment["variations"][0], False, False)
    with pytest.raises(InvalidSpecError) as refused:
        parse_experiment(_translate(context, experiment))
    assert refused.value.problems == [
        f"force: unknown variant 'v{experiment['force']}'; variants are ['v0', 'v1']"
    ]


@pytest.mark.parametrize("group", [name for name, _, _ in SKIPPED])
def test_skipped_group(group: str) -> None:
    names = [case[0] for case in RUN if _group(case) == group]
    reason = next(why for name, why, _ in SKIPPED if name == group)
    assert names, f"no case left in skipped group {group!r}: drop the group"
    pytest.skip(f"{len(names)} run case(s) skipped ({group}): {reason}: {names}")


def test_every_run_case_is_run_or_skipped_with_its_group() -> None:
    counts = {name: sum(_group(case) == name for case in RUN) for name, _, _ in SKIPPED}
    assert counts == {
        "context-disabled": 1,
        "url-override": 2,
        "qa-mode": 3,
        "prerequisites": 2,
        "one-variation": 1,
    }
    assert len(RUN) == 73
    assert len(REFUSED) == 2
    assert len(MAPPED) == 73 - sum(counts.values()) - len(REFUSED) == 62
    kinds = {
        "ranges": sum("ranges" in case[2] for case in MAPPED),
        "namespace": sum("namespace" in case[2] for case in MAPPED),
        "forcedVariations": sum("forcedVariations" in case[1] for case in MAPPED),
        "savedGroups": sum("savedGroups" in case[1] for case in MAPPED),
        "condition": sum("condition" in case[2] for case in MAPPED),
        "inactive": sum(case[2].get("active") is False for case in MAPPED),
        "filters": sum("filters" in case[2] for case in MAPPED),
        "force": sum("force" in case[2] for case in MAPPED),
    }
    assert kinds == {
        "ranges": 3,
        "namespace": 3,
        "forcedVariations": 1,
        "savedGroups": 1,
        "condition": 3,
        "inactive": 1,
        "filters": 3,
        "force": 1,
    }
