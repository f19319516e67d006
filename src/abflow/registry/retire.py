"""Retire a model version: take it out of traffic, archive its aliases, record why.

Retiring does three things, in this order:

1. It works out every experiment variant that serves the version (``models:/NAME/VERSION``,
   an alias that points at it, or ``models:/NAME/latest`` when it is the newest) and returns,
   for each experiment, the spec the caller must deploy: the retired variant's weight goes to
   the control (a traffic change, hence a new phase), forced units leave it, and a rollout
   that ramps it is dropped. A retired *control* cannot be fixed automatically: the record says
   so and carries no new spec.
2. Every alias on the version moves to ``archived-<alias>`` (so ``models:/fraud@champion``
   stops resolving to a retired model, and what it used to be stays one lookup away).
3. The version gets tags ``abflow.retired*`` and a description line with the reason, and the
   retirement is a run in the MLflow experiment ``abflow/registry``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from abflow.errors import InvalidArgumentError
from abflow.registry.connection import client_for, mlflow_errors
from abflow.registry.records import ModelVersionInfo, parse_reference
from abflow.registry.resolve import version_info
from abflow.registry.tracking import log_registry_event
from abflow.spec import ExperimentSpec, parse_experiment

__all__ = [
    "ARCHIVED_ALIAS_PREFIX",
    "RETIRED_TAG",
    "RetirementRecord",
    "TrafficChange",
    "retire_model",
    "serves_version",
    "without_variant",
]

RETIRED_TAG = "abflow.retired"
ARCHIVED_ALIAS_PREFIX = "archived-"


@dataclass(frozen=True, slots=True)
class TrafficChange:
    """One variant that served the retired version, and the spec to deploy instead.

    ``updated_spec`` is None when no safe automatic change exists (the control was retired).
    """

    experiment_key: str
    variant: str
    reference: str
    updated_spec: ExperimentSpec | None
    note: str


@dataclass(frozen=True, slots=True)
class RetirementRecord:
    """What retiring a version changed, and what the caller still has to deploy."""

    name: str
    version: str
    reason: str
    retired_at: datetime
    archived_aliases: dict[str, str]
    changes: tuple[TrafficChange, ...]
    run_id: str

    @property
    def needs_manual_change(self) -> bool:
        return any(change.updated_spec is None for change in self.changes)


def serves_version(
    reference: str, info: ModelVersionInfo, *, is_latest: bool, aliases: Sequence[str]
) -> bool:
    """Whether a variant's model reference resolves to this version right now."""
    try:
        ref = parse_reference(reference)
    except InvalidArgumentError:
        return False  # file:, http(s):, python: references never name a registry version
    if ref.kind != "version" and ref.kind != "alias":
        return False
    if ref.name != info.name:
        return False
    if ref.kind == "alias":
        return ref.alias in aliases
    return ref.version == info.version or (ref.version == "latest" and is_latest)


def without_variant(
    spec: ExperimentSpec, variant: str, *, pinned: str | None = None
) -> ExperimentSpec:
    """The spec with ``variant``'s traffic given to the control; the variant stays listed.

    Keeping the variant (at weight 0) keeps earlier phases analysable; the weight change
    makes this a new phase, as every traffic change is. ``pinned`` replaces its model
    reference: retiring archives the version's aliases, so a variant left on
    ``models:/fraud@challenger`` would no longer resolve and the gateway would not start.
    """
    names = spec.variant_names
    if variant not in names:
        msg = f"experiment {spec.key!r} has no variant {variant!r}"
        raise InvalidArgumentError(msg)
    index = names.index(variant)
    if index == 0:
        msg = f"{variant!r} is the control of {spec.key!r}; choose a new control by hand"
        raise InvalidArgumentError(msg)
    weights = spec.effective_weights
    weights[0] += weights[index]
    weights[index] = 0.0
    data = spec.model_dump(mode="json", exclude_none=True)
    data["weights"] = weights
    data["forced"] = {unit: v for unit, v in spec.forced.items() if v != variant}
    if pinned is not None:
        data["variants"][index]["model"] = pinned
    if spec.rollout is not None:
        challenger = spec.rollout.challenger or (names[1] if len(names) > 1 else None)
        if challenger == variant:
            data.pop("rollout", None)
    return parse_experiment(data, source=f"{spec.key} without {variant}")


def _changes(
    info: ModelVersionInfo,
    experiments: Sequence[ExperimentSpec],
    *,
    is_latest: bool,
) -> tuple[TrafficChange, ...]:
    changes: list[TrafficChange] = []
    for spec in experiments:
        updated = spec
        for index, variant in enumerate(spec.variants):
            if not serves_version(variant.model, info, is_latest=is_latest, aliases=info.aliases):
                continue
            if index == 0:
                changes.append(
                    TrafficChange(
                        spec.key,
                        variant.name,
                        variant.model,
                        None,
                        "the control serves this version: pick a new control and restart",
                    )
                )
                continue
            pinned = f"models:/{info.name}/{info.version}"
            updated = without_variant(updated, variant.name, pinned=pinned)
            changes.append(
                TrafficChange(
                    spec.key,
                    variant.name,
                    variant.model,
                    updated,
                    f"weight of {variant.name!r} moved to control {spec.control.name!r}",
                )
            )
    return tuple(changes)


def retire_model(
    name: str,
    version: str | int,
    *,
    reason: str,
    experiments: Sequence[ExperimentSpec] = (),
    tracking_uri: str | None = None,
) -> RetirementRecord:
    """Retire ``name`` version ``version`` and return what changed and what to deploy."""
    if not reason.strip():
        msg = "retiring a model needs a reason; it is recorded with the version"
        raise InvalidArgumentError(msg)
    client, _ = client_for(tracking_uri)
    version = str(version)
    retired_at = datetime.now(tz=UTC)
    with mlflow_errors(f"cannot retire models:/{name}/{version}"):
        info = version_info(client.get_model_version(name, version))
        newest = max(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
        changes = _changes(info, experiments, is_latest=int(version) == newest)
        archived: dict[str, str] = {}
        for alias in info.aliases:
            if alias.startswith(ARCHIVED_ALIAS_PREFIX):
                continue
            archived[alias] = f"{ARCHIVED_ALIAS_PREFIX}{alias}"
            client.set_registered_model_alias(name, archived[alias], version)
            client.delete_registered_model_alias(name, alias)
        tags = {
            RETIRED_TAG: "true",
            f"{RETIRED_TAG}_at": retired_at.isoformat(),
            f"{RETIRED_TAG}_reason": reason,
            f"{RETIRED_TAG}_aliases": ",".join(sorted(archived)),
        }
        for key, value in tags.items():
            client.set_model_version_tag(name, version, key, value)
        line = f"[retired {retired_at:%Y-%m-%d %H:%M} UTC] {reason}"
        description = f"{line}\n\n{info.description}" if info.description else line
        client.update_model_version(name, version, description=description)
    run_id = log_registry_event(
        "retire",
        {
            "name": name,
            "version": version,
            "reason": reason,
            "archived_aliases": ",".join(sorted(archived)),
            "experiments": ",".join(sorted({c.experiment_key for c in changes})),
        },
        tracking_uri=tracking_uri,
    )
    return RetirementRecord(name, version, reason, retired_at, archived, changes, run_id)
