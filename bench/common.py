"""What several benchmarks need alike: free ports, process trees, the machine's load.

The benchmarks are scripts run from the repository root (``.venv/bin/python bench/X.py``),
so this folder is on ``sys.path`` and they import this module by its plain name.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

__all__ = ["cmdline", "free_port", "load_average", "stop_process_group"]


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """Stop a server started with ``start_new_session=True`` and everything it spawned:
    SIGTERM to its process group, SIGKILL if it has not exited 30 s later."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def cmdline(pid: int) -> str:
    """The process's command line (NUL-separated), or "" once it has gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def load_average() -> str:
    """1, 5 and 15 minute load averages: other jobs on the machine skew latency."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())
