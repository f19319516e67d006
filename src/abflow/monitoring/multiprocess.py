"""Prometheus multiprocess mode: one ``/metrics`` for every uvicorn worker behind one port.

With ``--workers N`` each worker is a process with counters of its own, and a scrape lands on
whichever worker accepts it: counters would jump between the workers' values (``rate()`` sees
resets) and every per-variant series would be wrong. In prometheus_client's multiprocess mode
each process keeps its values in memory-mapped files in ``PROMETHEUS_MULTIPROC_DIR`` and a
scrape merges all of them. ``abflow serve`` creates that directory, fresh and private, before
uvicorn starts the workers (prometheus_client reads the variable once, when first imported),
and removes it on exit.

Counters and histograms of a worker that died keep counting in the sum, as they must (the
requests did happen); its live gauges are dropped at the next scrape.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from prometheus_client import Gauge, values
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from abflow.errors import ConfigError, InvalidArgumentError

__all__ = [
    "ENV_VAR",
    "GaugeRefresher",
    "MergedCollector",
    "multiprocess_directory",
    "prune_dead_processes",
]

ENV_VAR = "PROMETHEUS_MULTIPROC_DIR"

logger = logging.getLogger(__name__)

Derive = Callable[[Mapping[str, Metric]], Iterable[Metric]]
"""Families computed from the merged ones at scrape time; each replaces one of the same name."""


def multiprocess_directory() -> Path | None:
    """The directory of the workers' metric files, or None when each process counts alone.

    Multiprocess mode is on only when prometheus_client itself started in it (the variable
    was set before it was imported, as ``abflow serve`` does for several workers). A variable
    set later, by a library or a test, cannot switch this process's counters to files: it
    is ignored with a warning (Feast, for one, sets it when imported).
    """
    raw = os.environ.get(ENV_VAR)
    if not raw:
        return None
    if not getattr(values.ValueClass, "_multiprocess", False):
        _warn_ignored(raw)
        return None
    path = Path(raw)
    if not path.is_dir():
        msg = f"{ENV_VAR}={raw!r} is not a directory"
        raise ConfigError(msg)
    return path


@functools.cache
def _warn_ignored(raw: str) -> None:
    logger.warning(
        "%s=%s was set after prometheus_client was imported; this process counts alone",
        ENV_VAR,
        raw,
    )


def _pid_of(file: Path) -> int | None:
    """``gauge_livesum_1234.db`` -> 1234."""
    tail = file.stem.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else None


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def prune_dead_processes(path: Path) -> list[int]:
    """Drop the live gauges of processes that no longer run (a worker that crashed or was
    replaced); returns their pids. Their counters stay: those counts happened."""
    dead = sorted(
        {
            pid
            for file in path.glob("gauge_live*_*.db")
            if (pid := _pid_of(file)) is not None and not _is_alive(pid)
        }
    )
    for pid in dead:
        with contextlib.suppress(FileNotFoundError):  # another scrape pruned it first
            mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]  # untyped upstream
    return dead


class MergedCollector:
    """Every process's metrics summed, after pruning dead processes' live gauges.

    ``derive`` computes families that cannot be summed (a ratio) from the merged ones.
    """

    def __init__(self, path: Path, derive: Derive | None = None) -> None:
        self._path = path
        self._derive = derive
        # prometheus_client's multiprocess module has no annotations
        self._inner = MultiProcessCollector(None, path=str(path))  # type: ignore[no-untyped-call]

    def collect(self) -> Iterator[Metric]:
        prune_dead_processes(self._path)
        families: Iterable[Metric] = self._inner.collect()  # type: ignore[no-untyped-call]
        merged = {family.name: family for family in families}
        if self._derive is not None:
            for family in self._derive(merged):
                merged[family.name] = family
        yield from merged.values()


class GaugeRefresher:
    """Copies callback values into gauges every ``interval_seconds`` on a daemon thread.

    ``Gauge.set_function`` is read only by the process that serves the scrape; the other
    workers' values must already be in their files, so each worker writes its own.
    """

    def __init__(self, interval_seconds: float = 1.0) -> None:
        if interval_seconds <= 0:
            msg = f"interval_seconds must be positive, got {interval_seconds}"
            raise InvalidArgumentError(msg)
        self.interval_seconds = interval_seconds
        self._pairs: tuple[tuple[Gauge, Callable[[], float]], ...] = ()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._has_failed = False

    def watch(self, pairs: Iterable[tuple[Gauge, Callable[[], float]]]) -> None:
        """Refresh these gauges from now on (replacing earlier ones); starts the thread once."""
        self._pairs = tuple(pairs)
        self.refresh()
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="abflow-metrics-refresh", daemon=True
            )
            self._thread.start()

    def refresh(self) -> None:
        """Write every watched gauge now (also called just before this process answers)."""
        for gauge, read in self._pairs:
            gauge.set(read())

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_seconds):
            try:
                self.refresh()
            except Exception:  # a failing callback must not end the refresher
                if not self._has_failed:
                    logger.exception("cannot refresh the event-pipeline gauges")
                self._has_failed = True
            else:
                self._has_failed = False
