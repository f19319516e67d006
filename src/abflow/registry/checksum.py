"""Artifact checksums: prove that the model served is the model that entered the experiment.

When a model version enters an experiment its checksum is recorded; at load time the gateway
recomputes it and refuses a version whose files changed since (a retrained model pushed over
an old version, a corrupted download, tampering). The checksum is a SHA-256 over every
regular file under the artifact directory, sorted by relative POSIX path; for each file it
hashes the path (UTF-8), a NUL byte, the size as 8 big-endian bytes, then the content. Paths
are part of the hash, so renaming or adding a file changes it too.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Protocol, runtime_checkable

from abflow.errors import ArtifactChecksumError, InvalidArgumentError, RegistryError

__all__ = ["CHECKSUM_TAG", "HasArtifacts", "artifact_checksum", "verify_checksum"]

CHECKSUM_TAG = "abflow.artifact_sha256"
"""Model-version tag under which :func:`abflow.registry.register_model` records the checksum."""

_CHUNK_BYTES = 1 << 20


@runtime_checkable
class HasArtifacts(Protocol):
    """Anything that knows where its artifacts are on disk (a ResolvedModel)."""

    @property
    def artifact_path(self) -> Path: ...

    @property
    def reference(self) -> str: ...


def _files(root: Path) -> list[tuple[str, Path]]:
    if root.is_file():
        return [(root.name, root)]
    if not root.is_dir():
        msg = f"cannot checksum {root}: no such file or directory"
        raise RegistryError(msg)
    found: list[tuple[str, Path]] = []
    for directory, _dirs, names in os.walk(root):
        for name in names:
            path = Path(directory) / name
            if path.is_file():
                found.append((path.relative_to(root).as_posix(), path))
    found.sort(key=lambda item: item[0])
    return found


def artifact_checksum(path: str | Path) -> str:
    """SHA-256 (64 hex characters) over the files under ``path``, sorted by relative path."""
    digest = hashlib.sha256()
    try:
        for relative, file in _files(Path(path)):
            digest.update(relative.encode("utf-8"))
            digest.update(b"\0")
            digest.update(file.stat().st_size.to_bytes(8, "big"))
            with file.open("rb") as handle:
                while chunk := handle.read(_CHUNK_BYTES):
                    digest.update(chunk)
    except OSError as exc:
        msg = f"cannot read artifacts under {path}: {exc}"
        raise RegistryError(msg) from exc
    return digest.hexdigest()


def verify_checksum(
    resolved_or_path: HasArtifacts | str | Path, expected_checksum: str, *, label: str | None = None
) -> str:
    """Recompute the checksum and raise ArtifactChecksumError unless it equals the expected one.

    Returns the checksum on success, so a caller can log what it verified. ``label`` names
    the model in the error (defaults to the reference or the path).
    """
    expected = expected_checksum.strip().lower().removeprefix("sha256:")
    if len(expected) != 64 or any(ch not in "0123456789abcdef" for ch in expected):
        msg = f"expected checksum {expected_checksum!r} is not a 64-character SHA-256 hex digest"
        raise InvalidArgumentError(msg)
    if isinstance(resolved_or_path, HasArtifacts):
        path = resolved_or_path.artifact_path
        label = label or resolved_or_path.reference
    else:
        path = Path(resolved_or_path)
        label = label or str(path)
    actual = artifact_checksum(path)
    if actual != expected:
        msg = (
            f"artifacts of {label} no longer match the checksum recorded for it "
            f"(expected {expected[:12]}…, found {actual[:12]}…): refusing to serve it"
        )
        raise ArtifactChecksumError(msg)
    return actual
