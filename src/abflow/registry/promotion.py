"""The registry half of a rollout's promotion: move an alias, remember where it pointed, undo.

A promoted challenger must also be what ``models:/NAME@champion`` means, or "promote"
would say two things. The rollout controller moves the alias here, logs its decision
run, writes its audit entry, and calls :meth:`AliasMove.undo` if the store refuses, so the
three happen together or not at all. The version the alias left is kept in tags on the
promoted version (``abflow.promotion.*``), so a rollback restores it from the registry
itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from abflow.errors import InvalidArgumentError, RegistryError
from abflow.registry.connection import client_for, mlflow_errors
from abflow.registry.records import parse_reference
from abflow.registry.tracking import log_rollout_decision

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = [
    "DEFAULT_ALIAS",
    "PREVIOUS_VERSION_TAG",
    "PROMOTED_ALIAS_TAG",
    "PROMOTED_BY_TAG",
    "AliasMove",
    "AliasTarget",
    "MlflowPromotionRegistry",
    "promotion_target",
]

DEFAULT_ALIAS = "champion"
"""The alias moved when the control does not name one of the challenger's model."""

PREVIOUS_VERSION_TAG = "abflow.promotion.previous_version"
PROMOTED_ALIAS_TAG = "abflow.promotion.alias"
PROMOTED_BY_TAG = "abflow.promotion.experiment"


@dataclass(frozen=True, slots=True)
class AliasTarget:
    """Which alias of which registered model a promotion moves, and to what reference."""

    name: str
    alias: str
    challenger_reference: str


@dataclass(frozen=True, slots=True)
class AliasMove:
    """An alias move that happened: enough to record it and to undo it.

    ``version`` is where the alias points now and ``previous_version`` where it pointed
    before; None means the model had no such alias.
    """

    name: str
    alias: str
    version: str | None
    previous_version: str | None

    def as_payload(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "alias": self.alias,
            "version": self.version,
            "previous_version": self.previous_version,
        }


def _registry_name(reference: str) -> tuple[str, str | None] | None:
    if not reference.startswith("models:/"):
        return None
    parsed = parse_reference(reference)
    return parsed.name, parsed.alias


def promotion_target(control: str, challenger: str) -> AliasTarget | None:
    """The alias a promotion moves, or None when the challenger is not a registry model.

    The control's alias when the control serves ``models:/NAME@ALIAS`` of the challenger's
    model (so the control's reference now serves the winner), else ``champion``.
    """
    found = _registry_name(challenger)
    if found is None:
        return None
    name, _ = found
    control_found = _registry_name(control)
    alias = DEFAULT_ALIAS
    if control_found is not None and control_found[0] == name and control_found[1]:
        alias = control_found[1]
    return AliasTarget(name=name, alias=alias, challenger_reference=challenger)


class MlflowPromotionRegistry:
    """Alias moves and decision runs on one MLflow registry.

    ``client`` replaces the MLflow client (any object with its methods, e.g. one that fails
    on purpose); by default one is opened for ``tracking_uri``.
    """

    def __init__(self, tracking_uri: str | None = None, *, client: Any = None) -> None:
        self.tracking_uri = tracking_uri
        self._client = client

    def _open(self) -> MlflowClient:
        if self._client is None:
            self._client, _ = client_for(self.tracking_uri)
        client: MlflowClient = self._client
        return client

    def promote(self, target: AliasTarget, experiment_key: str) -> AliasMove:
        """Point ``target``'s alias at the challenger's version; tag where it pointed before."""
        client = self._open()
        context = f"cannot move {target.name}@{target.alias} to {target.challenger_reference}"
        with mlflow_errors(context):
            version = self._version_of(client, target.challenger_reference)
            previous = self._alias_version(client, target.name, target.alias)
            tags = {
                PROMOTED_ALIAS_TAG: target.alias,
                PREVIOUS_VERSION_TAG: previous or "",
                PROMOTED_BY_TAG: experiment_key,
            }
            for key, value in tags.items():
                client.set_model_version_tag(target.name, version, key, value)
            client.set_registered_model_alias(target.name, target.alias, version)
        return AliasMove(target.name, target.alias, version, previous)

    def restore(self, promoted: Mapping[str, Any]) -> AliasMove | None:
        """Point the alias a promotion moved back at the version its tags kept.

        None when the alias no longer points at the promoted version (someone moved it
        since): it is left alone rather than overwritten.
        """
        client = self._open()
        name, version = str(promoted["name"]), str(promoted["version"])
        with mlflow_errors(f"cannot restore the alias moved to {name} version {version}"):
            tags = dict(client.get_model_version(name, version).tags or {})
            alias = tags.get(PROMOTED_ALIAS_TAG) or str(promoted["alias"])
            previous = tags.get(PREVIOUS_VERSION_TAG, promoted.get("previous_version") or "")
            if self._alias_version(client, name, alias) != version:
                return None
            self._point(client, name, alias, previous or None)
        return AliasMove(name, alias, previous or None, version)

    def undo(self, move: AliasMove) -> None:
        """Put an alias back where ``move`` found it (after the store refused the decision)."""
        client = self._open()
        with mlflow_errors(f"cannot put {move.name}@{move.alias} back"):
            self._point(client, move.name, move.alias, move.previous_version)

    def log_decision(
        self,
        experiment_key: str,
        decision: str,
        *,
        reason: str,
        phase: int | None,
        params: Mapping[str, Any],
        metrics: Mapping[str, Any],
    ) -> str:
        """The decision and its evidence as a run in MLflow experiment ``abflow/KEY``."""
        return log_rollout_decision(
            experiment_key,
            decision,
            reason=reason,
            phase=phase,
            params=params,
            metrics=metrics,
            tracking_uri=self.tracking_uri,
            client=self._open(),
        )

    def discard_decision(self, run_id: str) -> None:
        """Delete a decision run whose decision the store did not take."""
        client = self._open()
        with mlflow_errors(f"cannot delete MLflow run {run_id}"):
            client.delete_run(run_id)

    @staticmethod
    def _point(client: MlflowClient, name: str, alias: str, version: str | None) -> None:
        if version:
            client.set_registered_model_alias(name, alias, version)
        else:
            client.delete_registered_model_alias(name, alias)

    @staticmethod
    def _version_of(client: MlflowClient, reference: str) -> str:
        parsed = parse_reference(reference)
        if parsed.alias is not None:
            return str(client.get_model_version_by_alias(parsed.name, parsed.alias).version)
        if parsed.version == "latest":
            versions = client.search_model_versions(f"name = '{parsed.name}'")
            if not versions:
                msg = f"registered model {parsed.name!r} has no versions"
                raise RegistryError(msg)
            return str(max(int(v.version) for v in versions))
        if parsed.version is None:
            msg = f"{reference!r} names no model version"
            raise InvalidArgumentError(msg)
        return str(client.get_model_version(parsed.name, parsed.version).version)

    @staticmethod
    def _alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
        from mlflow.exceptions import MlflowException

        from abflow.registry.connection import is_not_found

        try:
            return str(client.get_model_version_by_alias(name, alias).version)
        except MlflowException as exc:
            if is_not_found(exc):
                return None
            raise
