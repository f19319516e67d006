"""The Grafana panels' queries, evaluated by a real Prometheus scraping a real gateway.

promtool checks every expression's syntax; then a Prometheus server scrapes the gateway's
``/metrics`` while requests flow, and every panel query must return data. Skipped with a
reason where Prometheus is not installed (Debian: ``apt-get install prometheus``).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml

from abflow.deploy.grafana import PANELS
from abflow.serving.app import create_app
from abflow.serving.settings import GatewaySettings, demo_config

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None or PROMTOOL is None,
    reason="needs Prometheus and promtool (Debian: apt-get install prometheus)",
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def queries(experiment: str = ".*") -> list[str]:
    return [
        expr.replace("$__rate_interval", "30s").replace("$experiment", experiment)
        for _, _, _, targets in PANELS
        for expr, _ in targets
    ]


def test_promtool_accepts_every_expression(tmp_path: Path) -> None:
    rules = [{"record": f"abflow:panel_{i}", "expr": expr} for i, expr in enumerate(queries())]
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "abflow", "rules": rules}]}))
    checked = subprocess.run(
        [str(PROMTOOL), "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules)} rules found" in checked.stdout


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("prom-gateway")
    settings = GatewaySettings(
        store_url=f"sqlite:///{folder / 'store.db'}",
        journal_dir=folder / "journal",
        auth_enabled=False,
        metrics_public=True,
    )
    app = create_app(settings, config=demo_config())
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120  # generous: a loaded machine starts slowly
    while not server.started:
        assert time.monotonic() < deadline, "the gateway did not start in 30 s"
        time.sleep(0.05)
    yield f"127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture(scope="module")
def prometheus(gateway: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("prometheus")
    config = folder / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [
                    {"job_name": "abflow", "static_configs": [{"targets": [gateway]}]}
                ],
            }
        )
    )
    port = free_port()
    process = subprocess.Popen(
        [
            str(PROMETHEUS),
            f"--config.file={config}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def query(prometheus: str, expr: str) -> dict[str, Any]:
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    body: dict[str, Any] = response.json()
    assert body["status"] == "success", (expr, body)
    return body


def test_every_panel_shows_data_from_a_live_gateway(gateway: str, prometheus: str) -> None:
    features = {"features": [0.1, -0.4, 1.2, 0.3, 0.0, 0.5, -1.0, 2.0]}
    deadline = time.monotonic() + 300  # generous: a loaded machine scrapes late
    while True:
        for unit in range(40):
            response = httpx.post(
                f"http://{gateway}/v1/predict", json={"unit_id": f"u{unit}", **features}, timeout=10
            )
            assert response.status_code == 200, response.text
        up = query(prometheus, 'up{job="abflow"}')["data"]["result"]
        rate = query(prometheus, "sum(rate(abflow_predictions_total[30s]))")["data"]["result"]
        if up and up[0]["value"][1] == "1" and rate and float(rate[0]["value"][1]) > 0:
            break
        assert time.monotonic() < deadline, "Prometheus never saw predictions"
        time.sleep(1)
    empty = [expr for expr in queries("demo") if not query(prometheus, expr)["data"]["result"]]
    # errors, fallbacks, shadow traffic and 5xx never happened here: their labelled series
    # do not exist yet, so those panels are empty
    allowed = (
        "abflow_prediction_errors",
        "abflow_fallbacks",
        "abflow_shadow",
        '5.."',
    )
    assert [e for e in empty if not any(a in e for a in allowed)] == []
