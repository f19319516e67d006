"""Experiment versions and phases: which spec was live, and which traffic split, when.

Every change to a spec is kept as a new version. A change to what decides a unit's variant
(the variants and their models, weights, coverage, hash unit, seed, hash version or
namespace) also closes the current phase and opens the next one, because analysis must never
pool units assigned under different splits. Changes that leave assignment alone (metrics,
analysis settings, names, targeting, forced units) make a new version within the same phase.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from abflow.errors import ExperimentNotFoundError
from abflow.spec import (
    ExperimentSpec,
    canonical_json,
    rollout_registration,
    spec_hash,
    traffic_fields,
)
from abflow.store.schema import experiment_versions, phases

__all__ = [
    "ExperimentVersion",
    "Phase",
    "fetch_phases",
    "find_latest_version",
    "latest_version",
    "list_latest_versions",
    "phase_records",
    "register",
    "restart_phase",
    "traffic_changes",
]


@dataclass(frozen=True, slots=True)
class Phase:
    """A span of time during which an experiment's assignment rules did not change."""

    experiment_key: str
    phase: int
    spec_version: int
    """The version that opened this phase (later versions may edit non-traffic fields)."""
    weights: tuple[float, ...]
    coverage: float
    started_at: float
    ended_at: float | None
    reason: str

    @property
    def is_open(self) -> bool:
        return self.ended_at is None


@dataclass(frozen=True, slots=True)
class ExperimentVersion:
    """One stored version of an experiment spec, with the phase that is current for it."""

    key: str
    version: int
    spec_hash: str
    created_at: float
    spec: ExperimentSpec
    phase: int
    """The experiment's current phase number."""
    is_new_version: bool = False
    """True when the registration that returned this stored a new version."""
    is_new_phase: bool = False
    """True when the registration that returned this opened a new phase."""


def traffic_changes(old: ExperimentSpec, new: ExperimentSpec) -> list[str]:
    """Which assignment-deciding fields differ between two specs (empty: same phase)."""
    before = traffic_fields(old)
    return [name for name, value in traffic_fields(new).items() if value != before[name]]


def register(
    connection: Connection,
    spec: ExperimentSpec,
    now: float,
    reason: str | None = None,
    *,
    is_before_start: bool,
) -> ExperimentVersion:
    """Store ``spec`` as a new version if it changed, opening a phase if its traffic changed.

    ``reason`` is recorded on the phase this opens (default: which fields changed). Runs
    inside the caller's write transaction, which must serialize registrations.

    Under a rollout plan the weights are the rollout's (see
    :func:`abflow.spec.rollout_registration`): a spec without weights keeps the stored split,
    and weights that contradict the plan, or give the challenger traffic while the rollout
    ``is_before_start``, raise InvalidSpecError.
    """
    latest = find_latest_version(connection, spec.key)
    stored = latest.spec if latest is not None else None
    spec = rollout_registration(spec, stored, is_before_start=is_before_start)
    digest = spec_hash(spec)
    if latest is not None and latest.spec_hash == digest:
        return latest
    version = 1 if latest is None else latest.version + 1
    connection.execute(
        experiment_versions.insert().values(
            experiment_key=spec.key,
            version=version,
            spec_json=canonical_json(spec),
            spec_hash=digest,
            created_at=now,
        )
    )
    current = _open_phase(connection, spec.key)
    if current is None:
        reason = reason or "experiment started"
    else:
        opened_by = _spec_of_version(connection, spec.key, current.spec_version)
        changed = traffic_changes(opened_by, spec)
        if not changed:
            return ExperimentVersion(
                spec.key, version, digest, now, spec, current.phase, is_new_version=True
            )
        reason = reason or f"{', '.join(changed)} changed (version {version})"
    number = _open_next_phase(connection, spec, version, current, now, reason)
    return ExperimentVersion(
        spec.key, version, digest, now, spec, number, is_new_version=True, is_new_phase=True
    )


def restart_phase(connection: Connection, key: str, now: float, reason: str) -> Phase:
    """Close the current phase and open the next one under the latest spec, same traffic.

    For when the data of the current phase cannot be trusted (a routing bug, a broken
    logger): analysis starts over without pooling the units logged before.
    """
    latest = latest_version(connection, key)
    current = _open_phase(connection, key)
    _open_next_phase(connection, latest.spec, latest.version, current, now, reason)
    return fetch_phases(connection, key)[-1]


