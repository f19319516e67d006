"""End to end: SIGKILL the real gateway under load; every answered request is stored once.

The gateway app runs under uvicorn on a free port with an SQLite store; client threads send
predict requests, each with its own unit and request id, and record the ids of the 200
answers. The gateway is killed mid-load; its event log is restarted on the same journal
through the gateway's own wiring (``claim_event_log``, what its lifespan calls) and closed;
then each answered request must have exactly one prediction and one exposure.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from abflow.serving.wiring import claim_event_log

ANSWERS_BEFORE_KILL = 300
CLIENTS = 4
FEATURES = [0.5, -1.0, 0.25, 2.0, 0.0, 1.5, -0.75, 0.1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_gateway(tmp_path: Path, store_url: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ABFLOW_")},
        "ABFLOW_JOURNAL_DIR": str(tmp_path / "journal"),
        "ABFLOW_STORE_URL": store_url,
        "ABFLOW_AUTH_ENABLED": "false",
    }
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "abflow.serving.app:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    log = (tmp_path / f"gateway-{port}.log").open("wb")
    process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=log, stderr=log)
    log.close()
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300  # generous: a loaded machine starts slowly
    while True:
        assert process.poll() is None, (tmp_path / f"gateway-{port}.log").read_text()
        assert time.monotonic() < deadline, "the gateway did not become ready"
        try:
            if httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                return process, base_url
        except httpx.TransportError:
            pass
        time.sleep(0.1)


def send_until_stopped(
    base_url: str, client_id: int, answered: list[str], stop: threading.Event
) -> None:
    with httpx.Client(base_url=base_url, timeout=10) as client:
        i = 0
        while not stop.is_set():
            request_id = f"c{client_id}-{i}"
            try:
                response = client.post(
                    "/v1/predict",
                    json={
                        "unit_id": f"unit-{request_id}",
                        "request_id": request_id,
                        "features": FEATURES,
                    },
                )
            except httpx.TransportError:
                return  # the gateway is gone
            if response.status_code == 200:
                answered.append(request_id)
            i += 1


@pytest.mark.slow
def test_sigkill_of_the_gateway_loses_no_answered_request(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'events.db'}"
    gateway, base_url = start_gateway(tmp_path, store_url)
    answered: list[str] = []
    stop = threading.Event()
    clients = [
        threading.Thread(target=send_until_stopped, args=(base_url, k, answered, stop))
        for k in range(CLIENTS)
    ]
    try:
        for client in clients:
            client.start()
        deadline = time.monotonic() + 120  # generous: a loaded machine answers slowly
        while len(answered) < ANSWERS_BEFORE_KILL:
            assert gateway.poll() is None
            assert time.monotonic() < deadline, f"only {len(answered)} answers"
            time.sleep(0.01)
    finally:
        gateway.send_signal(signal.SIGKILL)
        gateway.wait()
        stop.set()
        for client in clients:
            client.join()
    assert gateway.returncode == -signal.SIGKILL
    acknowledged = list(answered)
    assert len(set(acknowledged)) == len(acknowledged) >= ANSWERS_BEFORE_KILL

    # Restart the gateway's event log the way its lifespan does, without loading models again:
    # it must re-claim the killed worker's journal slot and replay it into the store.
    log = claim_event_log(store_url, tmp_path / "journal")
    assert log.journal_dir == tmp_path / "journal" / "worker-0"
    log.close()

    engine = sa.create_engine(store_url)
    with engine.connect() as connection:
        predictions = dict(
            connection.execute(
                sa.text("SELECT request_id, COUNT(*) FROM predictions GROUP BY request_id")
            ).all()
        )
        exposures = dict(
            connection.execute(
                sa.text("SELECT unit_id, COUNT(*) FROM exposures GROUP BY unit_id")
            ).all()
        )
    engine.dispose()
    missing = [r for r in acknowledged if predictions.get(r) != 1]
    assert not missing, f"{len(missing)} answered requests without exactly one prediction"
    missing = [r for r in acknowledged if exposures.get(f"unit-{r}") != 1]
    assert not missing, f"{len(missing)} answered requests without exactly one exposure"
    assert max(predictions.values()) == 1
    assert max(exposures.values()) == 1
    assert not list((tmp_path / "journal").rglob("*.journal"))
