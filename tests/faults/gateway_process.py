"""A real ``abflow serve`` for fault tests: start it, find its process tree, kill or stop it.

The gateway runs in a session (and so a process group) of its own, which holds the uvicorn
process, its workers and each worker's event shipper child: ``kill_tree`` can then SIGKILL
all of them at once with ``os.killpg``, and it also kills any descendant found through
/proc that left the group. Readiness is polled with a generous bound, since a shared
machine may take tens of seconds to import and load models.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

READY_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 90.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(path: Path, config: Mapping[str, Any]) -> Path:
    """Write a gateway config file (YAML) and return its path."""
    path.write_text(yaml.safe_dump(dict(config), sort_keys=False), encoding="utf-8")
    return path


@dataclass
class GatewayProcess:
    """One ``abflow serve`` run: its process, its address and its log."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def tree(self) -> list[int]:
        """The pids of the uvicorn process and every live descendant."""
        return [self.process.pid, *descendants(self.process.pid)]


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process from /proc, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "
    return fields[0], int(fields[1])


def descendants(root: int) -> list[int]:
    """Every live (non-zombie) descendant of ``root``, found through /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None and stat[0] != "Z":
                children.setdefault(stat[1], []).append(int(entry.name))
    found: list[int] = []
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def is_gone(pid: int) -> bool:
    stat = _stat(pid)
    return stat is None or stat[0] == "Z"


def gateway_env(workdir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a test gateway: no inherited ABFLOW_ settings, files in workdir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ABFLOW_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env["TMPDIR"] = str(workdir)  # the multi-worker metrics directory lands here
    env["ABFLOW_JOURNAL_DIR"] = str(workdir / "journal")
    env.update(extra or {})
    return env


def start_gateway(
    workdir: Path,
    config: Path,
    *,
    workers: int = 1,
    env: Mapping[str, str] | None = None,
    shippers: int = 0,
) -> GatewayProcess:
    """Start ``abflow serve --config CONFIG --no-auth`` and wait until it is ready.

    ``shippers``: also wait until that many event shipper children run (one per worker when
    they ship in a child process): each worker starts its own before it serves.
    """
    port = free_port()
    log_path = workdir / f"gateway-{port}.log"
    command = [sys.executable, "-m", "abflow.cli.main", "serve", "--config", str(config)]
    command += ["--port", str(port), "--workers", str(workers), "--no-auth"]
    command += ["--log-level", "warning"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=workdir,
            env=gateway_env(workdir, env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill_tree reaches all of it
        )
    gateway = GatewayProcess(process, port, log_path)
    try:
        wait_ready(gateway, shippers)
    except BaseException:
        kill_tree(gateway)
        raise
    return gateway


def cmdline(pid: int) -> str:
    """The command line of a process ("" when it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def shipper_pids(gateway: GatewayProcess) -> list[int]:
    """The event shipper children (``python -m abflow.events.shipper``) in the tree."""
    return [pid for pid in gateway.tree() if "abflow.events.shipper" in cmdline(pid)]


def wait_ready(gateway: GatewayProcess, shippers: int = 0) -> None:
    """Poll ``/readyz`` until it answers 200 and ``shippers`` shipper children run; bounded by
    READY_TIMEOUT_SECONDS (a worker only accepts connections once its lifespan started)."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while True:
        code = gateway.process.poll()
        assert code is None, f"the gateway exited with {code}:\n{gateway.log}"
        assert time.monotonic() < deadline, f"the gateway was not ready in time:\n{gateway.log}"
        try:
            is_ready = httpx.get(f"{gateway.base_url}/readyz", timeout=5).status_code == 200
        except httpx.TransportError:
            is_ready = False
        if is_ready and len(shipper_pids(gateway)) >= shippers:
            return
        time.sleep(0.1)


def kill_tree(gateway: GatewayProcess) -> list[int]:
    """SIGKILL the gateway's whole process tree at once; return the pids that were killed.

    Waits (bounded) until every one of them is gone, so a restart never races a dying
    worker for its journal slot.
    """
    pids = gateway.tree()
    with suppress(ProcessLookupError):
        os.killpg(gateway.process.pid, signal.SIGKILL)  # the group: every process in one call
    for pid in pids:  # anything that had left the group
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    gateway.process.wait()
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while not all(is_gone(pid) for pid in pids):
        assert time.monotonic() < deadline, f"still alive after SIGKILL: {pids}"
        time.sleep(0.05)
    return pids


def stop_gateway(gateway: GatewayProcess) -> int:
    """SIGTERM (a clean shutdown that ships what is left) and wait, bounded, until every
    process of the tree has exited; SIGKILL the group if it hangs."""
    pids = gateway.tree()
    if gateway.process.poll() is None:
        gateway.process.send_signal(signal.SIGTERM)
        try:
            gateway.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            kill_tree(gateway)
            raise
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while not all(is_gone(pid) for pid in pids):
        if time.monotonic() > deadline:
            _kill_group(gateway)
            break
        time.sleep(0.05)
    return int(gateway.process.returncode)


def _kill_group(gateway: GatewayProcess) -> None:
    """SIGKILL whatever is left in the gateway's process group (nothing, normally)."""
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(gateway.process.pid, signal.SIGKILL)


@contextmanager
def running_gateway(
    workdir: Path,
    config: Path,
    *,
    workers: int = 1,
    env: Mapping[str, str] | None = None,
    shippers: int = 0,
) -> Iterator[GatewayProcess]:
    """A started gateway that is always stopped afterwards (killed if it does not stop)."""
    gateway = start_gateway(workdir, config, workers=workers, env=env, shippers=shippers)
    try:
        yield gateway
    finally:
        if gateway.process.poll() is None:
            with suppress(subprocess.TimeoutExpired):
                stop_gateway(gateway)
        _kill_group(gateway)
