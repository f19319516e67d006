"""GatewayMetrics in one process (per-app registries) and the parts of multiprocess mode.

The test process runs without ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client reads it once,
at import); the merge is checked here on files written in prometheus_client's own format,
and end to end with two real workers in ``tests/serving/test_metrics_multiprocess.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.parser import text_string_to_metric_families

from abflow.errors import InvalidArgumentError
from abflow.monitoring.metrics import GatewayMetrics, _derived_hit_ratio
from abflow.monitoring.multiprocess import (
    ENV_VAR,
    GaugeRefresher,
    MergedCollector,
    prune_dead_processes,
)


def samples_of(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


def test_apps_in_one_process_count_apart() -> None:
    first, second = GatewayMetrics(), GatewayMetrics()
    assert not first.is_multiprocess
    first.predictions.labels("exp", "control", "1").inc(3)
    first.cache_hits.inc(3)
    first.cache_misses.inc(1)
    first.watch_event_pipeline(lambda: 7, lambda: 2048)
    one, two = samples_of(first.exposition()), samples_of(second.exposition())
    labels = (("experiment", "exp"), ("model_version", "1"), ("variant", "control"))
    key = ("abflow_predictions_total", labels)
    assert one[key] == 3
    assert key not in two
    assert one[("abflow_cache_hit_ratio", ())] == 0.75
    assert two[("abflow_cache_hit_ratio", ())] == 0.0
    assert one[("abflow_event_queue_depth", ())] == 7
    assert one[("abflow_event_spool_bytes", ())] == 2048


def test_a_variable_set_after_import_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # what importing Feast does: this process keeps counting alone, in its own registry
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    metrics = GatewayMetrics()
    assert not metrics.is_multiprocess
    metrics.cache_hits.inc()
    assert metrics.registry.get_sample_value("abflow_cache_hits_total") == 1


Entry = tuple[str, str, dict[str, str], float]
"""metric name, sample name, labels, value"""


def write(path: Path, entries: list[Entry]) -> None:
    """One process's file, as prometheus_client's MmapedValue writes it."""
    db = MmapedDict(str(path))
    for metric, sample, labels, value in entries:
        key = mmap_key(metric, sample, list(labels), list(labels.values()), f"{metric} help")
        db.write_value(key, value, 0.0)
    db.close()


def dead_pid() -> int:
    code = "import os; print(os.getpid())"
    child = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return int(child.stdout)


def test_prune_drops_only_the_live_gauges_of_dead_processes(tmp_path: Path) -> None:
    dead, alive = dead_pid(), os.getpid()
    for pid in (dead, alive):
        for kind in ("counter", "histogram", "gauge_livesum", "gauge_livemax", "gauge_all"):
            write(tmp_path / f"{kind}_{pid}.db", [])
    assert prune_dead_processes(tmp_path) == [dead]
    left = sorted(p.name for p in tmp_path.iterdir())
    kept_of_alive = ("counter", "gauge_all", "gauge_livemax", "gauge_livesum", "histogram")
    expected = [f"{k}_{dead}.db" for k in ("counter", "gauge_all", "histogram")]
    expected += [f"{k}_{alive}.db" for k in kept_of_alive]
    assert left == sorted(expected)
    assert prune_dead_processes(tmp_path) == []


def test_merge_sums_the_workers_and_derives_the_hit_ratio(tmp_path: Path) -> None:
    workers = {os.getpid(): (30.0, 10.0, 4.0, 0.0), os.getppid(): (5.0, 15.0, 6.0, 1.0)}
    dead = dead_pid()
    for pid, (hits, misses, depth, circuit) in workers.items():
        counters: list[Entry] = [
            ("abflow_cache_hits", "abflow_cache_hits_total", {}, hits),
            ("abflow_cache_misses", "abflow_cache_misses_total", {}, misses),
        ]
        sums: list[Entry] = [
            ("abflow_event_queue_depth", "abflow_event_queue_depth", {}, depth),
            ("abflow_cache_hit_ratio", "abflow_cache_hit_ratio", {}, 0.5),  # must be replaced
        ]
        maxima: list[Entry] = [
            ("abflow_circuit_open", "abflow_circuit_open", {"model": "m"}, circuit)
        ]
        write(tmp_path / f"counter_{pid}.db", counters)
        write(tmp_path / f"gauge_livesum_{pid}.db", sums)
        write(tmp_path / f"gauge_livemax_{pid}.db", maxima)
    dead_hits: list[Entry] = [("abflow_cache_hits", "abflow_cache_hits_total", {}, 5.0)]
    dead_depth: list[Entry] = [("abflow_event_queue_depth", "abflow_event_queue_depth", {}, 100.0)]
    write(tmp_path / f"counter_{dead}.db", dead_hits)
    write(tmp_path / f"gauge_livesum_{dead}.db", dead_depth)
    registry = CollectorRegistry()
    registry.register(MergedCollector(tmp_path, _derived_hit_ratio))
    samples = samples_of(generate_latest(registry))
    hits = 30 + 5 + 5  # the dead process's hits happened
    lookups = hits + 10 + 15
    assert samples[("abflow_cache_hits_total", ())] == hits
    assert samples[("abflow_cache_misses_total", ())] == 25
    assert samples[("abflow_cache_hit_ratio", ())] == pytest.approx(hits / lookups)
    assert samples[("abflow_event_queue_depth", ())] == 10  # live workers only
    assert samples[("abflow_circuit_open", (("model", "m"),))] == 1


def test_refresher_copies_the_callbacks_into_the_gauges() -> None:
    registry = CollectorRegistry()
    gauge = Gauge("depth", "queue depth", registry=registry)
    state = {"depth": 3.0}
    refresher = GaugeRefresher(interval_seconds=0.02)
    refresher.watch([(gauge, lambda: state["depth"])])
    try:
        assert registry.get_sample_value("depth") == 3  # written at once
        state["depth"] = 9.0
        deadline = time.monotonic() + 60  # generous: a loaded machine delays the thread
        while registry.get_sample_value("depth") != 9:
            assert time.monotonic() < deadline, "the refresher never wrote the new value"
            time.sleep(0.01)
    finally:
        refresher.stop()
    with pytest.raises(InvalidArgumentError, match="positive"):
        GaugeRefresher(interval_seconds=0)
