"""Pin an experiment's models: exact versions and checksums, recorded when they enter it.

An alias such as ``champion`` moves; an experiment must not silently follow it. When an
experiment starts (or a phase begins), ``pin_experiment_models`` resolves each registry
variant to its exact version, hashes its artifacts and records the pin on the version
(tag ``abflow.pinned.<experiment key>``). The gateway then serves
``models:/NAME/VERSION`` and verifies the checksum at load; the pins are also what the
gateway config's ``checksum:`` entries hold. Nothing is unpickled here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from abflow.errors import InvalidArgumentError
from abflow.registry.checksum import artifact_checksum
from abflow.registry.connection import client_for, mlflow_errors
from abflow.registry.records import parse_reference
from abflow.registry.resolve import local_artifacts, lookup_version, version_info
from abflow.spec import ExperimentSpec

__all__ = ["PIN_TAG_PREFIX", "PinnedModel", "pin_experiment_models"]

PIN_TAG_PREFIX = "abflow.pinned."
"""Model-version tag ``abflow.pinned.<experiment key>``: the checksum pinned for it."""


@dataclass(frozen=True, slots=True)
class PinnedModel:
    """A variant's model as it entered the experiment."""

    experiment_key: str
    variant: str
    reference: str  # as written in the spec, e.g. models:/fraud@champion
    name: str
    version: str
    checksum: str
    pinned_at: datetime

    @property
    def pinned_reference(self) -> str:
        """The exact version to serve: ``models:/NAME/VERSION``."""
        return f"models:/{self.name}/{self.version}"


def pin_experiment_models(
    spec: ExperimentSpec, *, record: bool = True, tracking_uri: str | None = None
) -> list[PinnedModel]:
    """Resolve each registry variant of ``spec`` to its version and checksum, and record it.

    Variants served from files, URLs or Python factories are skipped (the gateway pins
    files by their own checksum). With ``record=False`` nothing is written to the registry.
    """
    client, location = client_for(tracking_uri)
    pinned_at = datetime.now(tz=UTC)
    pins: list[PinnedModel] = []
    for variant in spec.variants:
        try:
            ref = parse_reference(variant.model)
        except InvalidArgumentError:
            continue
        if ref.kind == "run":
            continue
        with mlflow_errors(f"cannot pin {variant.model} for variant {variant.name!r}"):
            info = version_info(lookup_version(client, ref))
            uri = client.get_model_version_download_uri(info.name, info.version)
            checksum = artifact_checksum(local_artifacts(uri, location))
            if record:
                tag = f"{PIN_TAG_PREFIX}{spec.key}"
                client.set_model_version_tag(info.name, info.version, tag, checksum)
        pins.append(
            PinnedModel(
                spec.key, variant.name, variant.model, info.name, info.version, checksum, pinned_at
            )
        )
    return pins
