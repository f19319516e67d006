"""An event sink in memory for tests that start a gateway app but read no events back."""

from __future__ import annotations

import threading
from typing import Any


class MemorySink:
    """Keeps what the gateway appends, as (kind, row), in order."""

    queue_depth = 0
    spool_bytes = 0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.rows: list[tuple[str, dict[str, Any]]] = []

    def start(self) -> None:
        """Nothing to start."""

    def append(self, kind: str, row: dict[str, Any]) -> None:
        with self._lock:
            self.rows.append((kind, dict(row)))

    def close(self, timeout_seconds: float = 10.0) -> None:
        """Nothing to close."""
