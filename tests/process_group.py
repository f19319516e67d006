"""Stopping a child started in a process group of its own (``start_new_session=True``).

A gateway with ``--workers 2`` is a uvicorn parent and its worker processes: killing only the
parent leaves the workers running, holding the port and any pipe they inherited, so a test
waiting on that pipe would wait forever. Every wait here is bounded.
"""

from __future__ import annotations

import os
import signal
import subprocess
from contextlib import suppress
from pathlib import Path


def stop_process_group(process: subprocess.Popen[bytes], timeout_seconds: float = 60.0) -> None:
    """SIGTERM the leader (a clean shutdown) and wait; SIGKILL the whole group if it lingers,
    and always SIGKILL what is left of the group afterwards (nothing, normally)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=timeout_seconds)
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def start_in_group(
    command: list[str], *, cwd: Path, env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    """Start ``command`` in a process group of its own, its stderr in the file ``log`` (not a
    pipe: workers outliving a kill would hold a pipe open)."""
    with log.open("wb") as sink:
        return subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=sink,
            start_new_session=True,  # a kill of the group reaches the workers too
        )
