"""``abflow serve --workers 2`` for real: one ``/metrics`` that counts what every worker served.

Each worker's files are read back on their own (with prometheus_client's merge) to prove that
both workers served predictions; otherwise a per-worker exposition could pass by luck.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from model_server import free_port
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from abflow.serving.demo_models import N_FEATURES
from process_group import start_in_group, stop_process_group

pytestmark = pytest.mark.slow

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class Gateway:
    def __init__(self, process: subprocess.Popen[bytes], port: int, tmp: Path) -> None:
        self.process = process
        self.base = f"http://127.0.0.1:{port}"
        self.tmp = tmp

    @property
    def metrics_dir(self) -> Path:
        [path] = self.tmp.glob("abflow-metrics-*")
        return path

    def scrape(self) -> Samples:
        response = httpx.get(f"{self.base}/metrics", timeout=10)
        assert response.status_code == 200, response.text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text)
            for s in family.samples
        }

    def predict(self, units: range) -> None:
        def one(unit: int) -> None:
            # a new connection per request, so that the kernel spreads them over the workers
            response = httpx.post(
                f"{self.base}/v1/predict",
                json={"unit_id": f"user-{unit}", "features": [0.1 * (unit % 7)] * N_FEATURES},
                timeout=30,
            )
            assert response.status_code == 200, response.text

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(one, units))

    def per_worker_predictions(self) -> dict[int, float]:
        """pid -> rows predicted, from that worker's own counter file."""
        counts = {}
        for file in self.metrics_dir.glob("counter_*.db"):
            families = MultiProcessCollector.merge([str(file)])  # type: ignore[no-untyped-call]
            counts[int(file.stem.split("_")[1])] = sum(
                s.value
                for f in families
                if f.name == "abflow_predictions"
                for s in f.samples
                if s.name == "abflow_predictions_total"
            )
        return counts


def total(samples: Samples, name: str) -> float:
    return sum(value for (sample, _), value in samples.items() if sample == name)


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    port = free_port()
    env = {
        **os.environ,
        "ABFLOW_STORE_URL": f"sqlite:///{tmp_path / 'abflow.db'}",
        "ABFLOW_JOURNAL_DIR": str(tmp_path / "journal"),
        "TMPDIR": str(tmp_path),  # the metrics directory is made here, where the test sees it
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    command = [sys.executable, "-m", "abflow.cli.main", "serve", "--port", str(port)]
    command += ["--workers", "2", "--no-auth", "--log-level", "warning"]
    log = tmp_path / "gateway.log"
    process = start_in_group(command, cwd=tmp_path, env=env, log=log)
    gateway = Gateway(process, port, tmp_path)
    try:
        deadline = time.monotonic() + 300  # generous: a loaded machine starts workers slowly
        while len(list(tmp_path.glob("abflow-metrics-*/counter_*.db"))) < 2:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "two workers did not start within 300 s"
            time.sleep(0.2)
        while True:
            try:
                if httpx.get(f"{gateway.base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the gateway did not become ready within 300 s"
            time.sleep(0.2)
        yield gateway
    finally:
        stop_process_group(process)


def test_metrics_count_every_worker_exactly_and_only_grow(gateway: Gateway) -> None:
    sent = 0
    previous: Samples = {}
    for round_ in range(20):
        # at least five rounds, and more while the kernel has given one worker everything
        if round_ >= 5 and all(n > 0 for n in gateway.per_worker_predictions().values()):
            break
        gateway.predict(range(sent, sent + 40))
        sent += 40
        for _ in range(4):  # several scrapes land on different workers
            samples = gateway.scrape()
            assert total(samples, "abflow_predictions_total") == sent
            for key, value in previous.items():
                if key[0].endswith(("_total", "_count", "_sum", "_bucket")):
                    assert samples.get(key, 0.0) >= value, key
            previous = samples
    per_worker = gateway.per_worker_predictions()
    assert len(per_worker) == 2
    assert all(count > 0 for count in per_worker.values()), per_worker  # both served
    assert sum(per_worker.values()) == sent

    samples = gateway.scrape()
    served = samples[("abflow_http_requests_total", (("route", "/v1/predict"), ("status", "200")))]
    assert served == sent
    assert total(samples, "abflow_prediction_duration_seconds_count") == sent
    hits = total(samples, "abflow_cache_hits_total")
    misses = total(samples, "abflow_cache_misses_total")
    assert hits + misses == sent
    assert samples[("abflow_cache_hit_ratio", ())] == pytest.approx(hits / sent)
    # one series per gauge, summed over the live workers (no per-pid series)
    assert [k for k in samples if k[0] == "abflow_event_queue_depth"] == [
        ("abflow_event_queue_depth", ())
    ]


def test_a_killed_worker_keeps_its_counts_and_loses_its_gauges(gateway: Gateway) -> None:
    gateway.predict(range(60))
    per_worker = gateway.per_worker_predictions()
    victim = max(per_worker, key=lambda pid: per_worker[pid])
    assert per_worker[victim] > 0
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 300  # generous: a loaded machine starts workers slowly
    while len(list(gateway.metrics_dir.glob("counter_*.db"))) < 3:  # uvicorn replaced it
        assert time.monotonic() < deadline, "uvicorn did not replace the killed worker"
        time.sleep(0.2)
    samples = gateway.scrape()
    assert total(samples, "abflow_predictions_total") == 60  # the dead worker's rows still count
    assert list(gateway.metrics_dir.glob(f"gauge_live*_{victim}.db")) == []
    assert list(gateway.metrics_dir.glob(f"counter_{victim}.db")) != []
    gateway.predict(range(60, 80))
    assert total(gateway.scrape(), "abflow_predictions_total") == 80


def test_stopping_the_gateway_removes_the_metrics_directory(gateway: Gateway) -> None:
    folder = gateway.metrics_dir
    assert folder.stat().st_mode & 0o777 == 0o700  # private
    gateway.process.send_signal(signal.SIGTERM)
    gateway.process.communicate(timeout=60)
    assert not folder.exists()
