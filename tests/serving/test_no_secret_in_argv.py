"""No database password on any command line of a running gateway, nor in what it prints.

Every local user can read any process's arguments (``ps``, ``/proc/PID/cmdline``). A real
``abflow serve --workers 2`` runs against PostgreSQL as a role with a password, shipping
events from child processes; then the arguments of every process in its tree are read.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from model_server import free_port

from abflow.serving.demo_models import N_FEATURES
from abflow.store import EventStore, upgrade_store

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

TOKEN = re.compile(r"\b(abf_[A-Za-z0-9_\-]{43})\b")
WORKERS = 2
PREDICTIONS = 20


@pytest.fixture
def password_url(pg_url: str) -> Iterator[tuple[str, str]]:
    """(URL, password) of a fresh login role with a password, owning pg_url's schema."""
    role = f"abflow_argv_{uuid.uuid4().hex[:10]}"
    password = f"pw-{uuid.uuid4().hex}"
    url = sa.make_url(pg_url)
    schema = str(url.query["options"]).removeprefix("-csearch_path=")
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'"))
        connection.execute(sa.text(f'GRANT ALL ON SCHEMA "{schema}" TO {role}'))
    try:
        secret = url.set(username=role, password=password).render_as_string(hide_password=False)
        upgrade_store(secret)  # in this process: `abflow db upgrade --store` would show it
        yield secret, password
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f"DROP OWNED BY {role} CASCADE"))
            connection.execute(sa.text(f"DROP ROLE {role}"))
        admin.dispose()


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def _tree(root: int) -> list[int]:
    """``root`` and every process descended from it."""
    parents = {
        int(p.name): _parent_of(int(p.name)) for p in Path("/proc").iterdir() if p.name.isdigit()
    }
    found = [root]
    for pid in found:  # grows while it is walked: breadth first, bounded by the process count
        found.extend(child for child, parent in parents.items() if parent == pid)
    return found


def _cmdlines(root: int) -> dict[int, str]:
    lines = {}
    for pid in _tree(root):
        try:
            lines[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # ended meanwhile
    return lines


def _wait_for(
    predicate: Callable[[], bool], what: str, process: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + 180  # generous: two workers import on a busy machine
    while time.monotonic() < deadline:
        assert process.poll() is None, f"exited waiting for {what}: {log.read_text()[-2000:]}"
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail(f"no {what} within 180 s")


def test_the_store_password_is_in_no_command_line_and_no_output(
    tmp_path: Path, password_url: tuple[str, str], pg_url: str
) -> None:
    url, password = password_url
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ABFLOW_")},
        "ABFLOW_STORE_URL": url,
        "ABFLOW_JOURNAL_DIR": str(tmp_path / "journal"),
        "ABFLOW_SHIP_IN_SUBPROCESS": "true",
    }
    out, err = tmp_path / "stdout.log", tmp_path / "stderr.log"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        gateway = subprocess.Popen(
            [
                *(sys.executable, "-m", "abflow.cli.main", "serve"),
                *("--workers", str(WORKERS), "--port", str(port), "--log-level", "debug"),
            ],
            cwd=tmp_path,
            env=env,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:

        def shippers() -> list[int]:
            lines = _cmdlines(gateway.pid)
            return [pid for pid, line in lines.items() if "abflow.events.shipper" in line]

        _wait_for(lambda: len(shippers()) == WORKERS, f"{WORKERS} shipper processes", gateway, err)
        _wait_for(lambda: _ready(base), "200 from /readyz", gateway, err)
        lines = _cmdlines(gateway.pid)
        workers = [pid for pid, line in lines.items() if "--multiprocessing-fork" in line]
        assert len(workers) >= WORKERS, lines
        with_secret = {pid: line for pid, line in lines.items() if password in line}
        assert with_secret == {}, f"{len(with_secret)} of {len(lines)} processes show it"
        assert TOKEN.findall(err.read_text()) == []  # a log: the tokens went to a file
        [_, service] = TOKEN.findall((tmp_path / ".abflow" / "first-start-tokens").read_text())
        for i in range(PREDICTIONS):
            response = httpx.post(
                f"{base}/v1/predict",
                json={"unit_id": f"user-{i}", "features": [0.1] * N_FEATURES},
                headers={"authorization": f"Bearer {service}"},
                timeout=30,
            )
            assert response.status_code == 200, response.text
    finally:
        if gateway.poll() is None:
            gateway.send_signal(signal.SIGTERM)
        try:
            gateway.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(gateway.pid, signal.SIGKILL)
            gateway.wait()
    printed = out.read_bytes() + err.read_bytes()
    assert b"Started parent process" in printed  # uvicorn's log is in what was read
    assert password.encode() not in printed
    # The children got the URL through their pipe: every answered request reached the store.
    with EventStore.open(pg_url) as store:
        assert store.count_events("prediction", "demo") == PREDICTIONS


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False
