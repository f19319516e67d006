"""Artifact checksums: an independent reference, and tampering caught at resolve time."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from abflow.errors import ArtifactChecksumError, InvalidArgumentError, RegistryError
from abflow.registry import artifact_checksum, register_model, resolve_model, verify_checksum


def _reference_checksum(root: Path) -> str:
    """Naive re-implementation of the documented format, written independently."""
    files = sorted(
        (p for p in root.rglob("*") if p.is_file()), key=lambda p: p.relative_to(root).as_posix()
    )
    blob = b""
    for p in files:
        data = p.read_bytes()
        blob += p.relative_to(root).as_posix().encode() + b"\0" + len(data).to_bytes(8, "big")
        blob += data
    return hashlib.sha256(blob).hexdigest()


def _tree(root: Path) -> None:
    (root / "sub").mkdir(parents=True)
    (root / "b.txt").write_bytes(b"bee")
    (root / "a.bin").write_bytes(bytes(range(256)) * 9000)  # more than one read chunk
    (root / "sub" / "c.txt").write_text("sea", encoding="utf-8")


def test_checksum_matches_an_independent_reference(tmp_path: Path) -> None:
    _tree(tmp_path)
    assert artifact_checksum(tmp_path) == _reference_checksum(tmp_path)


def test_checksum_sees_renames_and_new_files(tmp_path: Path) -> None:
    _tree(tmp_path)
    before = artifact_checksum(tmp_path)
    (tmp_path / "b.txt").rename(tmp_path / "bb.txt")
    renamed = artifact_checksum(tmp_path)
    (tmp_path / "empty").write_bytes(b"")
    added = artifact_checksum(tmp_path)
    assert len({before, renamed, added}) == 3


def test_checksum_of_a_missing_path_is_a_registry_error(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="no such file or directory"):
        artifact_checksum(tmp_path / "nope")


def test_verify_rejects_malformed_expectations(tmp_path: Path) -> None:
    _tree(tmp_path)
    with pytest.raises(InvalidArgumentError, match="64-character"):
        verify_checksum(tmp_path, "abc")
    good = artifact_checksum(tmp_path)
    assert verify_checksum(tmp_path, f"sha256:{good.upper()}") == good


def _flip_one_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_one_changed_byte_in_a_registered_model_is_caught(
    tracking_uri: str, fitted_models: dict[str, Any]
) -> None:
    register_model("fraud", fitted_models["logistic"], tracking_uri=tracking_uri)
    original = resolve_model("models:/fraud/1", tracking_uri=tracking_uri)
    recorded = original.checksum
    assert verify_checksum(original, recorded) == recorded

    weights = max(
        (p for p in original.artifact_path.iterdir() if p.is_file()), key=lambda p: p.stat().st_size
    )
    _flip_one_byte(weights, weights.stat().st_size // 2)

    with pytest.raises(ArtifactChecksumError, match=r"models:/fraud/1 no longer match") as caught:
        verify_checksum(original, recorded)
    assert isinstance(caught.value, RegistryError)
    with pytest.raises(ArtifactChecksumError, match="refusing to serve"):
        resolve_model("models:/fraud/1", tracking_uri=tracking_uri, expected_checksum=recorded)
    # Without an expectation it still loads, and reports the new checksum.
    assert artifact_checksum(original.artifact_path) != recorded