def _open_next_phase(
    connection: Connection,
    spec: ExperimentSpec,
    version: int,
    current: Phase | None,
    now: float,
    reason: str,
) -> int:
    if current is not None:
        connection.execute(
            phases.update()
            .where(phases.c.experiment_key == spec.key, phases.c.phase == current.phase)
            .values(ended_at=now)
        )
    number = 1 if current is None else current.phase + 1
    connection.execute(
        phases.insert().values(
            experiment_key=spec.key,
            phase=number,
            spec_version=version,
            weights_json=json.dumps(spec.effective_weights),
            coverage=spec.coverage,
            started_at=now,
            ended_at=None,
            reason=reason,
        )
    )
    return number


def latest_version(connection: Connection, key: str) -> ExperimentVersion:
    """The newest version of experiment ``key``; ExperimentNotFoundError if there is none."""
    found = find_latest_version(connection, key)
    if found is None:
        raise _not_found(key)
    return found


def find_latest_version(connection: Connection, key: str) -> ExperimentVersion | None:
    """The newest version of experiment ``key``, or None."""
    row = connection.execute(
        sa.select(experiment_versions)
        .where(experiment_versions.c.experiment_key == key)
        .order_by(experiment_versions.c.version.desc())
        .limit(1)
    ).one_or_none()
    if row is None:
        return None
    current = _open_phase(connection, key)
    return _version_from_row(row, current.phase if current else 0)


def list_latest_versions(connection: Connection) -> list[ExperimentVersion]:
    """The newest version of every experiment, sorted by key."""
    newest = (
        sa.select(
            experiment_versions.c.experiment_key,
            sa.func.max(experiment_versions.c.version).label("version"),
        )
        .group_by(experiment_versions.c.experiment_key)
        .subquery()
    )
    current = (
        sa.select(phases.c.experiment_key, sa.func.max(phases.c.phase).label("phase"))
        .group_by(phases.c.experiment_key)
        .subquery()
    )
    query = (
        sa.select(experiment_versions, current.c.phase)
        .join(
            newest,
            sa.and_(
                newest.c.experiment_key == experiment_versions.c.experiment_key,
                newest.c.version == experiment_versions.c.version,
            ),
        )
        .outerjoin(current, current.c.experiment_key == experiment_versions.c.experiment_key)
        .order_by(experiment_versions.c.experiment_key)
    )
    return [_version_from_row(row, row.phase or 0) for row in connection.execute(query)]


def fetch_phases(connection: Connection, key: str) -> list[Phase]:
    """Every phase of experiment ``key``, oldest first; ExperimentNotFoundError if none."""
    found = phase_records(connection, key)
    if not found:
        raise _not_found(key)
    return found


def phase_records(connection: Connection, key: str) -> list[Phase]:
    """Every row of the phases table for ``key``, oldest first (empty if none): the one
    reader of that table."""
    rows = connection.execute(
        sa.select(phases).where(phases.c.experiment_key == key).order_by(phases.c.phase)
    ).all()
    return [_phase_from_row(row) for row in rows]


def _open_phase(connection: Connection, key: str) -> Phase | None:
    row = connection.execute(
        sa.select(phases)
        .where(phases.c.experiment_key == key, phases.c.ended_at.is_(None))
        .order_by(phases.c.phase.desc())
        .limit(1)
    ).one_or_none()
    return None if row is None else _phase_from_row(row)


def _spec_of_version(connection: Connection, key: str, version: int) -> ExperimentSpec:
    text = connection.execute(
        sa.select(experiment_versions.c.spec_json).where(
            experiment_versions.c.experiment_key == key,
            experiment_versions.c.version == version,
        )
    ).scalar_one()
    return ExperimentSpec.model_validate_json(text)


def _version_from_row(row: sa.Row[Any], phase: int) -> ExperimentVersion:
    return ExperimentVersion(
        key=row.experiment_key,
        version=row.version,
        spec_hash=row.spec_hash,
        created_at=row.created_at,
        spec=ExperimentSpec.model_validate_json(row.spec_json),
        phase=phase,
    )


def _phase_from_row(row: sa.Row[Any]) -> Phase:
    return Phase(
        experiment_key=row.experiment_key,
        phase=row.phase,
        spec_version=row.spec_version,
        weights=tuple(float(w) for w in json.loads(row.weights_json)),
        coverage=row.coverage,
        started_at=row.started_at,
        ended_at=row.ended_at,
        reason=row.reason,
    )


def _not_found(key: str) -> ExperimentNotFoundError:
    msg = f"no experiment {key!r} in the store; register its spec first"
    return ExperimentNotFoundError(msg)
