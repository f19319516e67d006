"""What a gateway process imports before it can answer: only what its configuration uses.

uvicorn kills a worker that does not answer its health check in time, and each worker first
imports the ``abflow`` entry point again (multiprocessing's spawn runs the parent's
``__main__`` as ``__mp_main__``) and then the app. Each check runs in a fresh interpreter,
since this one has imported everything already.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from model_server import free_port

OPTIONAL_STACK = ("mlflow", "feast", "sklearn", "pandas")
"""Loaded only for a model or feature source that needs them (registry, Feast, file: models)."""

COMMAND_STACK = (*OPTIONAL_STACK, "scipy", "sqlalchemy", "numpy", "fastapi")
"""What the commands need (statistics, drift, the store, the gateway), imported per command."""


def _loaded_after(code: str, cwd: Path | None = None) -> list[str]:
    """Top-level packages in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    probe = (
        code
        + "\nimport sys, json\nprint(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    loaded: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return loaded


def test_the_entry_point_imports_no_command_dependencies() -> None:
    loaded = _loaded_after("import abflow.cli.main")
    assert [name for name in COMMAND_STACK if name in loaded] == []
    assert "typer" in loaded  # the probe sees what the module imported


@pytest.mark.parametrize("module", ["abflow.serving.app", "abflow.serving"])
def test_the_app_module_imports_no_optional_stack(module: str) -> None:
    loaded = _loaded_after(f"import {module}")
    assert [name for name in OPTIONAL_STACK if name in loaded] == []


def test_a_gateway_without_registry_or_feast_models_loads_none_of_them(tmp_path: Path) -> None:
    (tmp_path / "plainmodels.py").write_text(
        textwrap.dedent(
            """
            import numpy as np

            class Sum:
                n_features_in_ = 3

                def predict(self, rows):
                    return np.asarray(rows).sum(axis=1)

            def sum_model():
                return Sum()
            """
        )
    )
    code = textwrap.dedent(
        f"""
        import asyncio
        import httpx
        from abflow.serving.app import create_app
        from abflow.serving.settings import GatewayConfig, GatewaySettings
        from abflow.spec import parse_experiment

        spec = parse_experiment({{
            "key": "plain",
            "unit": "user_id",
            "variants": [
                {{"name": "control", "model": "python:plainmodels:sum_model"}},
                {{"name": "challenger", "model": "python:plainmodels:sum_model"}},
            ],
            "weights": [0.5, 0.5],
            "metrics": [
                {{"name": "clicked", "kind": "conversion", "event": "click", "role": "primary"}}
            ],
        }})
        settings = GatewaySettings(
            store_url="sqlite:///{tmp_path / "events.db"}",
            journal_dir="{tmp_path / "journal"}",
            auth_enabled=False,
        )
        app = create_app(settings, config=GatewayConfig(experiments=[spec]))

        async def main():
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://g") as c:
                    for i in range(5):
                        body = {{"unit_id": f"u{{i}}", "features": [1.0, 2.0, 3.5]}}
                        r = await c.post("/v1/predict", json=body)
                        assert r.status_code == 200, r.text
                        assert r.json()["prediction"] == 6.5

        asyncio.run(main())
        """
    )
    loaded = _loaded_after(code, cwd=tmp_path)
    assert [name for name in OPTIONAL_STACK if name in loaded] == []
    assert "sqlalchemy" in loaded  # the store was opened: the probe saw a running gateway


SLOW_ENTRY = """
import time

time.sleep({seconds})  # a slow import, as on a busy machine: every worker runs this first

from abflow.cli.main import main

if __name__ == "__main__":
    main()
"""


@pytest.mark.slow
def test_workers_slow_to_start_are_not_restarted(tmp_path: Path) -> None:
    """Two workers whose ``__main__`` takes 7 s to import (uvicorn's own limit is 5 s) start
    once each, with the default ``--worker-start-timeout``."""
    entry = tmp_path / "slow_abflow.py"
    entry.write_text(SLOW_ENTRY.format(seconds=7))
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ABFLOW_")},
        "ABFLOW_STORE_URL": f"sqlite:///{tmp_path / 'abflow.db'}",
        "ABFLOW_JOURNAL_DIR": str(tmp_path / "journal"),
    }
    log = tmp_path / "gateway.log"
    with log.open("wb") as out:
        gateway = subprocess.Popen(
            [
                *(sys.executable, str(entry), "serve", "--no-auth", "--workers", "2"),
                *("--port", str(port), "--log-level", "info"),
            ],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 240  # generous: 7 s of sleep plus imports, busy machine
        while log.read_text().count("Application startup complete") < 2:
            text = log.read_text()
            assert "died" not in text, text  # uvicorn restarted a worker
            assert gateway.poll() is None, text
            assert time.monotonic() < deadline, f"two workers not up within 240 s: {text}"
            time.sleep(0.5)
        response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
        assert response.status_code == 200
    finally:
        if gateway.poll() is None:
            gateway.send_signal(signal.SIGTERM)
        try:
            gateway.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(gateway.pid, signal.SIGKILL)
            gateway.wait()
    text = log.read_text()
    assert text.count("Started server process") == 2  # each worker started once
    assert "died" not in text
