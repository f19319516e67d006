"""``abflow token`` and ``abflow serve`` for real: a store on disk, a gateway process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from model_server import free_port
from typer.testing import CliRunner

from abflow.cli.main import app
from abflow.security.tokens import hash_token
from abflow.serving.demo_models import N_FEATURES
from abflow.store import EventStore

TOKEN = re.compile(r"\b(abf_[A-Za-z0-9_\-]{43})\b")


def test_token_create_prints_once_and_stores_only_the_hash(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'abflow.db'}"
    runner = CliRunner()
    result = runner.invoke(
        app, ["token", "create", "--role", "service", "--name", "checkout", "--store", url]
    )
    assert result.exit_code == 0, result.output
    [token] = TOKEN.findall(result.stdout)
    with EventStore.open(url) as store:
        [record] = store.list_tokens()
        assert record.token_hash == hash_token(token)
        assert (record.name, record.role) == ("checkout", "service")
    listed = runner.invoke(app, ["token", "list", "--store", url])
    assert record.token_id in listed.stdout
    assert token not in listed.stdout
    revoked = runner.invoke(app, ["token", "revoke", record.token_id, "--store", url])
    assert revoked.exit_code == 0
    again = runner.invoke(app, ["token", "revoke", record.token_id, "--store", url])
    assert again.exit_code == 2  # no active token with that id: nothing to revoke
    bad = runner.invoke(app, ["token", "create", "--role", "root", "--name", "x", "--store", url])
    assert bad.exit_code != 0


def _start(tmp_path: Path, port: int, *options: str, **variables: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "ABFLOW_STORE_URL": f"sqlite:///{tmp_path / 'abflow.db'}",
        "ABFLOW_JOURNAL_DIR": str(tmp_path / "journal"),
        **variables,
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "abflow.cli.main",
            "serve",
            "--port",
            str(port),
            "--log-level",
            "warning",
            *options,
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_ready(process: subprocess.Popen[str], port: int) -> None:
    deadline = time.monotonic() + 300  # generous: a loaded machine starts slowly
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail("the gateway did not become ready within 300 s")


CLEAN_EXIT = (0, -signal.SIGTERM)
"""uvicorn shuts down gracefully on SIGTERM, then re-raises it so the exit status tells why."""


def _stop(process: subprocess.Popen[str]) -> tuple[int, str]:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        _, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
    return process.returncode, err


def _read_banner(process: subprocess.Popen[str]) -> str:
    """What ``abflow serve`` prints before uvicorn starts (tokens, then the URL)."""
    assert process.stderr is not None
    lines = []
    for line in process.stderr:
        lines.append(line)
        if line.startswith("abflow gateway on"):
            break
    return "".join(lines)


@pytest.mark.slow
def test_serve_prints_first_tokens_serves_and_shuts_down_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from abflow.cli.serve import _first_start_tokens

    url = f"sqlite:///{tmp_path / 'abflow.db'}"
    port = free_port()
    process = _start(tmp_path, port)
    try:
        banner = _read_banner(process)
        # stderr is a pipe here, as in a container's log: the tokens go to a private file
        assert TOKEN.findall(banner) == []
        written = tmp_path / ".abflow" / "first-start-tokens"
        assert f"wrote them to {written}" in " ".join(banner.split())
        assert written.stat().st_mode & 0o777 == 0o600
        admin, service = TOKEN.findall(written.read_text())
        _wait_ready(process, port)
        base = f"http://127.0.0.1:{port}"
        anonymous = httpx.post(f"{base}/v1/predict", json={"unit_id": "u1", "features": [0.0]})
        assert anonymous.status_code == 401
        for i in range(10):
            response = httpx.post(
                f"{base}/v1/predict",
                json={"unit_id": f"user-{i}", "features": [0.1] * N_FEATURES},
                headers={"authorization": f"Bearer {service}"},
            )
            assert response.status_code == 200, response.text
        experiments = httpx.get(
            f"{base}/v1/experiments", headers={"authorization": f"Bearer {admin}"}
        )
        assert [e["key"] for e in experiments.json()["experiments"]] == ["demo"]
    finally:
        code, err = _stop(process)
    assert code in CLEAN_EXIT, err
    # Graceful shutdown flushed every acknowledged event into the store.
    with EventStore.open(url) as store:
        assert store.count_events("prediction", "demo") == 10
        assert store.count_events("exposure", "demo") == 10
        assert sorted(t.role for t in store.list_tokens()) == ["admin", "service"]
    # A later start finds tokens and prints none.
    capsys.readouterr()
    _first_start_tokens(url, None)
    assert TOKEN.findall(capsys.readouterr().err) == []
    with EventStore.open(url) as store:
        assert len(store.list_tokens()) == 2


@pytest.mark.slow
def test_a_stale_metrics_directory_in_the_environment_does_not_stop_one_worker(
    tmp_path: Path,
) -> None:
    """One worker ignores ``PROMETHEUS_MULTIPROC_DIR`` (a library such as Feast sets it when
    imported, so a shell may carry a directory long gone). Before ``serve`` removes it,
    nothing may import prometheus_client, which reads it once: the gateway then failed to
    start with ``expected str, bytes or os.PathLike object, not NoneType``."""
    port = free_port()
    stale = str(tmp_path / "gone")
    process = _start(tmp_path, port, "--no-auth", PROMETHEUS_MULTIPROC_DIR=stale)
    try:
        _wait_ready(process, port)
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert metrics.status_code in (200, 401)
    finally:
        code, err = _stop(process)
    assert code in CLEAN_EXIT, err


SERVE_VARIABLES = (
    "ABFLOW_HOST",
    "ABFLOW_PORT",
    "ABFLOW_CONFIG",
    "ABFLOW_STORE_URL",
    "ABFLOW_WORKERS",
    "ABFLOW_WORKER_START_TIMEOUT_SECONDS",
    "ABFLOW_AUTH_ENABLED",
    "ABFLOW_DRAIN_TIMEOUT_SECONDS",
    "PROMETHEUS_MULTIPROC_DIR",
)


@pytest.mark.parametrize(
    ("options", "variable", "expected"),
    [
        ([], None, 30),  # uvicorn's own 5 s killed workers still importing on a busy machine
        (["--worker-start-timeout", "45"], None, 45),
        ([], "40", 40),
        (["--worker-start-timeout", "45"], "40", 45),
    ],
)
def test_worker_start_timeout_reaches_uvicorn(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    options: list[str],
    variable: str | None,
    expected: int,
) -> None:
    import uvicorn

    for name in SERVE_VARIABLES:  # serve sets them in this process: restore them afterwards
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    if variable is not None:
        monkeypatch.setenv("ABFLOW_WORKER_START_TIMEOUT_SECONDS", variable)
    calls: list[dict[str, object]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append(kwargs))
    url = f"sqlite:///{tmp_path / 'abflow.db'}"
    result = CliRunner().invoke(
        app, ["serve", "--no-auth", "--store", url, "--workers", "2", *options]
    )
    assert result.exit_code == 0, result.output
    [kwargs] = calls
    assert kwargs["timeout_worker_healthcheck"] == expected
    assert kwargs["workers"] == 2


@pytest.mark.parametrize(
    ("options", "variable", "named"),
    [
        (["--worker-start-timeout", "0"], None, "Invalid value for '--worker-start-timeout'"),
        ([], "0", "ABFLOW_WORKER_START_TIMEOUT_SECONDS"),
    ],
)
def test_worker_start_timeout_below_one_second_is_refused(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    options: list[str],
    variable: str | None,
    named: str,
) -> None:
    import uvicorn

    for name in SERVE_VARIABLES:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    if variable is not None:
        monkeypatch.setenv("ABFLOW_WORKER_START_TIMEOUT_SECONDS", variable)
    calls: list[dict[str, object]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append(kwargs))
    url = f"sqlite:///{tmp_path / 'abflow.db'}"
    result = CliRunner().invoke(app, ["serve", "--no-auth", "--store", url, *options])
    assert result.exit_code != 0
    assert named in " ".join(result.output.split())  # Rich wraps long lines
    assert calls == []


@pytest.mark.parametrize(
    ("variable", "value", "source"),
    [
        ("ABFLOW_WORKER_START_TIMEOUT_SECONDS", "0", "--worker-start-timeout or "),
        ("ABFLOW_REFRESH_SECONDS", "often", ""),  # a setting with no option of its own
    ],
)
def test_a_bad_setting_names_the_option_and_variable_that_set_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, source: str
) -> None:
    import uvicorn

    for name in SERVE_VARIABLES:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setenv(variable, value)
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: None)
    url = f"sqlite:///{tmp_path / 'abflow.db'}"
    result = CliRunner().invoke(app, ["serve", "--no-auth", "--store", url])
    assert result.exit_code == 2
    said = " ".join(result.output.split())
    assert f"(from {source}{variable})" in said
    assert "--worker_start_timeout" not in said
    assert "--refresh_seconds" not in said


def test_a_kafka_setting_librdkafka_refuses_is_one_sentence_before_uvicorn_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("confluent_kafka")
    import uvicorn

    for name in SERVE_VARIABLES:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setenv("ABFLOW_EVENTS_URL", "kafka://127.0.0.1:9/x?compression.type=bogus")
    calls: list[dict[str, object]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append(kwargs))
    url = f"sqlite:///{tmp_path / 'abflow.db'}"
    result = CliRunner().invoke(app, ["serve", "--no-auth", "--store", url])
    assert result.exit_code == 2
    said = " ".join(result.output.split())
    assert 'Invalid value "bogus"' in said
    assert "(from ABFLOW_EVENTS_URL)" in said
    assert "Traceback" not in said
    assert calls == []
